//! Operational controls of issue 20: `[source.decryption]` (SOPS with age), `depends_on`, and maintenance
//! windows (`windows`, `timezone`, `apply_outside_windows`, per source or in `[agent]` for all).
//!
//! Parsed and validated here so a mistake stops start-up and `outpost check` with the key named; the files they
//! name are read now too (the age identities, checked to be mode 0600), like `[source.verify]`'s keys.
//!
//! Window inheritance: a source without `windows` takes `[agent] windows`; `windows = []` on a source means "no
//! windows" even when the agent has some. `timezone` is needed wherever windows are written (the source's own,
//! or else `[agent] timezone`), because a window is wall-clock time and the host's zone is not known (a scratch
//! image has none).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::{relative_to, Invalid};
use crate::depends::{apply_order, Dependent};
use crate::sops::Identities;
use crate::windows::Windows;

/// `[source.decryption]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDecryption {
    age_identities: PathBuf,
}

/// What a source does outside its maintenance windows (`apply_outside_windows`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OutsideWindows {
    /// `"last_good"`: drift correction and re-applying the last good revision go on; only new revisions wait.
    #[default]
    LastGood,
    /// `"none"`: nothing is applied outside a window.
    Nothing,
}

impl OutsideWindows {
    fn parse(text: &str) -> Option<OutsideWindows> {
        match text {
            "last_good" => Some(OutsideWindows::LastGood),
            "none" => Some(OutsideWindows::Nothing),
            _ => None,
        }
    }
}

/// A source's maintenance windows and what may happen outside them.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowPolicy {
    pub windows: Arc<Windows>,
    pub outside: OutsideWindows,
}

/// The `[agent]` defaults every source inherits.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentOperations {
    pub windows: Option<WindowPolicy>,
    /// `[agent] timezone`, also the zone of sources' own windows that name none.
    pub timezone: Option<String>,
    pub outside: Option<OutsideWindows>,
}

/// One source's operational settings.
#[derive(Debug, Clone, Default)]
pub struct SourceOperations {
    /// Identities for SOPS files, read from `[source.decryption] age_identities`.
    pub decryption: Option<Arc<Identities>>,
    /// Sources that must be Ready at their latest revision before this one applies a new revision.
    pub depends_on: Vec<String>,
    /// `None`: applies whenever it has something new.
    pub windows: Option<WindowPolicy>,
}

fn parse_outside(text: Option<String>, at: &str) -> Result<Option<OutsideWindows>, Invalid> {
    text.map(|t| {
        OutsideWindows::parse(&t).ok_or_else(|| {
            Invalid::from(format!("{at}apply_outside_windows = {t:?}: write \"last_good\" (drift correction and the last good revision still run outside windows; the default) or \"none\" (nothing is applied outside windows)"))
        })
    })
    .transpose()
}

fn parse_windows(entries: &[String], timezone: &str, at: &str) -> Result<Arc<Windows>, Invalid> {
    Windows::parse(entries, timezone)
        .map(Arc::new)
        .map_err(|e| Invalid(format!("{at}{e}")))
}

/// `[agent] windows`, `timezone`, `apply_outside_windows`.
pub(super) fn validate_agent(
    windows: Option<Vec<String>>,
    timezone: Option<String>,
    outside: Option<String>,
) -> Result<AgentOperations, Invalid> {
    let at = "[agent] ";
    if let Some(zone) = &timezone {
        // Checked even without windows: sources' own windows use it.
        Windows::check_timezone(zone).map_err(|e| format!("{at}{e}"))?;
    }
    let outside = parse_outside(outside, at)?;
    let windows = match windows {
        None => None,
        Some(entries) if entries.is_empty() => None,
        Some(entries) => {
            let zone = timezone.as_deref().ok_or(
                "[agent] windows: windows are wall-clock times, so set timezone too, e.g. timezone = \"Europe/Berlin\" (or \"UTC\")",
            )?;
            Some(WindowPolicy {
                windows: parse_windows(&entries, zone, at)?,
                outside: outside.unwrap_or_default(),
            })
        }
    };
    Ok(AgentOperations {
        windows,
        timezone,
        outside,
    })
}

/// The raw operational keys of one `[[source]]`.
pub(super) struct RawSourceOperations {
    pub decryption: Option<RawDecryption>,
    pub depends_on: Vec<String>,
    pub windows: Option<Vec<String>>,
    pub timezone: Option<String>,
    pub apply_outside_windows: Option<String>,
}

/// One source's keys, with the `[agent]` defaults filled in. Messages start with `source "NAME": `.
pub(super) fn validate_source(
    name: &str,
    raw: RawSourceOperations,
    agent: &AgentOperations,
    config_path: &Path,
) -> Result<SourceOperations, Invalid> {
    let at = format!("source \"{name}\": ");
    let outside = parse_outside(raw.apply_outside_windows, &at)?;
    let windows = match (raw.windows, raw.timezone) {
        (None, Some(zone)) => {
            return Err(format!(
                "{at}timezone = {zone:?} only applies to the source's own windows; set windows here too, or remove timezone (the [agent] windows use [agent] timezone)"
            ).into())
        }
        (None, None) => agent.windows.clone().map(|policy| WindowPolicy {
            outside: outside.unwrap_or(policy.outside),
            ..policy
        }),
        (Some(entries), _) if entries.is_empty() => None,
        (Some(entries), zone) => {
            let zone = zone.or_else(|| agent.timezone.clone()).ok_or_else(|| {
                format!("{at}windows: windows are wall-clock times, so set timezone here or in [agent], e.g. timezone = \"Europe/Berlin\" (or \"UTC\")")
            })?;
            Some(WindowPolicy {
                windows: parse_windows(&entries, &zone, &at)?,
                outside: outside.or(agent.outside).unwrap_or_default(),
            })
        }
    };
    if windows.is_none() && outside.is_some() {
        return Err(format!(
            "{at}apply_outside_windows has no effect: the source has no windows; remove it, or add windows"
        ).into());
    }
    let decryption = match raw.decryption {
        None => None,
        Some(d) => {
            let path = relative_to(config_path, &d.age_identities);
            Some(Arc::new(Identities::load(&path).map_err(|e| {
                format!("{at}[source.decryption] age_identities: {e}")
            })?))
        }
    };
    Ok(SourceOperations {
        decryption,
        depends_on: raw.depends_on,
        windows,
    })
}

/// Checks `depends_on` across all sources (names, self, twice, cycles).
pub(super) fn check_depends(sources: &[super::SourceConfig]) -> Result<(), Invalid> {
    let nodes: Vec<Dependent> = sources
        .iter()
        .map(|s| Dependent {
            name: &s.name,
            depends_on: &s.operations.depends_on,
        })
        .collect();
    apply_order(&nodes)
        .map(|_| ())
        .map_err(|e| Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::config::Config;

    const SOURCE: &str = "[[source]]\nname = \"platform\"\nurl = \"https://git.example.com/p.git\"\nbranch = \"main\"\ntarget = \"kubernetes\"\n";
    const FLUX_KEY: &str = include_str!("../sops/testdata/flux/keys-age.txt");

    /// A config with `agent` lines in `[agent]` and `source` lines in the first source; more sources after.
    fn parse(agent: &str, source: &str, more: &str) -> Result<Config, String> {
        parse_at(Path::new("/etc/outpost/agent.toml"), agent, source, more)
    }

    fn parse_at(path: &Path, agent: &str, source: &str, more: &str) -> Result<Config, String> {
        let text = format!("[agent]\nid = \"a\"\n{agent}\n{SOURCE}{source}\n{more}");
        Config::parse(path, &text).map_err(|e| e.to_string())
    }

    fn source(name: &str, extra: &str) -> String {
        format!("[[source]]\nname = \"{name}\"\nurl = \"https://git.example.com/{name}.git\"\nbranch = \"main\"\ntarget = \"kubernetes\"\n{extra}\n")
    }

    #[test]
    fn nothing_set_means_nothing_changes() {
        let c = parse("", "", "").unwrap();
        let ops = &c.sources[0].operations;
        assert!(ops.decryption.is_none() && ops.depends_on.is_empty() && ops.windows.is_none());
        assert_eq!(c.agent.operations, AgentOperations::default());
    }

    #[test]
    fn agent_windows_are_inherited_and_can_be_overridden() {
        let agent = "windows = [\"Mon-Fri 02:00-05:00\"]\ntimezone = \"Europe/Berlin\"";
        let more = source("web", "windows = []")
            + &source(
                "db",
                "windows = [\"Sun 01:00-02:00\"]\napply_outside_windows = \"none\"",
            )
            + &source(
                "edge",
                "windows = [\"Sat 01:00-02:00\"]\ntimezone = \"UTC\"",
            );
        let c = parse(agent, "", &more).unwrap();
        let policy = |name: &str| c.source(name).unwrap().operations.windows.clone();
        let inherited = policy("platform").unwrap();
        assert_eq!(inherited.outside, OutsideWindows::LastGood);
        assert_eq!(
            inherited.windows.to_string(),
            "Mon-Fri 02:00-05:00 (Europe/Berlin)"
        );
        assert!(policy("web").is_none(), "windows = [] turns them off");
        let db = policy("db").unwrap();
        assert_eq!(db.outside, OutsideWindows::Nothing);
        assert_eq!(db.windows.timezone(), "Europe/Berlin", "the agent's zone");
        assert_eq!(policy("edge").unwrap().windows.timezone(), "UTC");
        // The agent's apply_outside_windows is the default for sources.
        let c = parse(
            &format!("{agent}\napply_outside_windows = \"none\""),
            "",
            "",
        )
        .unwrap();
        assert_eq!(
            c.sources[0].operations.windows.as_ref().unwrap().outside,
            OutsideWindows::Nothing
        );
    }

    #[test]
    fn bad_window_settings_name_the_key_and_fix() {
        for (agent, src, want) in [
            ("windows = [\"Mon 02:00-03:00\"]", "", "[agent] windows: windows are wall-clock times, so set timezone too"),
            ("timezone = \"Mars/Olympus\"", "", "[agent] timezone \"Mars/Olympus\" is not in the built-in time zone database"),
            ("windows = [\"Mon 2-3\"]\ntimezone = \"UTC\"", "", "[agent] window \"Mon 2-3\": \"2\" is not a time HH:MM"),
            ("apply_outside_windows = \"never\"", "", "[agent] apply_outside_windows = \"never\": write \"last_good\""),
            ("", "windows = [\"Mon 02:00-03:00\"]", "source \"platform\": windows: windows are wall-clock times, so set timezone here or in [agent]"),
            ("", "timezone = \"UTC\"", "source \"platform\": timezone = \"UTC\" only applies to the source's own windows"),
            ("", "windows = [\"Mon 02:00-03:00\"]\ntimezone = \"Europe/Berlln\"", "source \"platform\": timezone \"Europe/Berlln\""),
            ("", "windows = [\"Someday 02:00-03:00\"]\ntimezone = \"UTC\"", "source \"platform\": window \"Someday 02:00-03:00\": \"Someday\" is not a day"),
            ("", "apply_outside_windows = \"none\"", "source \"platform\": apply_outside_windows has no effect"),
            ("", "windows = \"Mon 02:00-03:00\"", "invalid type"),
        ] {
            let e = parse(agent, src, "").unwrap_err();
            assert!(e.contains(want), "{agent} / {src}: {e}");
        }
    }

    #[test]
    fn depends_on_is_checked_across_sources() {
        let ok = parse("", "depends_on = [\"crds\"]", &source("crds", "")).unwrap();
        assert_eq!(ok.sources[0].operations.depends_on, ["crds"]);
        for (src, more, want) in [
            ("depends_on = [\"crd\"]", source("crds", ""), "source \"platform\": depends_on names \"crd\", which is not a source; the sources are \"platform\", \"crds\""),
            ("depends_on = [\"platform\"]", String::new(), "depends_on names the source itself"),
            ("depends_on = [\"crds\"]", source("crds", "depends_on = [\"apps\"]") + &source("apps", "depends_on = [\"platform\"]"), "depends_on forms a cycle: platform -> crds -> apps -> platform"),
            ("depends_on = [\"crds\", \"crds\"]", source("crds", ""), "names \"crds\" twice"),
        ] {
            let e = parse("", src, &more).unwrap_err();
            assert!(e.contains(want), "{src}: {e}");
        }
    }

    #[test]
    fn age_identities_are_read_and_checked_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("agent.toml");
        let key = dir.path().join("age.key");
        std::fs::write(&key, FLUX_KEY).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        // Relative to the config file, like every other path.
        let c = parse_at(
            &config,
            "",
            "[source.decryption]\nage_identities = \"age.key\"",
            "",
        )
        .unwrap();
        let ids = c.sources[0].operations.decryption.as_ref().unwrap();
        assert_eq!(
            ids.recipients(),
            ["age1l44xcng8dqj32nlv6d930qvvrny05hglzcv9qpc7kxjc6902ma4qufys29"]
        );

        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = parse_at(
            &config,
            "",
            "[source.decryption]\nage_identities = \"age.key\"",
            "",
        )
        .unwrap_err();
        assert!(
            e.contains(
                "source \"platform\": [source.decryption] age_identities: age identities file"
            ),
            "{e}"
        );
        assert!(e.contains(&format!("chmod 600 {}", key.display())), "{e}");
        let e = parse_at(
            &config,
            "",
            "[source.decryption]\nage_identities = \"nope.key\"",
            "",
        )
        .unwrap_err();
        assert!(
            e.contains("could not open age identities file") && e.contains("nope.key"),
            "{e}"
        );
        let e = parse_at(
            &config,
            "",
            "[source.decryption]\nage_identity = \"age.key\"",
            "",
        )
        .unwrap_err();
        assert!(
            e.contains("age_identity") && e.contains("remove the key or fix its spelling"),
            "{e}"
        );
        let e = parse_at(&config, "", "[source.decryption]\n", "").unwrap_err();
        assert!(e.contains("age_identities"), "{e}");
    }
}
