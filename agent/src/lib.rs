//! Outpost, the edge GitOps pull agent: the library behind the `outpost` binary.
//!
//! The modules follow the data flow in DESIGN.md: `config` -> `source` (Git) -> `build` (Bundle) -> `store`
//! (sled) -> `target` (where bundles are applied) -> `report` (status); `reconcile` runs one source through the
//! stages once, `schedule` runs every source forever, and `commands` maps subcommands onto them.

pub mod assignment;
pub mod build;
pub mod commands;
pub mod config;
pub mod depends;
pub mod fsutil;
/// Shared by the cargo-fuzz targets and the stable corpus replay test; not an API.
#[doc(hidden)]
pub mod fuzzing;
pub mod heartbeat;
pub mod http_body;
pub mod logging;
pub mod mem;
pub mod notify;
pub mod reconcile;
pub mod redact;
pub mod report;
pub mod schedule;
pub mod sops;
pub mod source;
pub mod store;
pub mod target;
pub mod trust;
pub mod windows;

/// rustls needs one process-wide crypto provider; we use ring (no OpenSSL, no aws-lc-rs). Call before any
/// client is built, including gix's HTTP transport thread.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
