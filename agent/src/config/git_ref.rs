//! Which commit a source follows: a branch, a tag, the highest tag in a semver range, or one commit. Parsed
//! here, once, so the source stage only reads the result.

use super::Invalid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitRef {
    Branch(String),
    Tag(String),
    /// A semver range such as `>=1.2.0 <2`: the highest matching tag wins.
    Semver(SemverRange),
    Commit(String),
}

impl std::fmt::Display for GitRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GitRef::Branch(b) => write!(f, "branch {b}"),
            GitRef::Tag(t) => write!(f, "tag {t}"),
            GitRef::Semver(s) => write!(f, "semver {}", s.text),
            GitRef::Commit(c) => write!(f, "commit {c}"),
        }
    }
}

/// A semver range in the form operators know from Flux and npm: comparators separated by spaces or commas,
/// alternatives separated by `||` (e.g. `>=1.2.0 <2`, `~1.4 || ^2.0`). Keeps the text as written, for messages.
#[derive(Debug, Clone)]
pub struct SemverRange {
    text: String,
    alternatives: Vec<semver::VersionReq>,
}

impl PartialEq for SemverRange {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for SemverRange {}

impl SemverRange {
    pub fn parse(text: &str) -> Result<SemverRange, Invalid> {
        let mut alternatives = Vec::new();
        for alt in text.split("||") {
            let comparators: Vec<String> = alt
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|s| !s.is_empty())
                .map(|s| s.strip_prefix('v').unwrap_or(s).to_string())
                .collect();
            if comparators.is_empty() {
                return Err("is empty; write a range such as \">=1.2.0 <2\"".into());
            }
            // The semver crate wants `>= 1.2` written without a gap inside a comparator; join operators that were
            // written apart from their version (`>= 1.2.0`).
            let mut joined: Vec<String> = Vec::new();
            for c in comparators {
                match joined.last_mut() {
                    Some(last) if last.chars().all(|ch| "<>=~^".contains(ch)) => last.push_str(&c),
                    _ => joined.push(c),
                }
            }
            let req = semver::VersionReq::parse(&joined.join(", ")).map_err(|e| {
                Invalid(format!(
                    "is not a semver range ({e}); write e.g. \">=1.2.0 <2\""
                ))
            })?;
            alternatives.push(req);
        }
        Ok(SemverRange {
            text: text.to_string(),
            alternatives,
        })
    }

    /// The range as the operator wrote it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn matches(&self, v: &semver::Version) -> bool {
        self.alternatives.iter().any(|r| r.matches(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_ranges_are_reported() {
        assert!(SemverRange::parse("").is_err());
        assert!(SemverRange::parse("banana").is_err());
        let ok = SemverRange::parse(">= 1.2.0, <2").unwrap();
        assert!(ok.matches(&semver::Version::new(1, 9, 3)));
        assert!(!ok.matches(&semver::Version::new(2, 0, 0)));
    }
}
