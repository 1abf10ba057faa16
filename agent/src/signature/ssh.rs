//! SSH signatures as `git` writes them with `gpg.format=ssh`: an armored SSHSIG blob (OpenSSH's PROTOCOL.sshsig)
//! over the commit or tag payload, checked with ring.
//!
//! The wire format is parsed here by hand because it is small and because every length in it comes from the
//! repository, that is from whoever can push: every read is bounds-checked and nothing is allocated from a length
//! before the bytes are known to be there.

use base64::Engine;
use ring::signature;

/// The namespace `git` signs in; a signature made for another purpose (`file`, `email`) must not count here.
pub const GIT_NAMESPACE: &str = "git";

/// Key types we can check, as they are written in allowed_signers and inside key blobs.
pub const ED25519: &str = "ssh-ed25519";
pub const ECDSA_P256: &str = "ecdsa-sha2-nistp256";
pub const RSA: &str = "ssh-rsa";

/// What is wrong with SSH data, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SshError {
    #[error("malformed SSH data: {0}")]
    Malformed(&'static str),
    #[error(
        "key type {0:?} is not supported; use an ssh-ed25519, ecdsa-sha2-nistp256 or ssh-rsa key"
    )]
    UnsupportedKey(String),
    #[error(
        "the signature was made for namespace {0:?}, not \"git\"; sign with git (gpg.format=ssh)"
    )]
    Namespace(String),
    #[error("signature algorithm {0:?} is not accepted; sign with rsa-sha2-512 or rsa-sha2-256 (SHA-1 is refused), or an ed25519/ecdsa key")]
    UnsupportedSignature(String),
    #[error("hash {0:?} is not accepted; SSHSIG signatures use sha512 or sha256")]
    UnsupportedHash(String),
    #[error("the signature does not match the signed content (the commit or tag was changed after signing, or the signature was copied from another one)")]
    Mismatch,
}

/// A reader over SSH wire data that never reads past its end.
struct Wire<'a>(&'a [u8]);

impl<'a> Wire<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], SshError> {
        if self.0.len() < n {
            return Err(SshError::Malformed(
                "a field is longer than the data holding it",
            ));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, SshError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An SSH `string`: a u32 length and that many bytes.
    fn string(&mut self) -> Result<&'a [u8], SshError> {
        let n = self.u32()? as usize;
        self.bytes(n)
    }

    fn text(&mut self) -> Result<&'a str, SshError> {
        std::str::from_utf8(self.string()?).map_err(|_| SshError::Malformed("a name is not UTF-8"))
    }

    /// An SSH `mpint` as unsigned big-endian bytes without leading zeros; negative values are refused.
    fn unsigned_mpint(&mut self) -> Result<&'a [u8], SshError> {
        let raw = self.string()?;
        if raw.first().is_some_and(|b| b & 0x80 != 0) {
            return Err(SshError::Malformed(
                "a negative number where a positive one belongs",
            ));
        }
        let start = raw.iter().position(|&b| b != 0).unwrap_or(raw.len());
        Ok(&raw[start..])
    }

    fn end(&self) -> Result<(), SshError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(SshError::Malformed("unexpected bytes after the last field"))
        }
    }
}

/// A public key we know how to check signatures with, kept with its wire blob (which is what identifies it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub key_type: &'static str,
    blob: Vec<u8>,
    material: Material,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Material {
    Ed25519(Vec<u8>),
    /// The uncompressed point, 65 bytes.
    EcdsaP256(Vec<u8>),
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
}

impl PublicKey {
    /// Parses a key blob (the base64-decoded key of an allowed_signers or authorized_keys line).
    pub fn from_blob(blob: &[u8]) -> Result<PublicKey, SshError> {
        let mut w = Wire(blob);
        let kind = w.text()?;
        let (key_type, material) = match kind {
            ED25519 => {
                let key = w.string()?;
                if key.len() != 32 {
                    return Err(SshError::Malformed("an ed25519 key is not 32 bytes"));
                }
                (ED25519, Material::Ed25519(key.to_vec()))
            }
            ECDSA_P256 => {
                if w.text()? != "nistp256" {
                    return Err(SshError::Malformed(
                        "an ecdsa-sha2-nistp256 key names another curve",
                    ));
                }
                let point = w.string()?;
                if point.len() != 65 || point[0] != 4 {
                    return Err(SshError::Malformed(
                        "a P-256 key is not an uncompressed point",
                    ));
                }
                (ECDSA_P256, Material::EcdsaP256(point.to_vec()))
            }
            RSA => {
                let e = w.unsigned_mpint()?.to_vec();
                let n = w.unsigned_mpint()?.to_vec();
                if e.is_empty() || n.is_empty() {
                    return Err(SshError::Malformed(
                        "an RSA key has a zero exponent or modulus",
                    ));
                }
                (RSA, Material::Rsa { n, e })
            }
            other => return Err(SshError::UnsupportedKey(other.to_string())),
        };
        w.end()?;
        Ok(PublicKey {
            key_type,
            blob: blob.to_vec(),
            material,
        })
    }

    /// The fingerprint as `ssh-keygen -l` prints it, so an operator can grep for it.
    pub fn fingerprint(&self) -> String {
        fingerprint_of(&self.blob)
    }

    pub fn blob(&self) -> &[u8] {
        &self.blob
    }

    fn verify(&self, sig_blob: &[u8], message: &[u8]) -> Result<(), SshError> {
        let mut w = Wire(sig_blob);
        let algorithm = w.text()?;
        let sig = w.string()?;
        w.end()?;
        let checked = match (&self.material, algorithm) {
            (Material::Ed25519(key), ED25519) => {
                signature::UnparsedPublicKey::new(&signature::ED25519, key).verify(message, sig)
            }
            (Material::EcdsaP256(point), ECDSA_P256) => {
                let fixed = ecdsa_fixed(sig)?;
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, &fixed)
            }
            (Material::Rsa { n, e }, "rsa-sha2-512" | "rsa-sha2-256") => {
                let params = if algorithm == "rsa-sha2-512" {
                    &signature::RSA_PKCS1_2048_8192_SHA512
                } else {
                    &signature::RSA_PKCS1_2048_8192_SHA256
                };
                signature::RsaPublicKeyComponents { n, e }.verify(params, message, sig)
            }
            (_, other) => return Err(SshError::UnsupportedSignature(other.to_string())),
        };
        checked.map_err(|_| SshError::Mismatch)
    }
}

pub fn fingerprint_of(blob: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, blob);
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest.as_ref())
    )
}

/// SSH sends ECDSA signatures as two mpints; ring wants r and s as fixed 32-byte halves.
fn ecdsa_fixed(sig: &[u8]) -> Result<[u8; 64], SshError> {
    let mut w = Wire(sig);
    let r = w.unsigned_mpint()?;
    let s = w.unsigned_mpint()?;
    w.end()?;
    if r.len() > 32 || s.len() > 32 {
        return Err(SshError::Malformed(
            "an ECDSA signature half is longer than 32 bytes",
        ));
    }
    let mut out = [0u8; 64];
    out[32 - r.len()..32].copy_from_slice(r);
    out[64 - s.len()..].copy_from_slice(s);
    Ok(out)
}

/// A parsed SSHSIG blob.
#[derive(Debug)]
pub struct SshSig {
    /// The signer's key blob; whether it is trusted is the caller's question.
    pub key_blob: Vec<u8>,
    namespace: String,
    reserved: Vec<u8>,
    hash: String,
    signature: Vec<u8>,
}

const MAGIC: &[u8] = b"SSHSIG";
const BEGIN: &str = "-----BEGIN SSH SIGNATURE-----";
const END: &str = "-----END SSH SIGNATURE-----";
/// Far above any real signature (an RSA-8192 one is about 2 KiB); bounds the work an attacker can ask for.
const MAX_ARMOR: usize = 64 * 1024;

impl SshSig {
    /// Parses `-----BEGIN SSH SIGNATURE-----` armor as git stores it.
    pub fn from_armor(text: &str) -> Result<SshSig, SshError> {
        if text.len() > MAX_ARMOR {
            return Err(SshError::Malformed("the signature is too large"));
        }
        let body = text
            .trim()
            .strip_prefix(BEGIN)
            .and_then(|rest| rest.trim_end().strip_suffix(END))
            .ok_or(SshError::Malformed("not an SSH SIGNATURE armor block"))?;
        let b64: String = body.split_whitespace().collect();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64.as_bytes())
            .map_err(|_| SshError::Malformed("the signature is not valid base64"))?;
        SshSig::from_bytes(&raw)
    }

    fn from_bytes(raw: &[u8]) -> Result<SshSig, SshError> {
        let mut w = Wire(raw);
        if w.bytes(MAGIC.len())? != MAGIC {
            return Err(SshError::Malformed(
                "the signature does not start with SSHSIG",
            ));
        }
        if w.u32()? != 1 {
            return Err(SshError::Malformed("unknown SSHSIG version"));
        }
        let key_blob = w.string()?.to_vec();
        let namespace = w.text()?.to_string();
        let reserved = w.string()?.to_vec();
        let hash = w.text()?.to_string();
        let signature = w.string()?.to_vec();
        w.end()?;
        Ok(SshSig {
            key_blob,
            namespace,
            reserved,
            hash,
            signature,
        })
    }

    pub fn fingerprint(&self) -> String {
        fingerprint_of(&self.key_blob)
    }

    /// Checks the signature over `payload` with `key`, which the caller found trusted for this signature's key blob.
    pub fn verify(&self, key: &PublicKey, payload: &[u8]) -> Result<(), SshError> {
        if self.namespace != GIT_NAMESPACE {
            return Err(SshError::Namespace(self.namespace.clone()));
        }
        if key.blob != self.key_blob {
            return Err(SshError::Malformed(
                "the key given is not the signature's key",
            ));
        }
        let digest = match self.hash.as_str() {
            "sha512" => ring::digest::digest(&ring::digest::SHA512, payload),
            "sha256" => ring::digest::digest(&ring::digest::SHA256, payload),
            other => return Err(SshError::UnsupportedHash(other.to_string())),
        };
        // What was actually signed (PROTOCOL.sshsig): the preamble, namespace, reserved, hash name and H(message).
        let mut signed = Vec::with_capacity(64 + digest.as_ref().len());
        signed.extend_from_slice(MAGIC);
        for field in [
            self.namespace.as_bytes(),
            &self.reserved,
            self.hash.as_bytes(),
            digest.as_ref(),
        ] {
            signed.extend_from_slice(&(field.len() as u32).to_be_bytes());
            signed.extend_from_slice(field);
        }
        key.verify(&self.signature, &signed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(out: &mut Vec<u8>, b: &[u8]) {
        out.extend_from_slice(&(b.len() as u32).to_be_bytes());
        out.extend_from_slice(b);
    }

    fn ed_blob(key: &[u8]) -> Vec<u8> {
        let mut blob = Vec::new();
        string(&mut blob, b"ssh-ed25519");
        string(&mut blob, key);
        blob
    }

    #[test]
    fn ed25519_blob_and_fingerprint() {
        let blob = ed_blob(&[7u8; 32]);
        let key = PublicKey::from_blob(&blob).unwrap();
        assert_eq!(key.key_type, ED25519);
        let fp = key.fingerprint();
        assert!(fp.starts_with("SHA256:") && !fp.ends_with('='), "{fp}");
        assert_eq!(fp.len(), "SHA256:".len() + 43);
    }

    #[test]
    fn truncated_or_padded_blobs_are_errors_not_panics() {
        let blob = ed_blob(&[7u8; 32]);
        for cut in 0..blob.len() {
            assert!(PublicKey::from_blob(&blob[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = blob.clone();
        longer.push(0);
        assert!(PublicKey::from_blob(&longer).is_err());
        // A length field claiming 4 GiB must not allocate or panic.
        let mut huge = Vec::new();
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(PublicKey::from_blob(&huge).is_err());
        assert!(SshSig::from_bytes(b"SSHSIG\0\0\0\x01\xff\xff\xff\xff").is_err());
        assert!(SshSig::from_bytes(b"SSHSIH").is_err());
    }

    #[test]
    fn unknown_key_types_are_named() {
        let mut blob = Vec::new();
        string(&mut blob, b"ssh-dss");
        assert_eq!(
            PublicKey::from_blob(&blob).unwrap_err(),
            SshError::UnsupportedKey("ssh-dss".into())
        );
    }

    #[test]
    fn ecdsa_halves_are_padded_and_stripped() {
        let mut sig = Vec::new();
        let mut r = vec![0u8];
        r.extend_from_slice(&[0x80; 32]);
        string(&mut sig, &r);
        string(&mut sig, &[1, 2]);
        let fixed = ecdsa_fixed(&sig).unwrap();
        assert_eq!(&fixed[..32], &[0x80; 32]);
        assert_eq!(&fixed[32..62], &[0; 30]);
        assert_eq!(&fixed[62..], &[1, 2]);
        let mut too_long = Vec::new();
        string(&mut too_long, &[0x11; 33]);
        string(&mut too_long, &[1]);
        assert!(ecdsa_fixed(&too_long).is_err());
    }

    /// A signature made here with ring, packed the way ssh-keygen packs it, verifies; any change to the payload,
    /// namespace or key does not.
    #[test]
    fn ed25519_sshsig_round_trip() {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        use ring::signature::KeyPair;
        let blob = ed_blob(pair.public_key().as_ref());
        let payload = b"tree 0000\n\nmessage\n";
        let sign = |namespace: &str| {
            let digest = ring::digest::digest(&ring::digest::SHA512, payload);
            let mut signed = MAGIC.to_vec();
            for f in [namespace.as_bytes(), b"", b"sha512", digest.as_ref()] {
                string(&mut signed, f);
            }
            let mut sig_blob = Vec::new();
            string(&mut sig_blob, b"ssh-ed25519");
            string(&mut sig_blob, pair.sign(&signed).as_ref());
            let mut raw = MAGIC.to_vec();
            raw.extend_from_slice(&1u32.to_be_bytes());
            for f in [&blob[..], namespace.as_bytes(), b"", b"sha512", &sig_blob] {
                string(&mut raw, f);
            }
            let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
            format!("{BEGIN}\n{b64}\n{END}\n")
        };
        let key = PublicKey::from_blob(&blob).unwrap();
        let sig = SshSig::from_armor(&sign("git")).unwrap();
        assert_eq!(sig.fingerprint(), key.fingerprint());
        sig.verify(&key, payload).unwrap();
        assert_eq!(sig.verify(&key, b"other"), Err(SshError::Mismatch));
        let file_sig = SshSig::from_armor(&sign("file")).unwrap();
        assert!(matches!(
            file_sig.verify(&key, payload),
            Err(SshError::Namespace(_))
        ));
        assert!(SshSig::from_armor(
            "-----BEGIN SSH SIGNATURE-----\n!!\n-----END SSH SIGNATURE-----"
        )
        .is_err());
    }

    /// Signatures made by the real ssh-keygen with the sha256 message hash (git uses sha512), for RSA and ECDSA.
    #[test]
    fn ssh_keygen_sha256_signatures_verify() {
        if std::process::Command::new("ssh-keygen")
            .arg("-?")
            .output()
            .is_err()
        {
            eprintln!("SKIPPED: ssh-keygen is not installed (apt-get install openssh-client)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let payload = dir.path().join("payload");
        std::fs::write(&payload, b"tree 1\n\nsigned\n").unwrap();
        for kind in ["rsa", "ecdsa"] {
            let key = dir.path().join(kind);
            let status = std::process::Command::new("ssh-keygen")
                .args(["-q", "-t", kind, "-N", "", "-f"])
                .arg(&key)
                .status()
                .unwrap();
            assert!(status.success());
            let sig_file = dir.path().join("payload.sig");
            let _ = std::fs::remove_file(&sig_file);
            let status = std::process::Command::new("ssh-keygen")
                .args([
                    "-q",
                    "-Y",
                    "sign",
                    "-n",
                    "git",
                    "-O",
                    "hashalg=sha256",
                    "-f",
                ])
                .arg(&key)
                .arg(&payload)
                .status()
                .unwrap();
            assert!(status.success());
            let public = std::fs::read_to_string(format!("{}.pub", key.display())).unwrap();
            let b64 = public.split_whitespace().nth(1).unwrap();
            let blob = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            let key = PublicKey::from_blob(&blob).unwrap();
            let sig = SshSig::from_armor(&std::fs::read_to_string(&sig_file).unwrap()).unwrap();
            assert_eq!(sig.hash, "sha256");
            sig.verify(&key, b"tree 1\n\nsigned\n").unwrap();
            assert_eq!(
                sig.verify(&key, b"tree 2\n\nsigned\n"),
                Err(SshError::Mismatch)
            );
        }
    }
}
