//! Keeping secrets out of logs, status and errors.
//!
//! Credentials only ever come from files, but an operator may still paste `https://user:token@host/...` into a
//! URL, and Git errors echo URLs back. Everything that prints a URL goes through [`url`].

/// Replaces the user-info part of a URL (`user:secret@`) with `***@`.
pub fn url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}://***@{}", &url[..scheme_end], &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// The `user:password` part of a URL, if it has one: what [`secrets`] must scrub from messages that quote it.
pub fn userinfo(url: &str) -> Option<String> {
    let rest = &url[url.find("://")? + 3..];
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let at = authority.rfind('@')?;
    Some(authority[..at].to_string())
}

/// Removes every occurrence of each secret from `text`; used on messages that came from libraries.
pub fn secrets(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(s, "***");
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn user_info_is_hidden() {
        assert_eq!(
            super::url("https://bob:hunter2@git.example.com/a.git"),
            "https://***@git.example.com/a.git"
        );
        assert_eq!(
            super::url("https://git.example.com/a@b.git"),
            "https://git.example.com/a@b.git"
        );
        assert_eq!(
            super::url("git@example.com:fleet/a.git"),
            "git@example.com:fleet/a.git"
        );
        assert_eq!(
            super::secrets("token abcdef in text", &["abcdef"]),
            "token *** in text"
        );
    }
}
