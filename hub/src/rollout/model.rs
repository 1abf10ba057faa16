//! What a release and a rollout are, as stored and as the admin API shows them (issue 19). Plain data: the
//! decisions are in [`super::step`], the wave plan in [`super::plan`].
//!
//! Durations are kept in milliseconds and amounts as [`Amount`] (`"3"` or `"10%"`), so a stored rollout reads
//! back exactly as it was started, whatever the hub's version of the defaults.

use std::collections::BTreeMap;

use outpost_proto::wire::SourceSpec;
use serde::{Deserialize, Serialize};

use crate::store::Labels;

/// Events a rollout keeps (the newest), enough to say who got what when without growing forever.
pub const MAX_EVENTS: usize = 500;

/// Why a release or a rollout as asked for cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("{field} = {value:?} is not an amount; write a count like \"3\" or a percentage like \"10%\" (0-100%)")]
    Amount { field: String, value: String },
    #[error("{field} = {value:?} is not a duration; write it like \"30s\", \"5m\" or \"1h\"")]
    Duration { field: String, value: String },
    #[error("{0}")]
    Invalid(String),
}

/// A count of sites, or a percentage of a set of sites. Serialised as `"3"` or `"10%"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    Count(u64),
    /// 0 to 100.
    Percent(u8),
}

impl Amount {
    pub fn parse(field: &str, text: &str) -> Result<Amount, SpecError> {
        let bad = || SpecError::Amount {
            field: field.to_owned(),
            value: text.to_owned(),
        };
        let text = text.trim();
        match text.strip_suffix('%') {
            Some(p) => match p.trim().parse::<u8>() {
                Ok(p) if p <= 100 => Ok(Amount::Percent(p)),
                _ => Err(bad()),
            },
            None => text.parse::<u64>().map(Amount::Count).map_err(|_| bad()),
        }
    }

    /// How many failures of `total` sites are tolerated: a count as it is, a percentage rounded down (so
    /// `"10%"` of 5 sites tolerates none).
    pub fn allowed_of(self, total: usize) -> usize {
        match self {
            Amount::Count(n) => usize::try_from(n).unwrap_or(usize::MAX),
            Amount::Percent(p) => total * usize::from(p) / 100,
        }
    }

    /// How many of `total` sites a wave's percentage reaches: rounded up, so `"1%"` of 10 sites is one site
    /// and a non-empty fleet never gets an empty first wave from a small percentage.
    pub fn reach_of(self, total: usize) -> usize {
        match self {
            Amount::Count(n) => usize::try_from(n).unwrap_or(usize::MAX),
            Amount::Percent(p) => (total * usize::from(p)).div_ceil(100),
        }
    }
}

impl std::fmt::Display for Amount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Amount::Count(n) => write!(f, "{n}"),
            Amount::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(Amount::Count(n)),
            Raw::Text(t) => Amount::parse("amount", &t).map_err(serde::de::Error::custom),
        }
    }
}

/// A source definition and the sites it goes to: the agents whose operator-set labels match `selector`
/// (never the labels an agent reports about itself). `commit` is what the fleet runs when no rollout is
/// moving it; a rollout that succeeds moves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    pub name: String,
    /// As a `[[source]]` holds it; its ref is replaced by a pinned `commit` in each site's assignment.
    pub source: SourceSpec,
    /// Every key must match; an empty selector selects every agent the hub knows.
    #[serde(default)]
    pub selector: Labels,
    /// Full commit id the release's sites are pinned to.
    pub commit: String,
    #[serde(default)]
    pub updated_ms: u64,
}

/// Whether `labels` carry every key of `selector` with its value.
pub fn matches(selector: &Labels, labels: &Labels) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// One wave as asked for: sites chosen by `selector` (all of the release's when empty), at most `size` of
/// them. A count is this wave's own number of sites; a percentage is cumulative, the share of the release's
/// sites reached once this wave is done (so `1`, `10%`, `50%`, `100%` are the usual ladder).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaveSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: Labels,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Amount>,
}

/// What to do when failures pass `max_failures`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Stop and re-pin every site that got the new commit to the previous one.
    #[default]
    Rollback,
    /// Stop where it is; sites keep what they have until `resume` or `abort`.
    Pause,
}

/// How a rollout moves, as started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Strategy {
    pub waves: Vec<WaveSpec>,
    /// Failed sites tolerated over the whole rollout (a breach is one more).
    pub max_failures: Amount,
    /// Failed sites tolerated within one wave.
    pub max_failures_per_wave: Amount,
    /// A site pinned to the new commit that has not reported it Ready within this counts as failed.
    pub progress_deadline_ms: u64,
    /// How long a wave must stay healthy after its last site became Ready before the next wave starts.
    pub soak_ms: u64,
    /// At most this many sites in progress at once; `None` for no limit.
    pub max_concurrency: Option<u64>,
    pub on_failure: OnFailure,
}

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    Progressing,
    /// Stopped by a breach with `on_failure = "pause"`, or by the operator.
    Paused,
    /// Every wave passed; the release now runs the new commit. Deferred sites still get it when they return.
    Succeeded,
    /// A breach re-pinned every site that got the new commit to the previous one.
    RolledBack,
    /// The operator aborted: rolled back like a breach.
    Aborted,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Progressing => "Progressing",
            Phase::Paused => "Paused",
            Phase::Succeeded => "Succeeded",
            Phase::RolledBack => "RolledBack",
            Phase::Aborted => "Aborted",
        }
    }

    /// Whether nothing will ever be pinned to the new commit again.
    pub fn is_rolled_back(self) -> bool {
        matches!(self, Phase::RolledBack | Phase::Aborted)
    }
}

/// Where one site stands in a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SiteState {
    /// Its wave has not reached it yet.
    Pending,
    /// Pinned to the new commit, not Ready yet.
    InProgress,
    Ready,
    /// Reported the new commit Failed, or missed the progress deadline.
    Failed,
    /// Not waited for and not failed: see [`DeferReason`].
    Deferred,
    /// Re-pinned to the previous commit by a rollback.
    RolledBack,
}

impl SiteState {
    pub fn as_str(self) -> &'static str {
        match self {
            SiteState::Pending => "Pending",
            SiteState::InProgress => "InProgress",
            SiteState::Ready => "Ready",
            SiteState::Failed => "Failed",
            SiteState::Deferred => "Deferred",
            SiteState::RolledBack => "RolledBack",
        }
    }
}

/// Why a site is deferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeferReason {
    /// Its heartbeats stopped before it received the new commit; it is not pinned, and gets the new commit
    /// when it comes back (if the rollout is still good).
    Offline,
    /// It received the new commit and holds it outside its maintenance window (the agent's `Waiting`); it
    /// stays pinned and applies it when the window opens.
    Window,
}

/// One site of a rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    /// Index into [`Rollout::waves`].
    pub wave: usize,
    pub state: SiteState,
    /// When it entered `state` (hub clock, Unix ms).
    pub since_ms: u64,
    /// Whether its assignment pins the new commit now (what a rollback re-pins).
    #[serde(default)]
    pub pinned: bool,
    /// When it was last pinned to the new commit; the progress deadline counts from here.
    #[serde(default)]
    pub pinned_ms: Option<u64>,
    /// The assignment generation that pins the new commit; the site has *received* it once a heartbeat
    /// reports running this generation or a later one.
    #[serde(default)]
    pub generation: Option<u64>,
    #[serde(default)]
    pub deferred: Option<DeferReason>,
    /// The site's own signed `last_error` (or the hub's reason) when it failed.
    #[serde(default)]
    pub error: Option<String>,
}

/// One wave as planned at the start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wave {
    pub name: String,
    pub sites: Vec<String>,
    pub started_ms: Option<u64>,
    pub passed_ms: Option<u64>,
}

/// Something that happened, for the record and the status page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub at_ms: u64,
    pub text: String,
}

/// A rollout of one release from `from_commit` to `to_commit`, with every site's state: the whole record is
/// what the store keeps, written at every change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    pub id: String,
    pub release: String,
    /// The release's source as it was at the start (its name is the assignment entry that is pinned).
    pub source: SourceSpec,
    pub from_commit: String,
    pub to_commit: String,
    pub strategy: Strategy,
    pub phase: Phase,
    /// Why it paused, rolled back or was aborted.
    pub reason: Option<String>,
    pub waves: Vec<Wave>,
    /// The wave being rolled out (== `waves.len()` once all passed).
    pub current_wave: usize,
    pub sites: BTreeMap<String, Site>,
    /// Sites that failed, with why: kept after a rollback re-pins them.
    pub failures: BTreeMap<String, String>,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub events: Vec<Event>,
}

impl Rollout {
    /// Whether the driver still has work: not rolled back, and not finished with every site settled.
    pub fn is_active(&self) -> bool {
        match self.phase {
            Phase::RolledBack | Phase::Aborted => false,
            Phase::Progressing | Phase::Paused => true,
            Phase::Succeeded => self
                .sites
                .values()
                .any(|s| matches!(s.state, SiteState::InProgress | SiteState::Deferred)),
        }
    }

    /// How many sites are in each state.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts: BTreeMap<&'static str, usize> = [
            SiteState::Pending,
            SiteState::InProgress,
            SiteState::Ready,
            SiteState::Failed,
            SiteState::Deferred,
            SiteState::RolledBack,
        ]
        .iter()
        .map(|s| (s.as_str(), 0))
        .collect();
        for site in self.sites.values() {
            *counts.entry(site.state.as_str()).or_default() += 1;
        }
        counts
    }

    pub(crate) fn event(&mut self, at_ms: u64, text: String) {
        self.events.push(Event { at_ms, text });
        if self.events.len() > MAX_EVENTS {
            let extra = self.events.len() - MAX_EVENTS;
            self.events.drain(..extra);
        }
    }
}
