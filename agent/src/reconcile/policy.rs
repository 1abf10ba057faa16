//! What a failed pass leaves behind: the state to record and what to do to the target. A pure function of the
//! error and where the pass stood, so that each branch has a unit test.
//!
//! The rule: the site keeps running its last good revision. A revision that reached the target and failed there
//! is rolled back completely (when `rollback` is on); otherwise the last good bundle is re-applied, unless the
//! target itself cannot be reached. "Cannot reach" (Git host or cluster) is `Stale` while a last good revision
//! runs; everything else is `Failed`.

use super::ReconcileError;
use crate::report::State;

/// Where the failed pass stood.
#[derive(Debug, Clone, Copy)]
pub struct Failure<'a> {
    /// The source's last good revision, if it has one.
    pub last_good: Option<&'a str>,
    /// The revision the pass was working on, if it got that far.
    pub revision: Option<&'a str>,
    /// The source's `rollback` setting.
    pub rollback: bool,
}

/// What to do to the target after a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// `from` reached the target: re-apply `to` (the last good revision) in full and remove what `from` created.
    RollBack { from: String, to: String },
    /// Make the target hold the last good revision again (only what drifted is written).
    Reapply(String),
    /// Leave the target alone: there is nothing good to go back to, or it cannot be reached.
    Leave,
}

/// The verdict on one failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Next {
    pub state: State,
    pub recovery: Recovery,
}

pub fn error_policy(error: &ReconcileError, at: Failure<'_>) -> Next {
    let target_down =
        matches!(error, ReconcileError::Target { error, .. } if error.is_unreachable());
    let offline = target_down
        || matches!(error, ReconcileError::Source { error, .. } if !error.is_content_error());
    let state = if offline && at.last_good.is_some() {
        State::Stale
    } else {
        State::Failed
    };
    let Some(last_good) = at.last_good else {
        return Next {
            state,
            recovery: Recovery::Leave,
        };
    };
    // A new revision that reached the target and failed there (or never became healthy) may have changed or
    // created objects: go back completely.
    let new_revision = at.revision.filter(|r| *r != last_good);
    let applied_new = matches!(error, ReconcileError::Target { .. }) && !target_down;
    let recovery = match new_revision {
        Some(from) if applied_new && at.rollback => Recovery::RollBack {
            from: from.to_string(),
            to: last_good.to_string(),
        },
        _ if (at.rollback || offline) && !target_down => Recovery::Reapply(last_good.to_string()),
        _ => Recovery::Leave,
    };
    Next { state, recovery }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::BuildError;
    use crate::deploy::{kube::KubeError, TargetError};
    use crate::source::SourceError;

    const GOOD: &str = "1111111111111111111111111111111111111111";
    const NEW: &str = "2222222222222222222222222222222222222222";

    fn source(error: SourceError) -> ReconcileError {
        ReconcileError::Source {
            source_name: "web".into(),
            error,
        }
    }

    fn unreachable_git() -> ReconcileError {
        source(SourceError::Timeout {
            url: "https://git.example/x".into(),
            timeout: std::time::Duration::from_secs(1),
        })
    }

    fn broken_build() -> ReconcileError {
        ReconcileError::Build {
            source_name: "web".into(),
            revision: NEW.into(),
            error: Box::new(BuildError::Empty),
        }
    }

    fn target(error: TargetError) -> ReconcileError {
        ReconcileError::Target {
            source_name: "web".into(),
            revision: NEW.into(),
            error,
        }
    }

    fn rejected_apply() -> ReconcileError {
        target(TargetError::Directory {
            dir: "/srv".into(),
            message: "read-only file system".into(),
        })
    }

    fn unreachable_api() -> ReconcileError {
        target(TargetError::Kubernetes(KubeError::Unreachable {
            server: "https://10.0.0.1:6443".into(),
            message: "connection refused".into(),
        }))
    }

    fn at(
        last_good: Option<&'static str>,
        revision: Option<&'static str>,
        rollback: bool,
    ) -> Failure<'static> {
        Failure {
            last_good,
            revision,
            rollback,
        }
    }

    #[test]
    fn unreachable_git_keeps_the_last_good_running_and_is_stale() {
        let next = error_policy(&unreachable_git(), at(Some(GOOD), None, false));
        assert_eq!(next.state, State::Stale);
        assert_eq!(next.recovery, Recovery::Reapply(GOOD.into()));
    }

    #[test]
    fn unreachable_git_without_a_last_good_is_a_failure_with_nothing_to_do() {
        let next = error_policy(&unreachable_git(), at(None, None, true));
        assert_eq!(next.state, State::Failed);
        assert_eq!(next.recovery, Recovery::Leave);
    }

    #[test]
    fn a_broken_build_fails_and_reapplies_the_last_good_only_with_rollback_on() {
        let next = error_policy(&broken_build(), at(Some(GOOD), Some(NEW), true));
        assert_eq!(next.state, State::Failed);
        assert_eq!(next.recovery, Recovery::Reapply(GOOD.into()));
        let next = error_policy(&broken_build(), at(Some(GOOD), Some(NEW), false));
        assert_eq!(next.recovery, Recovery::Leave);
    }

    #[test]
    fn a_rejected_apply_rolls_back_with_rollback_on() {
        let next = error_policy(&rejected_apply(), at(Some(GOOD), Some(NEW), true));
        assert_eq!(next.state, State::Failed);
        assert_eq!(
            next.recovery,
            Recovery::RollBack {
                from: NEW.into(),
                to: GOOD.into()
            }
        );
    }

    #[test]
    fn a_rejected_apply_is_left_in_place_with_rollback_off() {
        let next = error_policy(&rejected_apply(), at(Some(GOOD), Some(NEW), false));
        assert_eq!(next.state, State::Failed);
        assert_eq!(next.recovery, Recovery::Leave);
    }

    #[test]
    fn a_failed_reapply_of_the_last_good_is_not_a_rollback() {
        let next = error_policy(&rejected_apply(), at(Some(GOOD), Some(GOOD), true));
        assert_eq!(next.recovery, Recovery::Reapply(GOOD.into()));
    }

    #[test]
    fn an_unreachable_api_is_stale_and_leaves_the_target_alone() {
        let next = error_policy(&unreachable_api(), at(Some(GOOD), Some(NEW), true));
        assert_eq!(next.state, State::Stale);
        assert_eq!(next.recovery, Recovery::Leave);
        let next = error_policy(&unreachable_api(), at(None, Some(NEW), true));
        assert_eq!(next.state, State::Failed);
    }
}
