//! OpenPGP signatures (git's default `gpg.format`), checked with rpgp against the keys in `pgp_keys`.
//!
//! rpgp checks the mathematics; whether a key may still sign is decided here: a key (or the subkey that signed)
//! that carries a valid revocation is refused whatever the signature's date, because a revocation usually means
//! the key leaked and a leaked key can back-date; a key whose self-signature says it expired before the signature
//! was made is refused too. Both are named in the message so the operator knows which key to replace.

use std::path::{Path, PathBuf};

use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey};
use pgp::packet::{Signature, SignatureType};
use pgp::types::{KeyDetails, Tag};

#[derive(Debug, thiserror::Error)]
pub enum PgpKeysError {
    #[error("cannot read pgp_keys {path}: {error}; check the path in [source.verify] and that the agent's user may read it")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "pgp_keys {path} line {line}: {message}; export the keys with `gpg --export --armor KEYID`"
    )]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("pgp_keys {path} holds no public key block; export the keys with `gpg --export --armor KEYID`")]
    Empty { path: PathBuf },
}

/// Why an OpenPGP signature did not verify; `signer` is the key's fingerprint (or key id) as gpg prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgpFailure {
    Malformed(String),
    UnknownKey { signer: String },
    Revoked { signer: String },
    Expired { signer: String, expired_at: i64 },
    Mismatch { signer: String },
}

#[derive(Debug, Clone)]
pub struct Keyring {
    pub path: PathBuf,
    keys: Vec<SignedPublicKey>,
}

const BEGIN_KEYS: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";

impl Keyring {
    pub fn load(path: &Path) -> Result<Keyring, PgpKeysError> {
        let text = std::fs::read_to_string(path).map_err(|error| PgpKeysError::Read {
            path: path.to_owned(),
            error,
        })?;
        Keyring::parse(path, &text)
    }

    /// Reads every armored public key block in the file (files made with `cat a.asc b.asc` are common).
    pub fn parse(path: &Path, text: &str) -> Result<Keyring, PgpKeysError> {
        let mut keys = Vec::new();
        let starts: Vec<usize> = text.match_indices(BEGIN_KEYS).map(|(i, _)| i).collect();
        for (n, &start) in starts.iter().enumerate() {
            let end = starts.get(n + 1).copied().unwrap_or(text.len());
            let line = text[..start].matches('\n').count() + 1;
            let parse_error = |message: String| PgpKeysError::Parse {
                path: path.to_owned(),
                line,
                message,
            };
            let (parsed, _headers) = SignedPublicKey::from_string_many(&text[start..end])
                .map_err(|e| parse_error(format!("not an OpenPGP public key block ({e})")))?;
            for key in parsed {
                keys.push(
                    key.map_err(|e| {
                        parse_error(format!("a key in this block is malformed ({e})"))
                    })?,
                );
            }
        }
        if text.contains("-----BEGIN PGP PRIVATE KEY BLOCK-----") {
            return Err(PgpKeysError::Parse {
                path: path.to_owned(),
                line: text[..text.find("-----BEGIN PGP PRIVATE").unwrap_or(0)]
                    .matches('\n')
                    .count()
                    + 1,
                message:
                    "this is a private key; give only public keys, and treat this one as leaked"
                        .into(),
            });
        }
        if keys.is_empty() {
            return Err(PgpKeysError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(Keyring {
            path: path.to_owned(),
            keys,
        })
    }

    /// Checks an armored detached signature over `payload`; on success returns the signing key's fingerprint.
    pub fn verify(&self, armored: &str, payload: &[u8]) -> Result<String, PgpFailure> {
        let (sig, _) = DetachedSignature::from_string(armored)
            .map_err(|e| PgpFailure::Malformed(format!("not an OpenPGP signature ({e})")))?;
        let sig = sig.signature;
        let sig_time = sig
            .created()
            .map(|t| i64::from(t.as_secs()))
            .ok_or_else(|| {
                PgpFailure::Malformed("the signature carries no creation time".into())
            })?;
        let wanted_fps: Vec<Vec<u8>> = sig
            .issuer_fingerprint()
            .iter()
            .map(|f| f.as_bytes().to_vec())
            .collect();
        let wanted_ids: Vec<Vec<u8>> = sig
            .issuer_key_id()
            .iter()
            .map(|k| k.as_ref().to_vec())
            .collect();
        let named = |fp: &[u8], id: &[u8]| {
            wanted_fps.iter().any(|w| w == fp) || wanted_ids.iter().any(|w| w == id)
        };
        for cert in &self.keys {
            let primary = &cert.primary_key;
            if named(
                primary.fingerprint().as_bytes(),
                primary.legacy_key_id().as_ref(),
            ) {
                let signer = hex_upper(primary.fingerprint().as_bytes());
                if sig.verify(primary, payload).is_err() {
                    return Err(PgpFailure::Mismatch { signer });
                }
                return check_primary(cert, sig_time, signer);
            }
            for sub in &cert.public_subkeys {
                if !named(
                    sub.key.fingerprint().as_bytes(),
                    sub.key.legacy_key_id().as_ref(),
                ) {
                    continue;
                }
                let signer = hex_upper(sub.key.fingerprint().as_bytes());
                // A subkey only speaks for the certificate when the primary key bound it.
                let bindings: Vec<&Signature> = sub
                    .signatures
                    .iter()
                    .filter(|s| s.verify_subkey_binding(primary, &sub.key).is_ok())
                    .collect();
                if !bindings
                    .iter()
                    .any(|s| s.typ() == Some(SignatureType::SubkeyBinding))
                {
                    continue;
                }
                if sig.verify(&sub.key, payload).is_err() {
                    return Err(PgpFailure::Mismatch { signer });
                }
                if bindings
                    .iter()
                    .any(|s| s.typ() == Some(SignatureType::SubkeyRevocation))
                {
                    return Err(PgpFailure::Revoked { signer });
                }
                let binding = newest_at(
                    bindings
                        .iter()
                        .copied()
                        .filter(|s| s.typ() == Some(SignatureType::SubkeyBinding)),
                    sig_time,
                );
                let created = i64::from(sub.key.created_at().as_secs());
                if let Some(at) = binding.and_then(|b| expiry(b, created)) {
                    if at <= sig_time {
                        return Err(PgpFailure::Expired {
                            signer,
                            expired_at: at,
                        });
                    }
                }
                return check_primary(cert, sig_time, signer);
            }
        }
        let signer = wanted_fps
            .first()
            .or(wanted_ids.first())
            .map(|b| hex_upper(b))
            .unwrap_or_else(|| "a key that is not named in the signature".into());
        Err(PgpFailure::UnknownKey { signer })
    }
}

/// The certificate as a whole: revoked or expired primary keys take their subkeys with them.
fn check_primary(
    cert: &SignedPublicKey,
    sig_time: i64,
    signer: String,
) -> Result<String, PgpFailure> {
    let primary = &cert.primary_key;
    let revoked =
        cert.details.revocation_signatures.iter().any(|r| {
            r.typ() == Some(SignatureType::KeyRevocation) && r.verify_key(primary).is_ok()
        });
    if revoked {
        return Err(PgpFailure::Revoked { signer });
    }
    let mut self_sigs: Vec<&Signature> = cert
        .details
        .direct_signatures
        .iter()
        .filter(|s| s.verify_key(primary).is_ok())
        .collect();
    for user in &cert.details.users {
        self_sigs.extend(user.signatures.iter().filter(|s| {
            s.is_certification()
                && s.verify_certification(primary, Tag::UserId, &user.id)
                    .is_ok()
        }));
    }
    let created = i64::from(primary.created_at().as_secs());
    if let Some(at) = newest_at(self_sigs.into_iter(), sig_time).and_then(|s| expiry(s, created)) {
        if at <= sig_time {
            return Err(PgpFailure::Expired {
                signer,
                expired_at: at,
            });
        }
    }
    Ok(signer)
}

/// The self-signature in force at `time`: the newest made by then (or the oldest, if all are later).
fn newest_at<'a>(sigs: impl Iterator<Item = &'a Signature>, time: i64) -> Option<&'a Signature> {
    let created = |s: &Signature| s.created().map_or(0, |t| i64::from(t.as_secs()));
    let all: Vec<&Signature> = sigs.collect();
    all.iter()
        .copied()
        .filter(|s| created(s) <= time)
        .max_by_key(|s| created(s))
        .or_else(|| all.iter().copied().min_by_key(|s| created(s)))
}

/// When the key a self-signature describes expires (Unix seconds), if it does.
fn expiry(sig: &Signature, key_created: i64) -> Option<i64> {
    let d = sig.key_expiration_time()?;
    let secs = i64::from(d.as_secs());
    (secs != 0).then_some(key_created + secs)
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_with_the_line() {
        let path = Path::new("/etc/outpost/keys.asc");
        let err = Keyring::parse(path, "nothing here\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/etc/outpost/keys.asc") && err.contains("no public key block"),
            "{err}"
        );
        let text =
            format!("# comment\n{BEGIN_KEYS}\n\nAAAA!!!\n-----END PGP PUBLIC KEY BLOCK-----\n");
        let err = Keyring::parse(path, &text).unwrap_err().to_string();
        assert!(err.contains("keys.asc line 2"), "{err}");
    }

    #[test]
    fn fingerprints_print_as_gpg_does() {
        assert_eq!(hex_upper(&[0xab, 0x01]), "AB01");
    }
}
