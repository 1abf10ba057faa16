//! `outpost status --check`: a liveness probe that needs no listening port (an exec probe in a pod, a monitoring
//! check on a host). Alive means: a daemon published its status, that process still exists, and every source's
//! next poll is not overdue by more than three timeouts plus a minute (a pass that hangs misses its next poll).

use std::path::Path;

use super::{read_snapshot, SNAPSHOT_FILE};
use crate::config::Config;

/// Why the daemon is not alive.
#[derive(Debug, thiserror::Error)]
pub enum NotAlive {
    #[error("no daemon status in {0} (is `outpost run` running?)")]
    NoStatus(String),
    #[error("the status was not written by a daemon")]
    NotADaemon,
    #[error("the daemon (pid {0}) that wrote the status is gone")]
    Gone(u32),
    #[error("source {name:?} was due to poll {overdue}s ago and has not")]
    Overdue { name: String, overdue: u64 },
}

/// A pass may run this many of its source's timeouts, plus [`GRACE_SECS`], past its next poll before the daemon
/// counts as hung.
const TIMEOUTS_OF_SLACK: u64 = 3;
const GRACE_SECS: u64 = 60;

/// `Ok` with the pid and the number of sources polled when the daemon is alive at `now`.
pub fn check(config: &Config, now: u64) -> Result<(u32, usize), NotAlive> {
    let dir = &config.agent.state_dir;
    let snapshot = read_snapshot(dir)
        .ok_or_else(|| NotAlive::NoStatus(dir.join(SNAPSHOT_FILE).display().to_string()))?;
    let pid = snapshot.daemon_pid.ok_or(NotAlive::NotADaemon)?;
    if !Path::new(&format!("/proc/{pid}")).exists() {
        return Err(NotAlive::Gone(pid));
    }
    for s in &snapshot.sources {
        let Some(source) = config.source(&s.name) else {
            continue;
        };
        let slack = source.timeout.as_secs() * TIMEOUTS_OF_SLACK + GRACE_SECS;
        if let Some(next) = s.next_poll {
            if now > next + slack {
                return Err(NotAlive::Overdue {
                    name: s.name.clone(),
                    overdue: now - next,
                });
            }
        }
    }
    Ok((pid, snapshot.sources.len()))
}
