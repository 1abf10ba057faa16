//! `outpost-hub`: the reference upstream for Outpost agents (DESIGN.md § Heartbeat, issue 4).
//!
//! It verifies signed heartbeats, records them, and answers each with the agent's assignment signed by the
//! hub's key. The request path, one module per stage:
//! - [`config`]: `hub.toml` -> validated [`config::Config`] (listen/TLS, agents, limits), with [`assign`]
//!   deciding which `[[assignment]]` each agent gets;
//! - [`state`]: the shared [`state::HubState`] opened from it (hub key, [`store`], [`registry`], and the
//!   [`authority`] names heartbeats must be signed for);
//! - [`server`]: sockets, TLS ([`tls`]), HTTP limits and routing;
//! - [`limit`]: how often a source may enroll and how many disk reads run at once; [`refusals`]: refused
//!   requests summarised in the log instead of one line each; [`agent_refusals`]: each enrolled agent's
//!   recent refusals, for its page;
//! - handlers, plain synchronous functions over bytes: [`heartbeat`], [`ping`] (a signed no-op for
//!   `outpost check --connect`), [`enroll`], [`status`], [`history`]
//!   (an agent's heartbeats a page at a time), and for people and monitoring, [`fleet`] (the HTML pages: counts,
//!   a filtered page of agents, one page per agent) and [`metrics`] (Prometheus, through the client crate);
//! - [`admin`]: the admin API behind `[[admin]]` credentials ([`access`]): enroll, revoke, forget, label and
//!   assign agents, issue bootstrap tokens; and the `outpost-hub agents` / `token create` commands that call it;
//! - [`rollout`]: fleet rollouts (issue 19): releases, waves, the pure `step` decisions, the driver task that
//!   pins commits in assignments, and their admin endpoints, commands, page section and metrics;
//! - [`reply`]: the answers they return, accepted or refused; [`durable`]: a heartbeat's reply waits until its
//!   record is on disk (group commit).
//!
//! Wire formats, signing and keys come from `outpost_proto`; nothing here re-implements them.

pub mod access;
pub mod admin;
pub mod agent_refusals;
pub mod assign;
pub mod authority;
pub mod backend;
pub mod config;
pub mod durable;
pub mod enroll;
pub mod fleet;
pub mod heartbeat;
pub mod history;
pub mod limit;
pub mod metrics;
pub mod ping;
pub mod refusals;
pub mod registry;
pub mod reply;
pub mod rollout;
pub mod secret_file;
pub mod server;
pub mod state;
pub mod status;
pub mod store;
pub mod tls;
