//! Size limits on what a fetch may bring onto the box: `max_pack_size` for one transfer and `max_repo_size` for a
//! source's Git cache. An edge box has a small disk shared with the workloads it runs, and a repository that
//! suddenly holds a video or a database dump must not fill it.
//!
//! gix reports no byte counts we could act on mid-transfer, but it writes the incoming pack straight into the
//! cache's `objects/pack`, so a watcher that measures the cache while the fetch runs sees the transfer grow and
//! can stop it through the same interrupt flag the source's timeout uses. The overshoot is bounded by what
//! arrives in one [`POLL`] interval.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often the cache is measured while a fetch runs.
const POLL: Duration = Duration::from_millis(50);

/// Bytes in the regular files under `dir`, recursively; what cannot be read counts as nothing (the cache is only
/// ever written by this process, and a file that vanished while being measured holds nothing).
pub fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => dirs.push(entry.path()),
                Ok(t) if t.is_file() => total += entry.metadata().map_or(0, |m| m.len()),
                _ => {}
            }
        }
    }
    total
}

/// Runs `fetch` while watching `dir`: once it has grown by more than `limit` bytes, `interrupt` is set, which
/// makes gix abandon the transfer. Returns what `fetch` returned and whether the limit was crossed (then the
/// caller reports the limit, whatever gix said about the interruption).
pub fn watch_growth<T>(
    dir: &Path,
    limit: u64,
    interrupt: &AtomicBool,
    fetch: impl FnOnce() -> T,
) -> (T, bool) {
    let baseline = dir_size(dir);
    let done = AtomicBool::new(false);
    let exceeded = AtomicBool::new(false);
    let result = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                if dir_size(dir).saturating_sub(baseline) > limit {
                    exceeded.store(true, Ordering::SeqCst);
                    interrupt.store(true, Ordering::SeqCst);
                    return;
                }
                std::thread::sleep(POLL);
            }
        });
        let result = fetch();
        done.store(true, Ordering::SeqCst);
        result
    });
    // A transfer that finished between two measurements may still have crossed the limit.
    let exceeded =
        exceeded.load(Ordering::SeqCst) || dir_size(dir).saturating_sub(baseline) > limit;
    (result, exceeded)
}

/// A byte count the way an operator reads it in an error message.
pub fn human(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes >= MIB {
        format!("{:.1} MiB", bytes as f64 / MIB as f64)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_growing_directory_is_stopped_past_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("before"), vec![0u8; 4096]).unwrap();
        let interrupt = AtomicBool::new(false);
        let (written, exceeded) = watch_growth(dir.path(), 10_000, &interrupt, || {
            // Writes 1 KiB chunks until told to stop, as gix does with its interrupt flag.
            let mut written = 0;
            while !interrupt.load(Ordering::SeqCst) && written < 10_000_000 {
                std::fs::write(dir.path().join(format!("chunk{written}")), [0u8; 1024]).unwrap();
                written += 1024;
                std::thread::sleep(Duration::from_millis(1));
            }
            written
        });
        assert!(exceeded);
        assert!(interrupt.load(Ordering::SeqCst));
        assert!(written > 10_000, "stopped only past the limit: {written}");
        assert!(written < 10_000_000, "stopped at all: {written}");
    }

    #[test]
    fn a_fetch_within_the_limit_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("big-before"), vec![0u8; 50_000]).unwrap();
        let interrupt = AtomicBool::new(false);
        let ((), exceeded) = watch_growth(dir.path(), 10_000, &interrupt, || {
            std::fs::write(dir.path().join("new"), vec![0u8; 9_000]).unwrap();
        });
        assert!(!exceeded, "what was there before does not count");
        assert!(!interrupt.load(Ordering::SeqCst));
        assert_eq!(dir_size(dir.path()), 59_000);
    }
}
