//! One encrypted SOPS value: `ENC[AES256_GCM,data:<b64>,iv:<b64>,tag:<b64>,type:<type>]`.
//!
//! AES-256-GCM under the file's data key, with the value's path in the tree (`key:sub:`) as additional data, so
//! a value moved to another key no longer decrypts. SOPS draws 32-byte IVs; ring's AEAD takes only the
//! standard 12-byte nonce (a 32-byte IV needs GHASH to derive the counter block, which ring does not expose),
//! so this uses RustCrypto's `aes-gcm`, which implements GCM for any nonce length.

use aes_gcm::aead::consts::U32;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use aes_gcm::AesGcm;
use base64::Engine as _;

use super::tree::Node;
use super::Problem;

/// The IV length SOPS writes (`aes.nonceSize`).
const IV_LEN: usize = 32;
const TAG_LEN: usize = 16;

type Aes256Gcm32 = AesGcm<Aes256, U32>;

/// A 32-byte data key, wiped (best effort) when dropped.
pub(crate) struct DataKey([u8; 32]);

impl DataKey {
    pub(crate) fn new(bytes: &[u8]) -> Option<DataKey> {
        Some(DataKey(bytes.try_into().ok()?))
    }
}

impl Drop for DataKey {
    fn drop(&mut self) {
        self.0.fill(0);
        std::hint::black_box(&self.0);
    }
}

/// True when `text` has the shape of an encrypted value (used for comments, whose encryption SOPS guesses too).
pub(crate) fn looks_encrypted(text: &str) -> bool {
    text.starts_with("ENC[AES256_GCM,") && text.ends_with(']')
}

/// What a decrypted value is, from its `type:` field.
#[derive(Debug, PartialEq)]
pub(crate) enum Plain {
    Value(Node),
    /// A YAML comment SOPS encrypted; it has no place in the values.
    Comment(String),
}

/// Decrypts one value; `Err` says what is wrong, without any secret in it. An empty string is SOPS's encrypted
/// form of the empty string.
pub(crate) fn decrypt(text: &str, key: &DataKey, additional_data: &str) -> Result<Plain, Problem> {
    if text.is_empty() {
        return Ok(Plain::Value(Node::Str(String::new())));
    }
    let fields = parse(text)?;
    let cipher = Aes256Gcm32::new_from_slice(&key.0).map_err(|_| "bad data key length")?;
    let mut sealed = fields.data;
    sealed.extend_from_slice(&fields.tag);
    let nonce = aes_gcm::Nonce::<U32>::from_slice(&fields.iv);
    let plain = cipher
        .decrypt(
            nonce,
            Payload {
                msg: &sealed,
                aad: additional_data.as_bytes(),
            },
        )
        .map_err(|_| "AES-GCM authentication failed (wrong data key, or the value was altered or moved to another key)".to_string())?;
    let as_text = || {
        String::from_utf8(plain.clone()).map_err(|_| "the decrypted value is not UTF-8".to_string())
    };
    Ok(match fields.kind.as_str() {
        "str" | "bytes" | "time" => Plain::Value(Node::Str(as_text()?)),
        "int" => Plain::Value(Node::Int(
            as_text()?
                .parse()
                .map_err(|_| "a value of type int is not an integer")?,
        )),
        "float" => Plain::Value(Node::Float(
            as_text()?
                .parse()
                .map_err(|_| "a value of type float is not a number")?,
        )),
        "bool" => Plain::Value(Node::Bool(
            parse_go_bool(&as_text()?).ok_or("a value of type bool is not a boolean")?,
        )),
        "comment" => Plain::Comment(as_text()?),
        other => return Err(Problem(format!("unknown value type {other:?}"))),
    })
}

struct Fields {
    data: Vec<u8>,
    iv: Vec<u8>,
    tag: Vec<u8>,
    kind: String,
}

fn parse(text: &str) -> Result<Fields, Problem> {
    let inner = text
        .strip_prefix("ENC[AES256_GCM,")
        .and_then(|t| t.strip_suffix(']'))
        .ok_or("not of the form ENC[AES256_GCM,data:...,iv:...,tag:...,type:...]")?;
    let mut data = None;
    let mut iv = None;
    let mut tag = None;
    let mut kind = None;
    for part in inner.split(',') {
        let (name, value) = part
            .split_once(':')
            .ok_or("a field of ENC[...] has no name")?;
        let decode = || {
            base64::engine::general_purpose::STANDARD
                .decode(value)
                .map_err(|_| format!("the {name} field of ENC[...] is not base64"))
        };
        match name {
            "data" => data = Some(decode()?),
            "iv" => iv = Some(decode()?),
            "tag" => tag = Some(decode()?),
            "type" => kind = Some(value.to_string()),
            other => return Err(Problem(format!("unknown field {other:?} in ENC[...]"))),
        }
    }
    let missing = |f| format!("ENC[...] has no {f} field");
    let fields = Fields {
        data: data.ok_or_else(|| missing("data"))?,
        iv: iv.ok_or_else(|| missing("iv"))?,
        tag: tag.ok_or_else(|| missing("tag"))?,
        kind: kind.ok_or_else(|| missing("type"))?,
    };
    if fields.iv.len() != IV_LEN {
        return Err(Problem(format!(
            "the IV is {} bytes; SOPS writes {IV_LEN}",
            fields.iv.len()
        )));
    }
    if fields.tag.len() != TAG_LEN {
        return Err(Problem(format!(
            "the tag is {} bytes; AES-GCM tags are {TAG_LEN}",
            fields.tag.len()
        )));
    }
    Ok(fields)
}

/// Go's `strconv.ParseBool`, which SOPS uses for `type:bool`.
fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Test-only encryption, to build files for cases the public fixtures do not cover (tampering, selection keys,
/// types). Only trusted because the same decryption passes the published known-answer files.
#[cfg(test)]
pub(crate) fn encrypt(plain: &[u8], kind: &str, key: &DataKey, additional_data: &str) -> String {
    use base64::engine::general_purpose::STANDARD;
    let iv: [u8; IV_LEN] = rand::random();
    let cipher = Aes256Gcm32::new_from_slice(&key.0).expect("32-byte key");
    let sealed = cipher
        .encrypt(
            aes_gcm::Nonce::<U32>::from_slice(&iv),
            Payload {
                msg: plain,
                aad: additional_data.as_bytes(),
            },
        )
        .expect("encryption of a small value");
    let (data, tag) = sealed.split_at(sealed.len() - TAG_LEN);
    format!(
        "ENC[AES256_GCM,data:{},iv:{},tag:{},type:{kind}]",
        STANDARD.encode(data),
        STANDARD.encode(iv),
        STANDARD.encode(tag)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SOPS's own known answer (aes/cipher_test.go `TestDecrypt`): key 32 × 'f', additional data "bar:".
    const SOPS_VECTOR: &str = "ENC[AES256_GCM,data:oYyi,iv:MyIDYbT718JRr11QtBkcj3Dwm4k1aCGZBVeZf0EyV8o=,tag:t5z2Z023Up0kxwCgw1gNxg==,type:str]";

    fn f_key() -> DataKey {
        DataKey::new(&[b'f'; 32]).unwrap()
    }

    #[test]
    fn sops_known_answer() {
        assert_eq!(
            decrypt(SOPS_VECTOR, &f_key(), "bar:").unwrap(),
            Plain::Value(Node::Str("foo".into()))
        );
    }

    #[test]
    fn wrong_additional_data_or_key_fails() {
        let err = decrypt(SOPS_VECTOR, &f_key(), "").unwrap_err();
        assert!(err.contains("authentication failed"), "{err}");
        let other = DataKey::new(&[b'g'; 32]).unwrap();
        assert!(decrypt(SOPS_VECTOR, &other, "bar:").is_err());
    }

    #[test]
    fn malformed_values_are_named() {
        let key = f_key();
        assert!(decrypt("ENC[AES256_GCM,data:oYyi]", &key, "")
            .unwrap_err()
            .contains("no iv"));
        assert!(
            decrypt("ENC[AES256_GCM,data:%%,iv:a,tag:b,type:str]", &key, "")
                .unwrap_err()
                .contains("not base64")
        );
        assert!(decrypt("plain", &key, "")
            .unwrap_err()
            .contains("not of the form"));
    }

    #[test]
    fn types_round_trip() {
        let key = f_key();
        for (plain, kind, want) in [
            ("42", "int", Node::Int(42)),
            ("2.5", "float", Node::Float(2.5)),
            ("True", "bool", Node::Bool(true)),
            ("x y", "str", Node::Str("x y".into())),
        ] {
            let enc = encrypt(plain.as_bytes(), kind, &key, "a:b:");
            assert_eq!(decrypt(&enc, &key, "a:b:").unwrap(), Plain::Value(want));
        }
        let enc = encrypt(b"note", "comment", &key, "");
        assert_eq!(
            decrypt(&enc, &key, "").unwrap(),
            Plain::Comment("note".into())
        );
    }
}
