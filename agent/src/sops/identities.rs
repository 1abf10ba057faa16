//! Age identities (X25519 private keys) that unwrap SOPS data keys, and the file they are kept in.
//!
//! The file is what `age-keygen -o FILE` writes: `#` comment lines and one `AGE-SECRET-KEY-1…` line per key.
//! Like the agent's signing key, it is refused unless only its owner can read it (mode 0600 or stricter), and
//! the mode is checked on the opened file. Secret text never reaches an error message or `Debug` output.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::cipher::DataKey;
use super::metadata::AgeStanza;
use super::Problem;

/// An identities file holds a few keys of ~75 bytes; a bigger file is the wrong file.
const MAX_IDENTITIES_FILE_LEN: u64 = 64 * 1024;

/// Problems with the age identities file named by `[source.decryption] age_identities`.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("could not {action} age identities file {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("age identities file {path} has mode {mode:04o}, which gives other users access to the private keys; run `chmod 600 {path}`")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("age identities file {path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("age identities file {path} is larger than {MAX_IDENTITIES_FILE_LEN} bytes, so it is not an age key file")]
    TooLarge { path: PathBuf },
    #[error("age identities file {path}, line {line}: not an age X25519 identity (expected a line starting AGE-SECRET-KEY-1, as `age-keygen` writes; plugin and SSH keys are not supported)")]
    Line { path: PathBuf, line: usize },
    #[error("age identities file {path} holds no identity; create one with `age-keygen -o {path}` and give its public key to whoever encrypts the files (`sops --age age1...`)")]
    Empty { path: PathBuf },
}

/// Sealing or opening a stored object failed; the message comes from the age crate and holds no secret.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SealError(String);

/// The age identities one source decrypts with.
pub struct Identities {
    /// Where they came from, for messages.
    source: String,
    keys: Vec<age::x25519::Identity>,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identities")
            .field("source", &self.source)
            .field("recipients", &self.recipients())
            .finish()
    }
}

impl Identities {
    /// Reads an identities file, refusing it unless only its owner can read or write it.
    pub fn load(path: &Path) -> Result<Identities, IdentityError> {
        use outpost_proto::keys::{read_private, PrivateFile};
        let mut bytes = read_private(path, MAX_IDENTITIES_FILE_LEN).map_err(|e| match e {
            PrivateFile::Io { action, source } => IdentityError::Io {
                action,
                path: path.to_owned(),
                source,
            },
            PrivateFile::NotAFile => IdentityError::NotAFile {
                path: path.to_owned(),
            },
            PrivateFile::Permissions { mode } => IdentityError::Permissions {
                path: path.to_owned(),
                mode,
            },
            PrivateFile::TooLarge => IdentityError::TooLarge {
                path: path.to_owned(),
            },
        })?;
        let parsed = Identities::parse(
            &String::from_utf8_lossy(&bytes),
            &path.display().to_string(),
        )
        .map_err(|line| match line {
            0 => IdentityError::Empty {
                path: path.to_owned(),
            },
            line => IdentityError::Line {
                path: path.to_owned(),
                line,
            },
        });
        bytes.fill(0);
        std::hint::black_box(&bytes);
        parsed
    }

    /// Parses identities text; `Err(n)` is the 1-based line that is not an identity, `Err(0)` means none found.
    fn parse(text: &str, source: &str) -> Result<Identities, usize> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            keys.push(line.parse::<age::x25519::Identity>().map_err(|_| i + 1)?);
        }
        if keys.is_empty() {
            return Err(0);
        }
        Ok(Identities {
            source: source.to_string(),
            keys,
        })
    }

    /// From identity text held in memory, for tests.
    #[cfg(test)]
    pub(crate) fn from_text(text: &str, source: &str) -> Result<Identities, Problem> {
        Identities::parse(text, source).map_err(|line| match line {
            0 => Problem(format!("{source}: no AGE-SECRET-KEY-1 line")),
            n => Problem(format!("{source}, line {n}: not an age X25519 identity")),
        })
    }

    /// The public recipients (`age1…`) of these identities: what a file must be encrypted for.
    pub fn recipients(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| k.to_public().to_string())
            .collect()
    }

    /// Encrypts `plain` for the first of these identities, so that only a holder of this identities file can
    /// read it back ([`Identities::open_sealed`]): how decrypted objects are kept in the agent's store.
    pub fn seal(&self, plain: &[u8]) -> Result<Vec<u8>, SealError> {
        age::encrypt(&self.keys[0].to_public(), plain).map_err(|e| SealError(e.to_string()))
    }

    /// Opens what [`Identities::seal`] wrote with one of these identities.
    pub fn open_sealed(&self, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let decryptor = age::Decryptor::new(sealed).map_err(|e| SealError(e.to_string()))?;
        let mut reader = decryptor
            .decrypt(self.keys.iter().map(|k| k as &dyn age::Identity))
            .map_err(|e| SealError(e.to_string()))?;
        let mut out = Vec::new();
        reader
            .read_to_end(&mut out)
            .map_err(|e| SealError(e.to_string()))?;
        Ok(out)
    }

    /// Where the identities came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Unwraps the data key from the first stanza one of our identities opens. `Ok(None)`: none of them fits;
    /// `Err`: a stanza meant for us is corrupt, or its payload is not a data key.
    pub(crate) fn unwrap(&self, stanzas: &[AgeStanza]) -> Result<Option<DataKey>, Problem> {
        let ours = self.recipients();
        // Try the stanzas named for one of our keys first, so a corrupt one is reported as such rather than as
        // "no identity fits"; then the rest, since the recipient line is not authenticated.
        let (mine, others): (Vec<&AgeStanza>, Vec<&AgeStanza>) =
            stanzas.iter().partition(|s| ours.contains(&s.recipient));
        for stanza in mine.iter().chain(others.iter()) {
            match self.open(&stanza.enc) {
                Ok(key) => return Ok(Some(key)),
                Err(Unwrap::NotForUs) => {}
                Err(Unwrap::Broken(problem)) => {
                    return Err(Problem(format!(
                        "the data key for recipient {} {problem}",
                        stanza.recipient
                    )))
                }
            }
        }
        Ok(None)
    }

    fn open(&self, armored: &str) -> Result<DataKey, Unwrap> {
        let reader = age::armor::ArmoredReader::new(armored.as_bytes());
        let decryptor = age::Decryptor::new(reader)
            .map_err(|e| Unwrap::Broken(format!("is not an age file: {e}")))?;
        let mut plain = decryptor
            .decrypt(self.keys.iter().map(|k| k as &dyn age::Identity))
            .map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => Unwrap::NotForUs,
                other => Unwrap::Broken(format!("cannot be unwrapped: {other}")),
            })?;
        let mut bytes = Vec::with_capacity(32);
        let read = (&mut plain)
            .take(33)
            .read_to_end(&mut bytes)
            .map_err(|e| Unwrap::Broken(format!("cannot be unwrapped: {e}")));
        let key = read.and_then(|_| {
            DataKey::new(&bytes).ok_or_else(|| Unwrap::Broken("is not a 32-byte data key".into()))
        });
        bytes.fill(0);
        std::hint::black_box(&bytes);
        key
    }

    /// Test-only: the raw text of the age file payload, for the SOPS known-answer vector whose payload is not a
    /// data key.
    #[cfg(test)]
    pub(crate) fn open_raw(&self, armored: &str) -> Option<Vec<u8>> {
        let reader = age::armor::ArmoredReader::new(armored.as_bytes());
        let mut plain = age::Decryptor::new(reader)
            .ok()?
            .decrypt(self.keys.iter().map(|k| k as &dyn age::Identity))
            .ok()?;
        let mut out = Vec::new();
        plain.read_to_end(&mut out).ok()?;
        Some(out)
    }
}

enum Unwrap {
    NotForUs,
    Broken(String),
}
