//! How many connections the hub may hold open, from the process's open-files limit (`RLIMIT_NOFILE`).
//!
//! Every connection is a file descriptor, and so are the hub's own files: heartbeat log segments, sled's
//! files, the bootstrap token file (opened per enrollment), the listener. A cap above the limit meant that
//! idle connections used every descriptor: accepting failed with "Too many open files" every 100 ms, and so
//! did opening the token file or a new log segment. So at start the soft limit is raised to the hard one
//! (the default soft limit, 1024, is a relic of `select(2)`; the hub uses epoll), and the cap is that limit
//! less a reserve for the hub's own files ([`reserve`]), never above [`super::MAX_CONNECTIONS`]. Connections
//! past the cap wait in the listen backlog until one closes (idle ones close after the header timeout).
//!
//! Under systemd, `LimitNOFILE=` in the unit sets both limits, so there is nothing to raise (and the unit's
//! system call filter forbids `setrlimit`); raising matters for a hub started from a shell.

use super::MAX_CONNECTIONS;

/// Descriptors kept for the hub's own files, at the least.
pub const MIN_RESERVE: u64 = 64;
/// Hard limits this high are treated as this (Linux refuses a soft limit above `fs.nr_open`, 1 Mi by default).
const UNLIMITED_AS: u64 = 1 << 20;

/// The open-files limit as the hub found and left it.
#[derive(Debug)]
pub struct FileLimit {
    /// The soft limit now in force.
    pub soft: u64,
    /// The soft limit before the hub raised it, when it did.
    pub raised_from: Option<u64>,
    /// Why raising failed, when it did (the old soft limit then stays).
    pub raise_failed: Option<std::io::Error>,
}

/// Reads `RLIMIT_NOFILE` and raises the soft limit to the hard one.
pub fn raise_open_files_limit() -> Result<FileLimit, std::io::Error> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit through the valid pointer it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let soft = limit.rlim_cur;
    let hard = if limit.rlim_max == libc::RLIM_INFINITY {
        UNLIMITED_AS
    } else {
        limit.rlim_max
    };
    if soft != libc::RLIM_INFINITY && soft >= hard {
        return Ok(FileLimit {
            soft,
            raised_from: None,
            raise_failed: None,
        });
    }
    if soft == libc::RLIM_INFINITY {
        return Ok(FileLimit {
            soft: UNLIMITED_AS,
            raised_from: None,
            raise_failed: None,
        });
    }
    let raised = libc::rlimit {
        rlim_cur: hard,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit reads one rlimit through the valid pointer it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Ok(FileLimit {
            soft,
            raised_from: None,
            raise_failed: Some(std::io::Error::last_os_error()),
        });
    }
    Ok(FileLimit {
        soft: hard,
        raised_from: Some(soft),
        raise_failed: None,
    })
}

/// Descriptors kept for the hub's own files under an open-files limit of `open_files`: an eighth of it, at
/// least [`MIN_RESERVE`] (log segments grow with the fleet's history, about 50 for 10,000 agents).
pub fn reserve(open_files: u64) -> u64 {
    (open_files / 8).max(MIN_RESERVE)
}

/// Connections served at once under an open-files limit of `open_files`: at least one, at most
/// [`MAX_CONNECTIONS`].
pub fn connection_cap(open_files: u64) -> usize {
    let cap = open_files.saturating_sub(reserve(open_files)).max(1);
    usize::try_from(cap)
        .unwrap_or(usize::MAX)
        .min(MAX_CONNECTIONS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_room_for_the_hubs_files() {
        // systemd's default soft limit, and what the unit sets.
        assert_eq!(connection_cap(1024), 1024 - 128);
        assert_eq!(connection_cap(16_384), MAX_CONNECTIONS);
        assert_eq!(connection_cap(256), 256 - MIN_RESERVE as usize);
        assert_eq!(connection_cap(10), 1);
        assert_eq!(connection_cap(UNLIMITED_AS), MAX_CONNECTIONS);
        for files in [64, 100, 256, 1024, 4096, 9000] {
            let cap = connection_cap(files) as u64;
            assert!(cap == 1 || cap + MIN_RESERVE <= files, "{files}: {cap}");
        }
    }

    #[test]
    fn the_limit_is_read_and_never_lowered() -> Result<(), std::io::Error> {
        let before = {
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: as in raise_open_files_limit.
            assert_eq!(
                unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
                0
            );
            limit
        };
        let found = raise_open_files_limit()?;
        assert!(found.soft >= before.rlim_cur.min(UNLIMITED_AS), "{found:?}");
        Ok(())
    }
}
