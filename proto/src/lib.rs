//! Outpost's wire contract between agents and the hub (DESIGN.md § Heartbeat).
//!
//! This crate stays free of tokio and HTTP clients so the hub, the agent and third-party tools can share it.
//! Everything here is plain synchronous code over bytes and strings:
//! - [`keys`]: Ed25519 keys (PKCS#8 files kept private, the `ed25519:` text form, OpenSSH-style fingerprints);
//! - [`digest`]: RFC 9530 `Content-Digest` (sha-256) over a message body;
//! - [`mem`]: freed heap memory handed back to the system after a peak (agent and hub);
//! - [`sfv`]: RFC 8941 structured fields, which the two RFCs above rely on, through the `sfv` crate;
//! - [`signature`]: RFC 9421 HTTP Message Signatures over requests and responses;
//! - [`signed`]: Outpost's signing policy on whole messages (digest + signature, the covered components, the
//!   key id), the functions the agent and hub call;
//! - [`text`]: outside text (agents' errors, file names) made safe for terminals and log lines;
//! - [`units`]: the duration syntax shared by the agent's and the hub's config files;
//! - [`wire`]: the `outpost.heartbeat/v1` and `outpost.assignment/v1` bodies, their checks and JSON Schemas.

mod b64;
pub mod digest;
/// Shared by the cargo-fuzz targets and the stable corpus replay test; not an API.
#[doc(hidden)]
pub mod fuzzing;
pub mod keys;
pub mod mem;
pub mod sfv;
pub mod signature;
pub mod signed;
pub mod text;
pub mod units;
pub mod wire;

/// `schema` field of a heartbeat body.
pub const HEARTBEAT_SCHEMA: &str = "outpost.heartbeat/v1";
/// `schema` field of an assignment body.
pub const ASSIGNMENT_SCHEMA: &str = "outpost.assignment/v1";
