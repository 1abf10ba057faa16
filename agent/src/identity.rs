//! The agent's identity: its Ed25519 key, which signs every heartbeat. One state directory is one identity.

use std::path::{Path, PathBuf};

use outpost_proto::keys::{KeyError, Pkcs8Document, PublicKey, SigningKey};

use crate::config::AgentConfig;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "cannot create the state directory {dir}: {source}; create it or set [agent] state_dir"
    )]
    StateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot take the agent key from {file}: {source}; give an unencrypted Ed25519 PKCS#8 key (what `outpost keygen` writes)")]
    Import { file: PathBuf, source: KeyError },
    #[error("cannot read the agent key {file}: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("the agent key {path}: {source}; run `outpost keygen` first, then enroll its public key at the hub")]
    Missing { path: PathBuf, source: KeyError },
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// What `keygen` did, for its output.
pub struct KeyInfo {
    pub public: PublicKey,
    /// "created", "existing key", "imported", ...
    pub action: &'static str,
    pub path: PathBuf,
}

/// Loads the agent's signing key, with an error that says how to make one.
pub fn load_key(agent: &AgentConfig) -> Result<SigningKey, IdentityError> {
    let path = agent.key_path();
    SigningKey::load(&path).map_err(|source| IdentityError::Missing { path, source })
}

/// `outpost keygen`: creates the agent's key if missing (mode 0600), prints its public key and fingerprint.
/// Never replaces an existing key on its own: a new key is a new identity to the hub. With `--from FILE` the
/// key comes from that file instead, e.g. a Secret volume, which kubelet makes group-readable and so cannot be
/// loaded as it is; the state directory gets a private copy, replaced when the file holds a different key (the
/// Secret is then the source of truth).
pub fn keygen(agent: &AgentConfig, from: Option<&Path>) -> Result<KeyInfo, IdentityError> {
    let dir = &agent.state_dir;
    let state_error = |source: std::io::Error| IdentityError::StateDir {
        dir: dir.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(state_error)?;
    let path = agent.key_path();
    let imported = match from {
        Some(file) => key_from_file(file)?,
        None => None,
    };
    let action = match imported {
        Some(document) => {
            // A missing or unreadable key is replaced like a different one.
            let current = SigningKey::load(&path).ok().map(|k| k.public_key());
            if current == Some(document.signing_key()?.public_key()) {
                "existing key, the same as the one given with --from"
            } else {
                // Written beside and renamed over, so a crash leaves the old key or the new one, never half.
                let staging = dir.join(".agent.key.import");
                let _ = std::fs::remove_file(&staging);
                document.save(&staging)?;
                std::fs::rename(&staging, &path).map_err(state_error)?;
                "imported"
            }
        }
        None if path.exists() => "existing key",
        None => {
            Pkcs8Document::generate()?.save(&path)?;
            "created"
        }
    };
    let public = SigningKey::load(&path)?.public_key();
    Ok(KeyInfo {
        public,
        action,
        path,
    })
}

/// The key `keygen --from` names, checked; `None` when the file does not exist (an optional Secret left out).
fn key_from_file(file: &Path) -> Result<Option<Pkcs8Document>, IdentityError> {
    match std::fs::read(file) {
        Ok(bytes) => Pkcs8Document::from_pem_or_der(&bytes)
            .map(Some)
            .map_err(|source| IdentityError::Import {
                file: file.to_path_buf(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "{} does not exist; using the state directory's own key",
                file.display()
            );
            Ok(None)
        }
        Err(source) => Err(IdentityError::Read {
            file: file.to_path_buf(),
            source,
        }),
    }
}
