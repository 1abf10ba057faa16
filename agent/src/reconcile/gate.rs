//! Whether a new revision may be applied now: the source's maintenance windows (`windows`) and the sources it
//! depends on (`depends_on`). A held revision is still fetched, verified and built, so a broken commit is known
//! before its window opens; only the apply waits.

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::config::{OutsideWindows, SourceConfig};
use crate::depends::{self, DependencyState, Dependent};
use crate::report::State;
use crate::store::{Store, StoreError};

/// Tests set the clock the windows are read against: an RFC 3339 time in this variable. Nothing else reads it,
/// and a value that does not parse is ignored.
pub const TEST_CLOCK: &str = "OUTPOST_TEST_NOW";

/// Now, unless a test set [`TEST_CLOCK`].
pub fn now() -> Timestamp {
    std::env::var(TEST_CLOCK)
        .ok()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .unwrap_or_else(Timestamp::now)
}

/// Why a new revision is not applied yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Hold {
    #[error("outside the maintenance windows ({windows}); the next opens at {}", next.map_or("(none within a week)".to_string(), |t| t.to_string()))]
    Window {
        windows: String,
        next: Option<Timestamp>,
    },
    #[error(transparent)]
    Dependencies(#[from] depends::Waiting),
}

/// `Some` when `config`'s source must not apply a new revision at `at`.
pub fn hold(
    config: &SourceConfig,
    store: &Store,
    at: Timestamp,
) -> Result<Option<Hold>, StoreError> {
    if let Some(policy) = &config.operations.windows {
        if !policy.windows.is_open(at) {
            return Ok(Some(Hold::Window {
                windows: policy.windows.to_string(),
                next: policy.windows.next_open(at),
            }));
        }
    }
    let depends_on = &config.operations.depends_on;
    if depends_on.is_empty() {
        return Ok(None);
    }
    let mut states = BTreeMap::new();
    for name in depends_on {
        let status = store.record(name)?.status;
        let ready = status.state == State::Ready;
        states.insert(
            name.clone(),
            DependencyState {
                ready,
                applied: status.applied,
                latest: status.fetched,
                // Ready comes only after the health wait (with `wait = true`), so Ready is healthy.
                healthy: ready,
            },
        );
    }
    let me = Dependent {
        name: &config.name,
        depends_on,
    };
    Ok(depends::ready_to_apply(&me, &states).err().map(Hold::from))
}

/// False when nothing at all may be applied now: outside its windows with `apply_outside_windows = "none"`
/// (no drift correction, no re-apply of the last good).
pub fn may_touch(config: &SourceConfig, at: Timestamp) -> bool {
    match &config.operations.windows {
        Some(policy) if policy.outside == OutsideWindows::Nothing => policy.windows.is_open(at),
        _ => true,
    }
}
