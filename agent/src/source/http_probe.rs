//! The cheapest possible poll over HTTP(S): one `POST /git-upload-pack` carrying a protocol v2 `ls-refs`
//! command narrowed to the one ref, with no `GET info/refs` first.
//!
//! Protocol v2 over HTTP is stateless, so a server that speaks it answers a command without the capability
//! advertisement having been fetched. This halves the requests of an unchanged poll (the edge case that happens
//! every minute at every site). Anything unexpected in the answer (an old server, a redirect) returns `None` and
//! the caller uses gix's full handshake instead; the answer never decides anything it cannot parse.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::refs::ListedRef;

use crate::http_body::BodyError;
use outpost_proto::text::error_chain;

/// The most we read of an ls-refs answer; even ten thousand tags fit well within this.
const MAX_RESPONSE: usize = 16 * 1024 * 1024;
/// How long the TCP and TLS handshake of a probe may take; the whole request is bounded by the source's timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the one-request probe failed. reqwest's own texts hide the cause ("error sending request"), so the chain
/// is shown.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{}", error_chain(.source, ": "))]
    Client { source: reqwest::Error },
    #[error("{}", error_chain(.source, ": "))]
    Send { source: reqwest::Error },
    #[error("reading the ref listing: {0}")]
    Body(#[from] BodyError),
}

/// What the server said, when it was something we understood.
pub enum Answer {
    Refs(Vec<ListedRef>),
    /// The server refused our credentials (401) or access (403).
    Denied(u16),
    NotFound,
}

/// Probe clients, one per distinct `ca_file` for the whole process. Building a client costs more CPU than a
/// probe, and each client holds its own copy of the trust roots (hundreds of KiB); sources that share a CA
/// share a client. A process-wide cache because the roots are process-wide facts, not per-source state.
static CLIENTS: std::sync::Mutex<Vec<(Option<PathBuf>, reqwest::Client)>> =
    std::sync::Mutex::new(Vec::new());

/// The probe client for sources trusting `ca_file` (`None`: the host's roots, else the bundled ones). HTTPS_PROXY / NO_PROXY are
/// honoured (reqwest reads them).
pub fn shared_client(
    ca_file: Option<&Path>,
    ca_certs: Option<&[reqwest::Certificate]>,
) -> Result<reqwest::Client, ProbeError> {
    let mut clients = CLIENTS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, client)) = clients.iter().find(|(k, _)| k.as_deref() == ca_file) {
        return Ok(client.clone());
    }
    let builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("git/2.0 (outpost/", env!("CARGO_PKG_VERSION"), ")"));
    let builder = match crate::trust::roots(ca_certs) {
        Some(certs) => builder.tls_certs_only(certs.iter().cloned()),
        None => builder,
    };
    let client = builder
        .build()
        .map_err(|source| ProbeError::Client { source })?;
    clients.push((ca_file.map(Path::to_path_buf), client.clone()));
    Ok(client)
}

/// Sends the one request; `Ok(None)` means "not understood, use the full handshake".
pub async fn ls_refs(
    client: &reqwest::Client,
    url: &str,
    ref_prefix: &str,
    auth_header: Option<&str>,
    timeout: Duration,
) -> Result<Option<Answer>, ProbeError> {
    let endpoint = format!("{}/git-upload-pack", url.trim_end_matches('/'));
    let mut post = client
        .post(&endpoint)
        .header("Content-Type", "application/x-git-upload-pack-request")
        .header("Accept", "application/x-git-upload-pack-result")
        .header("Git-Protocol", "version=2")
        .timeout(timeout)
        .body(request_body(ref_prefix));
    if let Some((name, value)) = auth_header.and_then(|h| h.split_once(':')) {
        post = post.header(name.trim(), value.trim());
    }
    let response = post
        .send()
        .await
        .map_err(|source| ProbeError::Send { source })?;
    let status = response.status().as_u16();
    match status {
        200 => {}
        401 | 403 => return Ok(Some(Answer::Denied(status))),
        404 => return Ok(Some(Answer::NotFound)),
        _ => return Ok(None),
    }
    let is_v2_result = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-git-upload-pack-result"));
    if !is_v2_result {
        return Ok(None);
    }
    let body = crate::http_body::read_bounded(response, MAX_RESPONSE).await?;
    Ok(parse_response(&body).map(Answer::Refs))
}

/// `command=ls-refs`, then after the delimiter: `peel` (annotated tags come with their commit) and the prefix.
pub fn request_body(ref_prefix: &str) -> Vec<u8> {
    let prefix = ref_prefix.trim_end_matches('*');
    let mut body = Vec::new();
    pkt_line(&mut body, "command=ls-refs\n");
    pkt_line(
        &mut body,
        &format!("agent=outpost/{}\n", env!("CARGO_PKG_VERSION")),
    );
    pkt_line(&mut body, "object-format=sha1\n");
    body.extend_from_slice(b"0001");
    pkt_line(&mut body, "peel\n");
    pkt_line(&mut body, &format!("ref-prefix {prefix}\n"));
    body.extend_from_slice(b"0000");
    body
}

fn pkt_line(out: &mut Vec<u8>, line: &str) {
    out.extend_from_slice(format!("{:04x}", line.len() + 4).as_bytes());
    out.extend_from_slice(line.as_bytes());
}

/// Parses `<oid> <name>[ peeled:<oid>][ symref-target:<ref>]` lines up to the flush packet. Returns `None` for
/// anything that is not exactly that (a v0 advertisement, an error packet, a truncated body).
pub fn parse_response(body: &[u8]) -> Option<Vec<ListedRef>> {
    let mut refs = Vec::new();
    let mut rest = body;
    loop {
        let len_hex = std::str::from_utf8(rest.get(..4)?).ok()?;
        let len = usize::from_str_radix(len_hex, 16).ok()?;
        if len == 0 {
            return Some(refs);
        }
        if len < 4 {
            return None;
        }
        let line = std::str::from_utf8(rest.get(4..len)?)
            .ok()?
            .trim_end_matches('\n');
        rest = &rest[len..];
        let mut fields = line.split(' ');
        let oid = fields.next()?;
        let name = fields.next()?;
        if oid.len() != 40 || !oid.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut commit = oid.to_string();
        let mut tag_object = None;
        for attr in fields {
            if let Some(peeled) = attr.strip_prefix("peeled:") {
                commit = peeled.to_string();
                tag_object = Some(oid.to_string());
            }
        }
        refs.push(ListedRef {
            name: name.to_string(),
            commit,
            tag_object,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_a_narrow_v2_ls_refs() {
        let body = String::from_utf8(request_body("refs/heads/main")).unwrap();
        assert!(body.starts_with("0014command=ls-refs\n"));
        assert!(body.contains("00010009peel\n"));
        assert!(body.ends_with("001fref-prefix refs/heads/main\n0000"));
        assert!(String::from_utf8(request_body("refs/tags/*"))
            .unwrap()
            .contains("ref-prefix refs/tags/\n"));
    }

    #[test]
    fn response_lines_and_peeled_tags() {
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        let mut body = Vec::new();
        pkt_line(&mut body, &format!("{a} refs/heads/main\n"));
        pkt_line(&mut body, &format!("{a} refs/tags/v1.0.0 peeled:{b}\n"));
        body.extend_from_slice(b"0000");
        let refs = parse_response(&body).unwrap();
        assert_eq!(
            refs[0],
            ListedRef {
                name: "refs/heads/main".into(),
                commit: a.clone(),
                tag_object: None,
            }
        );
        assert_eq!(refs[1].commit, b);
        assert_eq!(refs[1].tag_object.as_deref(), Some(a.as_str()));
        assert_eq!(parse_response(b"0000").unwrap(), vec![]);
    }

    #[test]
    fn anything_else_is_not_understood() {
        assert!(parse_response(b"").is_none(), "truncated");
        assert!(
            parse_response(b"001e# service=git-upload-pack\n0000").is_none(),
            "v0 advertisement"
        );
        assert!(parse_response(b"zzzz").is_none());
        let mut err = Vec::new();
        pkt_line(&mut err, "ERR repository not exported\n");
        assert!(parse_response(&err).is_none());
    }
}
