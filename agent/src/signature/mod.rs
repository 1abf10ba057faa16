//! Commit and tag signature verification (`[source.verify]`): the step between fetching a revision and reading
//! its tree, so that a revision nobody trusted signed is never built, let alone applied.
//!
//! The trusted keys are read when the config is loaded, so a broken keys file stops `outpost check` and start-up
//! rather than every later poll. Objects are read raw from the Git cache (or the `file://` repository) and the
//! signed payload is cut out of them exactly as git does it, so whatever `git verify-commit` accepts with the
//! same keys is accepted here.

pub mod payload;
pub mod pgp;
pub mod signers;
pub mod ssh;

use std::path::Path;

use payload::Signature;

/// What must carry a trusted signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The commit to be applied.
    Head,
    /// The annotated tag that selected the commit; the commit itself may be unsigned.
    Tag,
    TagAndHead,
}

impl Mode {
    pub fn parse(text: &str) -> Option<Mode> {
        match text {
            "head" => Some(Mode::Head),
            "tag" => Some(Mode::Tag),
            "tag_and_head" => Some(Mode::TagAndHead),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Head => "head",
            Mode::Tag => "tag",
            Mode::TagAndHead => "tag_and_head",
        }
    }

    pub fn needs_tag(self) -> bool {
        matches!(self, Mode::Tag | Mode::TagAndHead)
    }

    pub fn needs_head(self) -> bool {
        matches!(self, Mode::Head | Mode::TagAndHead)
    }
}

/// A source's `[source.verify]`, with its key files already parsed.
#[derive(Debug, Clone)]
pub struct Policy {
    pub mode: Mode,
    pub allowed_signers: Option<signers::AllowedSigners>,
    pub pgp_keys: Option<pgp::Keyring>,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The signature (or its absence) is not acceptable; `subject` names the commit or tag.
    #[error("{subject}: {reason}")]
    Rejected { subject: String, reason: Rejection },
    #[error("tag {tag} is a lightweight tag and carries no signature; [source.verify] mode = \"{mode}\" needs an annotated, signed tag (git tag -s)")]
    Lightweight { tag: String, mode: &'static str },
    #[error("{subject}: cannot be read from the Git repository or cache ({source})")]
    Read {
        subject: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Why a signature (or its absence) is not acceptable.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("the tag object names commit {named}, not the commit {fetched} that was fetched (the tag moved during the poll); the next poll checks it again")]
    TagMoved { named: String, fetched: String },
    #[error("the signed tag object is named {named:?}, not {tag:?}: a signed tag was copied under another name")]
    TagRenamed { named: String, tag: String },
    #[error(transparent)]
    Malformed(#[from] payload::Malformed),
    #[error("unsigned; [source.verify] mode = \"{mode}\" requires a signature from {trusted}")]
    Unsigned { mode: &'static str, trusted: String },
    #[error("signed as {0}, which outpost does not check; sign with an SSH key (gpg.format=ssh) or OpenPGP")]
    OtherFormat(String),
    #[error("bad SSH signature: {0}")]
    BadSsh(ssh::SshError),
    #[error("signed by SSH key {fingerprint}, but [source.verify] has no allowed_signers file to trust SSH keys with")]
    NoSshTrust { fingerprint: String },
    #[error("signed by {fingerprint} which is not in {path}")]
    SshNotListed { fingerprint: String, path: String },
    #[error("signed by {fingerprint}, but {path} {why}")]
    SshRestricted {
        fingerprint: String,
        path: String,
        why: String,
    },
    #[error("signed by {fingerprint}: {source}")]
    SshInvalid {
        fingerprint: String,
        source: ssh::SshError,
    },
    #[error(
        "signed with OpenPGP, but [source.verify] has no pgp_keys file to trust OpenPGP keys with"
    )]
    NoPgpTrust,
    #[error("bad OpenPGP signature: {0}")]
    BadPgp(String),
    #[error("signed by OpenPGP key {signer} which is not in {path}")]
    PgpNotListed { signer: String, path: String },
    #[error(
        "signed by OpenPGP key {signer}, which is revoked (in {path}); re-sign with a current key"
    )]
    PgpRevoked { signer: String, path: String },
    #[error("signed by OpenPGP key {signer}, which expired on {expired} before the signature was made; re-sign with a current key")]
    PgpExpired { signer: String, expired: String },
    #[error("signed by OpenPGP key {signer}: the signature does not match the signed content (changed after signing, or copied from another object)")]
    PgpMismatch { signer: String },
}

/// A key file of `[source.verify]` that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error(transparent)]
    Signers(#[from] signers::SignersError),
    #[error(transparent)]
    Pgp(#[from] pgp::PgpKeysError),
}

/// Where the selected revision came from: the commit, and for a tag the tag's name and its object.
pub struct Revision<'a> {
    pub commit: &'a str,
    /// `refs/tags/NAME` when a tag (or semver range) selected the commit.
    pub ref_name: &'a str,
    /// The annotated tag object the ref points at; `None` for a lightweight tag or a branch.
    pub tag_object: Option<&'a str>,
}

impl Policy {
    /// What a revision must carry, in words, for messages.
    fn trusted_files(&self) -> String {
        let files: Vec<String> = [
            self.allowed_signers
                .as_ref()
                .map(|s| s.path.display().to_string()),
            self.pgp_keys.as_ref().map(|k| k.path.display().to_string()),
        ]
        .into_iter()
        .flatten()
        .collect();
        files.join(" or ")
    }

    /// Checks what the mode asks for; `Ok` carries a short note of who signed, for the log.
    pub fn check(&self, repo: &gix::Repository, rev: &Revision<'_>) -> Result<String, VerifyError> {
        let mut signed_by = Vec::new();
        if self.mode.needs_tag() {
            let tag = rev
                .ref_name
                .strip_prefix("refs/tags/")
                .unwrap_or(rev.ref_name);
            let Some(tag_id) = rev.tag_object else {
                return Err(VerifyError::Lightweight {
                    tag: tag.to_string(),
                    mode: self.mode.as_str(),
                });
            };
            let subject = format!("tag {tag}");
            let raw = read(repo, tag_id, gix::object::Kind::Tag, &subject)?;
            let parsed = payload::split_tag(&raw);
            let rejected = |reason: Rejection| VerifyError::Rejected {
                subject: subject.clone(),
                reason,
            };
            if parsed.object.as_deref() != Some(rev.commit) {
                return Err(rejected(Rejection::TagMoved {
                    named: parsed.object.as_deref().map_or("(none)", short).into(),
                    fetched: short(rev.commit).into(),
                }));
            }
            if parsed.name.as_deref() != Some(tag) {
                return Err(rejected(Rejection::TagRenamed {
                    named: parsed.name.as_deref().unwrap_or("").into(),
                    tag: tag.into(),
                }));
            }
            signed_by.push(self.check_signature(&parsed.signed, &subject)?);
        }
        if self.mode.needs_head() {
            let subject = format!("commit {}", short(rev.commit));
            let raw = read(repo, rev.commit, gix::object::Kind::Commit, &subject)?;
            let signed = payload::split_commit(&raw).map_err(|m| VerifyError::Rejected {
                subject: subject.clone(),
                reason: m.into(),
            })?;
            signed_by.push(self.check_signature(&signed, &subject)?);
        }
        Ok(signed_by.join("; "))
    }

    fn check_signature(
        &self,
        signed: &payload::Signed,
        subject: &str,
    ) -> Result<String, VerifyError> {
        let rejected = |reason: Rejection| VerifyError::Rejected {
            subject: subject.to_string(),
            reason,
        };
        match &signed.signature {
            None => Err(rejected(Rejection::Unsigned {
                mode: self.mode.as_str(),
                trusted: self.trusted_files(),
            })),
            Some(Signature::Ssh(armor)) => self.check_ssh(armor, signed).map_err(rejected),
            Some(Signature::Pgp(armor)) => self.check_pgp(armor, signed).map_err(rejected),
            Some(Signature::Other(kind)) => Err(rejected(Rejection::OtherFormat(kind.to_string()))),
        }
    }

    fn check_ssh(&self, armor: &str, signed: &payload::Signed) -> Result<String, Rejection> {
        let sig = ssh::SshSig::from_armor(armor).map_err(Rejection::BadSsh)?;
        let fingerprint = sig.fingerprint();
        let Some(signers) = &self.allowed_signers else {
            return Err(Rejection::NoSshTrust { fingerprint });
        };
        let path = signers.path.display().to_string();
        let signer = match signers.trusted(&sig.key_blob, signed.time) {
            Ok(s) => s,
            Err(signers::Refusal::NotListed) => {
                return Err(Rejection::SshNotListed { fingerprint, path })
            }
            Err(signers::Refusal::Restricted(why)) => {
                return Err(Rejection::SshRestricted {
                    fingerprint,
                    path,
                    why,
                })
            }
        };
        sig.verify(&signer.key, &signed.payload)
            .map_err(|source| Rejection::SshInvalid {
                fingerprint: fingerprint.clone(),
                source,
            })?;
        Ok(format!("{fingerprint} ({})", signer.principals))
    }

    fn check_pgp(&self, armor: &str, signed: &payload::Signed) -> Result<String, Rejection> {
        let Some(keys) = &self.pgp_keys else {
            return Err(Rejection::NoPgpTrust);
        };
        let path = keys.path.display().to_string();
        keys.verify(armor, &signed.payload).map_err(|f| match f {
            pgp::PgpFailure::Malformed(m) => Rejection::BadPgp(m),
            pgp::PgpFailure::UnknownKey { signer } => Rejection::PgpNotListed { signer, path },
            pgp::PgpFailure::Revoked { signer } => Rejection::PgpRevoked { signer, path },
            pgp::PgpFailure::Expired { signer, expired_at } => Rejection::PgpExpired {
                signer,
                expired: signers::utc(expired_at),
            },
            pgp::PgpFailure::Mismatch { signer } => Rejection::PgpMismatch { signer },
        })
    }
}

/// Loads the key files of a `[source.verify]`; errors name the file and line.
pub fn load_policy(
    mode: Mode,
    allowed_signers: Option<&Path>,
    pgp_keys: Option<&Path>,
) -> Result<Policy, KeysError> {
    Ok(Policy {
        mode,
        allowed_signers: allowed_signers
            .map(signers::AllowedSigners::load)
            .transpose()?,
        pgp_keys: pgp_keys.map(pgp::Keyring::load).transpose()?,
    })
}

fn read(
    repo: &gix::Repository,
    id: &str,
    kind: gix::object::Kind,
    subject: &str,
) -> Result<Vec<u8>, VerifyError> {
    let error = |source: Box<dyn std::error::Error + Send + Sync>| VerifyError::Read {
        subject: subject.to_string(),
        source,
    };
    let oid = gix::ObjectId::from_hex(id.as_bytes()).map_err(|e| error(Box::new(e)))?;
    let object = repo.find_object(oid).map_err(|e| error(Box::new(e)))?;
    if object.kind != kind {
        return Err(error(
            format!("object {id} is a {}, not a {kind}", object.kind).into(),
        ));
    }
    Ok(object.data.clone())
}

/// The short commit id `git log --oneline` shows, which is what people search for.
fn short(id: &str) -> &str {
    id.get(..7).unwrap_or(id)
}
