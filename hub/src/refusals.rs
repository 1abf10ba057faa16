//! Refused requests in the hub's log without flooding it: a flood of bad requests used to write one ~250-byte
//! WARN line each, megabytes a second, burying everything else and filling the disk.
//!
//! Per refusal reason and [`WINDOW`]: the first refusal from each of the first [`FULL_LINES`] sources is
//! logged in full (the operator sees exactly what was wrong); the rest are only counted, by source, and at the
//! window's end one line per reason says how many more there were and from where ([`Summary`]). The
//! per-source counts are bounded ([`MAX_SOURCES_COUNTED`]); sources past that are summed as "others".
//!
//! This only decides what is logged. The metrics counters ([`crate::metrics`]) count every refusal, exactly,
//! before any of this.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often the counted refusals are summarised.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Sources per reason and window whose first refusal is logged in full.
pub const FULL_LINES: usize = 3;
/// Sources per reason and window counted one by one; the rest are summed.
pub const MAX_SOURCES_COUNTED: usize = 64;
/// Sources named in a summary line, the busiest first.
const SOURCES_NAMED: usize = 5;

/// Refusals seen in the current window.
#[derive(Debug)]
pub struct RefusalLog {
    inner: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    reasons: BTreeMap<&'static str, Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    /// Sources whose refusal was logged in full this window.
    logged: Vec<IpAddr>,
    /// Refusals not logged in full, by source.
    counted: HashMap<IpAddr, u64>,
    /// Refusals not logged in full from sources past [`MAX_SOURCES_COUNTED`].
    others: u64,
}

/// One reason's refusals that were counted but not logged, over one window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub reason: &'static str,
    pub count: u64,
    pub over: Duration,
    /// The busiest sources with their counts.
    pub sources: Vec<(IpAddr, u64)>,
    /// Refusals from sources not named.
    pub others: u64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "refused {} more requests as {} in the last {}s (not logged one by one): ",
            self.count,
            self.reason,
            self.over.as_secs().max(1)
        )?;
        for (index, (source, count)) in self.sources.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{count} from {source}")?;
        }
        if self.others > 0 {
            write!(f, ", {} from other sources", self.others)?;
        }
        Ok(())
    }
}

impl RefusalLog {
    pub fn new(now: Instant) -> RefusalLog {
        RefusalLog {
            inner: Mutex::new(Window {
                started: now,
                reasons: BTreeMap::new(),
            }),
        }
    }

    /// Notes a refusal; true when it should be logged in full, false when it was counted for the summary.
    pub fn note(&self, reason: &'static str, source: IpAddr) -> bool {
        // Counts only: a panic elsewhere cannot leave them unusable.
        let mut window = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let seen = window.reasons.entry(reason).or_default();
        if seen.logged.contains(&source) {
            // Counted below.
        } else if seen.logged.len() < FULL_LINES {
            seen.logged.push(source);
            return true;
        }
        if let Some(count) = seen.counted.get_mut(&source) {
            *count += 1;
        } else if seen.counted.len() < MAX_SOURCES_COUNTED {
            seen.counted.insert(source, 1);
        } else {
            seen.others += 1;
        }
        false
    }

    /// Ends the window at `now`: the summaries of what was counted in it, and a fresh window.
    pub fn drain(&self, now: Instant) -> Vec<Summary> {
        let mut window = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let over = now.saturating_duration_since(window.started);
        window.started = now;
        let reasons = std::mem::take(&mut window.reasons);
        drop(window);
        reasons
            .into_iter()
            .filter_map(|(reason, seen)| {
                let mut sources: Vec<(IpAddr, u64)> = seen.counted.into_iter().collect();
                let count = sources.iter().map(|(_, n)| n).sum::<u64>() + seen.others;
                if count == 0 {
                    return None;
                }
                sources.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                let others = seen.others
                    + sources
                        .iter()
                        .skip(SOURCES_NAMED)
                        .map(|(_, n)| n)
                        .sum::<u64>();
                sources.truncate(SOURCES_NAMED);
                Some(Summary {
                    reason,
                    count,
                    over,
                    sources,
                    others,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn a_flood_from_one_source_is_one_full_line_and_one_summary() {
        let start = Instant::now();
        let log = RefusalLog::new(start);
        let full = (0..1000).filter(|_| log.note("unsigned", ip(1))).count();
        assert_eq!(full, 1);
        let summaries = log.drain(start + WINDOW);
        assert_eq!(
            summaries,
            [Summary {
                reason: "unsigned",
                count: 999,
                over: WINDOW,
                sources: vec![(ip(1), 999)],
                others: 0,
            }]
        );
        assert_eq!(
            summaries[0].to_string(),
            "refused 999 more requests as unsigned in the last 10s (not logged one by one): 999 from 192.0.2.1"
        );
        // A new window logs the first one in full again; a quiet one summarises nothing.
        assert!(log.note("unsigned", ip(1)));
        assert!(log.drain(start + WINDOW * 2).is_empty());
        assert!(log.drain(start + WINDOW * 3).is_empty());
    }

    #[test]
    fn each_reason_and_the_first_sources_get_a_full_line() {
        let log = RefusalLog::new(Instant::now());
        assert!(log.note("unsigned", ip(1)));
        assert!(log.note("bad_signature", ip(1)));
        assert!(log.note("unsigned", ip(2)));
        assert!(log.note("unsigned", ip(3)));
        assert!(!log.note("unsigned", ip(4)), "past FULL_LINES sources");
        assert!(!log.note("unsigned", ip(1)));
    }

    #[test]
    fn counted_sources_are_bounded_and_the_busiest_are_named() {
        let start = Instant::now();
        let log = RefusalLog::new(start);
        let mut sent = 0u64;
        for n in 0..=255u8 {
            for _ in 0..=u64::from(n % 7) {
                log.note("rate_limited", ip(n));
                sent += 1;
            }
        }
        let summaries = log.drain(start + WINDOW);
        let summary = &summaries[0];
        // Everything not logged in full is in the count: FULL_LINES sources had their first one logged.
        assert_eq!(summary.count, sent - FULL_LINES as u64);
        assert_eq!(summary.sources.len(), SOURCES_NAMED);
        assert!(summary.sources.windows(2).all(|w| w[0].1 >= w[1].1));
        let named: u64 = summary.sources.iter().map(|(_, n)| n).sum();
        assert_eq!(named + summary.others, summary.count);
        let inner = log.inner.lock().map(|w| w.reasons.len()).unwrap_or(1);
        assert_eq!(inner, 0, "drain starts a fresh window");
    }
}
