//! Who owns an object in the cluster: one agent's one source. Source names repeat across sites and tenants, so
//! the source label alone cannot tell two agents on one cluster apart; every object we apply also carries
//! `outpost.dev/owner`, a hash of the agent id and the source name, and the readable agent id in an annotation.
//!
//! Invariants (each decided here, as plain functions, and tested):
//! - Inventory rebuild, prune, rollback deletions, source removal and the drift check select by the owner label
//!   only. Replicas of one agent (same id) share the owner, so a standby that takes over finds what the leader
//!   applied.
//! - An object that another owner holds is never overwritten, relabelled or deleted: applying it fails the
//!   revision, naming both owners, unless the bundle's object asks to adopt it (`outpost.dev/adopt: "true"`).
//! - An object applied before owners existed (only `outpost.dev/source`) is adopted by the agent whose stored
//!   inventory lists it, never by a rebuild from labels, since any agent with the same source name would match.

use serde_json::{Map, Value};

use crate::deploy::{MANAGED_BY_LABEL, SOURCE_LABEL};

/// The owner identity label: a stable hash of agent id and source (label values are limited to 63 characters).
pub const OWNER_LABEL: &str = "outpost.dev/owner";
/// The readable agent id beside the owner label.
pub const AGENT_ANNOTATION: &str = "outpost.dev/agent";
/// Set to `"true"` on an object in Git to take it over from another Outpost owner.
pub const ADOPT_ANNOTATION: &str = "outpost.dev/adopt";

/// One agent's one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub agent: String,
    pub source: String,
    /// The owner label's value.
    pub id: String,
}

impl Owner {
    pub fn new(agent: &str, source: &str) -> Owner {
        // Domain-separated, and the NUL keeps ("ab", "c") apart from ("a", "bc"). 128 bits of the hash: no two
        // owners on a cluster collide, and the value fits a label.
        let input = format!("outpost-owner/v1\0{agent}\0{source}");
        let digest = ring::digest::digest(&ring::digest::SHA256, input.as_bytes());
        Owner {
            agent: agent.to_string(),
            source: source.to_string(),
            id: crate::bundle::hex(&digest.as_ref()[..16]),
        }
    }

    /// The label selector for everything this owner applied.
    pub fn selector(&self) -> String {
        format!("{OWNER_LABEL}={}", self.id)
    }

    /// Adds the owner label and the agent annotation to an object about to be applied.
    pub fn mark(&self, object: &mut Value) {
        let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
            return;
        };
        entry_map(meta, "labels").insert(OWNER_LABEL.into(), self.id.clone().into());
        entry_map(meta, "annotations").insert(AGENT_ANNOTATION.into(), self.agent.clone().into());
    }
}

fn entry_map<'a>(meta: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = meta.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut().expect("made an object above")
}

/// What the live object's labels say about who holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// Not applied by any Outpost: server-side apply takes it over as for any other manager.
    Nobody,
    /// This owner.
    Us,
    /// Applied before owner labels existed, by some agent's source of this name.
    Legacy { source: String },
    /// Another agent's source, or another source of this agent.
    Other {
        agent: Option<String>,
        source: Option<String>,
    },
}

/// Reads the holder from a live object's metadata.
pub fn holder(meta: Option<&Value>, owner: &Owner) -> Holder {
    let labels = meta.and_then(|m| m.get("labels"));
    let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    let source = label(SOURCE_LABEL).map(str::to_string);
    match label(OWNER_LABEL) {
        Some(id) if id == owner.id => Holder::Us,
        Some(_) => Holder::Other {
            agent: meta
                .and_then(|m| m.pointer("/annotations"))
                .and_then(|a| a.get(AGENT_ANNOTATION))
                .and_then(Value::as_str)
                .map(str::to_string),
            source,
        },
        None => match source {
            Some(source) if label(MANAGED_BY_LABEL) == Some("outpost") => Holder::Legacy { source },
            _ => Holder::Nobody,
        },
    }
}

/// Why this owner may not apply over a live object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("already applied by an Outpost source {written_by:?} from before owner labels (it has outpost.dev/source but no {OWNER_LABEL}), and this agent's inventory does not list it, so it may belong to another agent; this is agent {agent:?}, source {ours:?}. If it is this source's, annotate it {ADOPT_ANNOTATION}: \"true\" in Git to take it over")]
    Legacy {
        written_by: String,
        agent: String,
        ours: String,
    },
    #[error("owned by another Outpost agent or source (agent {their_agent}, source {their_source}); this is agent {agent:?}, source {ours:?}. Remove the object from one of the two sources, or annotate it {ADOPT_ANNOTATION}: \"true\" in this source's Git to take it over")]
    Other {
        their_agent: String,
        their_source: String,
        agent: String,
        ours: String,
    },
}

/// Whether this owner may apply over the live object. `listed`: our stored inventory lists it (a legacy object is
/// ours only then); `adopt`: the bundle's object carries `outpost.dev/adopt: "true"`.
pub fn may_apply(holder: &Holder, owner: &Owner, listed: bool, adopt: bool) -> Result<(), Refused> {
    let quoted = |v: &Option<String>| {
        v.as_deref()
            .map_or("unknown".to_string(), |v| format!("{v:?}"))
    };
    match holder {
        Holder::Nobody | Holder::Us => Ok(()),
        Holder::Legacy { source } if *source == owner.source && listed => Ok(()),
        _ if adopt => Ok(()),
        Holder::Legacy { source } => Err(Refused::Legacy {
            written_by: source.clone(),
            agent: owner.agent.clone(),
            ours: owner.source.clone(),
        }),
        Holder::Other { agent, source } => Err(Refused::Other {
            their_agent: quoted(agent),
            their_source: quoted(source),
            agent: owner.agent.clone(),
            ours: owner.source.clone(),
        }),
    }
}

/// Who held an object this owner may apply over, when that is a take-over worth a note: another owner (adopted
/// explicitly) or a legacy object.
pub fn adopted_from(holder: &Holder) -> Option<String> {
    let name = |v: &Option<String>| v.as_deref().unwrap_or("unknown").to_string();
    match holder {
        Holder::Other { agent, source } => {
            Some(format!("agent {}, source {}", name(agent), name(source)))
        }
        Holder::Nobody | Holder::Us | Holder::Legacy { .. } => None,
    }
}

/// Whether this owner may delete the live object (prune, rollback, source removal). Only objects we hold, or
/// legacy objects of our source name that our stored inventory lists (prune only walks the inventory).
pub fn may_delete(holder: &Holder, owner: &Owner) -> bool {
    match holder {
        Holder::Us => true,
        Holder::Legacy { source } => *source == owner.source,
        Holder::Nobody | Holder::Other { .. } => false,
    }
}

/// The bundle object asks to take over an object another owner holds.
pub fn wants_adoption(object: &Value) -> bool {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(ADOPT_ANNOTATION))
        .and_then(Value::as_str)
        == Some("true")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(labels: Value, annotations: Value) -> Value {
        json!({"name": "shop", "labels": labels, "annotations": annotations})
    }

    #[test]
    fn the_owner_id_is_stable_unique_per_agent_and_source_and_fits_a_label() {
        let a = Owner::new("store-042", "apps");
        assert_eq!(a, Owner::new("store-042", "apps"), "replicas share it");
        assert_ne!(a.id, Owner::new("store-043", "apps").id);
        assert_ne!(a.id, Owner::new("store-042", "platform").id);
        assert_ne!(Owner::new("ab", "c").id, Owner::new("a", "bc").id);
        assert_eq!(a.id.len(), 32);
        assert!(a.id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(a.selector(), format!("outpost.dev/owner={}", a.id));
    }

    #[test]
    fn marking_adds_the_label_and_the_readable_agent() {
        let owner = Owner::new("store-042", "apps");
        let mut o = json!({"kind": "ConfigMap", "metadata": {"name": "a", "labels": {"x": "y"}}});
        owner.mark(&mut o);
        assert_eq!(o["metadata"]["labels"]["x"], "y");
        assert_eq!(o["metadata"]["labels"][OWNER_LABEL], owner.id.as_str());
        assert_eq!(o["metadata"]["annotations"][AGENT_ANNOTATION], "store-042");
    }

    #[test]
    fn the_holder_is_read_from_the_labels() {
        let owner = Owner::new("a", "apps");
        let other = Owner::new("b", "apps");
        assert_eq!(holder(None, &owner), Holder::Nobody);
        assert_eq!(
            holder(Some(&meta(json!({}), json!({}))), &owner),
            Holder::Nobody
        );
        let ours = meta(
            json!({OWNER_LABEL: owner.id, SOURCE_LABEL: "apps", MANAGED_BY_LABEL: "outpost"}),
            json!({}),
        );
        assert_eq!(holder(Some(&ours), &owner), Holder::Us);
        assert_eq!(
            holder(Some(&ours), &other),
            Holder::Other {
                agent: None,
                source: Some("apps".into())
            }
        );
        let legacy = meta(
            json!({SOURCE_LABEL: "apps", MANAGED_BY_LABEL: "outpost"}),
            json!({}),
        );
        assert_eq!(
            holder(Some(&legacy), &owner),
            Holder::Legacy {
                source: "apps".into()
            }
        );
        // A source label someone else set, without our managed-by label, is not ours to judge.
        let foreign = meta(json!({SOURCE_LABEL: "apps"}), json!({}));
        assert_eq!(holder(Some(&foreign), &owner), Holder::Nobody);
    }

    #[test]
    fn another_owner_is_refused_naming_both_unless_adopted() {
        let owner = Owner::new("b", "apps");
        let held = Holder::Other {
            agent: Some("a".into()),
            source: Some("apps".into()),
        };
        let err = may_apply(&held, &owner, true, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("agent \"a\", source \"apps\""), "{err}");
        assert!(
            err.contains("this is agent \"b\", source \"apps\""),
            "{err}"
        );
        assert!(err.contains("outpost.dev/adopt"), "{err}");
        assert!(may_apply(&held, &owner, false, true).is_ok());
        assert!(may_apply(&Holder::Us, &owner, false, false).is_ok());
        assert!(may_apply(&Holder::Nobody, &owner, false, false).is_ok());
    }

    #[test]
    fn a_legacy_object_is_ours_only_when_our_stored_inventory_lists_it() {
        let owner = Owner::new("b", "apps");
        let legacy = Holder::Legacy {
            source: "apps".into(),
        };
        assert!(may_apply(&legacy, &owner, true, false).is_ok());
        let err = may_apply(&legacy, &owner, false, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("inventory does not list it"), "{err}");
        let other_name = Holder::Legacy {
            source: "web".into(),
        };
        assert!(may_apply(&other_name, &owner, true, false).is_err());
        assert!(may_apply(&other_name, &owner, true, true).is_ok());
    }

    #[test]
    fn only_our_objects_and_our_listed_legacy_ones_are_deleted() {
        let owner = Owner::new("b", "apps");
        assert!(may_delete(&Holder::Us, &owner));
        assert!(may_delete(
            &Holder::Legacy {
                source: "apps".into()
            },
            &owner
        ));
        assert!(!may_delete(
            &Holder::Legacy {
                source: "web".into()
            },
            &owner
        ));
        assert!(!may_delete(&Holder::Nobody, &owner));
        assert!(!may_delete(
            &Holder::Other {
                agent: Some("a".into()),
                source: Some("apps".into())
            },
            &owner
        ));
    }

    #[test]
    fn adoption_is_asked_for_in_the_bundle() {
        assert!(wants_adoption(
            &json!({"metadata": {"annotations": {ADOPT_ANNOTATION: "true"}}})
        ));
        assert!(!wants_adoption(
            &json!({"metadata": {"annotations": {ADOPT_ANNOTATION: "yes"}}})
        ));
        assert!(!wants_adoption(&json!({"metadata": {}})));
    }
}
