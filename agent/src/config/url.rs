//! Which Git URLs a source may use, checked at config time so a typo is reported before the first poll.

/// Accepts `https://`, `http://`, `ssh://`, `git://`, `file://` and scp-like `user@host:path`.
pub fn check(url: &str) -> Result<(), super::Invalid> {
    if url.trim() != url || url.is_empty() {
        return Err("must not be empty or have surrounding spaces".into());
    }
    if let Some((scheme, rest)) = url.split_once("://") {
        match scheme {
            "https" | "http" | "ssh" | "git" | "file" => {}
            other => {
                return Err(format!(
                    "scheme {other:?} is not supported; use https://, http://, ssh://, git://, file:// or user@host:path"
                ).into())
            }
        }
        if scheme != "file" && rest.split('/').next().unwrap_or("").is_empty() {
            return Err(
                "has no host; write e.g. https://git.example.com/fleet/platform.git".into(),
            );
        }
        if scheme == "file" && !rest.starts_with('/') {
            return Err(
                "file:// URLs need an absolute path, e.g. file:///srv/git/platform.git".into(),
            );
        }
        return Ok(());
    }
    if is_scp_like(url) {
        return Ok(());
    }
    Err("is not a Git URL; use https://, http://, ssh://, git://, file:// or user@host:path".into())
}

/// scp-like syntax: `[user@]host:path`, with no scheme and a colon before any slash.
fn is_scp_like(url: &str) -> bool {
    match url.find(':') {
        Some(colon) => {
            let host = &url[..colon];
            !host.is_empty() && !host.contains('/') && colon + 1 < url.len()
        }
        None => false,
    }
}

pub fn is_ssh(url: &str) -> bool {
    url.starts_with("ssh://") || (!url.contains("://") && is_scp_like(url))
}

pub fn is_http(url: &str) -> bool {
    url.starts_with("https://") || url.starts_with("http://")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_and_refused() {
        for ok in [
            "https://h/x.git",
            "http://127.0.0.1:8080/x",
            "git://h/x",
            "ssh://git@h:22/x",
            "git@github.com:org/repo.git",
            "file:///srv/x.git",
        ] {
            assert!(check(ok).is_ok(), "{ok}");
        }
        assert!(check("ftp://h/x").unwrap_err().0.contains("ftp"));
        assert!(check("file://relative").unwrap_err().0.contains("absolute"));
        assert!(check("https:///x").unwrap_err().0.contains("no host"));
        assert!(check("/srv/x.git").is_err());
        assert!(is_ssh("git@h:x") && is_ssh("ssh://h/x") && !is_ssh("https://h/x"));
    }
}
