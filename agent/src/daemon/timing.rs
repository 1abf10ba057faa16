//! When the daemon does things: polls every interval with jitter (so ten thousand sites do not hit the Git host
//! in step), failures retried with exponential backoff, and the named waits of the daemon.

use std::time::Duration;

use rand::Rng;

/// The first retry after a failed poll waits a tenth of the interval, within these bounds.
const MIN_FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_FIRST_RETRY: Duration = Duration::from_secs(30);
/// Retries level off here (or at the interval, if that is longer): an edge site waits for its uplink as long
/// as it takes, but never much longer than it must.
const MAX_RETRY: Duration = Duration::from_secs(600);
/// A source's first poll after start waits a random part of a tenth of its interval, at most this: a fleet that
/// boots at once (power returns to a region) does not poll in step.
pub const MAX_START_DELAY: Duration = Duration::from_secs(5);

/// Backoff for failed polls: starts at a tenth of the interval (1 s to 30 s), doubles with ±50 % jitter, and
/// levels off at ten intervals but no more than 10 minutes (never below the interval itself). It never gives up:
/// an edge site waits for its uplink as long as it takes.
pub fn retry_policy(interval: Duration) -> backoff::ExponentialBackoff {
    let initial = (interval / 10).clamp(MIN_FIRST_RETRY, MAX_FIRST_RETRY);
    let max = (interval * 10).min(MAX_RETRY).max(interval);
    backoff::ExponentialBackoff {
        current_interval: initial,
        initial_interval: initial,
        randomization_factor: 0.5,
        multiplier: 2.0,
        max_interval: max,
        max_elapsed_time: None,
        ..Default::default()
    }
}

/// `base` scaled by a random factor in [1 - spread, 1 + spread].
pub fn jittered(base: Duration, spread: f64) -> Duration {
    let factor = 1.0 + rand::rng().random_range(-spread..=spread);
    base.mul_f64(factor.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use backoff::backoff::Backoff;

    #[test]
    fn jitter_stays_within_ten_percent() {
        let base = Duration::from_secs(60);
        let samples: Vec<Duration> = (0..1000).map(|_| jittered(base, 0.1)).collect();
        assert!(samples
            .iter()
            .all(|d| *d >= Duration::from_secs(54) && *d <= Duration::from_secs(66)));
        let distinct: std::collections::BTreeSet<_> = samples.iter().collect();
        assert!(distinct.len() > 100, "jitter must actually vary");
    }

    #[test]
    fn backoff_grows_and_levels_off() {
        let mut b = retry_policy(Duration::from_secs(60));
        let delays: Vec<Duration> = (0..12).map(|_| b.next_backoff().unwrap()).collect();
        assert!(
            delays[0] >= Duration::from_secs(3) && delays[0] <= Duration::from_secs(9),
            "{delays:?}"
        );
        assert!(delays[4] > delays[0]);
        assert!(
            delays.iter().all(|d| *d <= Duration::from_secs(900)),
            "{delays:?}"
        );
        b.reset();
        assert!(b.next_backoff().unwrap() <= Duration::from_secs(9));
    }
}
