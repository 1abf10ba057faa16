//! Outpost's wire contract between agents and the hub (DESIGN.md § Heartbeat).
//!
//! This crate stays free of tokio and HTTP clients so the hub, the agent and third-party tools can share it.
//! The heartbeat and assignment types, their JSON Schemas and the RFC 9421 / RFC 9530 signing land with the
//! heartbeat work; for now it pins the schema identifiers both sides agree on.

/// `schema` field of a heartbeat body.
pub const HEARTBEAT_SCHEMA: &str = "outpost.heartbeat/v1";
/// `schema` field of an assignment body.
pub const ASSIGNMENT_SCHEMA: &str = "outpost.assignment/v1";
