//! Operator controls that reach a running daemon without a restart and survive one: small files under
//! `state_dir/control/`, written by `outpost suspend` and removed by `outpost resume`, read by every pass. A file
//! and not the store, because the daemon holds the store and a site's operator must be able to act beside it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil;

/// Who suspended a source, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspension {
    pub reason: String,
    /// The local user who ran `outpost suspend`.
    pub by: String,
    /// Unix seconds.
    pub at: u64,
}

impl std::fmt::Display for Suspension {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "suspended by {}: {}", self.by, self.reason)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot write {path}: {source}; check that state_dir is writable by this user")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot remove {path}: {source}; check that state_dir is writable by this user")]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn suspension_file(state_dir: &Path, source: &str) -> PathBuf {
    // Source names are lowercase letters, digits and '-' (the config checks), so they are safe file names.
    state_dir
        .join("control")
        .join(format!("suspend-{source}.json"))
}

/// Suspends `source`: the next pass of a running daemon (and every pass after a restart) leaves it alone.
pub fn suspend(
    state_dir: &Path,
    source: &str,
    suspension: &Suspension,
) -> Result<(), ControlError> {
    let bytes = serde_json::to_vec_pretty(suspension).expect("a suspension serialises");
    write(&suspension_file(state_dir, source), &bytes)
}

/// Replaces one control file whole (the daemon never reads half of one), creating `control/` when needed.
fn write(path: &Path, bytes: &[u8]) -> Result<(), ControlError> {
    let failed = |source| ControlError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    fsutil::write_replace(path, bytes).map_err(failed)
}

/// Resumes `source`; `false` when it was not suspended.
pub fn resume(state_dir: &Path, source: &str) -> Result<bool, ControlError> {
    let path = suspension_file(state_dir, source);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(ControlError::Remove { path, source }),
    }
}

/// The standing suspension of `source`, if any. A file that cannot be read still suspends (an operator asked
/// for it), with the reason saying the file is damaged.
pub fn suspension(state_dir: &Path, source: &str) -> Option<Suspension> {
    let path = suspension_file(state_dir, source);
    let bytes = std::fs::read(&path).ok()?;
    Some(
        serde_json::from_slice(&bytes).unwrap_or_else(|e| Suspension {
            reason: format!(
                "{} is unreadable ({e}); `outpost resume` removes it",
                path.display()
            ),
            by: "unknown".into(),
            at: 0,
        }),
    )
}

fn reconcile_file(state_dir: &Path, source: &str) -> PathBuf {
    state_dir
        .join("control")
        .join(format!("reconcile-{source}"))
}

/// Asks for a poll of `source` now (`outpost reconcile`): the daemon takes the request when it is woken
/// (SIGUSR1), or at the latest before its next poll.
pub fn request_reconcile(state_dir: &Path, source: &str) -> Result<(), ControlError> {
    write(&reconcile_file(state_dir, source), b"")
}

/// True, once, when a poll of `source` was asked for.
pub fn take_reconcile(state_dir: &Path, source: &str) -> bool {
    std::fs::remove_file(reconcile_file(state_dir, source)).is_ok()
}

/// The local user running this command, for `Suspension::by`.
pub fn local_user() -> String {
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| {
            // A service without a login environment: the numeric user id.
            std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("Uid:"))
                        .and_then(|l| l.split_whitespace().next().map(|u| format!("uid {u}")))
                })
                .unwrap_or_else(|| "unknown".into())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suspend_persists_until_resumed() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(suspension(dir.path(), "web"), None);
        let s = Suspension {
            reason: "store closed for inventory".into(),
            by: "alice".into(),
            at: 1,
        };
        suspend(dir.path(), "web", &s).unwrap();
        assert_eq!(suspension(dir.path(), "web"), Some(s.clone()));
        assert_eq!(suspension(dir.path(), "other"), None);
        assert_eq!(
            s.to_string(),
            "suspended by alice: store closed for inventory"
        );
        assert!(resume(dir.path(), "web").unwrap());
        assert!(!resume(dir.path(), "web").unwrap());
        assert_eq!(suspension(dir.path(), "web"), None);
    }

    #[test]
    fn a_reconcile_request_is_taken_once() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!take_reconcile(dir.path(), "web"));
        request_reconcile(dir.path(), "web").unwrap();
        assert!(take_reconcile(dir.path(), "web"));
        assert!(!take_reconcile(dir.path(), "web"));
    }

    #[test]
    fn a_damaged_file_still_suspends() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("control")).unwrap();
        std::fs::write(dir.path().join("control/suspend-web.json"), "{").unwrap();
        let s = suspension(dir.path(), "web").unwrap();
        assert!(s.reason.contains("unreadable"), "{s}");
    }
}
