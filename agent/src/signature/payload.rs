//! Cutting the signed bytes and the signature out of raw commit and tag objects, the way git does, because a
//! signature is only as good as the agreement on what it covers: one byte of difference and a good signature
//! fails, or worse, a check covers less than the object that is applied.
//!
//! A commit carries its signature in a `gpgsig` header (continuation lines start with a space); the payload is
//! the object without it (and without any other `gpgsig*` header, as git leaves those out too). An annotated tag
//! carries its signature at the end of its message; the payload is the object up to the last line that starts a
//! signature.

/// A signature as found in an object, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    Ssh(String),
    Pgp(String),
    /// A kind we do not check (x509/CMS), by name.
    Other(&'static str),
}

/// The bytes a signature covers, the signature, and the object's own date (Unix seconds) for allowed_signers'
/// `valid-after`/`valid-before`, which git checks against the same date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub payload: Vec<u8>,
    pub signature: Option<Signature>,
    pub time: i64,
}

/// A tag object's signed part plus the fields that tie it to a ref and a commit.
#[derive(Debug)]
pub struct Tag {
    pub signed: Signed,
    /// The `object` header: what the tag points at.
    pub object: Option<String>,
    /// The `tag` header: the name the tagger gave it.
    pub name: Option<String>,
}

const SIG_HEADER: &[u8] = b"gpgsig ";

fn classify(armor: String) -> Signature {
    if armor.starts_with("-----BEGIN SSH SIGNATURE-----") {
        Signature::Ssh(armor)
    } else if armor.starts_with("-----BEGIN PGP SIGNATURE-----")
        || armor.starts_with("-----BEGIN PGP MESSAGE-----")
    {
        Signature::Pgp(armor)
    } else {
        Signature::Other("x509/CMS")
    }
}

/// A commit object whose signature cannot be taken apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("the commit has two gpgsig headers; re-sign it")]
    TwoSignatures,
    #[error("the commit's signature is not text")]
    NotText,
}

/// Splits a commit object. A commit with two `gpgsig` headers is refused: git would concatenate them, and
/// there is no honest reason to write one.
pub fn split_commit(raw: &[u8]) -> Result<Signed, Malformed> {
    let mut payload = Vec::with_capacity(raw.len());
    let mut signature: Option<Vec<u8>> = None;
    let mut in_sig = false;
    let mut skipping_other = false;
    let mut rest = raw;
    let mut time = 0;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let (line, after) = rest.split_at(end);
        if line == b"\n" {
            // The message starts: nothing past here is a header.
            payload.extend_from_slice(rest);
            break;
        }
        if line.starts_with(b" ") && (in_sig || skipping_other) {
            if in_sig {
                if let Some(sig) = signature.as_mut() {
                    sig.extend_from_slice(&line[1..]);
                }
            }
        } else if let Some(first) = line.strip_prefix(SIG_HEADER) {
            if signature.is_some() {
                return Err(Malformed::TwoSignatures);
            }
            signature = Some(first.to_vec());
            in_sig = true;
            skipping_other = false;
        } else if line.starts_with(b"gpgsig") {
            in_sig = false;
            skipping_other = true;
        } else {
            in_sig = false;
            skipping_other = false;
            if let Some(who) = line.strip_prefix(b"committer ") {
                time = object_time(who);
            }
            payload.extend_from_slice(line);
        }
        rest = after;
    }
    let signature = match signature {
        None => None,
        Some(bytes) => Some(classify(
            String::from_utf8(bytes).map_err(|_| Malformed::NotText)?,
        )),
    };
    Ok(Signed {
        payload,
        signature,
        time,
    })
}

/// Splits a tag object: everything before the last line that begins a signature is signed.
pub fn split_tag(raw: &[u8]) -> Tag {
    let mut start = raw.len();
    let mut pos = 0;
    let mut object = None;
    let mut name = None;
    let mut time = 0;
    let mut in_headers = true;
    while pos < raw.len() {
        let end = raw[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(raw.len(), |i| pos + i + 1);
        let line = &raw[pos..end];
        if line.starts_with(b"-----BEGIN ") && sig_marker(line) {
            start = pos;
        }
        if in_headers {
            let text = String::from_utf8_lossy(line);
            let text = text.trim_end_matches('\n');
            if text.is_empty() {
                in_headers = false;
            } else if let Some(v) = text.strip_prefix("object ") {
                object.get_or_insert_with(|| v.to_string());
            } else if let Some(v) = text.strip_prefix("tag ") {
                name.get_or_insert_with(|| v.to_string());
            } else if let Some(who) = line.strip_prefix(b"tagger ") {
                time = object_time(who);
            }
        }
        pos = end;
    }
    let signature = (start < raw.len())
        .then(|| String::from_utf8_lossy(&raw[start..]).into_owned())
        .map(classify);
    Tag {
        signed: Signed {
            payload: raw[..start].to_vec(),
            signature,
            time,
        },
        object,
        name,
    }
}

fn sig_marker(line: &[u8]) -> bool {
    [
        &b"-----BEGIN PGP SIGNATURE-----"[..],
        b"-----BEGIN PGP MESSAGE-----",
        b"-----BEGIN SSH SIGNATURE-----",
        b"-----BEGIN SIGNED MESSAGE-----",
    ]
    .iter()
    .any(|m| line.starts_with(m))
}

/// `Name <email> 1700000000 +0000` -> 1700000000; 0 when it cannot be read.
fn object_time(who: &[u8]) -> i64 {
    let text = String::from_utf8_lossy(who);
    let after_email = text.rsplit_once('>').map_or("", |(_, t)| t);
    after_email
        .split_whitespace()
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SSH_SIG: &str =
        "-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\nAAAA\n-----END SSH SIGNATURE-----";

    fn signed_commit() -> Vec<u8> {
        let indented = SSH_SIG.replace('\n', "\n ");
        format!(
            "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor A <a@x> 1700000000 +0000\ncommitter C <c@x> 1700000060 +0100\ngpgsig {indented}\n\nmessage\n\ngpgsig in the message stays\n"
        )
        .into_bytes()
    }

    #[test]
    fn commit_signature_is_cut_out_of_the_headers() {
        let s = split_commit(&signed_commit()).unwrap();
        assert_eq!(
            String::from_utf8(s.payload).unwrap(),
            "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor A <a@x> 1700000000 +0000\ncommitter C <c@x> 1700000060 +0100\n\nmessage\n\ngpgsig in the message stays\n"
        );
        assert_eq!(s.signature, Some(Signature::Ssh(format!("{SSH_SIG}\n"))));
        assert_eq!(s.time, 1_700_000_060);
    }

    #[test]
    fn unsigned_commit_and_other_signature_headers() {
        let raw = b"tree 1\ncommitter C <c@x> 5 +0000\ngpgsig-sha256 -----BEGIN PGP SIGNATURE-----\n more\n\nmsg\n";
        let s = split_commit(raw).unwrap();
        assert_eq!(s.signature, None);
        assert_eq!(s.payload, b"tree 1\ncommitter C <c@x> 5 +0000\n\nmsg\n");
        let twice = b"tree 1\ngpgsig a\ngpgsig b\n\nmsg\n";
        assert_eq!(split_commit(twice).unwrap_err(), Malformed::TwoSignatures);
        // No message, no trailing newline: still no panic.
        assert!(split_commit(b"tree 1").is_ok());
        assert!(split_commit(b"").is_ok());
        assert!(split_commit(b"gpgsig \xff\xfe\n\n").is_err());
    }

    #[test]
    fn tag_signature_is_the_last_marker_at_a_line_start() {
        let head = "object 1111111111111111111111111111111111111111\ntype commit\ntag v1.0.0\ntagger T <t@x> 1700000120 +0000\n\nrelease\n  -----BEGIN PGP SIGNATURE----- quoted, not at line start\n";
        let raw = format!("{head}{SSH_SIG}\n");
        let t = split_tag(raw.as_bytes());
        assert_eq!(String::from_utf8(t.signed.payload).unwrap(), head);
        assert_eq!(
            t.signed.signature,
            Some(Signature::Ssh(format!("{SSH_SIG}\n")))
        );
        assert_eq!(
            t.object.as_deref(),
            Some("1111111111111111111111111111111111111111")
        );
        assert_eq!(t.name.as_deref(), Some("v1.0.0"));
        assert_eq!(t.signed.time, 1_700_000_120);

        let unsigned = split_tag(head.as_bytes());
        assert_eq!(unsigned.signed.signature, None);
        assert_eq!(unsigned.signed.payload, head.as_bytes());

        let pgp = format!("{head}-----BEGIN PGP SIGNATURE-----\nxx\n-----END PGP SIGNATURE-----\n");
        assert!(matches!(
            split_tag(pgp.as_bytes()).signed.signature,
            Some(Signature::Pgp(_))
        ));
        let x509 = format!("{head}-----BEGIN SIGNED MESSAGE-----\nxx\n");
        assert_eq!(
            split_tag(x509.as_bytes()).signed.signature,
            Some(Signature::Other("x509/CMS"))
        );
        assert!(split_tag(b"").signed.signature.is_none());
    }

    #[test]
    fn dates() {
        assert_eq!(object_time(b"A B <a@b> 1700000000 +0200\n"), 1_700_000_000);
        assert_eq!(object_time(b"no date"), 0);
        assert_eq!(object_time(b"odd > name <a@b> 42 +0000"), 42);
    }
}
