//! Token buckets: how often a client may try something expensive or sensitive (an enrollment, which tests a
//! bootstrap token), per source address and in total.
//!
//! Without a limit, a bootstrap token could be guessed at thousands of tries a second. A bucket holds up to
//! `burst` tokens and gains one every `every`; a try takes one. The source's bucket and the hub-wide one must
//! both have a token, so one address cannot use up the budget alone, and many addresses together cannot
//! exceed the hub-wide rate. A refused try is answered with how long until it would pass (`Retry-After`).
//!
//! Memory is bounded: at most [`MAX_SOURCES`] per-source buckets are kept. A full bucket is the same as no
//! bucket, so full ones are dropped when room is needed; when every kept source is still limited, a new
//! source is refused like a limited one (the hub-wide budget is then spent by others anyway).
//!
//! Pure logic over an [`Instant`] passed in, so tests need no clock.
//!
//! [`ReadGate`] bounds the other costly thing a client can ask for: reads that load heartbeats from disk
//! (an agent's history, the listing, the fleet page, the metrics). Each holds up to a few heartbeats in
//! memory; without a bound, concurrent requests multiplied that until the hub ran out of memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::reply::Rejection;

/// Per-source buckets kept at most (about 100 bytes each).
pub const MAX_SOURCES: usize = 10_000;

/// One bucket's rule: `burst` tries at once, then one more every `every`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub burst: u32,
    pub every: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens at `at`, in units of one try.
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(rate.burst),
            at: now,
        }
    }

    /// The tokens at `now`, refilled since `at` and capped at the burst.
    fn refill(&mut self, rate: Rate, now: Instant) {
        let gained =
            now.saturating_duration_since(self.at).as_secs_f64() / rate.every.as_secs_f64();
        self.tokens = (self.tokens + gained).min(f64::from(rate.burst));
        self.at = now;
    }

    /// How long until one token is there (zero when one is).
    fn wait(&self, rate: Rate) -> Duration {
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            rate.every.mul_f64(1.0 - self.tokens)
        }
    }

    fn is_full(&self, rate: Rate, now: Instant) -> bool {
        let mut refilled = *self;
        refilled.refill(rate, now);
        refilled.tokens >= f64::from(rate.burst)
    }
}

/// A hub-wide bucket and one per source address. Shared by every connection.
#[derive(Debug)]
pub struct Limiter {
    per_source: Rate,
    total: Rate,
    inner: Mutex<Buckets>,
}

#[derive(Debug)]
struct Buckets {
    total: Bucket,
    sources: HashMap<IpAddr, Bucket>,
}

impl Limiter {
    pub fn new(per_source: Rate, total: Rate, now: Instant) -> Limiter {
        Limiter {
            per_source,
            total,
            inner: Mutex::new(Buckets {
                total: Bucket::full(total, now),
                sources: HashMap::new(),
            }),
        }
    }

    /// Takes one try for `source` at `now`, or says how long until it would be allowed. A refused try takes
    /// nothing, so waiting the time returned is enough.
    pub fn try_take(&self, source: IpAddr, now: Instant) -> Result<(), Duration> {
        // The map stays consistent whatever panicked while holding it: keep limiting.
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let Buckets { total, sources } = &mut *inner;
        if !sources.contains_key(&source) && sources.len() >= MAX_SOURCES {
            let rate = self.per_source;
            sources.retain(|_, bucket| !bucket.is_full(rate, now));
            if sources.len() >= MAX_SOURCES {
                return Err(self.per_source.every);
            }
        }
        let bucket = sources
            .entry(source)
            .or_insert_with(|| Bucket::full(self.per_source, now));
        bucket.refill(self.per_source, now);
        total.refill(self.total, now);
        let wait = bucket.wait(self.per_source).max(total.wait(self.total));
        if wait > Duration::ZERO {
            return Err(wait);
        }
        bucket.tokens -= 1.0;
        total.tokens -= 1.0;
        Ok(())
    }
}

/// Reads from disk served at once; more wait up to [`READ_QUEUE_WAIT`] for a turn.
pub const MAX_CONCURRENT_READS: usize = 4;
/// How long a read waits for a turn before it is answered 503 with `Retry-After`.
pub const READ_QUEUE_WAIT: Duration = Duration::from_secs(2);
/// What a refused read is told to wait.
const READ_RETRY_AFTER: Duration = Duration::from_secs(1);

/// At most `turns` reads at once; the others queue briefly, then are refused.
#[derive(Debug)]
pub struct ReadGate {
    turns: Arc<Semaphore>,
    wait: Duration,
}

impl Default for ReadGate {
    fn default() -> Self {
        ReadGate::new(MAX_CONCURRENT_READS, READ_QUEUE_WAIT)
    }
}

impl ReadGate {
    pub fn new(turns: usize, wait: Duration) -> ReadGate {
        ReadGate {
            turns: Arc::new(Semaphore::new(turns)),
            wait,
        }
    }

    /// A turn, held until the returned permit is dropped (after the reply's last byte is produced); or 503.
    pub async fn enter(&self) -> Result<OwnedSemaphorePermit, Rejection> {
        match tokio::time::timeout(self.wait, self.turns.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            // Timed out, or the semaphore closed (it never is): busy either way.
            Ok(Err(_)) | Err(_) => {
                let secs = retry_after_secs(READ_RETRY_AFTER);
                Err(Rejection::new(
                    503,
                    "busy",
                    format!("the hub is serving its limit of concurrent reads; retry in {secs}s (Retry-After)"),
                )
                .retry_after(secs))
            }
        }
    }
}

/// Whole seconds for a `Retry-After` header, rounded up so a client that waits that long is let through.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs();
    if wait.subsec_nanos() > 0 {
        secs + 1
    } else {
        secs.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PER_SOURCE: Rate = Rate {
        burst: 3,
        every: Duration::from_secs(10),
    };
    const TOTAL: Rate = Rate {
        burst: 5,
        every: Duration::from_secs(1),
    };

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn a_burst_from_one_source_is_limited_and_refills() {
        let start = Instant::now();
        let limiter = Limiter::new(PER_SOURCE, TOTAL, start);
        for _ in 0..3 {
            assert_eq!(limiter.try_take(ip(1), start), Ok(()));
        }
        assert_eq!(limiter.try_take(ip(1), start), Err(Duration::from_secs(10)));
        // A refused try took nothing: after 10 s exactly one more passes.
        let later = start + Duration::from_secs(10);
        assert_eq!(limiter.try_take(ip(1), later), Ok(()));
        assert!(limiter.try_take(ip(1), later).is_err());
    }

    #[test]
    fn other_sources_pass_up_to_the_total() {
        let start = Instant::now();
        let limiter = Limiter::new(PER_SOURCE, TOTAL, start);
        for _ in 0..3 {
            assert_eq!(limiter.try_take(ip(1), start), Ok(()));
        }
        assert!(limiter.try_take(ip(1), start).is_err());
        // The first source's refusal spent none of the total: two more from others pass, then all wait.
        assert_eq!(limiter.try_take(ip(2), start), Ok(()));
        assert_eq!(limiter.try_take(ip(3), start), Ok(()));
        assert_eq!(limiter.try_take(ip(4), start), Err(Duration::from_secs(1)));
        assert_eq!(
            limiter.try_take(ip(4), start + Duration::from_secs(1)),
            Ok(())
        );
    }

    #[test]
    fn the_source_map_is_bounded() {
        let start = Instant::now();
        let generous = Rate {
            burst: u32::MAX,
            every: Duration::from_nanos(1),
        };
        let limiter = Limiter::new(PER_SOURCE, generous, start);
        for n in 0..MAX_SOURCES as u32 {
            assert_eq!(
                limiter.try_take(IpAddr::from(n.to_be_bytes()), start),
                Ok(())
            );
        }
        // Every kept source has just tried: a new one is refused rather than grow the map.
        assert!(limiter.try_take(ip(200), start).is_err());
        // Once they have refilled, their buckets make room.
        let later = start + PER_SOURCE.every;
        assert_eq!(limiter.try_take(ip(200), later), Ok(()));
        let kept = limiter
            .inner
            .lock()
            .map(|b| b.sources.len())
            .unwrap_or(usize::MAX);
        assert!(kept <= MAX_SOURCES, "{kept}");
    }

    #[tokio::test]
    async fn reads_past_the_bound_wait_then_are_refused() {
        let gate = ReadGate::new(2, Duration::from_millis(50));
        let first = gate.enter().await;
        let second = gate.enter().await;
        assert!(first.is_ok() && second.is_ok());
        let refused = gate.enter().await.map(drop);
        assert!(
            matches!(&refused, Err(r) if r.status == 503 && r.retry_after == Some(1)),
            "{refused:?}"
        );
        // A turn given back lets the next read in.
        drop(first);
        assert!(gate.enter().await.is_ok());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(10)), 10);
    }
}
