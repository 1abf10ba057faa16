//! Fixtures for Outpost's end-to-end suites: real git servers on loopback.
//!
//! Every fixture starts real programs or sockets on `127.0.0.1` with a port chosen at
//! random, keeps its files in its own temp directory and tears everything down on `Drop`,
//! so tests can run in parallel. When a required tool is missing the fixture panics with the
//! package to install.
//!
//! - [`GitRepo`] — a bare repository plus a scratch clone to commit in (`git` CLI).
//! - [`GitDaemon`] — `git daemon` serving `git://` URLs.
//! - [`GitHttpServer`] — smart HTTP(S) through `git http-backend`, with optional bearer or
//!   basic auth and per-request counters; [`HttpProxy`] — a forward proxy that counts.
//! - [`SshServer`] — OpenSSH `sshd` serving `ssh://` URLs with generated keys.
//! - [`TestCa`] — a throw-away CA for HTTPS.
//! - [`KubeDouble`] — an in-process Kubernetes API server double (HTTPS, server-side apply).
//! - [`pyyaml`] — PyYAML, an independent YAML 1.1 reader, to read back what the directory target writes.
//! - [`git`] — a `git` command isolated from the user's configuration and environment.

pub mod daemon;
pub mod faults;
pub mod http;
pub mod kube_double;
pub mod proxy;
pub mod pyyaml;
pub mod repo;
mod server;
pub mod ssh;
pub mod support;
pub mod tls;

pub use daemon::GitDaemon;
pub use faults::{Fault, FaultProxy};
pub use http::{GitHttpServer, GitHttpServerBuilder, RequestRecord};
pub use kube_double::KubeDouble;
pub use proxy::HttpProxy;
pub use repo::GitRepo;
pub use ssh::SshServer;
pub use support::{git, isolated_home, require_tool};
pub use tls::{install_crypto_provider, TestCa};
