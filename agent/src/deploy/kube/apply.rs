//! Applying a bundle: check every object against discovery before touching the cluster, apply CRDs and Namespaces
//! and wait for them, apply the rest wave by wave in kind order (each wave concurrently), wait for health, then
//! prune. The inventory is saved whatever happens, so that a failed revision can be rolled back completely. The
//! ownership check and prune live in `inventory`, the health wait in `wait`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use serde_json::Value;

use super::client::{ApiFailure, Resource};
use super::failure::{conflicts, immutable_fields};
use super::plan::{self, ObjectRef, Policy};
use super::{owner, Entry, Inventory, KubeError, KubeTarget, Mode, Report};
use crate::bundle::Bundle;

/// How often a deleted object is looked for before it is created again.
const GONE_POLL: Duration = Duration::from_millis(200);

pub(super) type Key = (String, String, String, String);
/// The namespaces of one kind's objects; `None` for a cluster-scoped kind.
pub(super) type Namespaces = BTreeSet<Option<String>>;

/// What Outpost manages of one kind in one namespace: metadata by (namespace, name); `None` when it may not be
/// listed.
pub(super) type Managed = HashMap<(String, String), Value>;

/// A bundle object ready to send.
pub(super) struct Prepared {
    pub(super) r: ObjectRef,
    /// `None` until its CRD (in the same bundle) is established.
    pub(super) res: Option<Resource>,
    pub(super) body: Value,
    pub(super) policy: Policy,
    /// Its kind could not be listed: read the live object and check its owner just before writing.
    pub(super) check_owner: bool,
    /// Our stored inventory lists it (a legacy object is adopted only then).
    pub(super) listed: bool,
    /// The bundle asks to take it over from another owner.
    pub(super) adopt: bool,
    /// Whose object it was, when the bundle took it over (for a note).
    pub(super) adopted_from: Option<String>,
}

/// What applying one object did.
struct Done {
    entry: Entry,
    created: bool,
    /// The object as the server returned it, for the health check.
    object: Value,
    notes: Vec<String>,
}

impl KubeTarget {
    /// Applies a whole bundle (`only`: just these objects, for drift correction) and records the inventory.
    pub async fn apply(
        &self,
        source: &str,
        revision: &str,
        bundle: &Bundle,
        mode: &Mode,
        only: Option<&[ObjectRef]>,
    ) -> Result<Report, KubeError> {
        let previous = match self.inventory(source)? {
            Some(inv) => inv,
            None if self.settings.prune => self.rebuild_inventory(source, bundle).await?,
            None => Inventory::default(),
        };
        let (mut stage1, mut stage2) = self.prepare(source, revision, bundle, only).await?;
        self.check_owners(&previous, stage1.iter_mut().chain(stage2.iter_mut()))
            .await?;
        let desired: Vec<ObjectRef> = stage1.iter().chain(&stage2).map(|p| p.r.clone()).collect();

        let mut entries: BTreeMap<Key, Entry> = previous
            .entries
            .iter()
            .map(|e| (e.r.key(), e.clone()))
            .collect();
        let mut report = Report {
            objects: desired.len(),
            ..Report::default()
        };
        let result = self
            .apply_stages(
                revision,
                stage1,
                stage2,
                only.is_some(),
                &mut entries,
                &mut report,
            )
            .await;

        let complete = result.is_ok() && only.is_none();
        let mut inventory = Inventory {
            revision: Some(revision.to_string()),
            incomplete: result.is_err(),
            entries: entries.into_values().collect(),
        };
        if let Err(e) = result {
            // Keep everything the failed attempt touched; the caller decides about rollback.
            self.save(source, &inventory)?;
            return Err(e);
        }
        if complete {
            let pruned = self
                .prune(source, &previous, &desired, mode, &mut report)
                .await;
            // Objects no longer in the bundle are no longer ours to watch, unless deleting them failed.
            let keep: BTreeSet<Key> = desired
                .iter()
                .map(ObjectRef::key)
                .chain(pruned.into_iter().map(|r| r.key()))
                .collect();
            inventory.entries.retain(|e| keep.contains(&e.r.key()));
        } else if only.is_some() {
            inventory.revision = previous.revision.clone();
            inventory.incomplete = previous.incomplete;
        }
        self.save(source, &inventory)?;
        Ok(report)
    }

    /// Turns the bundle into requests, refusing the whole revision before any write when an object cannot work:
    /// an unknown kind, a namespace on a cluster-scoped kind, a bad policy annotation.
    async fn prepare(
        &self,
        source: &str,
        revision: &str,
        bundle: &Bundle,
        only: Option<&[ObjectRef]>,
    ) -> Result<(Vec<Prepared>, Vec<Prepared>), KubeError> {
        let wanted: Option<BTreeSet<Key>> = only.map(|o| o.iter().map(ObjectRef::key).collect());
        // Kinds a CRD in this very bundle will define, with their scope.
        let mut crd_kinds: HashMap<(String, String), bool> = HashMap::new();
        for o in &bundle.objects {
            if o.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition") {
                if let (Some(g), Some(k)) = (
                    o.pointer("/spec/group").and_then(Value::as_str),
                    o.pointer("/spec/names/kind").and_then(Value::as_str),
                ) {
                    let namespaced =
                        o.pointer("/spec/scope").and_then(Value::as_str) != Some("Cluster");
                    crd_kinds.insert((g.to_string(), k.to_string()), namespaced);
                }
            }
        }
        let mut errors = Vec::new();
        let (mut stage1, mut stage2) = (Vec::new(), Vec::new());
        for object in &bundle.objects {
            let Some(mut r) = plan::object_ref(object) else {
                errors.push("an object without apiVersion, kind or name".to_string());
                continue;
            };
            let policy = match plan::policy(object) {
                Ok(Policy::Ignore) => continue,
                Ok(p) => p,
                Err(message) => {
                    errors.push(format!("{r}: {message}"));
                    continue;
                }
            };
            let (res, namespaced) = match self.cluster.resolve(&r).await? {
                Some(res) => {
                    let n = res.namespaced;
                    (Some(res), n)
                }
                None => match crd_kinds.get(&(r.group.clone(), r.kind.clone())) {
                    Some(n) => (None, *n),
                    None => {
                        errors.push(format!(
                            "{r}: the cluster does not serve kind {} in {}; fix apiVersion/kind, or add its CustomResourceDefinition to the bundle",
                            r.kind,
                            r.api_version()
                        ));
                        continue;
                    }
                },
            };
            match (namespaced, &r.namespace) {
                (true, None) => r.namespace = Some(self.settings.namespace.clone()),
                (false, Some(ns)) => {
                    errors.push(format!(
                        "{r}: {} is cluster-scoped, but the object names namespace {ns:?}; remove metadata.namespace",
                        r.kind
                    ));
                    continue;
                }
                _ => {}
            }
            if let Some(w) = &wanted {
                if !w.contains(&r.key()) {
                    continue;
                }
            }
            let mut body = crate::deploy::mark_owned(object, source, revision);
            self.settings.owner.mark(&mut body);
            if let (Some(ns), Some(meta)) = (
                &r.namespace,
                body.get_mut("metadata").and_then(Value::as_object_mut),
            ) {
                meta.insert("namespace".into(), ns.clone().into());
            }
            let p = Prepared {
                r,
                res,
                body,
                policy,
                check_owner: false,
                listed: false,
                adopt: owner::wants_adoption(object),
                adopted_from: None,
            };
            if plan::is_stage_one(&p.r) {
                stage1.push(p);
            } else {
                stage2.push(p);
            }
        }
        if !errors.is_empty() {
            return Err(KubeError::Objects(errors));
        }
        stage1.sort_by_key(|p| plan::apply_order(&p.r));
        stage2.sort_by_key(|p| plan::apply_order(&p.r));
        Ok((stage1, stage2))
    }

    async fn apply_stages(
        &self,
        revision: &str,
        stage1: Vec<Prepared>,
        stage2: Vec<Prepared>,
        force: bool,
        entries: &mut BTreeMap<Key, Entry>,
        report: &mut Report,
    ) -> Result<(), KubeError> {
        let started = Instant::now();
        let done1 = self
            .apply_wave(revision, stage1, force, entries, report)
            .await?;
        // CRDs must be Established and Namespaces Active before anything that uses them is applied.
        self.wait_ready(&done1, started, entries).await?;
        let mut to_check = done1;
        for wave in plan::waves(stage2, |p| &p.r.kind) {
            let mut wave = wave;
            for p in wave.iter_mut().filter(|p| p.res.is_none()) {
                p.res = self.cluster.resolve(&p.r).await?;
                if p.res.is_none() {
                    return Err(KubeError::object(
                        &p.r,
                        format!("its CustomResourceDefinition is established, but the server does not serve {} yet; the next cycle retries", p.r.api_version()),
                    ));
                }
            }
            to_check.extend(
                self.apply_wave(revision, wave, force, entries, report)
                    .await?,
            );
        }
        if self.settings.wait {
            self.wait_ready(&to_check, started, entries).await?;
        }
        Ok(())
    }

    /// Applies objects concurrently; every object is attempted, and all failures are reported together.
    async fn apply_wave(
        &self,
        revision: &str,
        wave: Vec<Prepared>,
        force: bool,
        entries: &mut BTreeMap<Key, Entry>,
        report: &mut Report,
    ) -> Result<Vec<(ObjectRef, Value)>, KubeError> {
        let results: Vec<Result<Done, KubeError>> = stream::iter(wave)
            .map(|p| async move { self.apply_one(&p, force).await })
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;
        let mut failures = Vec::new();
        let mut done = Vec::new();
        for result in results {
            match result {
                Ok(d) => {
                    let before = entries.get(&d.entry.r.key());
                    if d.created
                        || before.and_then(|b| b.resource_version.as_ref())
                            != d.entry.resource_version.as_ref()
                    {
                        report.changed = true;
                    }
                    let mut entry = d.entry;
                    entry.created_by = if d.created {
                        Some(revision.to_string())
                    } else {
                        before.and_then(|b| b.created_by.clone())
                    };
                    report.notes.extend(d.notes);
                    done.push((entry.r.clone(), d.object));
                    entries.insert(entry.r.key(), entry);
                }
                Err(KubeError::Unreachable { server, message }) => {
                    return Err(KubeError::Unreachable { server, message })
                }
                Err(e) => failures.extend(e.lines()),
            }
        }
        if failures.is_empty() {
            Ok(done)
        } else {
            failures.sort();
            Err(KubeError::Objects(failures))
        }
    }

    /// Applies one object. A revision's apply first tries without force, so that a conflict names the manager whose
    /// fields Git takes over; drift correction already knows who moved the object and forces at once.
    async fn apply_one(&self, p: &Prepared, force: bool) -> Result<Done, KubeError> {
        let Some(res) = &p.res else {
            return Err(KubeError::object(&p.r, "kind not resolved"));
        };
        let mut notes = Vec::new();
        let mut adopted_from = p.adopted_from.clone();
        if p.check_owner || p.policy == Policy::IfNotPresent {
            let existing = self
                .cluster
                .get(res, &p.r)
                .await
                .map_err(|e| fail(&p.r, "read", e))?;
            if let Some(existing) = existing {
                if p.check_owner {
                    let holder = owner::holder(existing.get("metadata"), &self.settings.owner);
                    owner::may_apply(&holder, &self.settings.owner, p.listed, p.adopt)
                        .map_err(|m| KubeError::object(&p.r, m.to_string()))?;
                    adopted_from = owner::adopted_from(&holder);
                }
                if p.policy == Policy::IfNotPresent {
                    return Ok(self.done(p, res, existing, false, true, notes));
                }
            }
        }
        if let Some(from) = adopted_from {
            notes.push(format!(
                "{}: adopted from {from} ({}: \"true\")",
                p.r,
                owner::ADOPT_ANNOTATION
            ));
        }
        let answer = match self.cluster.apply(res, &p.r, &p.body, force).await {
            Ok(a) => a,
            Err(Ok(f)) if f.code == 409 && !conflicts(&f).is_empty() => {
                // Git is the source of truth: take the fields, and say from whom.
                for (manager, field) in conflicts(&f) {
                    notes.push(format!("{}: took {field} from manager {manager:?}", p.r));
                }
                self.cluster
                    .apply(res, &p.r, &p.body, true)
                    .await
                    .map_err(|e| fail(&p.r, "apply", e))?
            }
            Err(Ok(f)) if !immutable_fields(&f).is_empty() => {
                let fields = immutable_fields(&f).join(", ");
                if !self.settings.force {
                    return Err(KubeError::object(
                        &p.r,
                        format!("{fields} cannot be changed (immutable field); revert the change in Git, or set force = true on the source to delete and recreate the object"),
                    ));
                }
                self.recreate(res, &p.r).await?;
                notes.push(format!(
                    "{}: recreated, because immutable {fields} changed (force = true)",
                    p.r
                ));
                self.cluster
                    .apply(res, &p.r, &p.body, true)
                    .await
                    .map_err(|e| fail(&p.r, "apply", e))?
            }
            Err(e) => return Err(fail(&p.r, "apply", e)),
        };
        Ok(self.done(
            p,
            res,
            answer.body,
            answer.status == 201,
            p.policy == Policy::IfNotPresent,
            notes,
        ))
    }

    fn done(
        &self,
        p: &Prepared,
        res: &Resource,
        object: Value,
        created: bool,
        create_only: bool,
        notes: Vec<String>,
    ) -> Done {
        let mut entry = Entry {
            r: p.r.clone(),
            plural: res.plural.clone(),
            namespaced: res.namespaced,
            resource_version: None,
            generation: None,
            foreign: Vec::new(),
            create_only,
            created_by: None,
        };
        entry.observe(&object, &self.cluster.field_manager);
        Done {
            entry,
            created,
            object,
            notes,
        }
    }

    /// Deletes an object and waits until it is gone, so that the apply after it creates a fresh one.
    async fn recreate(&self, res: &Resource, r: &ObjectRef) -> Result<(), KubeError> {
        self.cluster
            .delete(res, r)
            .await
            .map_err(|e| fail(r, "delete", e))?;
        let deadline = Instant::now() + self.settings.timeout;
        while self
            .cluster
            .get(res, r)
            .await
            .map_err(|e| fail(r, "read", e))?
            .is_some()
        {
            if Instant::now() > deadline {
                return Err(KubeError::object(r, "deleted to be recreated, but it is still there (a finalizer?); the next cycle retries"));
            }
            tokio::time::sleep(GONE_POLL).await;
        }
        Ok(())
    }
}

/// Turns a failed request into an error naming the object.
pub(super) fn fail(r: &ObjectRef, verb: &str, e: Result<ApiFailure, KubeError>) -> KubeError {
    match e {
        Ok(f) => KubeError::object(r, format!("{verb} failed: {}", f.describe())),
        Err(e) => e,
    }
}
