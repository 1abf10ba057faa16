//! The OpenSSH allowed_signers file (ssh-keygen(1), "ALLOWED SIGNERS"), the same file `git` reads through
//! `gpg.ssh.allowedSignersFile`, so a site can reuse the one its developers already keep.
//!
//! Each line: `principals [options] keytype base64-key [comment]`. Principals are only shown, never matched
//! (git does not match them against the committer either): being listed is what makes a key trusted. The whole
//! file is parsed at load time and any line we cannot honour is an error naming the line, because skipping a
//! line silently would distrust a key the operator meant to trust, or worse, ignore a restriction on it.

use std::path::{Path, PathBuf};

use base64::Engine;

use super::ssh::{self, PublicKey, SshError};

#[derive(Debug, thiserror::Error)]
pub enum SignersError {
    #[error("cannot read allowed_signers {path}: {error}; check the path in [source.verify] and that the agent's user may read it")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("allowed_signers {path} line {line}: {problem}")]
    Line {
        path: PathBuf,
        line: usize,
        problem: LineProblem,
    },
    #[error("allowed_signers {path} lists no key; add a line such as `ops@example.com ssh-ed25519 AAAA...`")]
    Empty { path: PathBuf },
}

/// One trusted key and the limits its line puts on it.
#[derive(Debug, Clone)]
pub struct Signer {
    pub principals: String,
    pub key: PublicKey,
    pub line: usize,
    /// `namespaces="..."`, when given; the key then only counts for signatures in one of these.
    namespaces: Option<Vec<String>>,
    /// Unix seconds.
    valid_after: Option<i64>,
    valid_before: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct AllowedSigners {
    pub path: PathBuf,
    signers: Vec<Signer>,
}

/// Why a listed key still does not count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotListed,
    /// Listed, but its line says so (`namespaces`, `valid-after`, `valid-before`); the text says which line.
    Restricted(String),
}

impl AllowedSigners {
    pub fn load(path: &Path) -> Result<AllowedSigners, SignersError> {
        let text = std::fs::read_to_string(path).map_err(|error| SignersError::Read {
            path: path.to_owned(),
            error,
        })?;
        AllowedSigners::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<AllowedSigners, SignersError> {
        let mut signers = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let signer = parse_line(line, i + 1).map_err(|problem| SignersError::Line {
                path: path.to_owned(),
                line: i + 1,
                problem,
            })?;
            signers.push(signer);
        }
        if signers.is_empty() {
            return Err(SignersError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(AllowedSigners {
            path: path.to_owned(),
            signers,
        })
    }

    /// The line trusting `key_blob` for a `git` signature made at `time` (Unix seconds, the commit's or tag's own
    /// date, as git itself checks it).
    pub fn trusted(&self, key_blob: &[u8], time: i64) -> Result<&Signer, Refusal> {
        let mut refusal = Refusal::NotListed;
        for s in self.signers.iter().filter(|s| s.key.blob() == key_blob) {
            let why = if s
                .namespaces
                .as_ref()
                .is_some_and(|ns| !ns.iter().any(|n| n == ssh::GIT_NAMESPACE))
            {
                Some("does not allow namespace \"git\" (namespaces=...)".to_string())
            } else if s.valid_after.is_some_and(|t| time < t) {
                Some("is not valid yet at the signature's date (valid-after)".into())
            } else if s.valid_before.is_some_and(|t| time > t) {
                Some("is no longer valid at the signature's date (valid-before)".into())
            } else {
                None
            };
            match why {
                None => return Ok(s),
                Some(why) => refusal = Refusal::Restricted(format!("line {} {why}", s.line)),
            }
        }
        Err(refusal)
    }
}

/// What is wrong with one line of an allowed_signers file.
#[derive(Debug, thiserror::Error)]
pub enum LineProblem {
    #[error("no key after the principals; write `principals keytype base64-key`")]
    NoKey,
    #[error("no key after the options; write `principals [options] keytype base64-key`")]
    NoKeyAfterOptions,
    #[error("{0:?} is not an SSH key type; write `principals [options] keytype base64-key`")]
    NotAKeyType(String),
    #[error("the key's base64 text is missing after the key type")]
    NoBase64,
    #[error("the key is not valid base64; copy it whole from the .pub file")]
    BadBase64,
    #[error(transparent)]
    Key(#[from] SshError),
    #[error("the line says {said} but the key is {found}; copy the line from the .pub file")]
    TypeMismatch { said: String, found: String },
    #[error(
        "cert-authority: SSH certificates are not supported; list the signers' own keys instead"
    )]
    CertAuthority,
    #[error("option {0:?} is not understood; allowed are namespaces=\"...\", valid-after=\"...\", valid-before=\"...\"")]
    UnknownOption(String),
    #[error("a double quote is not closed")]
    OpenQuote,
    #[error("option value {0:?} is not quoted properly")]
    BadQuoting(String),
    #[error(transparent)]
    Time(#[from] BadTime),
}

/// A time in an option that is not `YYYYMMDD[HHMM[SS]][Z]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("time {0:?} is not YYYYMMDD, YYYYMMDDHHMM or YYYYMMDDHHMMSS (optionally ending in Z)")]
pub struct BadTime(pub String);

fn parse_line(line: &str, number: usize) -> Result<Signer, LineProblem> {
    let fields = split_fields(line)?;
    let mut fields = fields.iter().map(String::as_str);
    // Blank lines are skipped before this is called, so there is always a first field.
    let principals = fields
        .next()
        .unwrap_or_default()
        .trim_matches('"')
        .to_string();
    let mut next = fields.next().ok_or(LineProblem::NoKey)?;
    let mut options = None;
    if !is_key_type(next) {
        options = Some(next);
        next = fields.next().ok_or(LineProblem::NoKeyAfterOptions)?;
    }
    let key_type = next;
    if !is_key_type(key_type) {
        return Err(LineProblem::NotAKeyType(key_type.to_string()));
    }
    let b64 = fields.next().ok_or(LineProblem::NoBase64)?;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| LineProblem::BadBase64)?;
    let key = PublicKey::from_blob(&blob)?;
    if key.key_type != key_type {
        return Err(LineProblem::TypeMismatch {
            said: key_type.to_string(),
            found: key.key_type.to_string(),
        });
    }
    let mut signer = Signer {
        principals,
        key,
        line: number,
        namespaces: None,
        valid_after: None,
        valid_before: None,
    };
    if let Some(options) = options {
        apply_options(&mut signer, options)?;
    }
    Ok(signer)
}

fn is_key_type(field: &str) -> bool {
    field.starts_with("ssh-")
        || field.starts_with("ecdsa-")
        || field.starts_with("sk-")
        || field.contains("-cert-v01@")
}

fn apply_options(signer: &mut Signer, options: &str) -> Result<(), LineProblem> {
    for option in split_outside_quotes(options, ',') {
        let (name, value) = match option.split_once('=') {
            Some((n, v)) => (n, Some(unquote(v)?)),
            None => (option.as_str(), None),
        };
        match (name.to_ascii_lowercase().as_str(), value) {
            ("cert-authority", _) => return Err(LineProblem::CertAuthority),
            ("namespaces", Some(v)) => {
                signer.namespaces = Some(v.split(',').map(|n| n.trim().to_string()).collect())
            }
            ("valid-after", Some(v)) => signer.valid_after = Some(parse_time(&v)?),
            ("valid-before", Some(v)) => signer.valid_before = Some(parse_time(&v)?),
            (other, _) => return Err(LineProblem::UnknownOption(other.to_string())),
        }
    }
    Ok(())
}

/// Splits on whitespace, keeping double-quoted text (which may hold spaces) inside its field.
fn split_fields(line: &str) -> Result<Vec<String>, LineProblem> {
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !current.is_empty() {
                    fields.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if quoted {
        return Err(LineProblem::OpenQuote);
    }
    if !current.is_empty() {
        fields.push(current);
    }
    Ok(fields)
}

fn split_outside_quotes(text: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in text.chars() {
        if c == '"' {
            quoted = !quoted;
        }
        if c == sep && !quoted {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    parts.push(current);
    parts
}

fn unquote(v: &str) -> Result<String, LineProblem> {
    match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => Ok(inner.to_string()),
        None if !v.contains('"') => Ok(v.to_string()),
        None => Err(LineProblem::BadQuoting(v.to_string())),
    }
}

/// `YYYYMMDD[HHMM[SS]][Z]`, as ssh-keygen takes it. ssh-keygen reads a time without `Z` as local time; an edge box
/// runs in UTC as often as not, so both are read as UTC here, and the README says so.
pub fn parse_time(text: &str) -> Result<i64, BadTime> {
    let bad = || BadTime(text.to_string());
    let digits = text.strip_suffix(['Z', 'z']).unwrap_or(text);
    if !digits.chars().all(|c| c.is_ascii_digit()) || ![8, 12, 14].contains(&digits.len()) {
        return Err(bad());
    }
    let field = |range: std::ops::Range<usize>| digits.get(range).unwrap_or("00");
    // The wire's RFC 3339 parser does the calendar (and refuses a 31st of April).
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        field(0..4),
        field(4..6),
        field(6..8),
        field(8..10),
        field(10..12),
        field(12..14)
    );
    outpost_proto::wire::parse_timestamp(&rfc3339).ok_or_else(bad)
}

/// Unix seconds as `2020-01-02 01:00:00 UTC`, for messages about key lifetimes.
pub fn utc(secs: i64) -> String {
    match outpost_proto::wire::format_timestamp(secs) {
        Some(t) => format!("{} {} UTC", &t[..10], &t[11..19]),
        None => format!("{secs} seconds after 1970"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real ssh-keygen ed25519 public key.
    const ED: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

    fn parse(text: &str) -> Result<AllowedSigners, SignersError> {
        AllowedSigners::parse(Path::new("/etc/outpost/allowed_signers"), text)
    }

    fn blob() -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(ED)
            .unwrap()
    }

    #[test]
    fn plain_lines_comments_and_options() {
        let text = format!(
            "# ops keys\n\nops@example.com ssh-ed25519 {ED} laptop\n\"a b@x\",c@y namespaces=\"file,git\",valid-after=\"20240101\" ssh-ed25519 {ED}\n"
        );
        let signers = parse(&text).unwrap();
        assert_eq!(signers.signers.len(), 2);
        assert_eq!(signers.signers[0].principals, "ops@example.com");
        assert_eq!(signers.signers[0].line, 3);
        assert_eq!(
            signers.signers[1].namespaces.as_deref(),
            Some(&["file".to_string(), "git".to_string()][..])
        );
        assert_eq!(signers.signers[1].valid_after, Some(1_704_067_200));
        assert!(signers.trusted(&blob(), 0).is_ok());
        assert_eq!(
            signers.trusted(b"other", 0).unwrap_err(),
            Refusal::NotListed
        );
    }

    #[test]
    fn restrictions_are_honoured() {
        let text = format!("a namespaces=\"file\" ssh-ed25519 {ED}\n");
        let refusal = parse(&text).unwrap().trusted(&blob(), 0).unwrap_err();
        assert!(
            matches!(&refusal, Refusal::Restricted(t) if t.contains("line 1") && t.contains("namespace")),
            "{refusal:?}"
        );
        let text = format!("a valid-before=\"20200101Z\" ssh-ed25519 {ED}\n");
        let s = parse(&text).unwrap();
        assert!(s.trusted(&blob(), 1_500_000_000).is_ok());
        assert!(s.trusted(&blob(), 1_700_000_000).is_err());
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        for (text, needle) in [
            (
                format!("a cert-authority ssh-ed25519 {ED}"),
                "certificates are not supported",
            ),
            ("a ssh-ed25519 !!notbase64".to_string(), "base64"),
            ("a ssh-ed25519".to_string(), "missing"),
            ("justone".to_string(), "no key"),
            (format!("a bogus=\"1\" ssh-ed25519 {ED}"), "not understood"),
            (
                format!("a ecdsa-sha2-nistp256 {ED}"),
                "the key is ssh-ed25519",
            ),
            (
                format!("a valid-after=\"2024\" ssh-ed25519 {ED}"),
                "YYYYMMDD",
            ),
            ("a \"unclosed ssh-ed25519 AAAA".to_string(), "quote"),
            ("a ssh-ed25519 AAAAB3NzaC1kc3M=".to_string(), "ssh-dss"),
            ("a ssh-ed25519 AAAA".to_string(), "malformed"),
        ] {
            let err = parse(&format!("# c\n{text}\n")).unwrap_err().to_string();
            assert!(
                err.contains("/etc/outpost/allowed_signers line 2") && err.contains(needle),
                "{text}: {err}"
            );
        }
        assert!(parse("# nothing\n")
            .unwrap_err()
            .to_string()
            .contains("lists no key"));
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("19700101").unwrap(), 0);
        assert_eq!(parse_time("20231114221320Z").unwrap(), 1_700_000_000);
        assert_eq!(parse_time("202311142213").unwrap(), 1_699_999_980);
        assert!(parse_time("20231314").is_err());
        assert!(parse_time("20230431").is_err(), "April has 30 days");
        assert!(parse_time("2023-11-14").is_err());
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        for t in ["20000229", "20240301120000Z", "19991231235959"] {
            let secs = parse_time(t).unwrap();
            let digits: String = utc(secs).chars().filter(char::is_ascii_digit).collect();
            assert!(
                digits.starts_with(t.trim_end_matches('Z')),
                "{t} -> {}",
                utc(secs)
            );
        }
    }
}
