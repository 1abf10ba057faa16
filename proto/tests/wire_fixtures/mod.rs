//! The documents both wire test suites start from: a heartbeat and an assignment using every field, and
//! the independent JSON Schema validator they are checked with.

use jsonschema::{Draft, Validator};
use outpost_proto::wire::{
    Assignment, AssignmentError, AuthFiles, Heartbeat, RefusalKind, SourceSpec, SourceState,
    SourceStatus,
};
use serde_json::Value;

pub const REV_A: &str = "0123456789abcdef0123456789abcdef01234567";
pub const REV_B: &str = "fedcba9876543210fedcba9876543210fedcba98";
pub const DIGEST: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

pub fn validator(schema_text: &str) -> Result<Validator, Box<dyn std::error::Error>> {
    let schema: Value = serde_json::from_str(schema_text)?;
    jsonschema::meta::validate(&schema).map_err(|e| e.to_string())?;
    Ok(jsonschema::options()
        .with_draft(Draft::Draft202012)
        .should_validate_formats(true)
        .build(&schema)
        .map_err(|e| e.to_string())?)
}

pub fn heartbeat() -> Heartbeat {
    let mut ready = SourceStatus::new("platform", SourceState::Ready);
    ready.fetched_revision = Some(REV_A.into());
    ready.applied_revision = Some(REV_A.into());
    ready.last_good_revision = Some(REV_A.into());
    ready.object_count = 42;
    ready.inventory_digest = Some(DIGEST.into());
    let mut failed = SourceStatus::new("apps-eu", SourceState::Failed);
    failed.fetched_revision = Some(REV_B.into());
    failed.applied_revision = Some(REV_A.into());
    failed.last_good_revision = Some(REV_A.into());
    failed.last_error = Some("health check: Deployment web: 0/2 replicas ready\nafter 5m".into());
    failed.object_count = 7;
    Heartbeat {
        schema: "outpost.heartbeat/v1".into(),
        agent_id: "store-042".into(),
        seq: 1234,
        boot_id: "6f1c1d2e-8a4b-4c3d-9e8f-0a1b2c3d4e5f".into(),
        observed_at: "2026-09-21T14:13:20Z".into(),
        agent_version: "0.1.0 (3f2a9c1)".into(),
        assignment_generation: 3,
        dropped: 0,
        sources: vec![
            ready,
            failed,
            SourceStatus::new("new-one", SourceState::Progressing),
            SourceStatus::new("paused", SourceState::Suspended),
            SourceStatus::new("offline", SourceState::Stale),
        ],
        assignment_error: Some(AssignmentError {
            generation: 4,
            kind: RefusalKind::NameClash,
            reason: "assignment generation 4, source \"platform\": the config file already has a source of that name".into(),
        }),
    }
}

pub fn spec(name: &str, url: &str) -> SourceSpec {
    SourceSpec::new(name, url, "kubernetes")
}

pub fn assignment() -> Assignment {
    let mut platform = spec("platform", "https://git.example.com/fleet/platform.git");
    platform.branch = Some("main".into());
    platform.path = Some("clusters/store-042".into());
    platform.interval = Some("1m".into());
    platform.timeout = Some("2m".into());
    platform.prune = Some(true);
    platform.namespace = Some("default".into());
    platform.wait = Some(true);
    platform.rollback = Some(true);
    platform.force = Some(false);
    platform.auth = Some(AuthFiles {
        token_file: Some("/etc/outpost/git-token".into()),
        ..AuthFiles::default()
    });
    let mut apps = spec("apps", "ssh://git@git.example.com:2222/fleet/apps.git");
    apps.tag = Some("v1.4.2".into());
    apps.target = "directory:/var/lib/rancher/k3s/server/manifests/outpost".into();
    apps.auth = Some(AuthFiles {
        ssh_key_file: Some("/etc/outpost/id_ed25519".into()),
        known_hosts_file: Some("/etc/outpost/known_hosts".into()),
        ..AuthFiles::default()
    });
    let mut monitoring = spec("monitoring", "https://git.example.com/fleet/monitoring.git");
    monitoring.semver = Some(">=1.2.0 <2".into());
    monitoring.auth = Some(AuthFiles {
        username: Some("outpost-bot".into()),
        password_file: Some("/etc/outpost/git-password".into()),
        ..AuthFiles::default()
    });
    let mut pinned = spec("pinned", "git@github.com:example/pinned.git");
    pinned.commit = Some(REV_A.into());
    pinned.interval = Some("1h30m".into());
    Assignment::new(7, vec![platform, apps, monitoring, pinned])
}
