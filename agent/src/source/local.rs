//! `file://` sources, read in-process. gix's file transport runs `git upload-pack` as a child process, and a
//! scratch image or an empty chroot has no `git` to run. The repository is on this machine anyway, so its refs
//! and objects are read where they are, and no cache copy is made: the last good revision lives in the store,
//! so a repository that later disappears costs nothing already applied.

use std::path::PathBuf;

use super::refs::ListedRef;
use super::SourceError;
use crate::redact;

/// A repository named by a `file://` URL.
pub struct LocalRepo {
    path: PathBuf,
    url: String,
    source_name: String,
}

impl LocalRepo {
    /// `Some` for `file://` URLs; the path is taken the way gix takes it for its own transport.
    pub fn for_url(url: &str, source_name: &str) -> Option<LocalRepo> {
        if !url.starts_with("file://") {
            return None;
        }
        let parsed = gix::url::parse(url.as_bytes()).ok()?;
        let path = gix::path::from_bstring(parsed.path).ok()?;
        Some(LocalRepo {
            path,
            url: url.to_string(),
            source_name: source_name.to_string(),
        })
    }

    /// Opens the repository ignoring every git config outside it, like the cache: the agent must behave the same
    /// on every box, whoever owns the repository.
    pub fn open(&self) -> Result<gix::Repository, SourceError> {
        gix::open_opts(&self.path, gix::open::Options::isolated()).map_err(|e| {
            self.error(format!(
                "{} is not a readable Git repository ({e}); check the url, and that the agent's user may read it",
                self.path.display()
            ))
        })
    }

    /// The refs matching `ref_name` (a full ref, or a prefix ending in `*`), each peeled to its commit. Refs that
    /// do not lead to a commit (a tag of a tree) cannot be applied and are left out.
    pub fn list(&self, ref_name: &str) -> Result<Vec<ListedRef>, SourceError> {
        let repo = self.open()?;
        let mut found = Vec::new();
        match ref_name.strip_suffix('*') {
            Some(prefix) => {
                let platform = repo.references().map_err(|e| self.error(e))?;
                let refs = platform
                    .prefixed(prefix.as_bytes())
                    .map_err(|e| self.error(e))?;
                for r in refs {
                    found.extend(r.ok());
                }
            }
            None => found.extend(
                repo.try_find_reference(ref_name)
                    .map_err(|e| self.error(e))?,
            ),
        }
        Ok(found
            .into_iter()
            .filter_map(|mut r| {
                let name = r.name().as_bstr().to_string();
                let target = r.target().try_id().map(|id| id.to_string());
                let commit = r.peel_to_commit().ok()?.id.to_string();
                // A ref that had to be peeled to reach its commit points at an annotated tag object.
                let tag_object = target.filter(|t| *t != commit);
                Some(ListedRef {
                    name,
                    commit,
                    tag_object,
                })
            })
            .collect())
    }

    /// What a fetch would bring: the commit `ref_name` leads to now, or the pinned commit itself when it exists.
    pub fn resolve(&self, ref_name: &str) -> Result<String, SourceError> {
        let repo = self.open()?;
        if let Ok(id) = gix::ObjectId::from_hex(ref_name.as_bytes()) {
            return match repo.find_commit(id) {
                Ok(_) => Ok(id.to_string()),
                Err(_) => Err(self.error(format!(
                    "commit {ref_name} is not in the repository; check the source's commit setting"
                ))),
            };
        }
        let mut reference = repo
            .find_reference(ref_name)
            .map_err(|e| self.error(format!("{ref_name}: {e}")))?;
        let commit = reference
            .peel_to_commit()
            .map_err(|e| self.error(format!("{ref_name} does not lead to a commit: {e}")))?;
        Ok(commit.id.to_string())
    }

    pub fn has_commit(&self, commit: &str) -> bool {
        let Ok(id) = gix::ObjectId::from_hex(commit.as_bytes()) else {
            return false;
        };
        self.open().is_ok_and(|repo| repo.find_commit(id).is_ok())
    }

    fn error(&self, e: impl std::fmt::Display) -> SourceError {
        SourceError::Remote {
            source_name: self.source_name.clone(),
            url: redact::url(&self.url),
            message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_file_urls_are_local_and_their_path_is_the_one_gix_transports_use() {
        assert!(LocalRepo::for_url("https://example.com/x.git", "x").is_none());
        assert!(LocalRepo::for_url("/srv/x.git", "x").is_none());
        let local = LocalRepo::for_url("file:///srv/git/site-a.git", "x").expect("file URL");
        assert_eq!(local.path, PathBuf::from("/srv/git/site-a.git"));
    }

    #[test]
    fn a_missing_repository_is_named_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/nothing.git", dir.path().display());
        let err = LocalRepo::for_url(&url, "x")
            .unwrap()
            .list("refs/heads/main");
        let text = err.unwrap_err().to_string();
        assert!(
            text.contains("nothing.git") && text.contains("check the url"),
            "{text}"
        );
    }
}
