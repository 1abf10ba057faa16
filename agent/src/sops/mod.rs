//! SOPS decryption with age identities, for manifests and kustomize generator inputs kept encrypted in Git.
//!
//! Role: turn one SOPS file (YAML, JSON, dotenv, or binary wrapped in JSON) into its plain form at apply time, so
//! the store only ever holds the encrypted text. A file's 32-byte data key is wrapped once per recipient in the
//! `sops` metadata; an age X25519 identity unwraps it (the `age` crate), then each `ENC[AES256_GCM,...]` value is
//! opened with it ([`cipher`]), and the MAC over every value is checked before anything is returned.
//!
//! Invariants: nothing partial comes out (a MAC mismatch, a value that fails to decrypt, or no fitting identity
//! is an error naming the file and the fix); errors never carry plaintext or key material.
//!
//! The MAC (SOPS `Tree.Decrypt` and `common.DecryptTree`): SHA-512 over the plaintext bytes of every leaf value
//! in document order (only the encrypted ones, after a fixed 32-byte prefix, when `mac_only_encrypted` is
//! set), as upper-case hex; SOPS stores it encrypted under the data key with `lastmodified` as additional data.
//! The order of keys matters, which is why files are parsed here from text into an ordered [`tree::Node`].

mod cipher;
mod identities;
mod metadata;
mod tree;

#[cfg(test)]
mod sealed_tests;
#[cfg(test)]
mod tests;

use serde_json::Value;

pub use identities::{Identities, IdentityError, SealError};
use metadata::Metadata;
use tree::Node;

/// What a file is: SOPS chooses the store by file extension, and so does Flux for generator inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
    Dotenv,
    /// Any other file: SOPS wraps its bytes as the `data` value of a JSON document.
    Binary,
}

impl Format {
    /// The format SOPS would pick for `path`.
    pub fn for_path(path: &str) -> Format {
        let ext = path.rsplit_once('.').map_or("", |(_, e)| e);
        match ext {
            "yaml" | "yml" => Format::Yaml,
            "json" => Format::Json,
            "env" => Format::Dotenv,
            _ => Format::Binary,
        }
    }
}

/// A decrypted file.
#[derive(Debug, Clone, PartialEq)]
pub enum Plain {
    /// YAML or JSON: each document, without its `sops` entry.
    Documents(Vec<Value>),
    /// A dotenv file as SOPS prints it: `KEY=value` lines, newlines inside values written `\n`.
    Dotenv(String),
    /// A binary file's bytes.
    Binary(Vec<u8>),
}

/// Why a SOPS file could not be decrypted. Each names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum SopsError {
    #[error("{file}: not a SOPS file (no `sops` metadata with a `mac`); encrypt it with `sops --encrypt --age RECIPIENT --in-place {file}`")]
    NotSops { file: String },
    #[error("{file}: malformed SOPS file: {problem}; encrypt it again with `sops`, or restore the version sops wrote")]
    Malformed { file: String, problem: String },
    #[error("{file}: encrypted only for {kinds}, not for an age recipient; add the agent's age recipient (`sops --add-age age1... --rotate --in-place {file}`, or list it in .sops.yaml and run `sops updatekeys {file}`)")]
    NoAgeRecipient { file: String, kinds: String },
    #[error("{file}: none of the age identities in {identities} can decrypt it: the file is encrypted for {recipients}, the identities are for {ours}; add the matching identity to {identities}, or add one of ours to .sops.yaml and run `sops updatekeys {file}`")]
    NoMatchingIdentity {
        file: String,
        identities: String,
        recipients: String,
        ours: String,
    },
    #[error("{file}: MAC mismatch: the file was changed after sops encrypted it (edited without sops, merged by Git, or tampered with); edit it with `sops {file}` and commit what sops writes")]
    MacMismatch { file: String },
    #[error("{file}: the value at {path} cannot be decrypted: {problem}; edit the file with `sops {file}` rather than by hand")]
    Value {
        file: String,
        path: String,
        problem: String,
    },
}

/// What went wrong inside the parser and cipher, before it is tied to a file.
#[derive(Debug)]
pub(crate) struct Problem(pub(crate) String);

impl From<String> for Problem {
    fn from(s: String) -> Problem {
        Problem(s)
    }
}

impl From<&str> for Problem {
    fn from(s: &str) -> Problem {
        Problem(s.to_string())
    }
}

impl std::ops::Deref for Problem {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The prefix of flattened metadata keys in dotenv files.
const DOTENV_PREFIX: &str = "sops_";
/// Written before the values when `mac_only_encrypted` is set, so such a MAC never equals a full one: the
/// SHA-256 of "sops" (SOPS `MACOnlyEncryptedInitialization`).
const MAC_ONLY_ENCRYPTED_INIT: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b,
    0x0b, 0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];

/// True when `text` is a SOPS file of `format` (has the metadata SOPS writes). Cheap for files that are not.
pub fn is_sops(text: &str, format: Format) -> bool {
    if !text.contains("sops") {
        return false;
    }
    match format {
        Format::Dotenv => text.lines().any(|l| l.starts_with("sops_mac=")),
        Format::Yaml => tree::parse_yaml(text)
            .ok()
            .and_then(|docs| docs.into_iter().next())
            .is_some_and(|doc| has_metadata(&doc)),
        Format::Json | Format::Binary => tree::parse_json(text).is_ok_and(|doc| has_metadata(&doc)),
    }
}

fn has_metadata(doc: &Node) -> bool {
    doc.get("sops").is_some_and(|m| m.get("mac").is_some())
}

/// Decrypts one SOPS file. `file` names it in errors (its path in the repository).
pub fn decrypt_document(
    file: &str,
    text: &str,
    format: Format,
    identities: &Identities,
) -> Result<Plain, SopsError> {
    decrypt_revealing(file, text, format, identities).map(|(plain, _)| plain)
}

/// Like [`decrypt_document`], and also returns the plaintext of every value that was encrypted, so the caller
/// can tell which built objects carry them (and keep those out of anything written to disk).
pub fn decrypt_revealing(
    file: &str,
    text: &str,
    format: Format,
    identities: &Identities,
) -> Result<(Plain, Vec<String>), SopsError> {
    let malformed = |problem: Problem| SopsError::Malformed {
        file: file.to_string(),
        problem: problem.0,
    };
    match format {
        Format::Yaml | Format::Json | Format::Binary => {
            let mut docs = if format == Format::Yaml {
                tree::parse_yaml(text).map_err(malformed)?
            } else {
                vec![tree::parse_json(text).map_err(malformed)?]
            };
            // SOPS reads the metadata of the first document and ignores (drops) the copies in the others.
            let meta = match docs.first_mut().and_then(take_metadata) {
                Some(meta) => meta,
                None => {
                    return Err(SopsError::NotSops {
                        file: file.to_string(),
                    })
                }
            };
            for doc in docs.iter_mut().skip(1) {
                take_metadata(doc);
            }
            let meta = metadata::parse(&meta).map_err(malformed)?;
            let (plain, revealed) = decrypt_tree(file, docs, &meta, identities)?;
            if format == Format::Binary {
                return match plain.into_iter().next().and_then(|d| match d {
                    Node::Map(entries) => entries.into_iter().find(|(k, _)| k == "data"),
                    _ => None,
                }) {
                    Some((_, Node::Str(data))) => Ok((Plain::Binary(data.into_bytes()), revealed)),
                    _ => Err(malformed(
                        "a binary SOPS file has no string `data` value".into(),
                    )),
                };
            }
            let docs = plain
                .into_iter()
                .map(Node::into_json)
                .collect::<Result<_, _>>()
                .map_err(malformed)?;
            Ok((Plain::Documents(docs), revealed))
        }
        Format::Dotenv => decrypt_dotenv(file, text, identities),
    }
}

fn take_metadata(doc: &mut Node) -> Option<Node> {
    let Node::Map(entries) = doc else { return None };
    let at = entries.iter().position(|(k, _)| k == "sops")?;
    Some(entries.remove(at).1)
}

/// Unwraps the data key, decrypts every document and checks the MAC. Also returns the decrypted values.
fn decrypt_tree(
    file: &str,
    docs: Vec<Node>,
    meta: &Metadata,
    identities: &Identities,
) -> Result<(Vec<Node>, Vec<String>), SopsError> {
    let key = data_key(file, meta, identities)?;
    let mut walk = Walk::new(file, meta, &key);
    let plain = docs
        .into_iter()
        .map(|doc| walk.node(doc, &mut Vec::new()))
        .collect::<Result<Vec<_>, _>>()?;
    let revealed = walk.check_mac()?;
    Ok((plain, revealed))
}

fn data_key(
    file: &str,
    meta: &Metadata,
    identities: &Identities,
) -> Result<cipher::DataKey, SopsError> {
    if meta.age.is_empty() {
        return Err(SopsError::NoAgeRecipient {
            file: file.to_string(),
            kinds: if meta.other_kinds.is_empty() {
                "no key at all".to_string()
            } else {
                meta.other_kinds.join(", ")
            },
        });
    }
    match identities.unwrap(&meta.age) {
        Ok(Some(key)) => Ok(key),
        Ok(None) => Err(SopsError::NoMatchingIdentity {
            file: file.to_string(),
            identities: identities.source().to_string(),
            recipients: meta
                .age
                .iter()
                .map(|s| s.recipient.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            ours: identities.recipients().join(", "),
        }),
        Err(problem) => Err(SopsError::Malformed {
            file: file.to_string(),
            problem: problem.0,
        }),
    }
}

/// One pass over the values: decrypts what the file's rule says is encrypted and feeds the MAC.
struct Walk<'a> {
    file: &'a str,
    meta: &'a Metadata,
    key: &'a cipher::DataKey,
    hash: ring::digest::Context,
    /// The plaintext of each value that was encrypted.
    revealed: Vec<String>,
}

impl<'a> Walk<'a> {
    fn new(file: &'a str, meta: &'a Metadata, key: &'a cipher::DataKey) -> Walk<'a> {
        let mut hash = ring::digest::Context::new(&ring::digest::SHA512);
        if meta.mac_only_encrypted {
            hash.update(&MAC_ONLY_ENCRYPTED_INIT);
        }
        Walk {
            file,
            meta,
            key,
            hash,
            revealed: Vec::new(),
        }
    }

    fn node(&mut self, node: Node, path: &mut Vec<String>) -> Result<Node, SopsError> {
        match node {
            Node::Map(entries) => {
                let mut out = Vec::with_capacity(entries.len());
                for (k, v) in entries {
                    path.push(k);
                    let v = self.node(v, path)?;
                    let k = path.pop().unwrap_or_default();
                    out.push((k, v));
                }
                Ok(Node::Map(out))
            }
            Node::Seq(items) => items
                .into_iter()
                .map(|item| self.node(item, path))
                .collect::<Result<_, _>>()
                .map(Node::Seq),
            // SOPS neither decrypts nor hashes nulls.
            Node::Null => Ok(Node::Null),
            leaf => self.leaf(leaf, path),
        }
    }

    fn leaf(&mut self, leaf: Node, path: &[String]) -> Result<Node, SopsError> {
        let keys: Vec<&str> = path.iter().map(String::as_str).collect();
        let looks = matches!(&leaf, Node::Str(s) if cipher::looks_encrypted(s));
        let encrypted = self.meta.rule.encrypted(&keys, looks);
        let value = if encrypted {
            let value_error = |problem: &str| SopsError::Value {
                file: self.file.to_string(),
                path: keys.join("."),
                problem: problem.to_string(),
            };
            let Node::Str(text) = &leaf else {
                return Err(value_error(
                    "the file's rules say it is encrypted, but it is a plain value",
                ));
            };
            match cipher::decrypt(text, self.key, &format!("{}:", keys.join(":"))) {
                Ok(cipher::Plain::Value(v)) => v,
                Ok(cipher::Plain::Comment(_)) => {
                    return Err(value_error("it is an encrypted comment, not a value"))
                }
                Err(problem) => return Err(value_error(&problem)),
            }
        } else {
            leaf
        };
        let bytes = value.mac_bytes();
        if let (true, Some(bytes)) = (encrypted, &bytes) {
            self.revealed
                .push(String::from_utf8_lossy(bytes).into_owned());
        }
        if !self.meta.mac_only_encrypted || encrypted {
            if let Some(bytes) = bytes {
                self.hash.update(&bytes);
            }
        }
        Ok(value)
    }

    /// Checks the MAC; on success, hands back the decrypted values.
    fn check_mac(self) -> Result<Vec<String>, SopsError> {
        let computed = hex_upper(self.hash.finish().as_ref());
        let stored = match cipher::decrypt(&self.meta.mac, self.key, &self.meta.last_modified) {
            Ok(cipher::Plain::Value(Node::Str(mac))) => mac,
            // A MAC that does not open under the data key with this lastmodified was altered, or lastmodified was.
            _ => {
                return Err(SopsError::MacMismatch {
                    file: self.file.to_string(),
                })
            }
        };
        // A plain comparison is enough: the stored MAC is itself authenticated under the data key, so it cannot
        // be forged by trying values against the timing of this check.
        if computed != stored {
            return Err(SopsError::MacMismatch {
                file: self.file.to_string(),
            });
        }
        Ok(self.revealed)
    }
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// One line of a dotenv file, as SOPS's dotenv store reads it.
enum Line {
    Comment(String),
    Entry(String, String),
}

fn decrypt_dotenv(
    file: &str,
    text: &str,
    identities: &Identities,
) -> Result<(Plain, Vec<String>), SopsError> {
    let malformed = |problem: Problem| SopsError::Malformed {
        file: file.to_string(),
        problem: problem.0,
    };
    let mut lines = Vec::new();
    let mut flat_meta = Vec::new();
    for (n, line) in text.split('\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            lines.push(Line::Comment(comment.to_string()));
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| malformed(format!("line {} has no `=`", n + 1).into()))?;
        let value = value.replace("\\n", "\n");
        match key.strip_prefix(DOTENV_PREFIX) {
            Some(meta_key) => flat_meta.push((meta_key.to_string(), value)),
            None => lines.push(Line::Entry(key.to_string(), value)),
        }
    }
    if !flat_meta.iter().any(|(k, _)| k == "mac") {
        return Err(SopsError::NotSops {
            file: file.to_string(),
        });
    }
    let meta =
        metadata::parse(&metadata::unflatten(flat_meta).map_err(malformed)?).map_err(malformed)?;
    let key = data_key(file, &meta, identities)?;
    let mut walk = Walk::new(file, &meta, &key);
    let mut out = String::new();
    for line in lines {
        match line {
            Line::Comment(c) => {
                // SOPS encrypts comments too (outside the MAC) and keeps one that does not open as it is.
                let c = match cipher::decrypt(&c, &key, ":") {
                    Ok(cipher::Plain::Comment(plain)) if cipher::looks_encrypted(&c) => plain,
                    _ => c,
                };
                out.push('#');
                out.push_str(&c);
            }
            Line::Entry(k, v) => {
                let mut path = vec![k];
                let value = walk.leaf(Node::Str(v), &path)?;
                let k = path.pop().unwrap_or_default();
                let text = match value {
                    Node::Str(s) => s.replace('\n', "\\n"),
                    other => other
                        .mac_bytes()
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default(),
                };
                out.push_str(&k);
                out.push('=');
                out.push_str(&text);
            }
        }
        out.push('\n');
    }
    let revealed = walk.check_mac()?;
    Ok((Plain::Dotenv(out), revealed))
}
