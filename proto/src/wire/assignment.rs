//! `outpost.assignment/v1`: the Git sources the hub assigns to an agent, sent in its signed reply.
//!
//! A [`SourceSpec`] mirrors the keys of a `[[source]]` table in the agent's config, so the agent validates an
//! assigned source with the same rules as one from its file; unset optional keys take the config's defaults.
//! This module checks only what the wire must guarantee: the shape, exactly one ref kind, no secret values
//! (no unknown keys, no password inside the URL, credential files as absolute paths), and unique names.
//! Whether a URL's scheme suits its auth, or a semver range parses, is the agent's config check.
//!
//! Paths are absolute because relative ones would resolve against a config file the hub has never seen.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    check_revision, check_schema, check_source_count, check_source_name, check_unique, field_error,
    is_dns_label, is_line, present, to_body, WireError,
};
use crate::ASSIGNMENT_SCHEMA;

const BODY: &str = "assignment";

/// The hub's assignment for one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assignment {
    /// Always [`ASSIGNMENT_SCHEMA`].
    pub schema: String,
    /// Starts at 1; the agent accepts only a generation newer than the one it runs.
    pub generation: u64,
    pub sources: Vec<SourceSpec>,
}

/// One assigned source: the `[[source]]` config keys, with credentials only as file names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    pub name: String,
    /// The Git remote: `https://`, `http://`, `ssh://`, `git://`, `file://` or scp-like `user@host:path`.
    pub url: String,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub branch: Option<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub tag: Option<String>,
    /// A semver range such as `>=1.2.0 <2`; the highest matching tag wins.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub semver: Option<String>,
    /// A full commit id, 40 lowercase hex digits.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub commit: Option<String>,
    /// The folder inside the repository; the root when absent.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub path: Option<String>,
    /// A duration like `30s`, `5m` or `1h30m`.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub interval: Option<String>,
    /// A duration like `2m`.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<String>,
    /// `kubernetes` or `directory:/absolute/path`.
    pub target: String,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub prune: Option<bool>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub namespace: Option<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub wait: Option<bool>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub rollback: Option<bool>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub force: Option<bool>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub auth: Option<AuthFiles>,
    /// `${var}` substitution (the `[[source]]` keys `substitute` and `vars`): per-site values, such as a
    /// rollout's values from site labels.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub substitute: Option<bool>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub vars: Option<BTreeMap<String, String>>,
    /// Names of other sources of the agent (from its file or this assignment) that must be Ready first.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub depends_on: Option<Vec<String>>,
    /// Maintenance windows, e.g. `Mon-Fri 02:00-05:00`, read in `timezone`.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub windows: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub timezone: Option<String>,
    /// `last_good` or `none`.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub apply_outside_windows: Option<String>,
    /// SOPS decryption with an age identities file on the agent's host.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub decryption: Option<DecryptionFiles>,
}

/// `[source.decryption]`: the age identities file, a path on the agent's host (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecryptionFiles {
    pub age_identities: String,
}

/// Where the agent finds credentials: files on the agent's host, never the secrets themselves.
/// One of `token_file`, `username` + `password_file`, or `ssh_key_file` + `known_hosts_file`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthFiles {
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub token_file: Option<String>,
    /// A user name is not a secret; its password is read from `password_file`.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub username: Option<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub password_file: Option<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub ssh_key_file: Option<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub known_hosts_file: Option<String>,
}

/// The one ref a source follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitRefSpec<'a> {
    Branch(&'a str),
    Tag(&'a str),
    Semver(&'a str),
    Commit(&'a str),
}

impl<'a> GitRefSpec<'a> {
    /// The config key: `branch`, `tag`, `semver` or `commit`.
    pub fn kind(&self) -> &'static str {
        match self {
            GitRefSpec::Branch(_) => "branch",
            GitRefSpec::Tag(_) => "tag",
            GitRefSpec::Semver(_) => "semver",
            GitRefSpec::Commit(_) => "commit",
        }
    }

    pub fn value(&self) -> &'a str {
        match self {
            GitRefSpec::Branch(v)
            | GitRefSpec::Tag(v)
            | GitRefSpec::Semver(v)
            | GitRefSpec::Commit(v) => v,
        }
    }
}

impl Assignment {
    /// An assignment of `generation`; an empty `sources` withdraws every source assigned before.
    pub fn new(generation: u64, sources: Vec<SourceSpec>) -> Self {
        Assignment {
            schema: ASSIGNMENT_SCHEMA.to_owned(),
            generation,
            sources,
        }
    }

    /// Checks everything serde's types do not; see the module comment for what is left to the agent.
    pub fn validate(&self) -> Result<(), WireError> {
        check_schema(BODY, ASSIGNMENT_SCHEMA, &self.schema)?;
        check_source_count(BODY, self.sources.len())?;
        if self.generation == 0 {
            return Err(WireError::ZeroGeneration);
        }
        for (index, source) in self.sources.iter().enumerate() {
            source.validate(index)?;
        }
        check_unique(self.sources.iter().map(|s| s.name.as_str()))
    }

    /// The JSON body to sign and send, after [`Assignment::validate`].
    pub fn to_body(&self) -> Result<Vec<u8>, WireError> {
        self.validate()?;
        to_body(BODY, self)
    }
}

impl SourceSpec {
    /// A source of `url` applied to `target`, with every optional key unset (the agent's defaults); set its ref
    /// before sending it.
    pub fn new(name: impl Into<String>, url: impl Into<String>, target: impl Into<String>) -> Self {
        SourceSpec {
            name: name.into(),
            url: url.into(),
            branch: None,
            tag: None,
            semver: None,
            commit: None,
            path: None,
            interval: None,
            timeout: None,
            target: target.into(),
            prune: None,
            namespace: None,
            wait: None,
            rollback: None,
            force: None,
            auth: None,
            substitute: None,
            vars: None,
            depends_on: None,
            windows: None,
            timezone: None,
            apply_outside_windows: None,
            decryption: None,
        }
    }

    /// The source's ref; an error unless exactly one of branch, tag, semver, commit is set.
    pub fn git_ref(&self) -> Result<GitRefSpec<'_>, WireError> {
        let set: Vec<GitRefSpec<'_>> = [
            self.branch.as_deref().map(GitRefSpec::Branch),
            self.tag.as_deref().map(GitRefSpec::Tag),
            self.semver.as_deref().map(GitRefSpec::Semver),
            self.commit.as_deref().map(GitRefSpec::Commit),
        ]
        .into_iter()
        .flatten()
        .collect();
        match set.as_slice() {
            [only] => Ok(*only),
            _ => {
                let kinds: Vec<&str> = set.iter().map(GitRefSpec::kind).collect();
                Err(WireError::RefKinds {
                    source_name: self.name.clone(),
                    found: if kinds.is_empty() {
                        "none of them".to_owned()
                    } else {
                        kinds.join(" and ")
                    },
                })
            }
        }
    }

    fn validate(&self, index: usize) -> Result<(), WireError> {
        let field = |name: &str| format!("sources[{index}].{name}");
        check_source_name(field("name"), &self.name)?;
        // First, so no later error message echoes the password.
        if url_has_password(&self.url) {
            return Err(WireError::UrlPassword {
                field: field("url"),
            });
        }
        if !(1..=2048).contains(&self.url.len()) || !self.url.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(field_error(
                field("url"),
                &self.url,
                "1-2048 printable ASCII characters without spaces (percent-encode others)",
            ));
        }
        match self.git_ref()? {
            GitRefSpec::Commit(commit) => check_revision(field("commit"), Some(commit))?,
            other if !is_line(other.value(), 1, 255) => {
                return Err(field_error(
                    field(other.kind()),
                    other.value(),
                    "1-255 characters without control characters",
                ));
            }
            _ => {}
        }
        if let Some(path) = &self.path {
            if !is_line(path, 0, 1024) {
                return Err(field_error(
                    field("path"),
                    path,
                    "at most 1024 characters without control characters",
                ));
            }
        }
        for (name, value) in [("interval", &self.interval), ("timeout", &self.timeout)] {
            if let Some(value) = value {
                if !is_duration(value) {
                    return Err(field_error(
                        field(name),
                        value,
                        "a duration like \"30s\", \"5m\" or \"1h30m\" (units ms, s, m, h, d)",
                    ));
                }
            }
        }
        if !is_target(&self.target) {
            return Err(field_error(
                field("target"),
                &self.target,
                "\"kubernetes\" or \"directory:/absolute/path\"",
            ));
        }
        if let Some(namespace) = &self.namespace {
            if !is_dns_label(namespace) {
                return Err(field_error(
                    field("namespace"),
                    namespace,
                    "a Kubernetes namespace name: 1-63 lowercase letters, digits or '-'",
                ));
            }
        }
        if let Some(auth) = &self.auth {
            auth.validate(&self.name, &field("auth"))?;
        }
        self.validate_operations(&field)
    }

    /// The keys of issue 20 and the substitution variables: bounded here; their meaning (a window's syntax, a
    /// zone name, a dependency cycle) is the agent's config check.
    fn validate_operations(&self, field: &dyn Fn(&str) -> String) -> Result<(), WireError> {
        if let Some(vars) = &self.vars {
            if vars.len() > MAX_VARS {
                return Err(field_error(
                    field("vars"),
                    &format!("{} variables", vars.len()),
                    "at most 256 variables",
                ));
            }
            for (name, value) in vars {
                if !is_line(name, 1, 128) || value.len() > MAX_VAR_VALUE {
                    return Err(field_error(
                        field(&format!("vars.{name}")),
                        name,
                        "a name of 1-128 characters and a value of at most 4096 bytes",
                    ));
                }
            }
        }
        for dependency in self.depends_on.iter().flatten() {
            check_source_name(field("depends_on"), dependency)?;
        }
        let windows = self.windows.as_deref().unwrap_or_default();
        if windows.len() > MAX_WINDOWS {
            return Err(field_error(
                field("windows"),
                &format!("{} windows", windows.len()),
                "at most 32 windows",
            ));
        }
        for (name, value) in windows
            .iter()
            .map(|w| ("windows", w))
            .chain(self.timezone.iter().map(|z| ("timezone", z)))
        {
            if !is_line(value, 1, 64) {
                return Err(field_error(
                    field(name),
                    value,
                    "1-64 characters without control characters",
                ));
            }
        }
        if let Some(outside) = &self.apply_outside_windows {
            if outside != "last_good" && outside != "none" {
                return Err(field_error(
                    field("apply_outside_windows"),
                    outside,
                    "\"last_good\" or \"none\"",
                ));
            }
        }
        if let Some(decryption) = &self.decryption {
            let path = &decryption.age_identities;
            if !path.starts_with('/') || !is_line(path, 1, 4096) {
                return Err(field_error(
                    field("decryption.age_identities"),
                    path,
                    "an absolute path on the agent's host (at most 4096 characters)",
                ));
            }
        }
        Ok(())
    }
}

/// Bounds on the substitution variables and windows one assigned source may carry.
const MAX_VARS: usize = 256;
const MAX_VAR_VALUE: usize = 4096;
const MAX_WINDOWS: usize = 32;

impl AuthFiles {
    fn validate(&self, source_name: &str, prefix: &str) -> Result<(), WireError> {
        let files = [
            ("token_file", &self.token_file),
            ("password_file", &self.password_file),
            ("ssh_key_file", &self.ssh_key_file),
            ("known_hosts_file", &self.known_hosts_file),
        ];
        for (name, value) in files {
            if let Some(path) = value {
                if !path.starts_with('/') || !is_line(path, 1, 4096) {
                    return Err(field_error(
                        format!("{prefix}.{name}"),
                        path,
                        "an absolute path on the agent's host (at most 4096 characters)",
                    ));
                }
            }
        }
        if let Some(username) = &self.username {
            if !is_line(username, 1, 255) {
                return Err(field_error(
                    format!("{prefix}.username"),
                    username,
                    "1-255 characters without control characters",
                ));
            }
        }
        let problem = if self.username.is_some() != self.password_file.is_some() {
            Some("username and password_file go together; set both or neither")
        } else if self.token_file.is_some() && self.username.is_some() {
            Some("set either token_file, or username + password_file, not both")
        } else if self.ssh_key_file.is_some() && self.known_hosts_file.is_none() {
            Some("ssh_key_file needs known_hosts_file too, so the server's host key is checked")
        } else {
            None
        };
        match problem {
            Some(problem) => Err(WireError::Auth {
                source_name: source_name.to_owned(),
                problem,
            }),
            None => Ok(()),
        }
    }
}

/// Whether a URL's authority carries `user:password@`. A bare user (`ssh://git@host/`, `git@host:repo`) is
/// fine; a password would be a secret value on the wire. The schema's `not`/`pattern` says the same thing.
fn url_has_password(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        return false;
    };
    if scheme.is_empty() || scheme.contains([':', '/', '?', '#']) {
        return false;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// One or more `<1-9 digits><unit>` groups, units `ms`, `s`, `m`, `h`, `d`; at most 32 characters.
fn is_duration(text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.is_empty() || bytes.len() > 32 {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let digits = bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        if !(1..=9).contains(&digits) {
            return false;
        }
        i += digits;
        match &bytes[i..] {
            [b'm', b's', ..] => i += 2,
            [b's' | b'm' | b'h' | b'd', ..] => i += 1,
            _ => return false,
        }
    }
    true
}

fn is_target(text: &str) -> bool {
    match text.strip_prefix("directory:") {
        Some(dir) => dir.starts_with('/') && is_line(dir, 1, 4096),
        None => text == "kubernetes",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for good in [
            "1s",
            "500ms",
            "5m",
            "1h30m",
            "1d",
            "1m30s500ms",
            "999999999s",
        ] {
            assert!(is_duration(good), "{good:?}");
        }
        for bad in [
            "",
            "s",
            "1",
            "1 s",
            "1S",
            "1sec",
            "-1s",
            "1.5s",
            "1000000000s",
            "1ms1",
            "m1s",
        ] {
            assert!(!is_duration(bad), "{bad:?}");
        }
        assert!(!is_duration(&"1s".repeat(17)));
    }

    #[test]
    fn passwords_in_urls() {
        for bad in [
            "https://user:secret@git.example.com/repo.git",
            "https://:secret@git.example.com/",
            "ssh://git:pw@host:22/repo",
            "https://a:b@c@host/",
        ] {
            assert!(url_has_password(bad), "{bad:?}");
        }
        for good in [
            "https://git.example.com/repo.git",
            "ssh://git@host:22/repo",
            "git@github.com:org/repo.git",
            "https://host:443/path@x:y",
            "https://host/?q=a:b@c",
            "file:///srv/git/repo",
        ] {
            assert!(!url_has_password(good), "{good:?}");
        }
    }

    #[test]
    fn targets() {
        assert!(is_target("kubernetes"));
        assert!(is_target(
            "directory:/var/lib/rancher/k3s/server/manifests/outpost"
        ));
        for bad in [
            "",
            "Kubernetes",
            "directory:",
            "directory:relative",
            "dir:/x",
            "directory:/a\nb",
        ] {
            assert!(!is_target(bad), "{bad:?}");
        }
    }
}
