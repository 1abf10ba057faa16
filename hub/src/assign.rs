//! Which assignment an agent gets: the `[[assignment]]` tables of the config, each an
//! `outpost.assignment/v1` body with the agents it applies to (ids, or `"*"` for all).
//!
//! Rule: among the tables that name the agent or `"*"`, the highest generation wins; at equal generations a
//! table naming the agent wins over `"*"`. Two tables with the same generation that could both win for one
//! agent are refused when the config loads ([`Assignments::new`]), because an agent keeps the first
//! "generation N" it sees and would never take the other.

use outpost_proto::wire::Assignment;

/// One `[[assignment]]` table.
#[derive(Debug, Clone)]
pub struct AssignmentRule {
    /// Agent ids, or `"*"` for every agent.
    pub agents: Vec<String>,
    pub assignment: Assignment,
}

impl AssignmentRule {
    fn names(&self, agent_id: &str) -> bool {
        self.agents.iter().any(|a| a == agent_id)
    }

    fn is_wildcard(&self) -> bool {
        self.agents.iter().any(|a| a == "*")
    }
}

/// Two tables (by index) with the same generation that both apply to `clash`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("= {generation} is also the generation of assignment[{first}], and both apply to {clash}; give each a different generation (agents accept only a higher one)")]
pub struct Ambiguity {
    pub first: usize,
    pub second: usize,
    pub generation: u64,
    /// `agent "id"` or `"*"`.
    pub clash: String,
}

/// The config's assignment tables, in file order.
#[derive(Debug, Clone, Default)]
pub struct Assignments {
    rules: Vec<AssignmentRule>,
}

impl Assignments {
    /// Checks that no agent can match two tables of the same generation.
    pub fn new(rules: Vec<AssignmentRule>) -> Result<Assignments, Ambiguity> {
        for (first, a) in rules.iter().enumerate() {
            for (second, b) in rules.iter().enumerate().skip(first + 1) {
                if a.assignment.generation != b.assignment.generation {
                    continue;
                }
                let shared = a.agents.iter().find(|id| *id != "*" && b.names(id));
                let clash = match shared {
                    Some(id) => format!("agent {id:?}"),
                    None if a.is_wildcard() && b.is_wildcard() => "\"*\"".to_owned(),
                    None => continue,
                };
                return Err(Ambiguity {
                    first,
                    second,
                    generation: b.assignment.generation,
                    clash,
                });
            }
        }
        Ok(Assignments { rules })
    }

    /// The assignment for `agent_id`, if any table applies to it (see the module comment for the rule).
    pub fn for_agent(&self, agent_id: &str) -> Option<&Assignment> {
        self.rules
            .iter()
            .filter_map(|rule| {
                let explicit = if rule.names(agent_id) {
                    1
                } else if rule.is_wildcard() {
                    0
                } else {
                    return None;
                };
                Some((rule.assignment.generation, explicit, &rule.assignment))
            })
            .max_by_key(|(generation, explicit, _)| (*generation, *explicit))
            .map(|(_, _, assignment)| assignment)
    }

    pub fn rules(&self) -> &[AssignmentRule] {
        &self.rules
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(agents: &[&str], generation: u64) -> AssignmentRule {
        AssignmentRule {
            agents: agents.iter().map(|a| (*a).to_owned()).collect(),
            assignment: Assignment::new(generation, Vec::new()),
        }
    }

    #[test]
    fn highest_generation_then_explicit_over_wildcard() -> Result<(), Ambiguity> {
        let assignments = Assignments::new(vec![
            rule(&["*"], 3),
            rule(&["a"], 3),
            rule(&["b"], 2),
            rule(&["c", "d"], 5),
        ])?;
        let generation = |id: &str| assignments.for_agent(id).map(|a| a.generation);
        assert_eq!(generation("b"), Some(3));
        assert_eq!(generation("c"), Some(5));
        assert_eq!(generation("zzz"), Some(3));
        let explicit = assignments
            .for_agent("a")
            .map(|a| std::ptr::eq(a, &assignments.rules()[1].assignment));
        assert_eq!(explicit, Some(true));
        assert!(Assignments::default().for_agent("a").is_none());
        Ok(())
    }

    #[test]
    fn same_generation_for_one_agent_is_refused() {
        let clash =
            Assignments::new(vec![rule(&["a", "b"], 4), rule(&["c"], 4), rule(&["b"], 4)]).err();
        assert_eq!(
            clash.map(|c| (c.first, c.second, c.clash)),
            Some((0, 2, "agent \"b\"".to_owned()))
        );
        assert!(Assignments::new(vec![rule(&["*"], 1), rule(&["*"], 1)]).is_err());
        assert!(Assignments::new(vec![rule(&["*"], 1), rule(&["a"], 1)]).is_ok());
    }
}
