//! The pipeline's branches, driven through fakes of the source and the target and a real store in a temp dir.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::*;
use crate::config::Config;
use crate::deploy::{kube::KubeError, Applied, Drift, Drifted, Leadership};
use crate::revision::{ManifestFile, Manifests};
use crate::store::HistoryEntry;

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn configmap(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: v\n")
}

/// A Git remote in memory: what the ref points at, whether it answers, and each commit's one file.
#[derive(Default)]
struct FakeOrigin {
    state: Mutex<OriginState>,
}

#[derive(Default)]
struct OriginState {
    head: String,
    offline: bool,
    files: BTreeMap<String, String>,
    fetches: usize,
}

impl FakeOrigin {
    fn push(&self, commit: &str, yaml: &str) {
        let mut s = self.state.lock().unwrap();
        s.head = commit.into();
        s.files.insert(commit.into(), yaml.into());
    }

    fn set_offline(&self, offline: bool) {
        self.state.lock().unwrap().offline = offline;
    }

    fn fetches(&self) -> usize {
        self.state.lock().unwrap().fetches
    }
}

fn unreachable() -> SourceError {
    SourceError::Timeout {
        url: "https://git.example/fleet.git".into(),
        timeout: std::time::Duration::from_secs(1),
    }
}

impl Origin for FakeOrigin {
    async fn probe(&self) -> Result<Probe, SourceError> {
        let s = self.state.lock().unwrap();
        if s.offline {
            return Err(unreachable());
        }
        Ok(Probe {
            ref_name: "refs/heads/main".into(),
            commit: s.head.clone(),
            tag_object: None,
        })
    }

    async fn has_revision(&self, _probe: &Probe) -> bool {
        false
    }

    async fn fetch(&self, probe: &Probe) -> Result<String, SourceError> {
        let mut s = self.state.lock().unwrap();
        if s.offline {
            return Err(unreachable());
        }
        s.fetches += 1;
        Ok(probe.commit.clone())
    }

    async fn verify(&self, _probe: &Probe, _revision: &str) -> Result<Option<String>, SourceError> {
        Ok(None)
    }

    async fn read(&self, revision: &str) -> Result<Manifests, SourceError> {
        let s = self.state.lock().unwrap();
        Ok(Manifests {
            files: vec![ManifestFile {
                path: "app.yaml".into(),
                content: s.files[revision].clone().into_bytes(),
            }],
            ..Default::default()
        })
    }
}

/// A target that records what it was asked to do and fails on request.
#[derive(Default)]
struct FakeTarget {
    state: Mutex<TargetState>,
}

#[derive(Default)]
struct TargetState {
    /// (revision, mode) of every full apply, in order.
    applies: Vec<(String, String)>,
    /// The revision the target holds.
    holds: Option<String>,
    reject: Option<String>,
    unreachable: bool,
    standby: Option<Leadership>,
}

impl FakeTarget {
    fn applies(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().applies.clone()
    }

    fn holds(&self) -> Option<String> {
        self.state.lock().unwrap().holds.clone()
    }
}

impl Deploy for FakeTarget {
    async fn apply(
        &self,
        _source: &str,
        revision: &str,
        bundle: &Bundle,
        mode: &Mode,
    ) -> Result<Applied, TargetError> {
        let mut s = self.state.lock().unwrap();
        if s.unreachable {
            return Err(TargetError::Kubernetes(KubeError::Unreachable {
                server: "https://10.0.0.1:6443".into(),
                message: "connection refused".into(),
            }));
        }
        let mode = match mode {
            Mode::Normal => "normal".to_string(),
            Mode::Rollback { from } => format!("rollback from {from}"),
        };
        s.applies.push((revision.into(), mode));
        if s.reject.as_deref() == Some(revision) {
            // What a real target leaves after a failed apply: some of the new revision got in.
            s.holds = Some(revision.into());
            return Err(TargetError::Directory {
                dir: "/srv/manifests".into(),
                message: "admission webhook denied the ConfigMap".into(),
            });
        }
        s.holds = Some(revision.into());
        Ok(Applied {
            object_count: bundle.objects.len(),
            changed: true,
            ..Default::default()
        })
    }

    async fn drifted(&self, _source: &str, revision: &str) -> Result<Drift, TargetError> {
        let s = self.state.lock().unwrap();
        Ok(if s.holds.as_deref() == Some(revision) {
            Drift::None
        } else {
            Drift::All
        })
    }

    async fn correct(
        &self,
        source: &str,
        revision: &str,
        bundle: &Bundle,
        _objects: &[Drifted],
    ) -> Result<Applied, TargetError> {
        self.apply(source, revision, bundle, &Mode::Normal).await
    }

    fn standby(&self) -> Option<Leadership> {
        self.state.lock().unwrap().standby.clone()
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    r: Reconciler<Arc<FakeOrigin>, Arc<FakeTarget>>,
    origin: Arc<FakeOrigin>,
    target: Arc<FakeTarget>,
}

fn harness(rollback: bool) -> Harness {
    harness_with(&format!("rollback = {rollback}\n"))
}

/// `extra` is more TOML for the `web` source's table; more tables may follow it.
fn harness_with(extra: &str) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[agent]\nid = \"site-1\"\nstate_dir = \"{}\"\n[[source]]\nname = \"web\"\nurl = \"https://git.example/fleet.git\"\nbranch = \"main\"\ntarget = \"directory:/srv/manifests\"\n{extra}\n",
        dir.path().display()
    );
    let config = Config::parse(std::path::Path::new("agent.toml"), &text).unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let origin = Arc::new(FakeOrigin::default());
    let target = Arc::new(FakeTarget::default());
    let r = Reconciler::new(
        &config.sources[0],
        origin.clone(),
        target.clone(),
        store.clone(),
        Settings {
            state_dir: dir.path().to_path_buf(),
            limits: Limits::default(),
            keep: 3,
            vars: None,
        },
    );
    Harness {
        _dir: dir,
        store,
        r,
        origin,
        target,
    }
}

impl Harness {
    async fn pass(&self) -> Result<PassOutcome, ReconcileError> {
        let (_stop, shutdown) = watch::channel(false);
        self.r.pass(&shutdown).await
    }

    fn status(&self) -> crate::report::SourceStatus {
        self.store.record("web").unwrap().status
    }

    /// Applies A and checks that it became last good.
    async fn with_a_applied(rollback: bool) -> Harness {
        let h = harness(rollback);
        h.origin.push(A, &configmap("a"));
        let outcome = h.pass().await.unwrap();
        assert_eq!(
            outcome,
            PassOutcome::Applied {
                revision: A.into(),
                objects: 1
            }
        );
        assert_eq!(h.status().last_good.as_deref(), Some(A));
        h
    }
}

#[tokio::test]
async fn a_new_revision_is_applied_and_becomes_last_good() {
    let h = Harness::with_a_applied(true).await;
    let status = h.status();
    assert_eq!(status.state, State::Ready);
    assert_eq!(status.applied.as_deref(), Some(A));
    assert_eq!(status.object_count, 1);
    assert!(status.inventory_digest.is_some());
    assert!(
        h.store.bundle("web", A).unwrap().is_some(),
        "the bundle is kept for offline re-apply"
    );
}

#[tokio::test]
async fn an_unchanged_remote_is_neither_fetched_nor_applied_again() {
    let h = Harness::with_a_applied(true).await;
    let fetches = h.origin.fetches();
    let applies = h.target.applies().len();
    assert_eq!(
        h.pass().await.unwrap(),
        PassOutcome::Unchanged { revision: A.into() }
    );
    assert_eq!(h.origin.fetches(), fetches);
    assert_eq!(
        h.target.applies().len(),
        applies,
        "no drift, so nothing written"
    );
    assert_eq!(h.status().state, State::Ready);
}

#[tokio::test]
async fn an_unchanged_remote_corrects_a_drifted_target() {
    let h = Harness::with_a_applied(true).await;
    h.target.state.lock().unwrap().holds = None;
    h.pass().await.unwrap();
    assert_eq!(h.target.holds().as_deref(), Some(A));
}

#[tokio::test]
async fn a_broken_build_fails_and_keeps_the_last_good() {
    let h = Harness::with_a_applied(true).await;
    h.origin.push(B, "kind: [unclosed");
    let err = h.pass().await.unwrap_err();
    assert!(matches!(err, ReconcileError::Build { .. }), "{err}");
    let status = h.status();
    assert_eq!(status.state, State::Failed);
    assert_eq!(status.last_good.as_deref(), Some(A));
    assert_eq!(status.applied.as_deref(), Some(A));
    assert!(status.last_error.unwrap().contains(B));
    assert_eq!(h.target.holds().as_deref(), Some(A));
    assert!(
        h.target.applies().iter().all(|(rev, _)| rev != B),
        "B never reached the target"
    );
}

#[tokio::test]
async fn a_rejected_apply_is_rolled_back_with_rollback_on() {
    let h = Harness::with_a_applied(true).await;
    h.origin.push(B, &configmap("b"));
    h.target.state.lock().unwrap().reject = Some(B.into());
    let err = h.pass().await.unwrap_err();
    assert!(matches!(err, ReconcileError::Target { .. }), "{err}");
    assert_eq!(
        h.target.applies().last().unwrap(),
        &(A.to_string(), format!("rollback from {B}"))
    );
    assert_eq!(h.target.holds().as_deref(), Some(A));
    let status = h.status();
    assert_eq!(status.state, State::Failed);
    assert!(status
        .last_error
        .unwrap()
        .starts_with("rolled back from bbbbbbbbbbbb to aaaaaaaaaaaa"));
    assert_eq!(status.last_good.as_deref(), Some(A));
}

#[tokio::test]
async fn a_rejected_apply_stays_with_rollback_off() {
    let h = Harness::with_a_applied(false).await;
    h.origin.push(B, &configmap("b"));
    h.target.state.lock().unwrap().reject = Some(B.into());
    h.pass().await.unwrap_err();
    assert_eq!(
        h.target.holds().as_deref(),
        Some(B),
        "left as the failed apply left it"
    );
    assert_eq!(h.status().state, State::Failed);
    assert_eq!(h.status().last_good.as_deref(), Some(A));
}

#[tokio::test]
async fn unreachable_git_is_stale_and_the_last_good_keeps_running() {
    let h = Harness::with_a_applied(false).await;
    h.target.state.lock().unwrap().holds = None;
    h.origin.set_offline(true);
    let err = h.pass().await.unwrap_err();
    assert!(matches!(err, ReconcileError::Source { .. }), "{err}");
    assert_eq!(h.status().state, State::Stale);
    assert_eq!(
        h.target.holds().as_deref(),
        Some(A),
        "re-applied while offline"
    );
    // Back online: Ready again, without a new fetch of what runs.
    h.origin.set_offline(false);
    assert_eq!(
        h.pass().await.unwrap(),
        PassOutcome::Unchanged { revision: A.into() }
    );
    assert_eq!(h.status().state, State::Ready);
    assert_eq!(h.status().last_error, None);
}

#[tokio::test]
async fn unreachable_git_before_anything_ran_is_a_failure() {
    let h = harness(true);
    h.origin.set_offline(true);
    h.pass().await.unwrap_err();
    assert_eq!(h.status().state, State::Failed);
    assert!(h.target.applies().is_empty());
}

#[tokio::test]
async fn an_unreachable_api_is_stale_and_nothing_is_rolled_back() {
    let h = Harness::with_a_applied(true).await;
    h.origin.push(B, &configmap("b"));
    h.target.state.lock().unwrap().unreachable = true;
    let err = h.pass().await.unwrap_err();
    assert!(matches!(err, ReconcileError::Target { .. }), "{err}");
    let status = h.status();
    assert_eq!(status.state, State::Stale);
    assert_eq!(status.last_good.as_deref(), Some(A));
    assert_eq!(status.fetched.as_deref(), Some(B));
}

#[tokio::test]
async fn leadership_lost_fetches_but_does_not_apply() {
    let h = Harness::with_a_applied(true).await;
    h.origin.push(B, &configmap("b"));
    h.target.state.lock().unwrap().standby = Some(Leadership::Follower);
    assert!(!h.r.may_apply());
    assert_eq!(
        h.pass().await.unwrap(),
        PassOutcome::Standby { revision: B.into() }
    );
    assert_eq!(h.status().state, State::Suspended);
    assert_eq!(h.status().fetched.as_deref(), Some(B));
    assert_eq!(h.target.holds().as_deref(), Some(A));
    // The lease unreachable: Stale, with the reason.
    h.target.state.lock().unwrap().standby =
        Some(Leadership::Unknown("leases are forbidden".into()));
    h.pass().await.unwrap();
    assert_eq!(h.status().state, State::Stale);
    assert_eq!(
        h.status().last_error.as_deref(),
        Some("leases are forbidden")
    );
    // Leader again: B is applied at the next pass.
    h.target.state.lock().unwrap().standby = None;
    assert!(matches!(
        h.pass().await.unwrap(),
        PassOutcome::Applied { .. }
    ));
    assert_eq!(h.target.holds().as_deref(), Some(B));
}

#[tokio::test]
async fn a_reboot_offline_restores_the_last_good_from_the_store() {
    let h = Harness::with_a_applied(true).await;
    h.target.state.lock().unwrap().holds = None;
    h.origin.set_offline(true);
    assert_eq!(h.r.restore_last_good().await.unwrap().as_deref(), Some(A));
    assert_eq!(h.target.holds().as_deref(), Some(A));
}

/// Windows are read against the test clock; only this test sets it, and only sources with windows read it.
#[tokio::test]
async fn a_new_revision_waits_for_its_window_and_drift_is_corrected_meanwhile() {
    let h = harness_with(
        "windows = [\"Tue 02:00-05:00\"]\ntimezone = \"Europe/Berlin\"\n[[source]]\nname = \"other\"\nurl = \"https://git.example/o.git\"\nbranch = \"main\"\ntarget = \"kubernetes\"",
    );
    // Monday 2026-12-07 10:00 in Berlin: closed. The revision is built (a broken one would fail now) but waits.
    std::env::set_var(gate::TEST_CLOCK, "2026-12-07T09:00:00Z");
    h.origin.push(A, &configmap("a"));
    let outcome = h.pass().await.unwrap();
    let PassOutcome::Waiting { revision, why } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(revision, A);
    assert!(
        why.contains("the next opens at 2026-12-08T01:00:00Z"),
        "{why}"
    );
    assert_eq!(h.status().state, State::Waiting);
    assert_eq!(h.target.holds(), None, "nothing applied outside the window");
    h.origin.push(B, "kind: [unclosed");
    assert!(
        matches!(h.pass().await, Err(ReconcileError::Build { .. })),
        "broken commits are known early"
    );
    // Tuesday 03:00 in Berlin: open.
    h.origin.push(A, &configmap("a"));
    std::env::set_var(gate::TEST_CLOCK, "2026-12-08T02:00:00Z");
    assert!(matches!(
        h.pass().await.unwrap(),
        PassOutcome::Applied { .. }
    ));
    assert_eq!(h.status().state, State::Ready);
    // Closed again, with a new revision waiting: the last good keeps being corrected.
    std::env::set_var(gate::TEST_CLOCK, "2026-12-09T12:00:00Z");
    h.origin.push(B, &configmap("b"));
    h.target.state.lock().unwrap().holds = None;
    assert!(matches!(
        h.pass().await.unwrap(),
        PassOutcome::Waiting { .. }
    ));
    assert_eq!(
        h.target.holds().as_deref(),
        Some(A),
        "drift corrected outside the window"
    );
    std::env::remove_var(gate::TEST_CLOCK);
}

#[tokio::test]
async fn a_source_waits_for_the_sources_it_depends_on() {
    let h = harness_with(
        "depends_on = [\"platform\"]\n[[source]]\nname = \"platform\"\nurl = \"https://git.example/p.git\"\nbranch = \"main\"\ntarget = \"kubernetes\"",
    );
    let set_platform = |state: State, applied: &str, fetched: &str| {
        let entry = HistoryEntry {
            at: now(),
            state,
            revision: None,
            message: None,
        };
        h.store
            .update("platform", entry, None, 3, |r| {
                r.status.state = state;
                r.status.applied = Some(applied.into());
                r.status.fetched = Some(fetched.into());
            })
            .unwrap();
    };
    h.origin.push(A, &configmap("a"));
    let outcome = h.pass().await.unwrap();
    assert!(
        matches!(&outcome, PassOutcome::Waiting { why, .. } if why == "waiting for \"platform\" (no status yet)" || why.contains("\"platform\"")),
        "{outcome:?}"
    );
    set_platform(State::Failed, A, B);
    let PassOutcome::Waiting { why, .. } = h.pass().await.unwrap() else {
        panic!("must wait while platform is Failed")
    };
    assert_eq!(why, "waiting for \"platform\" (not Ready)");
    assert_eq!(h.target.holds(), None);
    set_platform(State::Ready, B, B);
    assert!(matches!(
        h.pass().await.unwrap(),
        PassOutcome::Applied { .. }
    ));
    assert_eq!(h.target.holds().as_deref(), Some(A));
}
