//! The directory target: one multi-document YAML file per source, `<dir>/<source>.yaml`, for auto-deploy folders
//! such as k3s's `/var/lib/rancher/k3s/server/manifests`.
//!
//! The file is replaced atomically and only when its content would change, so an unchanged poll writes nothing
//! and a hand-edited or deleted file is restored on the next cycle. A file is only ever removed when its first
//! line says we wrote it for that source.

use std::path::{Path, PathBuf};

use super::{apply_policy, mark_owned, Applied, TargetError};
use crate::build::Bundle;
use crate::fsutil;

pub struct DirectoryTarget {
    dir: PathBuf,
    /// What we last wrote or verified per source: (revision, digest, file fingerprint). While the file's
    /// fingerprint is unchanged, an unchanged poll need not render and compare the whole bundle.
    verified: std::sync::Mutex<std::collections::HashMap<String, (String, String, Fingerprint)>>,
}

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

impl DirectoryTarget {
    pub fn new(dir: PathBuf) -> DirectoryTarget {
        DirectoryTarget {
            dir,
            verified: Default::default(),
        }
    }

    pub fn file_for(&self, source: &str) -> PathBuf {
        self.dir.join(format!("{source}.yaml"))
    }

    pub async fn apply(
        &self,
        source: &str,
        revision: &str,
        bundle: &Bundle,
    ) -> Result<Applied, TargetError> {
        let path = self.file_for(source);
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
        if let Some((rev, digest, print)) = known {
            if rev == revision
                && digest == bundle.digest
                && fingerprint(&path).as_ref() == Some(&print)
            {
                return Ok(Applied {
                    object_count,
                    changed: false,
                    ..Applied::default()
                });
            }
        }
        let contents = render(source, revision, bundle).map_err(|m| self.error(m))?;
        let dir = self.dir.clone();
        let result =
            tokio::task::spawn_blocking(move || -> std::io::Result<(bool, Option<Fingerprint>)> {
                if std::fs::read(&path).is_ok_and(|old| old == contents.as_bytes()) {
                    return Ok((false, fingerprint(&path)));
                }
                std::fs::create_dir_all(&dir)?;
                fsutil::write_atomic(&path, contents.as_bytes())?;
                Ok((true, fingerprint(&path)))
            })
            .await
            .map_err(|e| self.error(e.to_string()))?;
        let (changed, print) = result.map_err(|e| self.error(format!("cannot write {source}.yaml: {e}; check that the folder exists, is writable by the agent, and the disk has space")))?;
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        match print {
            Some(print) => verified.insert(
                source.to_string(),
                (revision.to_string(), bundle.digest.clone(), print),
            ),
            None => verified.remove(source),
        };
        Ok(Applied {
            object_count,
            changed,
            ..Applied::default()
        })
    }

    /// The file is the one we last wrote or verified for this revision: same inode, size and mtime.
    pub fn is_intact(&self, source: &str, revision: &str) -> bool {
        let verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        match verified.get(source) {
            Some((rev, _, print)) => {
                rev == revision && fingerprint(&self.file_for(source)).as_ref() == Some(print)
            }
            None => false,
        }
    }

    pub async fn remove(&self, source: &str) -> Result<bool, TargetError> {
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(source);
        let path = self.file_for(source);
        let owned = header_line(source);
        let result = tokio::task::spawn_blocking(move || -> std::io::Result<bool> {
            match std::fs::read_to_string(&path) {
                Ok(text) if text.starts_with(&owned) => {
                    fsutil::remove_durably(&path)?;
                    Ok(true)
                }
                Ok(_) => {
                    tracing::warn!(file = %path.display(), "not removing a file that outpost did not write");
                    Ok(false)
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(e),
            }
        })
        .await
        .map_err(|e| self.error(e.to_string()))?;
        result.map_err(|e| self.error(format!("cannot remove {source}.yaml: {e}")))
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

fn header_line(source: &str) -> String {
    format!("# Managed by outpost: source \"{source}\"")
}

/// The file's text: a header naming source, revision and digest, then one YAML document per object.
pub fn render(source: &str, revision: &str, bundle: &Bundle) -> Result<String, String> {
    let mut out = format!(
        "{}, revision {revision}, {}\n# Do not edit: outpost replaces this file on every sync.\n",
        header_line(source),
        bundle.digest
    );
    for object in bundle
        .objects
        .iter()
        .filter(|o| apply_policy(o) != Some("ignore"))
    {
        let owned = mark_owned(object, source, revision);
        let yaml = serde_yaml_ng::to_string(&owned)
            .map_err(|e| format!("cannot write an object as YAML: {e}"))?;
        out.push_str("---\n");
        out.push_str(&yaml);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bundle() -> Bundle {
        Bundle::new(vec![
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "annotations": {"outpost.dev/apply": "ignore"}}}),
        ])
    }

    #[tokio::test]
    async fn writes_once_restores_edits_and_removes_only_its_own_file() {
        let dir = tempfile::tempdir().unwrap();
        let t = DirectoryTarget::new(dir.path().join("manifests"));
        let applied = t.apply("web", "abc", &bundle()).await.unwrap();
        assert_eq!(
            applied,
            Applied {
                object_count: 1,
                changed: true,
                ..Applied::default()
            }
        );
        let text = std::fs::read_to_string(t.file_for("web")).unwrap();
        assert!(text.starts_with("# Managed by outpost: source \"web\", revision abc, sha256:"));
        let docs: Vec<serde_json::Value> = serde_yaml_ng::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
        assert_eq!(docs.len(), 1, "the ignored Secret is not written");
        assert_eq!(docs[0]["metadata"]["labels"]["outpost.dev/source"], "web");
        assert_eq!(
            docs[0]["metadata"]["annotations"]["outpost.dev/revision"],
            "abc"
        );

        assert!(
            !t.apply("web", "abc", &bundle()).await.unwrap().changed,
            "same content: nothing written"
        );
        assert!(t.is_intact("web", "abc"));
        assert!(!t.is_intact("web", "other-revision"));
        std::fs::write(t.file_for("web"), "edited by hand").unwrap();
        assert!(
            !t.is_intact("web", "abc"),
            "an edit is seen without reading the file"
        );
        assert!(
            t.apply("web", "abc", &bundle()).await.unwrap().changed,
            "drift is corrected"
        );
        assert_eq!(std::fs::read_to_string(t.file_for("web")).unwrap(), text);

        std::fs::write(t.file_for("other"), "kind: ConfigMap\n").unwrap();
        assert!(!t.remove("other").await.unwrap(), "not ours");
        assert!(t.file_for("other").exists());
        assert!(t.remove("web").await.unwrap());
        assert!(!t.file_for("web").exists());
    }

    #[tokio::test]
    async fn unwritable_folder_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "x").unwrap();
        let err = DirectoryTarget::new(file)
            .apply("web", "abc", &bundle())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("cannot write web.yaml"), "{err}");
    }
}
