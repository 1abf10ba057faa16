//! Outpost, the edge GitOps pull agent: the library behind the `outpost` binary.
//!
//! # Module map
//! One line per module, in layer order: each module uses only the modules listed below it (a test,
//! `tests/layers.rs`, reads every `crate::` path and fails on one that climbs up). One revision travels from the
//! bottom up: `config` says where to look, `source` fetches and verifies it and reads its files (`revision`),
//! `bundle` builds them into objects, `reconcile` applies them through `deploy` and records the outcome in
//! `store` as a `report` status, which `daemon` publishes and sends upstream.
//!
//! - [`fuzzing`]: shared by the cargo-fuzz targets and the corpus replay test; not an API
//! - [`commands`]: what each subcommand does, a thin map onto the modules below (`main.rs` only parses)
//! - [`check`]: `outpost check`: the config and every file it names, and with `--connect` the Git refs, the
//!   Kubernetes API and permissions, and the hub
//! - [`enroll`]: `outpost enroll`: join a hub with a bootstrap token, check its key, write `[upstream]`
//! - [`daemon`]: `outpost run`: signals, a failed store, rounds, per-source loops, heartbeats, timing
//! - [`reconcile`]: the one per-source pipeline (probe, fetch, verify, read, build, apply, record) and its
//!   failure policy; also `render` and the clean-up of removed sources
//! - [`secrets`]: SOPS files decrypted in memory for the build; objects holding their values sealed in the store
//! - [`deploy`]: where bundles go: Kubernetes (server-side apply, inventory, drift, leader lease) or a directory
//! - [`store`]: the sled store: records, last good bundles, history, heartbeat outbox, the hub's assignment
//! - [`bundle`]: a revision's files to a Bundle: plain YAML, kustomize, substitution
//! - [`source`]: Git: probe the ref, fetch into the cache, check signatures, read a revision's files
//! - [`revision`]: the files of a revision, the seam between `source` and `bundle`
//! - [`control`]: `outpost suspend` / `resume`: files under `state_dir/control/` every pass reads
//! - [`report`]: the status model (`State`, `SourceStatus`) and its views: `status.json`, the table, liveness
//! - [`identity`]: the agent's Ed25519 key
//! - [`config`]: the TOML file to a validated `Config`
//! - [`sops`]: SOPS-encrypted files (age identities): parse, check the MAC, decrypt
//! - [`windows`]: maintenance windows in a time zone (the zone database is built in)
//! - [`depends`]: `depends_on` between sources: validation, apply order, readiness
//! - [`signature`]: SSH and OpenPGP signatures on Git commits and tags
//! - [`http_body`]: reading HTTP answers with a ceiling
//! - [`trust`]: the CA roots HTTPS trusts
//! - [`logging`]: log lines, text or JSON
//! - [`notify`]: systemd readiness and watchdog
//! - [`fsutil`]: crash-safe file replacement
//! - [`redact`]: credentials kept out of output

#[doc(hidden)]
pub mod fuzzing;

pub mod bundle;
pub mod check;
pub mod commands;
pub mod config;
pub mod control;
pub mod daemon;
pub mod depends;
pub mod deploy;
pub mod enroll;
pub mod fsutil;
pub mod http_body;
pub mod identity;
pub mod logging;
pub mod notify;
pub mod reconcile;
pub mod redact;
pub mod report;
pub mod revision;
pub mod secrets;
pub mod signature;
pub mod sops;
pub mod source;
pub mod store;
pub mod trust;
pub mod windows;

/// rustls needs one process-wide crypto provider; we use ring (no OpenSSL, no aws-lc-rs). Call before any
/// client is built, including gix's HTTP transport thread.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
