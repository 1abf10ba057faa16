//! `outpost enroll --hub URL --token-file F --hub-key-fingerprint FP`: joins this agent to a hub with a
//! one-time bootstrap token (issue 18, item 6), so a newcomer never writes `POST /v1/enroll` by hand.
//!
//! Steps: make the agent key if missing; read the token from its file (never from the command line, where
//! `ps` shows it, and never printed); send `{agent_id, public_key, token}`; check that the hub key in the answer
//! has the fingerprint the operator gave out of band; only then write `[upstream] url` and `hub_key` into the
//! agent config. An answer whose hub key has another fingerprint writes nothing: the agent would otherwise
//! trust whoever answered at that URL.
//!
//! The config is changed by appending an `[upstream]` table (a crash-safe replace of the whole file), so its
//! comments and layout stay. A config that already has `[upstream]` for this hub and key is left as it is;
//! one for another hub is refused, since enrolling would silently move the agent.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use outpost_proto::keys::PublicKey;
use serde::Deserialize;

use crate::config::Config;
use crate::identity::{self, IdentityError};

/// How long connecting to the hub may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the whole enrollment may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The hub's answer is three short strings.
const MAX_ANSWER: usize = 64 * 1024;
/// A token file holds one line; anything longer is not a token.
const MAX_TOKEN_FILE: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("--hub {0:?}: write the hub's base URL, e.g. https://hub.example.com:8443")]
    Url(String),
    #[error("--hub-key-fingerprint {0:?}: write the SHA256:... fingerprint the hub's operator gave you (`outpost-hub serve` prints it)")]
    Fingerprint(String),
    #[error("token file {path}: {problem}")]
    TokenFile { path: PathBuf, problem: String },
    #[error("--ca-file {path}: {problem}")]
    CaFile { path: PathBuf, problem: String },
    #[error("cannot reach the hub at {url}: {message}")]
    Send { url: String, message: String },
    #[error("the hub at {url} refused the enrollment ({status} {reason}): {message}")]
    Refused {
        url: String,
        status: u16,
        reason: String,
        message: String,
    },
    #[error("the hub at {url} answered with a key whose fingerprint is {got}, not {want}: it is not the hub you were told to join; nothing was written (ask the hub's operator; the token may be spent)")]
    WrongHub {
        url: String,
        got: String,
        want: String,
    },
    #[error("the hub's answer is not an enrollment reply: {0}")]
    Answer(String),
    #[error("{path} already has an [upstream] table for {url}; remove it first to enroll with another hub or key")]
    OtherUpstream { path: PathBuf, url: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What enrolling did, for the command's output.
#[derive(Debug)]
pub struct Enrolled {
    pub agent_id: String,
    pub fingerprint: String,
    pub hub_key: PublicKey,
    /// Whether the config file was changed (false: it already named this hub and key).
    pub config_written: bool,
}

#[derive(Deserialize)]
struct Answer {
    fingerprint: String,
    hub_key: String,
}

#[derive(Deserialize)]
struct Refusal {
    error: String,
    message: String,
}

/// Enrolls the agent of `config` at `hub` with the token in `token_file`; `ca_file` verifies the hub's
/// certificate when it is not from a public CA.
pub async fn enroll(
    config: &Config,
    hub: &str,
    token_file: &Path,
    fingerprint: &str,
    ca_file: Option<&Path>,
) -> Result<Enrolled, EnrollError> {
    let url = hub.trim_end_matches('/').to_owned();
    if !(url.starts_with("https://") || url.starts_with("http://")) || url.contains('@') {
        return Err(EnrollError::Url(hub.to_owned()));
    }
    let want = fingerprint.trim();
    if !want.starts_with("SHA256:") || want.len() < 20 {
        return Err(EnrollError::Fingerprint(fingerprint.to_owned()));
    }
    let token = read_token(token_file)?;
    let key = identity::keygen(&config.agent, None)?;
    let client = client(ca_file)?;
    let send = |message: String| EnrollError::Send {
        url: url.clone(),
        message,
    };
    let body = serde_json::json!({
        "agent_id": config.agent.id,
        "public_key": key.public.to_string(),
        "token": token,
    });
    let response = client
        .post(format!("{url}/v1/enroll"))
        .json(&body)
        .send()
        .await
        .map_err(|e| send(outpost_proto::text::error_chain(&e, ": ")))?;
    let status = response.status().as_u16();
    let bytes = crate::http_body::read_bounded(response, MAX_ANSWER)
        .await
        .map_err(|e| send(e.to_string()))?;
    if status != 200 && status != 201 {
        let refusal: Refusal = serde_json::from_slice(&bytes).unwrap_or(Refusal {
            error: "unknown".into(),
            message: String::from_utf8_lossy(&bytes).chars().take(300).collect(),
        });
        return Err(EnrollError::Refused {
            url,
            status,
            reason: refusal.error,
            message: refusal.message,
        });
    }
    let answer: Answer =
        serde_json::from_slice(&bytes).map_err(|e| EnrollError::Answer(e.to_string()))?;
    let hub_key: PublicKey = answer
        .hub_key
        .parse()
        .map_err(|e| EnrollError::Answer(format!("hub_key: {e}")))?;
    let got = hub_key.fingerprint();
    if got != want {
        return Err(EnrollError::WrongHub {
            url,
            got,
            want: want.to_owned(),
        });
    }
    let config_written = write_upstream(&config.path, &url, &hub_key, ca_file, config)?;
    Ok(Enrolled {
        agent_id: config.agent.id.clone(),
        fingerprint: answer.fingerprint,
        hub_key,
        config_written,
    })
}

fn client(ca_file: Option<&Path>) -> Result<reqwest::Client, EnrollError> {
    let builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("outpost/", env!("CARGO_PKG_VERSION")));
    let mut certs = None;
    if let Some(path) = ca_file {
        let problem = |problem: String| EnrollError::CaFile {
            path: path.to_owned(),
            problem,
        };
        let pem = std::fs::read(path).map_err(|e| problem(e.to_string()))?;
        certs =
            Some(reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| problem(e.to_string()))?);
    }
    let builder = match crate::trust::roots(certs.as_deref()) {
        Some(certs) => builder.tls_certs_only(certs.iter().cloned()),
        None => builder,
    };
    builder.build().map_err(|e| EnrollError::Send {
        url: String::new(),
        message: outpost_proto::text::error_chain(&e, ": "),
    })
}

/// The token, refusing a file other users can read (it enrolls an agent, like a password).
fn read_token(path: &Path) -> Result<String, EnrollError> {
    let problem = |problem: String| EnrollError::TokenFile {
        path: path.to_owned(),
        problem,
    };
    let file = std::fs::File::open(path).map_err(|e| problem(format!("cannot open it ({e})")))?;
    let mode = file
        .metadata()
        .map_err(|e| problem(format!("cannot inspect it ({e})")))?
        .mode()
        & 0o077;
    if mode != 0 {
        return Err(problem(format!(
            "other users can read it; run `chmod 600 {}`",
            path.display()
        )));
    }
    let mut text = String::new();
    file.take(MAX_TOKEN_FILE)
        .read_to_string(&mut text)
        .map_err(|e| problem(format!("cannot read it as text ({e})")))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(problem(
            "is empty; copy the file `outpost-hub token create` wrote".into(),
        ));
    }
    Ok(token.to_owned())
}

/// Appends `[upstream]` to the config at `path` unless it already names this hub and key; returns whether
/// it wrote.
fn write_upstream(
    path: &Path,
    url: &str,
    hub_key: &PublicKey,
    ca_file: Option<&Path>,
    config: &Config,
) -> Result<bool, EnrollError> {
    if let Some(upstream) = &config.upstream {
        if upstream.url == url && upstream.hub_key == *hub_key {
            return Ok(false);
        }
        return Err(EnrollError::OtherUpstream {
            path: path.to_owned(),
            url: upstream.url.clone(),
        });
    }
    let write = |source| EnrollError::Write {
        path: path.to_owned(),
        source,
    };
    let mut text = std::fs::read_to_string(path).map_err(write)?;
    text.push_str(&upstream_table(url, hub_key, ca_file));
    crate::fsutil::write_replace(path, text.as_bytes()).map_err(write)?;
    Ok(true)
}

/// The `[upstream]` table enrolling writes (TOML basic strings, escaped).
pub fn upstream_table(url: &str, hub_key: &PublicKey, ca_file: Option<&Path>) -> String {
    let quote = |text: &str| toml_quote(text);
    let mut table = format!(
        "\n# Written by `outpost enroll`.\n[upstream]\nurl = {}\nhub_key = {}\n",
        quote(url),
        quote(&hub_key.to_string())
    );
    if let Some(ca) = ca_file {
        let ca = std::path::absolute(ca).unwrap_or_else(|_| ca.to_owned());
        table.push_str(&format!("ca_file = {}\n", quote(&ca.display().to_string())));
    }
    table
}

fn toml_quote(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upstream_table_is_valid_toml() -> Result<(), Box<dyn std::error::Error>> {
        let key: PublicKey = "ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=".parse()?;
        let table = upstream_table(
            "https://hub.example.com:8443",
            &key,
            Some(Path::new("/etc/a \"b\".pem")),
        );
        let value: toml::Value = toml::from_str(&table)?;
        assert_eq!(
            value["upstream"]["url"].as_str(),
            Some("https://hub.example.com:8443")
        );
        assert_eq!(
            value["upstream"]["hub_key"].as_str(),
            Some(key.to_string().as_str())
        );
        assert_eq!(
            value["upstream"]["ca_file"].as_str(),
            Some("/etc/a \"b\".pem")
        );
        Ok(())
    }

    #[test]
    fn token_files_must_be_private() -> Result<(), Box<dyn std::error::Error>> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("token");
        std::fs::write(&path, "  secret-token-value \n")?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        let loose = read_token(&path).map_err(|e| e.to_string());
        assert!(
            matches!(&loose, Err(m) if m.contains("chmod 600") && !m.contains("secret")),
            "{loose:?}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        assert_eq!(
            read_token(&path).map_err(|e| e.to_string()),
            Ok("secret-token-value".into())
        );
        std::fs::write(&path, "\n")?;
        assert!(read_token(&path).is_err());
        Ok(())
    }
}
