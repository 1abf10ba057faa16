//! Turning transport errors into one line an operator can act on: the whole chain of causes (gix and reqwest
//! hide the useful one behind a wrapper), and the likely fix for the errors met most.

/// One line for an operator from any error we meet here; gix errors carry their causes as a list.
pub trait Describe {
    fn describe(&self) -> String;
}

impl Describe for gix::Error {
    fn describe(&self) -> String {
        let mut out = String::new();
        for e in self.iter_errors() {
            let text = e.to_string();
            if !out.contains(&text) {
                if !out.is_empty() {
                    out.push_str(": ");
                }
                out.push_str(&text);
            }
        }
        out
    }
}

impl Describe for std::io::Error {
    fn describe(&self) -> String {
        self.to_string()
    }
}

impl Describe for super::http_probe::ProbeError {
    fn describe(&self) -> String {
        outpost_proto::text::error_chain(self, ": ")
    }
}

impl Describe for String {
    fn describe(&self) -> String {
        self.clone()
    }
}

impl Describe for &str {
    fn describe(&self) -> String {
        self.to_string()
    }
}

/// Adds the likely fix to the transport errors an operator meets most.
pub(super) fn explain(message: &str) -> String {
    // URLs are left out of the match: a port such as `:39403` must not read as HTTP 403.
    let lower: String = message
        .split_whitespace()
        .filter(|word| !word.contains("://"))
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase();
    let hint = if lower.contains("401")
        || lower.contains("authentication")
        || lower.contains("unauthorized")
    {
        "; the server refused our credentials: check token_file or username/password_file in [source.auth]"
    } else if lower.contains("403") {
        "; the credentials are valid but may not read this repository"
    } else if lower.contains("certificate")
        || lower.contains("unknownissuer")
        || lower.contains("invalid peer")
    {
        "; the server's TLS certificate is not trusted: set ca_file to the CA that signed it"
    } else if lower.contains("host key verification failed") {
        "; the SSH host key is not in known_hosts_file, or changed"
    } else if lower.contains("connection refused")
        || lower.contains("dns")
        || lower.contains("timed out")
        || lower.contains("connect")
    {
        "; the Git host is unreachable: the last good revision stays applied and the poll is retried with backoff"
    } else {
        ""
    };
    format!("{message}{hint}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn hints_read_the_error_not_the_url() {
        let tls = super::explain("cannot reach https://127.0.0.1:39403/repo.git: error sending request for url (https://127.0.0.1:39403/repo.git/git-upload-pack): client error (Connect): invalid peer certificate: UnknownIssuer");
        assert!(
            tls.ends_with("set ca_file to the CA that signed it"),
            "{tls}"
        );
        let forbidden =
            super::explain("HTTP status 403 Forbidden for https://git.example.com/x.git");
        assert!(
            forbidden.contains("may not read this repository"),
            "{forbidden}"
        );
    }
}
