//! The operator's controls of a stored rollout: `pause`, `resume` and `abort` (the admin API runs them under the
//! rollout's lease, [`super::driver::control`]). Plain functions like [`super::step`].

use super::model::{Phase, Rollout, SpecError};
use super::step::{rollback, Decision};

/// Stops pinning new sites (the operator's `pause`).
pub fn pause(r: &mut Rollout, by: &str, now_ms: u64) -> Result<(), SpecError> {
    if r.phase != Phase::Progressing {
        return Err(SpecError::Invalid(format!(
            "rollout {:?} is {}, not Progressing; only a progressing rollout can be paused",
            r.id,
            r.phase.as_str()
        )));
    }
    r.phase = Phase::Paused;
    r.reason = Some(format!("paused by {by}"));
    r.event(now_ms, format!("paused by {by}"));
    r.updated_ms = now_ms;
    Ok(())
}

/// Goes on after a pause. Failures still standing count again at the next step: a rollout paused by a
/// breach pauses again unless the failed sites recovered (or use `abort`).
pub fn resume(r: &mut Rollout, by: &str, now_ms: u64) -> Result<(), SpecError> {
    if r.phase != Phase::Paused {
        return Err(SpecError::Invalid(format!(
            "rollout {:?} is {}, not Paused; only a paused rollout can be resumed",
            r.id,
            r.phase.as_str()
        )));
    }
    r.phase = Phase::Progressing;
    r.reason = None;
    r.event(now_ms, format!("resumed by {by}"));
    r.updated_ms = now_ms;
    Ok(())
}

/// Rolls back now (the operator's `abort`): every site pinned to the new commit is re-pinned to the previous.
pub fn abort(r: &mut Rollout, by: &str, now_ms: u64) -> Result<Vec<Decision>, SpecError> {
    if !matches!(r.phase, Phase::Progressing | Phase::Paused) {
        return Err(SpecError::Invalid(format!(
            "rollout {:?} is {}; only a progressing or paused rollout can be aborted",
            r.id,
            r.phase.as_str()
        )));
    }
    let mut decisions = Vec::new();
    rollback(
        r,
        Phase::Aborted,
        format!("aborted by {by}"),
        now_ms,
        &mut decisions,
    );
    r.updated_ms = now_ms;
    Ok(decisions)
}
