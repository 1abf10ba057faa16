//! The network side of a Git source, with gix: list one ref, shallow-fetch one commit into a bare cache
//! repository under `state_dir`, and nothing else.
//!
//! All calls here are blocking (gix's reqwest transport is); `source::mod` runs them on the blocking pool under
//! the source's timeout. The cache repository is only a cache: when it is damaged (a crash mid-fetch can leave lock
//! files) or has grown too many packs, it is deleted and fetched again, because the last good revision lives in the
//! store, not here.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use gix::remote::Direction;

use super::describe::{explain, Describe};
use super::local::LocalRepo;
use super::refs::ListedRef;
use super::{size, SourceError};
use crate::config::{Limits, SourceConfig};
use crate::redact;

/// The longest a TCP and TLS handshake with the Git host may take (never longer than the source's timeout).
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Where fetched commits are kept in the cache repository; one ref per source repository is enough.
const FETCHED_REF: &str = "refs/outpost/fetched";
/// gix never repacks; past this many packs the cache is rebuilt from scratch on the next fetch.
const MAX_PACKS: usize = 8;

/// Credentials read from their files for one connection, so a rotated token is picked up on the next poll.
pub struct Credentials {
    /// An `Authorization` header line for HTTP(S).
    pub header: Option<String>,
    /// Values that must never appear in an error message.
    pub secrets: Vec<String>,
    /// The source's `ca_file`, parsed.
    pub ca_certs: Option<Vec<reqwest::Certificate>>,
}

/// One source's remote and its local cache repository.
pub struct GitRemote {
    source: SourceConfig,
    cache_dir: PathBuf,
    /// `file://` repositories are read where they are, with no transport and no cache.
    local: Option<LocalRepo>,
}

impl GitRemote {
    pub fn new(source: &SourceConfig, cache_dir: PathBuf) -> GitRemote {
        GitRemote {
            source: source.clone(),
            cache_dir,
            local: LocalRepo::for_url(&source.url, &source.name),
        }
    }

    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// Lists the refs matching `ref_name` (a full ref, or `refs/tags/*`) with one protocol v2 `ls-refs` round.
    /// gix's ref listing takes no interrupt flag; the source's timeout bounds it from outside.
    pub fn list(&self, ref_name: &str) -> Result<Vec<ListedRef>, SourceError> {
        if let Some(local) = &self.local {
            return local.list(ref_name);
        }
        let repo = self.open_cache()?;
        let creds = self.credentials()?;
        let spec = if ref_name.ends_with('*') {
            format!("+{ref_name}:refs/outpost/list/*")
        } else {
            format!("+{ref_name}:{FETCHED_REF}")
        };
        let remote = self.remote(&repo, &spec, &creds)?;
        let conn = remote
            .connect(Direction::Fetch)
            .map_err(|e| self.net_error(e, &creds))?;
        let conn = self.configure(conn, &creds);
        let (ref_map, _handshake) = conn
            .ref_map(gix::progress::Discard, Default::default())
            .map_err(|e| self.net_error(e, &creds))?;
        let mut listed = Vec::new();
        for r in &ref_map.remote_refs {
            let (name, target, peeled) = r.unpack();
            let commit = peeled.or(target);
            if let Some(commit) = commit {
                listed.push(ListedRef {
                    name: name.to_string(),
                    commit: commit.to_string(),
                    // A peeled ref is an annotated tag: its own id is the tag object.
                    tag_object: peeled.and(target).map(|t| t.to_string()),
                });
            }
        }
        Ok(listed)
    }

    /// Shallow-fetches (depth 1) `ref_name` or, for a pinned commit, the commit itself; returns the commit id that
    /// arrived, which may be newer than what the probe saw if someone pushed in between. The transfer is stopped
    /// past `max_pack_size`, and a cache over `max_repo_size` afterwards is refused (see [`super::size`]).
    pub fn fetch(
        &self,
        ref_name: &str,
        interrupt: &AtomicBool,
        limits: &Limits,
    ) -> Result<String, SourceError> {
        if let Some(local) = &self.local {
            return local.resolve(ref_name);
        }
        self.prune_cache_if_bloated();
        let id = match self.fetch_limited(ref_name, interrupt, limits) {
            Ok(id) => id,
            // A damaged cache must not block a site forever: start over once from an empty repository.
            Err(SourceError::Cache { .. }) => {
                self.reset_cache()?;
                self.fetch_limited(ref_name, interrupt, limits)?
            }
            Err(e) => return Err(e),
        };
        if size::dir_size(&self.cache_dir) <= limits.max_repo_size {
            return Ok(id);
        }
        // Old packs may be what fills it: a fresh shallow copy is the least the source can take.
        self.reset_cache()?;
        let id = self.fetch_limited(ref_name, interrupt, limits)?;
        let held = size::dir_size(&self.cache_dir);
        if held <= limits.max_repo_size {
            return Ok(id);
        }
        let _ = self.reset_cache();
        Err(SourceError::TooLarge {
            url: redact::url(&self.source.url),
            message: format!(
                "even a fresh shallow copy of this revision takes {} on disk, over max_repo_size ({}); it was deleted and the last good revision stays applied. Raise [agent] max_repo_size if the repository really is that large, or keep large files out of it",
                size::human(held),
                size::human(limits.max_repo_size)
            ),
        })
    }

    /// One fetch, stopped once the cache has grown by more than `max_pack_size`.
    fn fetch_limited(
        &self,
        ref_name: &str,
        interrupt: &AtomicBool,
        limits: &Limits,
    ) -> Result<String, SourceError> {
        let (fetched, exceeded) =
            size::watch_growth(&self.cache_dir, limits.max_pack_size, interrupt, || {
                self.fetch_once(ref_name, interrupt)
            });
        if !exceeded {
            return fetched;
        }
        // Whatever part of the pack made it to disk is of no use.
        let _ = self.reset_cache();
        Err(SourceError::TooLarge {
            url: redact::url(&self.source.url),
            message: format!(
                "the transfer grew past max_pack_size ({}) and was stopped; nothing from it is applied and the last good revision stays. Raise [agent] max_pack_size if the source really is that large, or keep large files out of the repository",
                size::human(limits.max_pack_size)
            ),
        })
    }

    fn fetch_once(&self, ref_name: &str, interrupt: &AtomicBool) -> Result<String, SourceError> {
        self.clear_stale_locks();
        let repo = self.open_cache()?;
        let creds = self.credentials()?;
        let spec = format!("+{ref_name}:{FETCHED_REF}");
        let remote = self.remote(&repo, &spec, &creds)?;
        let conn = remote
            .connect(Direction::Fetch)
            .map_err(|e| self.net_error(e, &creds))?;
        let conn = self.configure(conn, &creds);
        let depth = NonZeroU32::new(1).expect("1 is not zero");
        conn.prepare_fetch(gix::progress::Discard, Default::default())
            .map_err(|e| self.net_error(e, &creds))?
            .with_shallow(gix::remote::fetch::Shallow::DepthAtRemote(depth))
            .receive(gix::progress::Discard, interrupt)
            .map_err(|e| self.net_error(e, &creds))?;
        // Re-open so the new pack and ref are seen, then peel whatever the ref names (an annotated tag) to its commit.
        let repo = self.open_cache()?;
        let id = repo
            .find_reference(FETCHED_REF)
            .map_err(|e| self.cache_error(e))?
            .peel_to_commit()
            .map_err(|e| self.cache_error(e))?
            .id;
        Ok(id.to_string())
    }

    /// True when `commit` is already in the cache, so reading it needs no network at all.
    pub fn has_commit(&self, commit: &str) -> bool {
        if let Some(local) = &self.local {
            return local.has_commit(commit);
        }
        let Ok(repo) = self.open_cache() else {
            return false;
        };
        let Ok(id) = gix::ObjectId::from_hex(commit.as_bytes()) else {
            return false;
        };
        let found = repo.find_commit(id).is_ok();
        found
    }

    /// True when the object (a commit or a tag) is already in the cache or the `file://` repository.
    pub fn has_object(&self, id: &str) -> bool {
        let Ok(id) = gix::ObjectId::from_hex(id.as_bytes()) else {
            return false;
        };
        self.open_objects().is_ok_and(|repo| repo.has_object(id))
    }

    /// The repository a fetched commit is read from: the `file://` repository itself, or the cache.
    pub fn open_objects(&self) -> Result<gix::Repository, SourceError> {
        match &self.local {
            Some(local) => local.open(),
            None => self.open_cache(),
        }
    }

    /// Opens the cache repository without consulting any config outside it (no user or system git config, no
    /// environment): the agent must behave the same on every box.
    pub fn open_cache(&self) -> Result<gix::Repository, SourceError> {
        match self.try_open_cache() {
            Ok(repo) => Ok(repo),
            // A crash during init or fetch can leave a half-made repository; it is only a cache, so start over.
            Err(first) => {
                tracing::warn!(source = %self.source.name, "the Git cache is damaged ({first}); rebuilding it");
                self.reset_cache()?;
                self.try_open_cache()
            }
        }
    }

    fn try_open_cache(&self) -> Result<gix::Repository, SourceError> {
        if !self.cache_dir.join("HEAD").exists() {
            self.init_cache()?;
        }
        let mut overrides =
            vec!["gitoxide.userAgent=outpost/".to_string() + env!("CARGO_PKG_VERSION")];
        if let Some(cmd) = self.ssh_command() {
            overrides.push(format!("core.sshCommand={cmd}"));
        }
        gix::open_opts(
            &self.cache_dir,
            gix::open::Options::isolated().config_overrides(overrides),
        )
        .map_err(|e| self.cache_error(e))
    }

    /// Creates the bare repository beside its final place and renames it in, so a crash never leaves a
    /// directory that is neither absent nor a repository.
    fn init_cache(&self) -> Result<(), SourceError> {
        let parent = self.cache_dir.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| self.cache_error(e))?;
        let staging = parent.join(format!(".{}.init-{}", self.source.name, std::process::id()));
        // Leftovers of earlier crashed inits (any pid) go first.
        let leftover_prefix = format!(".{}.init-", self.source.name);
        for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(&leftover_prefix)
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        gix::init_bare(&staging).map_err(|e| self.cache_error(e))?;
        // Whatever is at the final path is not a usable repository (no HEAD): replace it.
        let _ = std::fs::remove_dir_all(&self.cache_dir);
        std::fs::rename(&staging, &self.cache_dir).map_err(|e| self.cache_error(e))
    }

    fn reset_cache(&self) -> Result<(), SourceError> {
        tracing::warn!(source = %self.source.name, dir = %self.cache_dir.display(), "rebuilding the Git cache");
        match std::fs::remove_dir_all(&self.cache_dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.cache_error(e)),
        }
    }

    /// Removes lock files a killed fetch left behind. Safe because this process is the cache's only writer: the
    /// store's lock keeps other agents out, and a source's passes run one at a time.
    fn clear_stale_locks(&self) {
        let mut dirs = vec![self.cache_dir.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().to_string();
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    dirs.push(path);
                } else if name.ends_with(".lock")
                    || (dir.ends_with("objects/pack") && name.starts_with("tmp"))
                {
                    tracing::debug!(file = %path.display(), "removing a stale lock left by an interrupted fetch");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
    }

    fn prune_cache_if_bloated(&self) {
        let packs = std::fs::read_dir(self.cache_dir.join("objects/pack"))
            .map(|dir| {
                dir.filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
                    .count()
            })
            .unwrap_or(0);
        if packs > MAX_PACKS {
            let _ = self.reset_cache();
        }
    }

    fn remote<'r>(
        &self,
        repo: &'r gix::Repository,
        spec: &str,
        creds: &Credentials,
    ) -> Result<gix::Remote<'r>, SourceError> {
        let remote = repo
            .remote_at(self.source.url.as_str())
            .map_err(|e| self.net_error(e, creds))?
            .with_fetch_tags(gix::remote::fetch::Tags::None)
            .with_refspecs([spec], Direction::Fetch)
            .map_err(|e| self.net_error(e, creds))?;
        Ok(remote)
    }

    /// HTTP(S) gets our own reqwest client settings (CA file, auth header, timeouts); other transports need none.
    fn configure<'a, 'b, 'c, T>(
        &self,
        conn: gix::remote::Connection<'a, 'b, 'c, T>,
        creds: &Credentials,
    ) -> gix::remote::Connection<'a, 'static, 'c, T>
    where
        T: gix::protocol::transport::client::blocking_io::Transport,
    {
        // Never ask a credential helper or a terminal: an unattended agent has neither.
        let conn = conn.with_credentials(|_action| Ok(None));
        if !crate::config::url::is_http(&self.source.url) {
            return conn;
        }
        use gix::protocol::transport::client::blocking_io::http;
        let ca_certs = creds.ca_certs.clone();
        let timeout = self.source.timeout;
        let configure_client = move |builder: reqwest::blocking::ClientBuilder| {
            // No overall request timeout here: a large first fetch may take long; the source's timeout bounds
            // the whole poll from outside, and a stalled connection is cut by the connect timeout.
            let builder = builder.connect_timeout(timeout.min(CONNECT_TIMEOUT));
            // Like git's http.sslCAInfo, a ca_file replaces the default trust roots for this source.
            Ok(match crate::trust::roots(ca_certs.as_deref()) {
                Some(certs) => builder.tls_certs_only(certs.iter().cloned()),
                None => builder,
            })
        };
        let backend = http::reqwest::Options {
            configure_client: Some(Box::new(configure_client)),
            configure_request: None,
        };
        let options = http::Options {
            extra_headers: creds.header.iter().cloned().collect(),
            user_agent: Some(format!("outpost/{}", env!("CARGO_PKG_VERSION"))),
            backend: Some(Arc::new(Mutex::new(backend))),
            ..Default::default()
        };
        conn.with_transport_options(Box::new(options))
    }

    pub fn credentials(&self) -> Result<Credentials, SourceError> {
        let auth = &self.source.auth;
        let read = |path: &Path, what: &str| -> Result<String, SourceError> {
            let text = std::fs::read_to_string(path).map_err(|e| SourceError::Credentials {
                source_name: self.source.name.clone(),
                message: format!("cannot read {what} {}: {e}; check the path and that the agent's user may read it", path.display()),
            })?;
            let value = text.trim_end_matches(['\r', '\n']).to_string();
            if value.is_empty() {
                return Err(SourceError::Credentials {
                    source_name: self.source.name.clone(),
                    message: format!("{what} {} is empty", path.display()),
                });
            }
            Ok(value)
        };
        let ca_certs = match &self.source.ca_file {
            None => None,
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| SourceError::Credentials {
                    source_name: self.source.name.clone(),
                    message: format!("cannot read ca_file {}: {e}", path.display()),
                })?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem)
                    .ok()
                    .filter(|c| !c.is_empty())
                    .ok_or_else(|| SourceError::Credentials {
                        source_name: self.source.name.clone(),
                        message: format!("ca_file {} holds no PEM certificate; give the CA certificate in PEM form", path.display()),
                    })?;
                Some(certs)
            }
        };
        if let Some(path) = &auth.token_file {
            let token = read(path, "token_file")?;
            return Ok(Credentials {
                header: Some(format!("Authorization: Bearer {token}")),
                secrets: vec![token],
                ca_certs,
            });
        }
        if let (Some(user), Some(path)) = (&auth.username, &auth.password_file) {
            let password = read(path, "password_file")?;
            let basic = base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                format!("{user}:{password}"),
            );
            return Ok(Credentials {
                header: Some(format!("Authorization: Basic {basic}")),
                secrets: vec![password, basic],
                ca_certs,
            });
        }
        Ok(Credentials {
            header: None,
            secrets: Vec::new(),
            ca_certs,
        })
    }

    /// The `ssh` invocation: batch mode (never prompt), and strict host key checking against the configured
    /// known_hosts file when there is one.
    fn ssh_command(&self) -> Option<String> {
        if !crate::config::url::is_ssh(&self.source.url) {
            return None;
        }
        let mut cmd = String::from("ssh -o BatchMode=yes -o ConnectTimeout=30");
        let auth = &self.source.auth;
        if let Some(key) = &auth.ssh_key_file {
            cmd.push_str(&format!(" -i {} -o IdentitiesOnly=yes", shell_quote(key)));
        }
        if let Some(kh) = &auth.known_hosts_file {
            cmd.push_str(&format!(
                " -o StrictHostKeyChecking=yes -o UserKnownHostsFile={} -o GlobalKnownHostsFile=/dev/null",
                shell_quote(kh)
            ));
        }
        Some(cmd)
    }

    pub fn net_error(&self, e: impl Describe, creds: &Credentials) -> SourceError {
        let mut secrets: Vec<&str> = creds.secrets.iter().map(String::as_str).collect();
        // A URL with user:password@ may be echoed back by the transport; its password must not be.
        let userinfo = redact::userinfo(&self.source.url);
        secrets.extend(userinfo.as_deref());
        let message = redact::secrets(&e.describe(), &secrets);
        SourceError::Remote {
            source_name: self.source.name.clone(),
            url: redact::url(&self.source.url),
            message: explain(&message),
        }
    }

    fn cache_error(&self, e: impl Describe) -> SourceError {
        SourceError::Cache {
            dir: self.cache_dir.clone(),
            message: e.describe(),
        }
    }
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn quoting_survives_spaces_and_quotes() {
        assert_eq!(
            super::shell_quote(std::path::Path::new("/a b/it's")),
            r"'/a b/it'\''s'"
        );
    }
}
