//! Turning a configured ref (branch, tag, semver range, commit) into the refspec we ask the remote for, and
//! choosing among the refs it lists. Pure functions: the network side lives in `git.rs`.

use crate::config::GitRef;

/// One ref as the remote listed it, with annotated tags already peeled to the commit they name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedRef {
    pub name: String,
    pub commit: String,
    /// The annotated tag object the ref points at (what a signed tag's signature is in); `None` otherwise.
    pub tag_object: Option<String>,
}

/// The ref prefix to list: exactly the one ref where possible, so the server sends one line.
pub fn remote_ref_name(r: &GitRef) -> Option<String> {
    match r {
        GitRef::Branch(b) => Some(format!("refs/heads/{b}")),
        GitRef::Tag(t) => Some(format!("refs/tags/{t}")),
        GitRef::Semver(_) => Some("refs/tags/*".into()),
        GitRef::Commit(_) => None,
    }
}

/// Parses a tag name as a version; a leading `v` is allowed, anything else that is not semver is skipped.
fn tag_version(tag_ref: &str) -> Option<semver::Version> {
    let tag = tag_ref.strip_prefix("refs/tags/").unwrap_or(tag_ref);
    semver::Version::parse(tag.strip_prefix('v').unwrap_or(tag)).ok()
}

/// The ref the config asks for is not on the remote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Missing {
    #[error("branch {0:?} does not exist on the remote (deleted or misspelled?)")]
    Branch(String),
    #[error("tag {0:?} does not exist on the remote")]
    Tag(String),
    #[error("no tag on the remote matches semver range {0:?}")]
    Semver(String),
}

/// Picks the listed ref the config asks for. `Err` says what is missing, for the operator.
pub fn select(r: &GitRef, listed: &[ListedRef]) -> Result<ListedRef, Missing> {
    match r {
        GitRef::Branch(b) => {
            find(listed, &format!("refs/heads/{b}")).ok_or_else(|| Missing::Branch(b.clone()))
        }
        GitRef::Tag(t) => {
            find(listed, &format!("refs/tags/{t}")).ok_or_else(|| Missing::Tag(t.clone()))
        }
        GitRef::Semver(range) => listed
            .iter()
            .filter_map(|l| tag_version(&l.name).map(|v| (v, l)))
            .filter(|(v, _)| range.matches(v))
            .max_by(|(a, _), (b, _)| a.cmp(b))
            .map(|(_, l)| l.clone())
            .ok_or_else(|| Missing::Semver(range.as_str().to_string())),
        GitRef::Commit(c) => Ok(ListedRef {
            name: c.clone(),
            commit: c.clone(),
            tag_object: None,
        }),
    }
}

fn find(listed: &[ListedRef], name: &str) -> Option<ListedRef> {
    listed.iter().find(|l| l.name == name).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(names: &[&str]) -> Vec<ListedRef> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| ListedRef {
                name: format!("refs/tags/{n}"),
                commit: format!("{i:040}"),
                tag_object: None,
            })
            .collect()
    }

    #[test]
    fn semver_picks_highest_in_range() {
        let listed = tags(&[
            "v1.0.0",
            "v1.2.0",
            "1.9.3",
            "v2.0.0",
            "latest",
            "v1.10.0-rc.1",
        ]);
        let got = select(&semver(">=1.2.0 <2"), &listed).unwrap();
        assert_eq!(got.name, "refs/tags/1.9.3");
        let got = select(&semver(">= 1.0.0, < 1.5"), &listed).unwrap();
        assert_eq!(got.name, "refs/tags/v1.2.0");
        let got = select(&semver("^1.0 || ^2.0"), &listed).unwrap();
        assert_eq!(got.name, "refs/tags/v2.0.0");
        let err = select(&semver(">=3"), &listed).unwrap_err();
        assert!(err.to_string().contains(">=3"), "{err}");
    }

    fn semver(text: &str) -> GitRef {
        GitRef::Semver(crate::config::SemverRange::parse(text).unwrap())
    }

    #[test]
    fn branch_and_tag_lookup() {
        let listed = vec![ListedRef {
            name: "refs/heads/main".into(),
            commit: "a".repeat(40),
            tag_object: None,
        }];
        assert_eq!(
            select(&GitRef::Branch("main".into()), &listed)
                .unwrap()
                .commit,
            "a".repeat(40)
        );
        let err = select(&GitRef::Branch("gone".into()), &listed).unwrap_err();
        assert!(err.to_string().contains("\"gone\" does not exist"), "{err}");
        assert!(select(&GitRef::Tag("v1".into()), &listed).is_err());
    }
}
