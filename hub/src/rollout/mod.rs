//! Fleet rollouts (issue 19): moving a release to a new commit wave by wave, health-gated, offline-aware, with
//! automatic fleet rollback.
//!
//! - [`model`]: releases, rollouts and per-site states, as stored;
//! - [`plan`]: a start request -> the rollout's fixed waves;
//! - [`step`]: the decisions, a pure function of the stored rollout, the fleet's last heartbeats and the clock;
//! - [`driver`]: the task that runs `step` for each active rollout (periodically and when heartbeats arrive),
//!   pins commits in sites' assignments through the store, and stores the result, one replica at a time per
//!   rollout (a lease in the store);
//! - [`members`]: newcomers to a release's selector get the release at the driver's next tick;
//! - [`api`]: the admin endpoints under `/v1/admin/releases` and `/v1/admin/rollouts`; [`cli`]: `outpost-hub
//!   release …` / `rollout …`; [`page`]: the fleet page's section and the metrics.
//!
//! The hub carries a rollout out through the assignments agents already trust: pinning a site means writing
//! its assignment with the release's source at `commit = "<new>"` (a new, higher generation), and rolling back
//! means writing it again with the previous commit.

pub mod api;
pub mod cli;
pub mod control;
pub mod driver;
pub mod members;
pub mod model;
pub mod page;
pub mod plan;
pub mod step;

#[cfg(test)]
mod tests;

pub use model::{Release, Rollout};
