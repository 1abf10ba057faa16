//! What the agent does with the assignment in a hub's reply: run it, or refuse it and tell the hub why.
//!
//! [`decide`] is a pure function of the running config and a reply body whose signature already verified;
//! [`Assignments`] carries its verdict out (store, reload, heartbeat). A refusal never stops what runs: the
//! sources already running keep running, and the refusal is kept in the store and sent as `assignment_error`
//! in every heartbeat while it stands, so the hub's operator sees it without a visit to the site.
//!
//! A refusal stands until the hub offers nothing newer than what runs (the refused assignment was withdrawn)
//! or a later assignment is accepted. A reply whose signature does not verify is refused too, and reported
//! with the generation it claims, but only once a reply from the real hub gets through: the heartbeat that
//! carries the report waits in the outbox behind the one whose reply failed.

use std::sync::Arc;

use outpost_proto::wire::{self, Assignment, AssignmentError, RefusalKind};
use tokio::sync::Notify;

use crate::config::Config;
use crate::store::Store;

/// What to do with one verified reply.
#[derive(Debug)]
pub enum Decision {
    /// The hub offers nothing newer than the running generation: any standing refusal is withdrawn.
    UpToDate,
    /// Run this assignment (the merged config proved it fits beside the file's sources).
    Accept(Assignment),
    /// Keep running what runs, and report this.
    Refuse(AssignmentError),
}

/// Decides on the `assignment` of a verified heartbeat reply, given the config that runs now.
pub fn decide(running: &Config, reply: &[u8]) -> Decision {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(reply) else {
        return Decision::Refuse(refusal(
            0,
            RefusalKind::InvalidSource,
            "the hub's reply is not JSON; is [upstream] url an outpost hub?".into(),
        ));
    };
    let Some(offered) = value.get("assignment").filter(|a| !a.is_null()) else {
        return Decision::UpToDate;
    };
    let parsed = serde_json::to_vec(offered)
        .map_err(|e| e.to_string())
        .and_then(|b| wire::parse_assignment(&b).map_err(|e| e.to_string()));
    let assignment = match parsed {
        Ok(a) => a,
        Err(e) => {
            return Decision::Refuse(refusal(
                claimed_generation(reply).unwrap_or(0),
                RefusalKind::InvalidSource,
                format!(
                    "the hub sent an assignment that is not valid: {e}; fix it in the hub config"
                ),
            ))
        }
    };
    let current = running.assignment_generation;
    if assignment.generation == current {
        return Decision::UpToDate;
    }
    if assignment.generation < current {
        return Decision::Refuse(refusal(
            assignment.generation,
            RefusalKind::NotNewer,
            format!(
                "the hub offers generation {}, older than generation {current} running here; a hub config that went back must still raise the generation above {current}",
                assignment.generation
            ),
        ));
    }
    match running.with_assignment(&assignment) {
        Ok(_) => Decision::Accept(assignment),
        Err(refused) => Decision::Refuse(refusal(
            assignment.generation,
            refused.kind(),
            refused.to_string(),
        )),
    }
}

/// The generation an (unverified or invalid) reply's assignment claims, for the report only.
pub fn claimed_generation(reply: &[u8]) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_slice(reply).ok()?;
    value.get("assignment")?.get("generation")?.as_u64()
}

fn refusal(generation: u64, kind: RefusalKind, reason: String) -> AssignmentError {
    AssignmentError {
        generation,
        kind,
        reason: wire::bounded_error(&reason),
    }
}

/// Acts on the assignments in the hub's replies, for one round of the daemon.
pub struct Assignments {
    /// The running config: the file's sources plus the assignment they run with.
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    /// Notified when a new assignment is accepted: the scheduler restarts its sources with it.
    pub reload: Arc<Notify>,
    /// Notified when the standing refusal changes, so a heartbeat reports it at once.
    pub changed: Arc<Notify>,
    /// The last refusal logged, so the hub's repeats of it are not logged again.
    pub logged: Option<(u64, RefusalKind)>,
}

impl Assignments {
    /// A reply whose signature verified.
    pub fn consider(&mut self, reply: &[u8]) {
        match decide(&self.config, reply) {
            Decision::UpToDate => self.stand(None),
            Decision::Accept(assignment) => {
                if let Err(e) = self.store.set_assignment(&assignment) {
                    tracing::error!(
                        "cannot store assignment generation {}: {e}",
                        assignment.generation
                    );
                    return;
                }
                self.stand(None);
                tracing::info!(
                    generation = assignment.generation,
                    "accepted the hub's assignment: restarting the sources with it"
                );
                self.reload.notify_one();
            }
            Decision::Refuse(error) => self.refuse(error),
        }
    }

    /// A reply that does not verify against `hub_key`. Only one that claims an assignment is an assignment
    /// refusal; others are the sender's error to log.
    pub fn untrusted(&mut self, reply: &[u8], why: &str) {
        if let Some(generation) = claimed_generation(reply) {
            self.refuse(refusal(
                generation,
                RefusalKind::BadSignature,
                format!("the reply carrying it does not verify against [upstream] hub_key ({why}); check hub_key against the key the hub prints at start"),
            ));
        }
    }

    fn refuse(&mut self, error: AssignmentError) {
        if self.logged != Some((error.generation, error.kind)) {
            tracing::error!(
                generation = error.generation,
                kind = %error.kind,
                "refused the hub's assignment: {}; the sources already running keep running",
                error.reason
            );
            self.logged = Some((error.generation, error.kind));
        }
        self.stand(Some(error));
    }

    fn stand(&mut self, error: Option<AssignmentError>) {
        match self.store.set_assignment_error(error.as_ref()) {
            Ok(true) => self.changed.notify_one(),
            Ok(false) => {}
            Err(e) => tracing::warn!("cannot record the assignment refusal: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(generation: u64) -> Config {
        let mut config = Config::parse(
            Path::new("/etc/outpost/agent.toml"),
            "[agent]\nid = \"a\"\nstate_dir = \"/tmp/x\"\n[[source]]\nname = \"local\"\nurl = \"file:///srv/git/local\"\nbranch = \"main\"\ntarget = \"directory:/srv/m\"\n",
        )
        .unwrap();
        config.assignment_generation = generation;
        config
    }

    fn reply(generation: u64, name: &str, interval: &str) -> Vec<u8> {
        format!(
            r#"{{"ack_seq":3,"assignment":{{"schema":"outpost.assignment/v1","generation":{generation},"sources":[{{"name":"{name}","url":"https://git.example.com/x.git","branch":"main","interval":"{interval}","target":"kubernetes"}}]}}}}"#
        )
        .into_bytes()
    }

    fn refused(decision: Decision) -> AssignmentError {
        match decision {
            Decision::Refuse(error) => error,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_newer_fitting_assignment_is_accepted() {
        match decide(&config(1), &reply(2, "platform", "30s")) {
            Decision::Accept(a) => assert_eq!(a.generation, 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nothing_newer_withdraws_a_refusal() {
        assert!(matches!(
            decide(&config(2), br#"{"ack_seq":3,"assignment":null}"#),
            Decision::UpToDate
        ));
        assert!(matches!(
            decide(&config(2), &reply(2, "local", "30s")),
            Decision::UpToDate
        ));
    }

    #[test]
    fn each_refusal_has_its_kind_generation_and_reason() {
        let clash = refused(decide(&config(1), &reply(2, "local", "30s")));
        assert_eq!((clash.generation, clash.kind), (2, RefusalKind::NameClash));
        assert!(clash.reason.contains("already has a source"), "{clash:?}");

        let invalid = refused(decide(&config(1), &reply(3, "platform", "0s")));
        assert_eq!(
            (invalid.generation, invalid.kind),
            (3, RefusalKind::InvalidSource)
        );
        assert!(invalid.reason.contains("interval"), "{invalid:?}");

        let older = refused(decide(&config(5), &reply(4, "platform", "30s")));
        assert_eq!((older.generation, older.kind), (4, RefusalKind::NotNewer));
        assert!(older.reason.contains("generation 5"), "{older:?}");

        let body = String::from_utf8(reply(6, "platform", "30s"))
            .unwrap()
            .replace("\"branch\":\"main\",", "");
        let unreadable = refused(decide(&config(1), body.as_bytes()));
        assert_eq!(
            (unreadable.generation, unreadable.kind),
            (6, RefusalKind::InvalidSource)
        );
    }

    #[test]
    fn a_forged_reply_is_reported_with_the_generation_it_claims() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let changed = Arc::new(Notify::new());
        let mut assignments = Assignments {
            config: Arc::new(config(1)),
            store: store.clone(),
            reload: Arc::new(Notify::new()),
            changed: changed.clone(),
            logged: None,
        };
        assignments.untrusted(br#"{"ack_seq":3,"assignment":null}"#, "bad signature");
        assert_eq!(store.assignment_error().unwrap(), None);
        assignments.untrusted(&reply(7, "platform", "30s"), "bad signature");
        let error = store.assignment_error().unwrap().unwrap();
        assert_eq!(
            (error.generation, error.kind),
            (7, RefusalKind::BadSignature)
        );
        // The real hub's next verified reply, offering nothing newer, withdraws it.
        assignments.consider(br#"{"ack_seq":4,"assignment":null}"#);
        assert_eq!(store.assignment_error().unwrap(), None);
        // Each change woke the heartbeat loop; a permit is waiting.
        let woken = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(async {
                tokio::time::timeout(std::time::Duration::from_secs(1), changed.notified())
                    .await
                    .is_ok()
            });
        assert!(woken);
    }
}
