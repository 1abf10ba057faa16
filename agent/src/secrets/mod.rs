//! SOPS secrets between the source and the target: decrypted in memory for the build, never at rest.
//!
//! Role: [`reveal`] decrypts a revision's SOPS files before the build, so kustomize transforms and generators see
//! plain values (a SOPS MAC covers the file as written, so decrypting after a transform would fail it); [`seal`]
//! then turns every built object that holds a decrypted value into a sealed stub for the store, and [`open`]
//! turns the stubs back into objects right before a target applies them, offline too.
//!
//! Invariants: nothing decrypted reaches the state directory (the store, the status, the history); a revision
//! whose SOPS files do not decrypt fails with the file named, and the last good revision stays. In a kustomize
//! build, a SOPS file that does not decrypt is an error only if the build reads it: a repository may hold
//! secrets encrypted for other sites.

mod seal;
#[cfg(test)]
mod tests;

use crate::revision::{Entry, Manifests};
use crate::sops::{self, Format, Identities, Plain, SopsError};

pub use seal::{open, redact, seal, SEALED_KEY};

/// Why a revision's secrets could not be used, or a stored one could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error(transparent)]
    Sops(#[from] SopsError),
    #[error("{file} is SOPS-encrypted, but this source has no [source.decryption]; add `[source.decryption] age_identities = \"/etc/outpost/age.key\"` with the age identity the file is encrypted for")]
    NoDecryption { file: String },
    #[error("{object}: cannot seal it for the store: {problem}")]
    Seal { object: String, problem: String },
    #[error("{object}: the stored copy cannot be opened with the age identities in {identities}: {problem}; restore the identities file this revision was stored with, or push a commit so a new revision replaces it")]
    Open {
        object: String,
        identities: String,
        problem: String,
    },
    #[error("{object}: the stored copy is sealed, but this source has no [source.decryption] any more; restore `[source.decryption] age_identities`, or push a commit so a new revision replaces it")]
    OpenWithout { object: String },
}

/// Decrypts, in memory, every SOPS file of a revision that the build may read, and returns the plaintext of
/// every value that was encrypted (what [`seal`] looks for in the built objects).
///
/// Plain manifests are all read, so any one that does not decrypt fails the revision at once. In a kustomize
/// view of the repository a file that does not decrypt becomes [`Entry::Refused`], which fails the build only
/// when a kustomization reads it.
pub fn reveal(
    manifests: &mut Manifests,
    identities: Option<&Identities>,
) -> Result<Vec<String>, SecretsError> {
    let mut revealed = Vec::new();
    for file in &mut manifests.files {
        if let Some(plain) = decrypt(&file.path, &file.content, identities)? {
            let (content, values) = plain;
            file.content = content;
            revealed.extend(values);
        }
    }
    if let Some(kustomization) = &mut manifests.kustomization {
        for (path, entry) in kustomization.files.entries_mut() {
            let Entry::File(content) = entry else {
                continue;
            };
            match decrypt(path, content, identities) {
                Ok(None) => {}
                Ok(Some((plain, values))) => {
                    *content = plain;
                    revealed.extend(values);
                }
                Err(error) => *entry = Entry::Refused(error.to_string()),
            }
        }
    }
    Ok(revealed)
}

/// A file's plain content and its decrypted values, or `None` when it is not a SOPS file.
type Decrypted = (Vec<u8>, Vec<String>);

fn decrypt(
    path: &str,
    content: &[u8],
    identities: Option<&Identities>,
) -> Result<Option<Decrypted>, SecretsError> {
    // SOPS metadata is always written as text; a file that is not UTF-8 or never says "sops" is not one.
    if !content.windows(4).any(|w| w == b"sops") {
        return Ok(None);
    }
    let Ok(text) = std::str::from_utf8(content) else {
        return Ok(None);
    };
    let format = Format::for_path(path);
    if !sops::is_sops(text, format) {
        return Ok(None);
    }
    let Some(identities) = identities else {
        return Err(SecretsError::NoDecryption { file: path.into() });
    };
    let (plain, revealed) = sops::decrypt_revealing(path, text, format, identities)?;
    let content = match plain {
        // JSON is YAML too, so a YAML stream of JSON documents reads back as the documents SOPS decrypted,
        // with their types.
        Plain::Documents(docs) => docs
            .iter()
            .map(|d| serde_json::to_string(d).unwrap_or_default())
            .collect::<Vec<_>>()
            .join(if format == Format::Json {
                "\n"
            } else {
                "\n---\n"
            })
            .into_bytes(),
        Plain::Dotenv(text) => text.into_bytes(),
        Plain::Binary(bytes) => bytes,
    };
    Ok(Some((content, revealed)))
}
