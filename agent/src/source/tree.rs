//! Reading the manifests of one revision straight from the cache repository's object store: no checkout, so
//! nothing on disk can be half-written and a symlink is data, never a path we follow.

use super::SourceError;
use crate::config::Limits;
use crate::revision::{
    Entry, KustomizationInput, ManifestFile, Manifests, RepoFiles, KUSTOMIZATION_NAMES,
};

/// What is wrong with a revision's tree (the source's error names the revision).
#[derive(Debug, thiserror::Error)]
pub enum TreeProblem {
    #[error("tree entry {name:?} has {why}, which `git fsck` flags and `git checkout` refuses; this commit was crafted or corrupted: fix the repository (git fsck lists it) and push a new commit")]
    BadName { name: String, why: &'static str },
    #[error("in folder {dir:?}: {problem}")]
    InFolder {
        dir: String,
        problem: Box<TreeProblem>,
    },
    #[error("{dir:?} is nested more than {MAX_DEPTH} folders deep")]
    TooDeep { dir: String },
    #[error("the repository has more than {max} files, too many to build a kustomization from; raise [agent] max_objects if this is intended")]
    TooManyFiles { max: usize },
    #[error("the repository holds more than {budget} bytes of files, and a kustomize build reads the whole revision; move large files to another repository, or raise [agent] max_file_size (the budget is 16 times it)")]
    TooManyBytes { budget: u64 },
    #[error("{0}")]
    Git(#[source] Box<dyn std::error::Error + Send + Sync>),
}

fn git_problem(e: impl std::error::Error + Send + Sync + 'static) -> TreeProblem {
    TreeProblem::Git(Box::new(e))
}

fn in_folder(dir: &str) -> impl Fn(TreeProblem) -> TreeProblem + '_ {
    move |problem| TreeProblem::InFolder {
        dir: dir.to_string(),
        problem: Box::new(problem),
    }
}

/// A tree deeper than this is not a manifest folder; stop before it costs memory.
const MAX_DEPTH: usize = 64;

/// Refuses a tree entry name that Git itself would never check out (`git fsck` flags these): `.`, `..`, `.git`
/// in any case, an empty name, or one holding `/` or NUL. Such a name only comes from a crafted tree, and joined
/// into a path it would step out of the source's folder (`../evil.yaml`) or pose as repository metadata.
fn check_name(name: &[u8]) -> Result<(), TreeProblem> {
    let why = if name.is_empty() {
        "an empty name"
    } else if name == b"." || name == b".." {
        "a name that points at a folder itself"
    } else if name.eq_ignore_ascii_case(b".git") {
        "the name of Git's own metadata folder"
    } else if name.contains(&b'/') || name.contains(&0) {
        "a name holding '/' or NUL"
    } else {
        return Ok(());
    };
    Err(TreeProblem::BadName {
        name: String::from_utf8_lossy(name).into_owned(),
        why,
    })
}

pub fn is_manifest(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".yaml") || lower.ends_with(".yml") || lower.ends_with(".json")
}

/// Collects every `*.yaml`, `*.yml` and `*.json` under `path` at `commit`.
pub fn read(
    repo: &gix::Repository,
    commit: &str,
    path: &str,
    limits: &Limits,
) -> Result<Manifests, SourceError> {
    let bad = |message: String| SourceError::Tree {
        revision: commit.to_string(),
        message,
    };
    let git = |e: &dyn std::fmt::Display| bad(e.to_string());
    let id = gix::ObjectId::from_hex(commit.as_bytes()).map_err(|e| git(&e))?;
    let root = repo
        .find_commit(id)
        .map_err(|e| git(&e))?
        .tree()
        .map_err(|e| git(&e))?;
    let top = if path.is_empty() {
        root
    } else {
        let entry = root
            .lookup_entry_by_path(path)
            .map_err(|e| git(&e))?
            .ok_or_else(|| bad(format!("path {path:?} does not exist in this revision; check the source's path setting")))?;
        if !entry.mode().is_tree() {
            return Err(bad(format!("path {path:?} is a file, not a folder; point path at the folder holding the manifests")));
        }
        entry.object().map_err(|e| git(&e))?.into_tree()
    };

    let mut out = Manifests::default();
    let has_kustomization = top.iter().any(|e| {
        e.ok()
            .is_some_and(|e| KUSTOMIZATION_NAMES.contains(&e.filename().to_string().as_str()))
    });
    if has_kustomization {
        let root_id = repo
            .find_commit(id)
            .map_err(|e| git(&e))?
            .tree_id()
            .map_err(|e| git(&e))?
            .detach();
        let files = read_repository(repo, root_id, limits).map_err(|p| bad(p.to_string()))?;
        out.kustomization = Some(KustomizationInput {
            files,
            root: path.to_string(),
        });
        return Ok(out);
    }
    // (tree id, path of that tree relative to the repository root, depth)
    let mut stack = vec![(top.id, path.to_string(), 0usize)];
    while let Some((tree_id, dir, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err(bad(format!(
                "{dir:?} is nested more than {MAX_DEPTH} folders deep"
            )));
        }
        let tree = repo.find_tree(tree_id).map_err(|e| git(&e))?;
        for entry in tree.iter() {
            let entry = entry.map_err(|e| git(&e))?;
            check_name(entry.filename()).map_err(|p| bad(in_folder(&dir)(p).to_string()))?;
            let name = entry.filename().to_string();
            let full = if dir.is_empty() {
                name.clone()
            } else {
                format!("{dir}/{name}")
            };
            let mode = entry.mode();
            if KUSTOMIZATION_NAMES.contains(&name.as_str()) {
                return Err(bad(format!(
                    "{full}: a kustomization below the source's path; point path at its folder (a kustomization is built only at the top of path, and its folder is never applied as plain files)"
                )));
            }
            if mode.is_tree() {
                stack.push((entry.oid().to_owned(), full, depth + 1));
            } else if mode.is_link() {
                let target = repo
                    .find_blob(entry.oid())
                    .map_err(|e| git(&e))?
                    .data
                    .clone();
                let target = String::from_utf8_lossy(&target).to_string();
                if escapes(path, &dir, &target) {
                    return Err(bad(format!(
                        "{full} is a symlink to {target:?}, outside the source's path; symlinks are never followed: replace it with the file itself"
                    )));
                }
                out.warnings.push(format!(
                    "{full}: symlink to {target:?} skipped (symlinks are never followed)"
                ));
            } else if mode.is_commit() {
                out.warnings.push(format!("{full}: submodule skipped"));
            } else if mode.is_blob() && is_manifest(&name) {
                let header = repo.find_header(entry.oid()).map_err(|e| git(&e))?;
                if header.size() > limits.max_file_size {
                    return Err(bad(format!(
                        "{full} is {} bytes, over the {} byte limit; split it, or raise [agent] max_file_size",
                        header.size(),
                        limits.max_file_size
                    )));
                }
                let blob = repo.find_blob(entry.oid()).map_err(|e| git(&e))?;
                out.files.push(ManifestFile {
                    path: full,
                    content: blob.data.clone(),
                });
                if out.files.len() > limits.max_objects {
                    return Err(bad(format!(
                        "more than {} manifest files under {path:?}; raise [agent] max_objects if this is intended",
                        limits.max_objects
                    )));
                }
            }
        }
    }
    out.files
        .sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    Ok(out)
}

/// Every file of the revision, for a kustomize build: kustomizations may refer anywhere in their repository.
/// Contents over the size limit are recorded by size only; symlinks by target only. The whole read is bounded
/// too (16 times the file size limit) so that a large repository cannot exhaust an edge box's memory.
fn read_repository(
    repo: &gix::Repository,
    root: gix::ObjectId,
    limits: &Limits,
) -> Result<RepoFiles, TreeProblem> {
    let mut files = RepoFiles::new(limits);
    let mut stack = vec![(root, String::new(), 0usize)];
    let mut count = 0usize;
    let mut total = 0u64;
    let budget = limits.max_file_size.saturating_mul(16);
    while let Some((tree_id, dir, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err(TreeProblem::TooDeep { dir });
        }
        let tree = repo.find_tree(tree_id).map_err(git_problem)?;
        for entry in tree.iter() {
            let entry = entry.map_err(git_problem)?;
            check_name(entry.filename()).map_err(in_folder(&dir))?;
            let name = entry.filename().to_string();
            let full = if dir.is_empty() {
                name
            } else {
                format!("{dir}/{name}")
            };
            let mode = entry.mode();
            if mode.is_tree() {
                files.insert(&full, Entry::Dir);
                stack.push((entry.oid().to_owned(), full, depth + 1));
                continue;
            }
            count += 1;
            if count > limits.max_objects {
                return Err(TreeProblem::TooManyFiles {
                    max: limits.max_objects,
                });
            }
            if mode.is_link() {
                let target = repo.find_blob(entry.oid()).map_err(git_problem)?;
                files.insert(
                    &full,
                    Entry::Link(String::from_utf8_lossy(&target.data).to_string()),
                );
            } else if mode.is_blob() {
                let header = repo.find_header(entry.oid()).map_err(git_problem)?;
                if header.size() > limits.max_file_size {
                    files.insert(&full, Entry::TooBig(header.size()));
                } else {
                    total += header.size();
                    if total > budget {
                        return Err(TreeProblem::TooManyBytes { budget });
                    }
                    let blob = repo.find_blob(entry.oid()).map_err(git_problem)?;
                    files.insert(&full, Entry::File(blob.data.clone()));
                }
            }
        }
    }
    Ok(files)
}

/// Resolves a symlink target lexically from the link's folder and tells whether it leaves `root`.
fn escapes(root: &str, link_dir: &str, target: &str) -> bool {
    if target.starts_with('/') {
        return true;
    }
    let mut parts: Vec<&str> = link_dir.split('/').filter(|p| !p.is_empty()).collect();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return true;
                }
            }
            p => parts.push(p),
        }
    }
    let resolved = parts.join("/");
    !(root.is_empty() || resolved == root || resolved.starts_with(&format!("{root}/")))
}

#[cfg(test)]
mod tests {
    use super::escapes;

    #[test]
    fn symlink_escape_is_detected_lexically() {
        assert!(escapes("apps", "apps", "../secrets.yaml"));
        assert!(escapes("apps", "apps/a", "/etc/passwd"));
        assert!(escapes("", "", "../../etc/passwd"));
        assert!(!escapes("apps", "apps/a", "../b/x.yaml"));
        assert!(!escapes("", "x", "../y.yaml"));
        assert!(escapes("apps", "apps/a", "../../other/x.yaml"));
    }

    #[test]
    fn names_git_refuses_are_refused() {
        for name in [&b".."[..], b".", b".git", b".GiT", b"", b"a/b", b"a\0b"] {
            assert!(super::check_name(name).is_err(), "{name:?}");
        }
        for name in [
            &b"..yaml"[..],
            b".gitignore",
            b"app.yaml",
            b"...",
            b".git.yaml",
        ] {
            assert!(super::check_name(name).is_ok(), "{name:?}");
        }
    }

    #[test]
    fn manifest_extensions() {
        assert!(
            super::is_manifest("a.yaml")
                && super::is_manifest("B.YML")
                && super::is_manifest("c.json")
        );
        assert!(!super::is_manifest("README.md") && !super::is_manifest("yaml"));
    }
}
