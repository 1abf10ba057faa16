//! The inventory and who owns what: the ownership check before an apply writes anything, prune, removal of a
//! source, and the rebuild of a lost inventory from the cluster. Every deletion and every rebuild goes by the owner
//! label (see `owner`), never by the source label alone.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

use super::apply::{fail, Key, Managed, Namespaces, Prepared};
use super::client::Resource;
use super::plan::{self, ObjectRef};
use super::{owner, Entry, Inventory, KubeError, KubeTarget, Mode, Report};
use crate::bundle::Bundle;

impl KubeTarget {
    /// Refuses, before any write, objects that another Outpost owner holds (see `owner`). One metadata-only list
    /// per kind and namespace of everything Outpost manages there tells who holds each existing object; objects
    /// not in it are new or unmanaged. Without the right to list a kind, each of its objects is read on its own
    /// just before it is written, so that the error (a 403) names the object.
    pub(super) async fn check_owners<'a>(
        &self,
        previous: &Inventory,
        prepared: impl Iterator<Item = &'a mut Prepared>,
    ) -> Result<(), KubeError> {
        let owner = &self.settings.owner;
        let listed: BTreeSet<Key> = previous.entries.iter().map(|e| e.r.key()).collect();
        let managed = format!("{}=outpost", crate::deploy::MANAGED_BY_LABEL);
        let mut scopes: HashMap<(String, Option<String>), Option<Managed>> = HashMap::new();
        let mut refused = Vec::new();
        for p in prepared {
            // A kind the cluster does not serve yet (its CRD is in this bundle) has no objects to collide with.
            let Some(res) = &p.res else {
                continue;
            };
            let scope = (res.collection(None), p.r.namespace.clone());
            if !scopes.contains_key(&scope) {
                let live = match self
                    .list_labelled(&managed, res, p.r.namespace.as_deref())
                    .await
                {
                    Ok(found) => Some(found.into_iter().map(|(meta, key)| (key, meta)).collect()),
                    Err(KubeError::List { .. }) => None,
                    Err(e) => return Err(e),
                };
                scopes.insert(scope.clone(), live);
            }
            p.listed = listed.contains(&p.r.key());
            let Some(live) = &scopes[&scope] else {
                p.check_owner = true;
                continue;
            };
            let key = (p.r.namespace.clone().unwrap_or_default(), p.r.name.clone());
            let holder = owner::holder(live.get(&key), owner);
            match owner::may_apply(&holder, owner, p.listed, p.adopt) {
                Ok(()) => p.adopted_from = owner::adopted_from(&holder),
                Err(why) => refused.push(format!("{}: {why}", p.r)),
            }
        }
        if refused.is_empty() {
            Ok(())
        } else {
            Err(KubeError::Objects(refused))
        }
    }

    /// Deletes what the previous inventory held and the bundle no longer does. Returns the objects that should
    /// have been deleted but could not be (they stay in the inventory and are retried next time).
    pub(super) async fn prune(
        &self,
        source: &str,
        previous: &Inventory,
        desired: &[ObjectRef],
        mode: &Mode,
        report: &mut Report,
    ) -> Vec<ObjectRef> {
        let gone = plan::removed(previous.entries.iter().map(|e| &e.r), desired);
        let by_key: HashMap<Key, &Entry> =
            previous.entries.iter().map(|e| (e.r.key(), e)).collect();
        let mut failed = Vec::new();
        for r in gone {
            let Some(entry) = by_key.get(&r.key()) else {
                continue;
            };
            let created_by_failed = matches!(mode, Mode::Rollback { from } if entry.created_by.as_deref() == Some(from.as_str()));
            if !self.settings.prune && !created_by_failed {
                continue;
            }
            match self.prune_one(entry).await {
                Ok(true) => {
                    report.changed = true;
                    tracing::info!(source, object = %r, "pruned");
                }
                Ok(false) => {}
                Err(e) => {
                    report.notes.push(format!("could not prune {r}: {e}"));
                    failed.push(r);
                }
            }
        }
        failed
    }

    /// Deletes one object if it is still ours. True when it was deleted.
    async fn prune_one(&self, entry: &Entry) -> Result<bool, KubeError> {
        let res = entry.resource();
        let Some(live) = self
            .cluster
            .get(&res, &entry.r)
            .await
            .map_err(|e| fail(&entry.r, "read", e))?
        else {
            return Ok(false);
        };
        let meta = live.get("metadata");
        let ours = owner::may_delete(
            &owner::holder(meta, &self.settings.owner),
            &self.settings.owner,
        );
        let keep = plan::prune_disabled(
            meta.and_then(|m| m.get("annotations"))
                .and_then(Value::as_object),
        );
        if !ours || keep {
            return Ok(false);
        }
        self.cluster
            .delete(&res, &entry.r)
            .await
            .map_err(|e| fail(&entry.r, "delete", e))
    }

    /// Deletes everything the source owns (it was removed from the config with prune on).
    pub async fn remove_all(&self, source: &str) -> Result<bool, KubeError> {
        let Some(inventory) = self.inventory(source)? else {
            return Ok(false);
        };
        let mut refs: Vec<ObjectRef> = inventory.entries.iter().map(|e| e.r.clone()).collect();
        plan::sort_for_delete(&mut refs);
        let by_key: HashMap<Key, &Entry> =
            inventory.entries.iter().map(|e| (e.r.key(), e)).collect();
        let mut any = false;
        for r in refs {
            if let Some(entry) = by_key.get(&r.key()) {
                any |= self.prune_one(entry).await?;
            }
        }
        self.save(source, &Inventory::default())?;
        Ok(any)
    }

    /// The inventory from the cluster, when the store lost it: every object of the bundle's kinds that carries
    /// our owner label (never the source label alone: other agents' sources may have the same name). Kinds the bundle no longer has cannot be found this way without listing every kind the
    /// server has, which an edge API server should not pay for on every start; the labels stay for a manual sweep.
    pub(super) async fn rebuild_inventory(
        &self,
        source: &str,
        bundle: &Bundle,
    ) -> Result<Inventory, KubeError> {
        // Per kind, the namespaces the bundle uses: listing only there needs no cluster-wide rights (a tenant's
        // agent has none).
        let mut kinds: BTreeMap<(String, String, String), (Resource, Namespaces)> = BTreeMap::new();
        for o in &bundle.objects {
            if let Some(r) = plan::object_ref(o) {
                if let Some(res) = self.cluster.resolve(&r).await? {
                    let ns = res.namespaced.then(|| {
                        r.namespace
                            .clone()
                            .unwrap_or_else(|| self.settings.namespace.clone())
                    });
                    kinds
                        .entry((r.group.clone(), r.version.clone(), r.kind.clone()))
                        .or_insert_with(|| (res, BTreeSet::new()))
                        .1
                        .insert(ns);
                }
            }
        }
        let mut entries = Vec::new();
        for ((_, _, kind), (res, namespaces)) in kinds {
            let mut found = Vec::new();
            for ns in &namespaces {
                found.extend(self.list_owned(&res, ns.as_deref()).await?);
            }
            for (meta, _) in found {
                let r = ObjectRef {
                    group: res.group.clone(),
                    version: res.version.clone(),
                    kind: kind.clone(),
                    namespace: meta
                        .get("namespace")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    name: meta
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                };
                let mut e = Entry {
                    r,
                    plural: res.plural.clone(),
                    namespaced: res.namespaced,
                    resource_version: None,
                    generation: None,
                    foreign: Vec::new(),
                    create_only: false,
                    created_by: None,
                };
                e.observe(
                    &serde_json::json!({ "metadata": meta }),
                    &self.cluster.field_manager,
                );
                entries.push(e);
            }
        }
        if !entries.is_empty() {
            tracing::info!(
                source,
                objects = entries.len(),
                "inventory rebuilt from the cluster by owner label"
            );
        }
        Ok(Inventory {
            revision: None,
            incomplete: true,
            entries,
        })
    }
}
