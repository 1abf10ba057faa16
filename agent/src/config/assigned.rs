//! Sources assigned by the hub, merged with the config file's own.
//!
//! An assigned source is checked by exactly the rules of a `[[source]]` table (it is read into the same raw type),
//! so the hub cannot ask for anything an operator could not write in the file. A name that the file already uses is
//! refused: the site's own file wins, and the operator is told.

use serde::Deserialize;

use super::source::{validate_source, RawSource};
use super::Config;
use outpost_proto::wire::{Assignment, RefusalKind};

/// Why an assignment cannot run beside the config file. The hub is told which (`assignment_error` in the
/// next heartbeat), since the agent's log is on a site nobody reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssignmentRefused {
    #[error("assignment generation {generation}, source {name:?}: the config file already has a source of that name; rename one of them (the file's source keeps running)")]
    NameClash { generation: u64, name: String },
    #[error("assignment generation {generation}, source {name:?}: {problem}")]
    InvalidSource {
        generation: u64,
        name: String,
        problem: String,
    },
    /// `depends_on` across the file's and the assigned sources: an unknown name or a cycle.
    #[error("assignment generation {generation}: {problem}")]
    Dependencies { generation: u64, problem: String },
}

impl AssignmentRefused {
    pub fn kind(&self) -> RefusalKind {
        match self {
            AssignmentRefused::NameClash { .. } => RefusalKind::NameClash,
            AssignmentRefused::InvalidSource { .. } | AssignmentRefused::Dependencies { .. } => {
                RefusalKind::InvalidSource
            }
        }
    }
}

impl Config {
    /// This config plus the sources of a verified assignment (replacing any assigned before).
    pub fn with_assignment(&self, assignment: &Assignment) -> Result<Config, AssignmentRefused> {
        let base = self.file_only();
        let mut merged = base.clone();
        let this = &base;
        for spec in &assignment.sources {
            let generation = assignment.generation;
            let invalid = |problem: String| AssignmentRefused::InvalidSource {
                generation,
                name: spec.name.clone(),
                problem,
            };
            if this.source(&spec.name).is_some() {
                return Err(AssignmentRefused::NameClash {
                    generation,
                    name: spec.name.clone(),
                });
            }
            let value = serde_json::to_value(spec).map_err(|e| invalid(e.to_string()))?;
            let raw = RawSource::deserialize(value).map_err(|e| invalid(e.to_string()))?;
            let source = validate_source(raw, &this.path, &this.agent).map_err(|p| invalid(p.0))?;
            merged.assigned_sources.push(source.name.clone());
            merged.sources.push(source);
        }
        super::operations::check_depends(&merged.sources).map_err(|e| {
            AssignmentRefused::Dependencies {
                generation: assignment.generation,
                problem: e.0,
            }
        })?;
        merged.assignment_generation = assignment.generation;
        Ok(merged)
    }

    /// The config file's own sources, without any assigned ones.
    pub fn file_only(&self) -> Config {
        let mut base = self.clone();
        base.sources
            .retain(|s| !self.assigned_sources.contains(&s.name));
        base.assigned_sources.clear();
        base.assignment_generation = 0;
        base
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use outpost_proto::wire::{parse_assignment, Assignment};

    use super::AssignmentRefused;
    use crate::config::{Config, TargetSpec};

    fn config() -> Config {
        Config::parse(
            Path::new("/etc/outpost/agent.toml"),
            "[agent]\nid = \"a\"\nstate_dir = \"/tmp/x\"\n[[source]]\nname = \"local\"\nurl = \"file:///srv/git/local\"\nbranch = \"main\"\ntarget = \"directory:/srv/m\"\n",
        )
        .unwrap()
    }

    fn assignment(name: &str, extra: &str) -> Assignment {
        parse_assignment(
            format!(r#"{{"schema":"outpost.assignment/v1","generation":4,"sources":[{{"name":"{name}","url":"https://git.example.com/x.git","branch":"main","target":"kubernetes"{extra}}}]}}"#)
                .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn assigned_sources_run_beside_the_files_with_the_same_rules() {
        let merged = config()
            .with_assignment(&assignment("platform", r#","interval":"30s""#))
            .unwrap();
        assert_eq!(merged.sources.len(), 2);
        assert_eq!(merged.assignment_generation, 4);
        let p = merged.source("platform").unwrap();
        assert_eq!(p.target, TargetSpec::Kubernetes);
        assert_eq!(p.interval, std::time::Duration::from_secs(30));
        assert!(p.prune && p.wait && p.rollback, "the file's defaults apply");
        let err = config()
            .with_assignment(&assignment("platform", r#","interval":"0s""#))
            .unwrap_err();
        assert!(
            matches!(&err, AssignmentRefused::InvalidSource { generation: 4, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("interval"), "{err}");
    }

    #[test]
    fn a_name_clash_is_refused_and_the_files_source_wins() {
        let err = config()
            .with_assignment(&assignment("local", ""))
            .unwrap_err();
        assert_eq!(err.kind(), outpost_proto::wire::RefusalKind::NameClash);
        let text = err.to_string();
        assert!(
            text.contains("already has a source") && text.contains("\"local\""),
            "{text}"
        );
    }

    #[test]
    fn an_assignment_carries_vars_windows_dependencies_and_decryption() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("age.key");
        std::fs::write(&key, include_str!("../sops/testdata/flux/keys-age.txt")).unwrap();
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let extra = format!(
            r#","vars":{{"SITE":"berlin-7"}},"depends_on":["local"],"windows":["Mon-Fri 02:00-05:00"],"timezone":"Europe/Berlin","apply_outside_windows":"none","decryption":{{"age_identities":"{}"}}"#,
            key.display()
        );
        let merged = config()
            .with_assignment(&assignment("platform", &extra))
            .unwrap();
        let p = merged.source("platform").unwrap();
        let vars = p.vars(&merged.agent).unwrap();
        assert_eq!(vars["SITE"], "berlin-7");
        assert_eq!(p.operations.depends_on, ["local"]);
        assert!(p.operations.windows.is_some());
        assert!(p.operations.decryption.is_some());

        // Depending on a source the agent does not have is refused, naming it.
        let err = config()
            .with_assignment(&assignment("platform", r#","depends_on":["nowhere"]"#))
            .unwrap_err();
        assert!(
            matches!(err, AssignmentRefused::Dependencies { generation: 4, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("nowhere"), "{err}");
        // An identities file that is not there is refused like one in the file.
        let err = config()
            .with_assignment(&assignment(
                "platform",
                r#","decryption":{"age_identities":"/nonexistent/age.key"}"#,
            ))
            .unwrap_err();
        assert!(err.to_string().contains("age_identities"), "{err}");
    }
}
