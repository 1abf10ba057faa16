//! Waiting for health: after a revision's objects are applied, poll those with a health rule until they are
//! ready, one fails, or the source's timeout passes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::apply::{fail, Key};
use super::health::{self, Readiness};
use super::plan::ObjectRef;
use super::{Entry, KubeError, KubeTarget};

/// Health is looked at after this, then at doubling intervals up to `LONGEST_LOOK`, until the source's timeout.
const FIRST_LOOK: Duration = Duration::from_millis(100);
const LONGEST_LOOK: Duration = Duration::from_secs(2);

impl KubeTarget {
    /// Polls the objects that have a health rule until all are ready, one fails, or `timeout` has passed since
    /// `started`. Updates the inventory from what it reads, so the next drift check starts from the newest state.
    pub(super) async fn wait_ready(
        &self,
        objects: &[(ObjectRef, Value)],
        started: Instant,
        entries: &mut BTreeMap<Key, Entry>,
    ) -> Result<(), KubeError> {
        let mut pending: Vec<(ObjectRef, Value)> = objects
            .iter()
            .filter(|(r, o)| health::needs_check(r, o))
            .cloned()
            .collect();
        let mut delay = FIRST_LOOK;
        loop {
            let mut still = Vec::new();
            let mut failed = Vec::new();
            for (r, o) in pending {
                match health::readiness(&r, &o) {
                    Readiness::Ready => {}
                    Readiness::Failed(why) => failed.push(format!("{r}: {why}")),
                    Readiness::Pending(why) => still.push((r, o, why)),
                }
            }
            if !failed.is_empty() {
                return Err(KubeError::Objects(failed));
            }
            if still.is_empty() {
                return Ok(());
            }
            if started.elapsed() >= self.settings.timeout {
                return Err(KubeError::Unhealthy {
                    timeout: self.settings.timeout,
                    objects: still
                        .into_iter()
                        .map(|(r, _, why)| format!("{r} ({why})"))
                        .collect(),
                });
            }
            tokio::time::sleep(delay.min(self.settings.timeout.saturating_sub(started.elapsed())))
                .await;
            delay = (delay * 2).min(LONGEST_LOOK);
            pending = Vec::new();
            for (r, o, _) in still {
                let Some(entry) = entries.get_mut(&r.key()) else {
                    continue;
                };
                let res = entry.resource();
                match self.cluster.get(&res, &r).await {
                    Ok(Some(fresh)) => {
                        entry.observe(&fresh, &self.cluster.field_manager);
                        pending.push((r, fresh));
                    }
                    Ok(None) => pending.push((r, o)),
                    Err(e) => return Err(fail(&r, "read", e)),
                }
            }
        }
    }
}
