//! The directory target: the bundle as one multi-document YAML file per source, for the folders that an
//! auto-deploy controller reads: k3s's `/var/lib/rancher/k3s/server/manifests`, RKE2's
//! `/var/lib/rancher/rke2/server/manifests` (`<dir>/<source>.yaml`), or one MicroShift `manifests.d` folder per
//! source with `layout = "kustomization"` (`<dir>/<source>/<source>.yaml` beside a `kustomization.yaml` naming it).
//!
//! The YAML is written by [`emit`], so those controllers (YAML 1.1 readers) get back exactly the strings, numbers
//! and booleans of the repository. Objects come in the Kubernetes target's stage order (Namespaces and CRDs, then
//! the kind order), since a controller that applies a file top to bottom must find a Namespace before what goes in
//! it; within a kind they keep the bundle's order.
//!
//! Files are replaced atomically and only when their content would change, so an unchanged poll writes nothing
//! and a hand-edited or deleted file is restored on the next cycle. A file is only ever removed when its first
//! line says we wrote it for that source.

pub mod emit;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::kube::plan;
use super::{apply_policy, mark_owned, Applied, TargetError};
use crate::bundle::Bundle;
use crate::config::DirectoryLayout;
use crate::fsutil;

pub struct DirectoryTarget {
    dir: PathBuf,
    layout: DirectoryLayout,
    /// What we last wrote or verified per source. While the files are unchanged, an unchanged poll need not
    /// render and compare the whole bundle.
    verified: std::sync::Mutex<std::collections::HashMap<String, Verified>>,
}

#[derive(Debug, Clone)]
struct Verified {
    revision: String,
    digest: String,
    /// Of the layout's files, in [`layout_files`] order.
    prints: Vec<Fingerprint>,
}

/// A file that could not be written, read or removed (the verb), and why.
type FileError = (PathBuf, &'static str, std::io::Error);

/// Identity and last change of a file; any edit, replacement or deletion changes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

fn fingerprint(path: &Path) -> Option<Fingerprint> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Fingerprint {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
    })
}

/// Fingerprints of all `paths`, or `None` when one is missing.
fn fingerprints(paths: &[PathBuf]) -> Option<Vec<Fingerprint>> {
    paths.iter().map(|p| fingerprint(p)).collect()
}

/// The files a source has in one layout, in the order they are written: the manifest file first, so that a
/// kustomization never names a file that is not there yet.
fn layout_files(dir: &Path, layout: DirectoryLayout, source: &str) -> Vec<PathBuf> {
    match layout {
        DirectoryLayout::File => vec![dir.join(format!("{source}.yaml"))],
        DirectoryLayout::Kustomization => {
            let folder = dir.join(source);
            vec![
                folder.join(format!("{source}.yaml")),
                folder.join("kustomization.yaml"),
            ]
        }
    }
}

impl DirectoryTarget {
    pub fn new(dir: PathBuf, layout: DirectoryLayout) -> DirectoryTarget {
        DirectoryTarget {
            dir,
            layout,
            verified: Default::default(),
        }
    }

    /// The file holding the source's objects (what `outpost render` prints).
    pub fn file_for(&self, source: &str) -> PathBuf {
        self.files_for(source).swap_remove(0)
    }

    fn files_for(&self, source: &str) -> Vec<PathBuf> {
        layout_files(&self.dir, self.layout, source)
    }

    pub async fn apply(
        &self,
        source: &str,
        revision: &str,
        bundle: &Bundle,
    ) -> Result<Applied, TargetError> {
        let paths = self.files_for(source);
        let object_count = bundle
            .objects
            .iter()
            .filter(|o| apply_policy(o) != Some("ignore"))
            .count();
        let known = self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(source)
            .cloned();
        if let Some(known) = known {
            if known.revision == revision
                && known.digest == bundle.digest
                && fingerprints(&paths).as_ref() == Some(&known.prints)
            {
                return Ok(Applied {
                    object_count,
                    changed: false,
                    ..Applied::default()
                });
            }
        }
        let mut contents = vec![render(source, revision, bundle)];
        if self.layout == DirectoryLayout::Kustomization {
            contents.push(kustomization(source));
        }
        let stale: Vec<PathBuf> = [DirectoryLayout::File, DirectoryLayout::Kustomization]
            .into_iter()
            .filter(|l| *l != self.layout)
            .flat_map(|l| layout_files(&self.dir, l, source))
            .collect();
        let owned = header_line(source);
        let dir = self.dir.clone();
        // An error names the file relative to the folder, as the operator sees it there.
        let result = tokio::task::spawn_blocking(
            move || -> Result<(bool, Option<Vec<Fingerprint>>), FileError> {
                let mut changed = false;
                for (path, text) in paths.iter().zip(&contents) {
                    if std::fs::read(path).is_ok_and(|old| old == text.as_bytes()) {
                        continue;
                    }
                    let write = || {
                        if let Some(parent) = path.parent() {
                            std::fs::create_dir_all(parent)?;
                        }
                        fsutil::write_atomic(path, text.as_bytes())
                    };
                    write().map_err(|e| (path.clone(), "write", e))?;
                    changed = true;
                }
                // After a change of layout, the other layout's copy would deploy the same objects twice.
                changed |= remove_owned(&stale, &owned)?;
                Ok((changed, fingerprints(&paths)))
            },
        )
        .await
        .map_err(|e| self.error(e.to_string()))?;
        let (changed, prints) = result.map_err(|(path, verb, e)| {
            let file = path.strip_prefix(&dir).unwrap_or(&path).display().to_string();
            self.error(format!("cannot {verb} {file}: {e}; check that the folder exists, is writable by the agent, and the disk has space"))
        })?;
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        match prints {
            Some(prints) => verified.insert(
                source.to_string(),
                Verified {
                    revision: revision.to_string(),
                    digest: bundle.digest.clone(),
                    prints,
                },
            ),
            None => verified.remove(source),
        };
        Ok(Applied {
            object_count,
            changed,
            ..Applied::default()
        })
    }

    /// The files are the ones we last wrote or verified for this revision: same inodes, sizes and mtimes.
    pub fn is_intact(&self, source: &str, revision: &str) -> bool {
        let verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        match verified.get(source) {
            Some(known) => {
                known.revision == revision
                    && fingerprints(&self.files_for(source)).as_ref() == Some(&known.prints)
            }
            None => false,
        }
    }

    /// Removes what we wrote for `source` in either layout (a removed source may have been written in the other
    /// one), and its folder once empty; a file without our header for that source stays.
    pub async fn remove(&self, source: &str) -> Result<bool, TargetError> {
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(source);
        let paths: Vec<PathBuf> = [DirectoryLayout::File, DirectoryLayout::Kustomization]
            .into_iter()
            .flat_map(|l| layout_files(&self.dir, l, source))
            .collect();
        let owned = header_line(source);
        let result = tokio::task::spawn_blocking(move || remove_owned(&paths, &owned))
            .await
            .map_err(|e| self.error(e.to_string()))?;
        result.map_err(|(path, verb, e)| {
            let file = path
                .strip_prefix(&self.dir)
                .unwrap_or(&path)
                .display()
                .to_string();
            self.error(format!(
                "cannot {verb} {file}: {e}; check that the agent may read and write in the folder"
            ))
        })
    }

    fn error(&self, message: String) -> TargetError {
        TargetError::Directory {
            dir: self.dir.display().to_string(),
            message,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Removes each of `paths` that starts with `owned`, then a source folder left empty; true if anything went.
fn remove_owned(paths: &[PathBuf], owned: &str) -> Result<bool, FileError> {
    let mut removed = false;
    for path in paths {
        match std::fs::read(path) {
            Ok(text) if text.starts_with(owned.as_bytes()) => {
                fsutil::remove_durably(path).map_err(|e| (path.clone(), "remove", e))?;
                removed = true;
                if path.file_name().is_some_and(|n| n == "kustomization.yaml") {
                    if let Some(folder) = path.parent() {
                        // Only an empty folder goes; anything an operator put beside our files stays.
                        let _ = std::fs::remove_dir(folder);
                    }
                }
            }
            Ok(_) => {
                tracing::warn!(file = %path.display(), "not removing a file that outpost did not write");
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err((path.clone(), "read", e)),
        }
    }
    Ok(removed)
}

fn header_line(source: &str) -> String {
    format!("# Managed by outpost: source \"{source}\"")
}

/// The kustomization MicroShift needs to apply a folder: it names only the source's manifest file. It carries no
/// revision, so it is written once and not on every new commit.
fn kustomization(source: &str) -> String {
    format!(
        "{}\n# Do not edit: outpost replaces this file on every sync.\n{}",
        header_line(source),
        emit::document(&json!({
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [format!("{source}.yaml")],
        }))
    )
}

/// The apply stage and kind rank of an object, as the Kubernetes target orders them; an object without an
/// identity (build refuses those) goes with the custom resources.
fn stage_order(object: &Value) -> (bool, u32) {
    match plan::object_ref(object) {
        Some(r) => (!plan::is_stage_one(&r), plan::kind_rank(&r.kind)),
        None => (true, plan::kind_rank("")),
    }
}

/// The text of the source's manifest file: a header naming source, revision and digest, then one YAML document
/// per object in apply order. `outpost render` prints exactly this.
pub fn render(source: &str, revision: &str, bundle: &Bundle) -> String {
    let mut out = format!(
        "{}, revision {revision}, {}\n# Do not edit: outpost replaces this file on every sync.\n",
        header_line(source),
        bundle.digest
    );
    let mut objects: Vec<&Value> = bundle
        .objects
        .iter()
        .filter(|o| apply_policy(o) != Some("ignore"))
        .collect();
    // A stable sort: objects of one kind keep the order the repository gives them.
    objects.sort_by_key(|o| stage_order(o));
    for object in objects {
        out.push_str("---\n");
        out.push_str(&emit::document(&mark_owned(object, source, revision)));
    }
    out
}

#[cfg(test)]
mod tests;
