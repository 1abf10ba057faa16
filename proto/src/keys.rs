//! Ed25519 keys: the agent's identity and the hub's assignment-signing key.
//!
//! Forms a key takes:
//! - on disk, a PKCS#8 document (PEM `PRIVATE KEY`, or raw DER), readable by its owner only. We write v2
//!   documents (they carry the public key, so ring checks the pair on load) and read v1 too, so a key made
//!   with `openssl genpkey -algorithm ed25519` works. OpenSSL 3.0 cannot read v2 documents (checked with
//!   3.0.19), so take the public key from `outpost keygen`'s output rather than from `openssl pkey -pubout`;
//! - in configs and logs, the public key as `ed25519:<base64, padded>`;
//! - for humans and as the RFC 9421 `keyid`, the fingerprint `SHA256:<base64, unpadded>`, computed exactly as
//!   OpenSSH does (over the SSH wire blob, not the raw key), so `ssh-keygen -lf` prints the same text.
//!
//! Invariants: a private key file is never created with, nor loaded from, permissions that let anyone but its
//! owner read it; secret bytes never reach `Debug` output.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

use crate::b64::{self, Engine as _};

/// Prefix of the public key text form.
pub const PUBLIC_KEY_PREFIX: &str = "ed25519:";
/// Prefix of a fingerprint, as OpenSSH prints it.
pub const FINGERPRINT_PREFIX: &str = "SHA256:";
/// The SSH key type name of Ed25519 keys (RFC 8709).
const SSH_KEY_TYPE: &str = "ssh-ed25519";
/// An SSH public key blob (RFC 4253 §6.6) is string(key type) then string(key), each string a big-endian u32
/// length and the bytes; for Ed25519 everything before the 32 key bytes is fixed.
const SSH_BLOB_PREFIX: &[u8; 19] = b"\0\0\0\x0bssh-ed25519\0\0\0\x20";
/// Key files are a few hundred bytes; refusing big ones keeps a wrong path from eating memory.
const MAX_KEY_FILE_LEN: u64 = 16 * 1024;
const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

/// Why a key could not be made, read, written or parsed. Each message names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("could not generate an Ed25519 key: the system random number generator failed")]
    Generate,
    #[error("key file {path} already exists; refusing to overwrite it (remove it first if you mean to replace the key)")]
    AlreadyExists { path: PathBuf },
    #[error("could not {action} key file {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("key file {path} has mode {mode:04o}, which gives other users access to the private key; run `chmod 600 {path}`")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("key file {path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error(
        "key file {path} is larger than {MAX_KEY_FILE_LEN} bytes, so it is not an Ed25519 key"
    )]
    TooLarge { path: PathBuf },
    #[error("key file {path}: {problem}")]
    Format { path: PathBuf, problem: String },
    #[error("not an Ed25519 PKCS#8 private key ({0}); create one with `outpost keygen` or `openssl genpkey -algorithm ed25519`")]
    Pkcs8(String),
    #[error("not an Ed25519 key pair: the public key does not match the seed")]
    Mismatch,
    #[error("{text:?} is not a public key: expected `ed25519:` followed by 32 bytes in padded base64 (44 characters)")]
    PublicKeyText { text: String },
    #[error("{text:?} is not an OpenSSH Ed25519 public key: expected `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5...`")]
    OpenSshText { text: String },
}

/// A freshly generated or loaded PKCS#8 document. The bytes are wiped (best effort) when it is dropped.
pub struct Pkcs8Document {
    der: Vec<u8>,
}

impl Pkcs8Document {
    /// Generates a new Ed25519 key as a PKCS#8 v2 document.
    pub fn generate() -> Result<Self, KeyError> {
        let document =
            Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| KeyError::Generate)?;
        Ok(Pkcs8Document {
            der: document.as_ref().to_vec(),
        })
    }

    /// Wraps DER bytes, checking that they hold an Ed25519 key.
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        let document = Pkcs8Document { der: der.to_vec() };
        document.signing_key()?;
        Ok(document)
    }

    /// Parses the PEM (`-----BEGIN PRIVATE KEY-----`) or DER form.
    pub fn from_pem_or_der(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.first() == Some(&0x30) {
            return Self::from_der(bytes);
        }
        let text = std::str::from_utf8(bytes)
            .map_err(|_| KeyError::Pkcs8("neither PEM text nor DER".into()))?;
        if text.contains("BEGIN OPENSSH PRIVATE KEY") {
            return Err(KeyError::Pkcs8(
                "this is an OpenSSH private key, not PKCS#8".into(),
            ));
        }
        if text.contains("BEGIN ENCRYPTED PRIVATE KEY") {
            return Err(KeyError::Pkcs8(
                "the key is encrypted; outpost reads unencrypted keys kept mode 0600".into(),
            ));
        }
        let body = text
            .split_once(PEM_BEGIN)
            .and_then(|(_, rest)| rest.split_once(PEM_END))
            .map(|(body, _)| body)
            .ok_or_else(|| KeyError::Pkcs8(format!("no `{PEM_BEGIN}` ... `{PEM_END}` block")))?;
        let compact: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let der = b64::STANDARD
            .decode(compact)
            .map_err(|e| KeyError::Pkcs8(format!("bad base64 in the PEM block: {e}")))?;
        let document = Pkcs8Document { der };
        document.signing_key()?;
        Ok(document)
    }

    pub fn as_der(&self) -> &[u8] {
        &self.der
    }

    /// The PEM text, as OpenSSL writes it (64-character lines).
    pub fn to_pem(&self) -> String {
        let encoded = b64::STANDARD.encode(&self.der);
        let mut pem = String::with_capacity(encoded.len() + 64);
        pem.push_str(PEM_BEGIN);
        pem.push('\n');
        for line in encoded.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str(PEM_END);
        pem.push('\n');
        pem
    }

    pub fn signing_key(&self) -> Result<SigningKey, KeyError> {
        SigningKey::from_pkcs8(&self.der)
    }

    /// Writes the PEM form to a new file created with mode 0600. Never overwrites: an existing key is an
    /// identity the hub knows, and replacing it by accident would lock the agent out.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let io = |action, source| KeyError::Io {
            action,
            path: path.to_owned(),
            source,
        };
        let mut file = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(KeyError::AlreadyExists {
                    path: path.to_owned(),
                })
            }
            Err(e) => return Err(io("create", e)),
        };
        let written = file
            .write_all(self.to_pem().as_bytes())
            .and_then(|()| file.sync_all());
        if let Err(e) = written {
            // A half-written key would fail every later load; leave nothing rather than that.
            let _ = std::fs::remove_file(path);
            return Err(io("write", e));
        }
        Ok(())
    }

    /// Reads a key file, refusing it unless only its owner can read or write it (mode 0600 or stricter).
    /// The mode is checked on the opened file, so the file read is the file checked.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let mut bytes = read_private(path, MAX_KEY_FILE_LEN).map_err(|e| match e {
            PrivateFile::Io { action, source } => KeyError::Io {
                action,
                path: path.to_owned(),
                source,
            },
            PrivateFile::NotAFile => KeyError::NotAFile {
                path: path.to_owned(),
            },
            PrivateFile::Permissions { mode } => KeyError::Permissions {
                path: path.to_owned(),
                mode,
            },
            PrivateFile::TooLarge => KeyError::TooLarge {
                path: path.to_owned(),
            },
        })?;
        let parsed = Self::from_pem_or_der(&bytes);
        bytes.fill(0);
        std::hint::black_box(&bytes);
        parsed.map_err(|e| KeyError::Format {
            path: path.to_owned(),
            problem: e.to_string(),
        })
    }
}

impl Drop for Pkcs8Document {
    fn drop(&mut self) {
        self.der.fill(0);
        // Keeps the optimiser from dropping the wipe as a dead store; best effort, not a guarantee.
        std::hint::black_box(&self.der);
    }
}

impl fmt::Debug for Pkcs8Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pkcs8Document(..)")
    }
}

/// A private key ready to sign.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl SigningKey {
    /// From PKCS#8 DER, v1 or v2 (a v2 document's public key must match its seed).
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, KeyError> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|e| KeyError::Pkcs8(e.to_string()))?;
        Ok(SigningKey { pair })
    }

    /// From the raw 32-byte seed and public key; fails when they do not belong together.
    pub fn from_seed_and_public_key(
        seed: &[u8; 32],
        public_key: &[u8; 32],
    ) -> Result<Self, KeyError> {
        let pair = Ed25519KeyPair::from_seed_and_public_key(seed, public_key)
            .map_err(|_| KeyError::Mismatch)?;
        Ok(SigningKey { pair })
    }

    /// Loads a key file; see [`Pkcs8Document::load`] for the rules.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        Pkcs8Document::load(path)?.signing_key()
    }

    pub fn public_key(&self) -> PublicKey {
        let mut raw = [0_u8; 32];
        raw.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(raw)
    }

    /// The 64-byte Ed25519 signature of `message` (deterministic, RFC 8032).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut signature = [0_u8; 64];
        signature.copy_from_slice(self.pair.sign(message).as_ref());
        signature
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("public_key", &self.public_key())
            .finish_non_exhaustive()
    }
}

/// An Ed25519 public key. Its `Display` and `FromStr` use the `ed25519:<base64>` text form.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    pub fn from_bytes(raw: [u8; 32]) -> Self {
        PublicKey(raw)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Whether `signature` is this key's Ed25519 signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message, signature)
            .is_ok()
    }

    /// The SSH wire encoding (RFC 4253 §6.6, RFC 8709): string "ssh-ed25519", then string(32 key bytes).
    pub fn openssh_blob(&self) -> Vec<u8> {
        let mut blob = Vec::with_capacity(SSH_BLOB_PREFIX.len() + 32);
        blob.extend_from_slice(SSH_BLOB_PREFIX);
        blob.extend_from_slice(&self.0);
        blob
    }

    /// The `authorized_keys` / `.pub` line without a comment: `ssh-ed25519 AAAA...`.
    pub fn to_openssh(&self) -> String {
        format!(
            "{SSH_KEY_TYPE} {}",
            b64::STANDARD.encode(self.openssh_blob())
        )
    }

    /// Reads an OpenSSH public key line (`ssh-ed25519 <base64 blob> [comment]`).
    pub fn from_openssh(line: &str) -> Result<Self, KeyError> {
        let error = || KeyError::OpenSshText {
            text: line.to_owned(),
        };
        let mut fields = line.split_ascii_whitespace();
        if fields.next() != Some(SSH_KEY_TYPE) {
            return Err(error());
        }
        let blob = fields
            .next()
            .and_then(|b| b64::STANDARD.decode(b).ok())
            .ok_or_else(error)?;
        let raw = blob
            .strip_prefix(SSH_BLOB_PREFIX.as_slice())
            .ok_or_else(error)?;
        let raw: [u8; 32] = raw.try_into().map_err(|_| error())?;
        Ok(PublicKey(raw))
    }

    /// `SHA256:<base64, unpadded>` of the SSH blob: the text `ssh-keygen -lf` prints for this key.
    pub fn fingerprint(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.openssh_blob());
        format!(
            "{FINGERPRINT_PREFIX}{}",
            b64::UNPADDED.encode(digest.as_ref())
        )
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_KEY_PREFIX}{}", b64::STANDARD.encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<Self, KeyError> {
        let error = || KeyError::PublicKeyText {
            text: text.to_owned(),
        };
        let encoded = text.strip_prefix(PUBLIC_KEY_PREFIX).ok_or_else(error)?;
        let raw = b64::STANDARD.decode(encoded).map_err(|_| error())?;
        let raw: [u8; 32] = raw.try_into().map_err(|_| error())?;
        Ok(PublicKey(raw))
    }
}

/// Why a private file (a key, an age identity) was not read. Each caller words it for its own file.
#[derive(Debug)]
pub enum PrivateFile {
    Io {
        action: &'static str,
        source: std::io::Error,
    },
    NotAFile,
    /// Other users may read or write it: the mode found.
    Permissions {
        mode: u32,
    },
    TooLarge,
}

/// Reads a file that holds a secret, refusing it unless only its owner can read or write it (mode 0600 or
/// stricter) and unless it is at most `max_len` bytes. The mode is checked on the opened file, so the file read
/// is the file checked.
pub fn read_private(path: &Path, max_len: u64) -> Result<Vec<u8>, PrivateFile> {
    let io = |action, source| PrivateFile::Io { action, source };
    let file = File::open(path).map_err(|e| io("open", e))?;
    let metadata = file.metadata().map_err(|e| io("inspect", e))?;
    if !metadata.is_file() {
        return Err(PrivateFile::NotAFile);
    }
    let mode = metadata.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(PrivateFile::Permissions { mode });
    }
    let mut bytes = Vec::new();
    file.take(max_len + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io("read", e))?;
    if bytes.len() as u64 > max_len {
        return Err(PrivateFile::TooLarge);
    }
    Ok(bytes)
}
