//! `depends_on` between sources: checking the graph, the order to re-apply last good revisions in, and whether a
//! source may apply a new revision now.
//!
//! Invariants: a valid graph names only existing sources, never the source itself, and has no cycle (a cycle
//! would wait forever, so it is a config error naming the whole loop). The order is deterministic: among sources
//! whose dependencies are done, the one written first in the config goes first. Pure functions; the caller maps
//! its status model onto [`DependencyState`].

use std::collections::BTreeMap;

/// One source as far as ordering is concerned.
#[derive(Debug, Clone, Copy)]
pub struct Dependent<'a> {
    pub name: &'a str,
    pub depends_on: &'a [String],
}

/// A `depends_on` that cannot be satisfied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DependsError {
    #[error("source \"{source_name}\": depends_on names \"{missing}\", which is not a source; the sources are {known}")]
    Unknown {
        source_name: String,
        missing: String,
        known: String,
    },
    #[error("source \"{source_name}\": depends_on names the source itself; remove \"{source_name}\" from its depends_on")]
    OnItself { source_name: String },
    #[error("source \"{source_name}\": depends_on names \"{twice}\" twice; list each source once")]
    Twice { source_name: String, twice: String },
    #[error("depends_on forms a cycle: {}; no source in it could ever apply, so remove one of these dependencies", cycle.join(" -> "))]
    Cycle { cycle: Vec<String> },
}

/// Checks the graph and returns every source name in an order where each comes after all it depends on.
pub fn apply_order<'a>(sources: &[Dependent<'a>]) -> Result<Vec<&'a str>, DependsError> {
    let index: BTreeMap<&str, usize> = sources
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name, i))
        .collect();
    // edges[i]: the positions source i depends on.
    let mut edges: Vec<Vec<usize>> = Vec::with_capacity(sources.len());
    for s in sources {
        let mut deps = Vec::new();
        for d in s.depends_on {
            if d == s.name {
                return Err(DependsError::OnItself {
                    source_name: s.name.to_string(),
                });
            }
            let Some(&at) = index.get(d.as_str()) else {
                return Err(DependsError::Unknown {
                    source_name: s.name.to_string(),
                    missing: d.clone(),
                    known: sources
                        .iter()
                        .map(|s| format!("\"{}\"", s.name))
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            };
            if deps.contains(&at) {
                return Err(DependsError::Twice {
                    source_name: s.name.to_string(),
                    twice: d.clone(),
                });
            }
            deps.push(at);
        }
        edges.push(deps);
    }
    if let Some(cycle) = find_cycle(&edges) {
        return Err(DependsError::Cycle {
            cycle: cycle.iter().map(|&i| sources[i].name.to_string()).collect(),
        });
    }
    // Kahn's algorithm, always taking the first ready source in config order.
    let mut done = vec![false; sources.len()];
    let mut order = Vec::with_capacity(sources.len());
    while order.len() < sources.len() {
        let next = (0..sources.len())
            .find(|&i| !done[i] && edges[i].iter().all(|&d| done[d]))
            .expect("an acyclic graph always has a source whose dependencies are done");
        done[next] = true;
        order.push(sources[next].name);
    }
    Ok(order)
}

/// A cycle as positions, first repeated at the end (`a -> b -> a`), found by depth-first search.
fn find_cycle(edges: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    fn visit(
        i: usize,
        edges: &[Vec<usize>],
        marks: &mut [Mark],
        path: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        marks[i] = Mark::OnPath;
        path.push(i);
        for &d in &edges[i] {
            match marks[d] {
                Mark::OnPath => {
                    let from = path.iter().position(|&p| p == d).unwrap_or(0);
                    let mut cycle = path[from..].to_vec();
                    cycle.push(d);
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(d, edges, marks, path) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks[i] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; edges.len()];
    for i in 0..edges.len() {
        if marks[i] == Mark::New {
            if let Some(c) = visit(i, edges, &mut marks, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

/// What a dependency's status says, as far as its dependents care.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DependencyState {
    /// Its status is `Ready`.
    pub ready: bool,
    /// The revision applied, if any.
    pub applied: Option<String>,
    /// The revision its ref points at now (the newest fetched), if known.
    pub latest: Option<String>,
    /// Its health checks passed for the applied revision, or it has `wait = false`.
    pub healthy: bool,
}

/// Why one dependency holds a source back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocker {
    /// No status yet (never polled since start).
    Unknown,
    NotReady,
    NothingApplied,
    /// It has applied an older revision than its ref points at: it is still rolling out.
    Behind {
        applied: String,
        latest: String,
    },
    Unhealthy,
}

impl std::fmt::Display for Blocker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Blocker::Unknown => f.write_str("no status yet"),
            Blocker::NotReady => f.write_str("not Ready"),
            Blocker::NothingApplied => f.write_str("nothing applied yet"),
            Blocker::Behind { applied, latest } => write!(
                f,
                "applied {} but its ref is at {}",
                short(applied),
                short(latest)
            ),
            Blocker::Unhealthy => f.write_str("not healthy"),
        }
    }
}

fn short(revision: &str) -> &str {
    revision.get(..12).unwrap_or(revision)
}

/// A source may not apply yet; `on` lists each dependency that holds it back, in `depends_on` order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("waiting for {}", on.iter().map(|(name, why)| format!("\"{name}\" ({why})")).collect::<Vec<_>>().join(", "))]
pub struct Waiting {
    pub on: Vec<(String, Blocker)>,
}

/// `Ok` when every source `source` depends on is Ready, healthy, and applied at the revision its ref points at.
pub fn ready_to_apply(
    source: &Dependent<'_>,
    states: &BTreeMap<String, DependencyState>,
) -> Result<(), Waiting> {
    let on: Vec<(String, Blocker)> = source
        .depends_on
        .iter()
        .filter_map(|name| {
            let blocker = match states.get(name) {
                None => Blocker::Unknown,
                Some(s) if !s.ready => Blocker::NotReady,
                Some(DependencyState { applied: None, .. }) => Blocker::NothingApplied,
                Some(DependencyState {
                    applied: Some(applied),
                    latest: Some(latest),
                    ..
                }) if applied != latest => Blocker::Behind {
                    applied: applied.clone(),
                    latest: latest.clone(),
                },
                Some(s) if !s.healthy => Blocker::Unhealthy,
                Some(_) => return None,
            };
            Some((name.clone(), blocker))
        })
        .collect();
    if on.is_empty() {
        Ok(())
    } else {
        Err(Waiting { on })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(spec: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        spec.iter()
            .map(|(n, d)| (n.to_string(), d.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    fn order(spec: &[(&str, &[&str])]) -> Result<Vec<String>, DependsError> {
        let g = graph(spec);
        let deps: Vec<Dependent> = g
            .iter()
            .map(|(n, d)| Dependent {
                name: n,
                depends_on: d,
            })
            .collect();
        apply_order(&deps).map(|o| o.into_iter().map(String::from).collect())
    }

    #[test]
    fn dependencies_come_first_and_config_order_breaks_ties() {
        assert_eq!(
            order(&[
                ("apps", &["platform", "crds"]),
                ("monitoring", &[]),
                ("platform", &["crds"]),
                ("crds", &[])
            ])
            .unwrap(),
            ["monitoring", "crds", "platform", "apps"]
        );
        assert_eq!(order(&[("b", &[]), ("a", &[])]).unwrap(), ["b", "a"]);
        assert_eq!(order(&[]).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn unknown_self_and_twice_are_named() {
        let e = order(&[("web", &["plaform"]), ("platform", &[])])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "source \"web\": depends_on names \"plaform\", which is not a source; the sources are \"web\", \"platform\""
        );
        let e = order(&[("web", &["web"])]).unwrap_err().to_string();
        assert!(
            e.contains("source \"web\": depends_on names the source itself"),
            "{e}"
        );
        let e = order(&[("web", &["db", "db"]), ("db", &[])])
            .unwrap_err()
            .to_string();
        assert!(e.contains("names \"db\" twice"), "{e}");
    }

    #[test]
    fn cycles_are_named_whole() {
        let e = order(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"]), ("d", &[])]).unwrap_err();
        assert_eq!(
            e,
            DependsError::Cycle {
                cycle: vec!["a".into(), "b".into(), "c".into(), "a".into()]
            }
        );
        assert!(e.to_string().contains("a -> b -> c -> a"), "{e}");
        // A cycle reached from a source outside it names only the loop.
        let e = order(&[("x", &["a"]), ("a", &["b"]), ("b", &["a"])]).unwrap_err();
        assert_eq!(
            e,
            DependsError::Cycle {
                cycle: vec!["a".into(), "b".into(), "a".into()]
            }
        );
    }

    fn state(
        ready: bool,
        applied: Option<&str>,
        latest: Option<&str>,
        healthy: bool,
    ) -> DependencyState {
        DependencyState {
            ready,
            applied: applied.map(String::from),
            latest: latest.map(String::from),
            healthy,
        }
    }

    #[test]
    fn ready_only_when_every_dependency_is_ready_at_its_latest_revision() {
        let deps = vec!["platform".to_string(), "crds".to_string()];
        let apps = Dependent {
            name: "apps",
            depends_on: &deps,
        };
        let mut states = BTreeMap::new();
        states.insert(
            "platform".to_string(),
            state(true, Some("aaa"), Some("aaa"), true),
        );
        states.insert("crds".to_string(), state(true, Some("bbb"), None, true));
        assert_eq!(ready_to_apply(&apps, &states), Ok(()));

        let cases = [
            (
                state(false, Some("aaa"), Some("aaa"), true),
                Blocker::NotReady,
            ),
            (
                state(true, None, Some("aaa"), true),
                Blocker::NothingApplied,
            ),
            (
                state(true, Some("aaa"), Some("ccc"), true),
                Blocker::Behind {
                    applied: "aaa".into(),
                    latest: "ccc".into(),
                },
            ),
            (
                state(true, Some("aaa"), Some("aaa"), false),
                Blocker::Unhealthy,
            ),
        ];
        for (s, blocker) in cases {
            states.insert("platform".to_string(), s);
            assert_eq!(
                ready_to_apply(&apps, &states),
                Err(Waiting {
                    on: vec![("platform".into(), blocker)]
                })
            );
        }
        states.remove("platform");
        states.insert("crds".to_string(), state(false, None, None, false));
        let waiting = ready_to_apply(&apps, &states).unwrap_err();
        assert_eq!(
            waiting.to_string(),
            "waiting for \"platform\" (no status yet), \"crds\" (not Ready)"
        );
        let alone = Dependent {
            name: "alone",
            depends_on: &[],
        };
        assert_eq!(ready_to_apply(&alone, &BTreeMap::new()), Ok(()));
    }

    #[test]
    fn behind_shows_short_revisions() {
        let b = Blocker::Behind {
            applied: "0123456789abcdef0123".into(),
            latest: "fedcba9876543210fedc".into(),
        };
        assert_eq!(
            b.to_string(),
            "applied 0123456789ab but its ref is at fedcba987654"
        );
    }
}
