//! A read-only view of one revision's repository files, as the kustomize build sees them.
//!
//! Kustomizations reach across the repository (`../../base`), so the build needs more than the files under a
//! source's path; but it must never reach outside the repository, never follow a symlink, and never read a file
//! over the size limit. Paths are repository-relative, `/`-separated, and resolved lexically.

use std::collections::BTreeMap;
use std::path::Path;

use crate::config::Limits;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    File(Vec<u8>),
    /// Over `max_file_size`: recorded so that using it gives a precise error, not "missing".
    TooBig(u64),
    /// A file that cannot be used as written (a SOPS file that does not decrypt), with the reason: an error only
    /// if the build reads it, since a repository may hold secrets meant for other sites.
    Refused(String),
    Link(String),
    Dir,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoFiles {
    entries: BTreeMap<String, Entry>,
    max_file_size: u64,
}

impl RepoFiles {
    pub fn new(limits: &Limits) -> RepoFiles {
        let mut entries = BTreeMap::new();
        entries.insert(String::new(), Entry::Dir);
        RepoFiles {
            entries,
            max_file_size: limits.max_file_size,
        }
    }

    pub fn max_file_size(&self) -> u64 {
        self.max_file_size
    }

    /// Records an entry and the folders that lead to it.
    pub fn insert(&mut self, path: &str, entry: Entry) {
        let mut dir = path;
        while let Some((parent, _)) = dir.rsplit_once('/') {
            self.entries.insert(parent.to_string(), Entry::Dir);
            dir = parent;
        }
        self.entries.insert(path.to_string(), entry);
    }

    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.get(path)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.len() <= 1
    }

    /// Every entry with its path, for a stage that rewrites file contents in place (SOPS decryption).
    pub fn entries_mut(&mut self) -> impl Iterator<Item = (&str, &mut Entry)> {
        self.entries.iter_mut().map(|(k, e)| (k.as_str(), e))
    }

    /// Direct children of a folder, in byte order.
    pub fn children(&self, dir: &str) -> Vec<(&str, &Entry)> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        self.entries
            .range(prefix.clone()..)
            .skip_while(|(k, _)| k.is_empty() && !prefix.is_empty())
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| !k.is_empty() && !k[prefix.len()..].contains('/'))
            .map(|(k, e)| (k.as_str(), e))
            .collect()
    }

    /// Loads a folder from disk (tests, benchmarks, and checking an overlay locally). Symlinks are recorded as
    /// links, never followed.
    pub fn from_dir(root: &Path, limits: &Limits) -> std::io::Result<RepoFiles> {
        let mut files = RepoFiles::new(limits);
        let mut stack = vec![(root.to_path_buf(), String::new())];
        while let Some((dir, rel)) = stack.pop() {
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().to_string();
                let path = if rel.is_empty() {
                    name.clone()
                } else {
                    format!("{rel}/{name}")
                };
                let kind = entry.file_type()?;
                if kind.is_symlink() {
                    let target = std::fs::read_link(entry.path())?;
                    files.insert(&path, Entry::Link(target.to_string_lossy().to_string()));
                } else if kind.is_dir() {
                    files.insert(&path, Entry::Dir);
                    stack.push((entry.path(), path));
                } else {
                    let size = entry.metadata()?.len();
                    if size > limits.max_file_size {
                        files.insert(&path, Entry::TooBig(size));
                    } else {
                        files.insert(&path, Entry::File(std::fs::read(entry.path())?));
                    }
                }
            }
        }
        Ok(files)
    }
}

/// Joins a relative reference onto a folder, lexically. `None` when the result leaves the repository (or the
/// reference is absolute): the caller turns that into an error naming the kustomization.
pub fn join(dir: &str, reference: &str) -> Option<String> {
    if reference.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for part in reference.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// The last component of a path.
pub fn base_name(path: &str) -> &str {
    path.rsplit_once('/').map(|(_, b)| b).unwrap_or(path)
}
