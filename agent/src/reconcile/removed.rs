//! Sources that are in the store but no longer in the config: their objects are removed (with `prune` on) and the
//! store forgets them. Runs before any source touches the network, so a removed source never lingers.

use crate::config::Config;
use crate::deploy::{Target, TargetContext};
use crate::store::StoreError;

/// Cleans up sources that are in the store but no longer in the config: their file is removed from a directory
/// target when they were applied with `prune = true`, and the store forgets them.
pub async fn prune_removed_sources(
    config: &Config,
    targets: &TargetContext,
) -> Result<(), StoreError> {
    let store = &targets.store;
    for (name, record) in store.sources()? {
        if config.source(&name).is_some() {
            continue;
        }
        let target = record
            .target
            .as_deref()
            .and_then(|t| Target::for_removed(&name, t, targets));
        match target {
            Some(target) if record.prune => match target.remove(&name).await {
                Ok(true) => {
                    tracing::info!(source = %name, "source removed from the config: its objects were pruned")
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(source = %name, "cannot prune the removed source: {e}; will retry at next start");
                    continue;
                }
            },
            _ => {
                tracing::info!(source = %name, "source removed from the config: prune is off (or its target is gone), its objects are left in place")
            }
        }
        store.remove_source(&name)?;
    }
    Ok(())
}
