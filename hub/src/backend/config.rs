//! The `[store]` table of `hub.toml`: which backend, and for PostgreSQL how to reach it.
//!
//! ```toml
//! [store]
//! backend = "postgres"                      # or "embedded" (the default: sled + log in state_dir)
//! url = "postgres://outpost@db.example.com:5432/outpost"
//! password_file = "/etc/outpost/db-password"  # the password never sits in hub.toml
//! ca_file = "/etc/outpost/db-ca.pem"        # TLS to the database, verified against this CA
//! pool_size = 16
//! migrate = false                           # true: apply schema migrations at start
//! max_age = "30d"                           # heartbeats older than this are deleted (besides `history`)
//! ```
//! Invariants: a url carrying a password is refused (it would end up in backups and logs); without
//! `ca_file` the database must be on loopback or a Unix socket, as the hub itself serves plain HTTP only on
//! loopback.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Connections the pool opens at most, unless `pool_size` says otherwise.
pub const DEFAULT_POOL_SIZE: usize = 16;
const MAX_POOL_SIZE: usize = 1024;

/// The `[store]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    backend: Option<String>,
    url: Option<String>,
    password_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    pool_size: Option<usize>,
    migrate: Option<bool>,
    max_age: Option<String>,
}

/// Which backend, validated.
#[derive(Debug, Clone, Default)]
pub struct StoreConfig {
    pub kind: BackendKind,
}

#[derive(Debug, Clone, Default)]
pub enum BackendKind {
    #[default]
    Embedded,
    Postgres(Box<PostgresSettings>),
}

/// How to reach PostgreSQL.
#[derive(Clone)]
pub struct PostgresSettings {
    /// The parsed `url` (no password in it).
    pub pg: tokio_postgres::Config,
    /// `url` as written, for messages.
    pub url: String,
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub pool_size: usize,
    pub migrate: bool,
    pub max_age: Option<Duration>,
}

impl std::fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSettings")
            .field("url", &self.url)
            .field("ca_file", &self.ca_file)
            .field("pool_size", &self.pool_size)
            .finish_non_exhaustive()
    }
}

/// What is wrong with `[store]`: the key and the problem.
pub type Problem = (String, String);

impl RawStore {
    /// Validates the table; `resolve` anchors relative paths at the config file's folder.
    pub fn check(self, resolve: impl Fn(PathBuf) -> PathBuf) -> Result<StoreConfig, Problem> {
        let problem = |key: &str, text: String| (format!("store.{key}"), text);
        match self.backend.as_deref().unwrap_or("embedded") {
            "embedded" => {
                for (key, set) in [
                    ("url", self.url.is_some()),
                    ("password_file", self.password_file.is_some()),
                    ("ca_file", self.ca_file.is_some()),
                    ("pool_size", self.pool_size.is_some()),
                    ("max_age", self.max_age.is_some()),
                ] {
                    if set {
                        return Err(problem(
                            key,
                            "is only for backend = \"postgres\"; remove it or set the backend"
                                .into(),
                        ));
                    }
                }
                Ok(StoreConfig::default())
            }
            "postgres" => {
                let Some(url) = self.url else {
                    return Err(problem("url", "is missing: backend = \"postgres\" needs url = \"postgres://USER@HOST:PORT/DATABASE\"".into()));
                };
                let pg: tokio_postgres::Config = url.parse().map_err(|e| {
                    problem("url", format!("= {url:?} is not a PostgreSQL URL ({e}); write it like \"postgres://outpost@db.example.com:5432/outpost\""))
                })?;
                if pg.get_password().is_some() {
                    return Err(problem("url", "carries a password; put it in password_file (mode 0600) instead, so it stays out of the config".into()));
                }
                if pg.get_user().is_none() {
                    return Err(problem("url", format!("= {url:?} names no user; write it like \"postgres://outpost@HOST/DATABASE\"")));
                }
                let ca_file = self.ca_file.map(&resolve);
                if ca_file.is_none() && !all_local(&pg) {
                    return Err(problem("ca_file", "is missing and the database is not on loopback: heartbeats and the password would cross the network unencrypted; set ca_file to the CA that signed the database's certificate".into()));
                }
                let pool_size = self.pool_size.unwrap_or(DEFAULT_POOL_SIZE);
                if !(1..=MAX_POOL_SIZE).contains(&pool_size) {
                    return Err(problem(
                        "pool_size",
                        format!(
                            "= {pool_size} is out of range; use 1 to {MAX_POOL_SIZE} connections"
                        ),
                    ));
                }
                let max_age = match self.max_age {
                    Some(text) => match outpost_proto::units::parse_duration(&text) {
                        Some(d) if d >= Duration::from_secs(60) => Some(d),
                        _ => return Err(problem("max_age", format!("= {text:?} is not a duration of at least a minute; write it like \"30d\" or \"12h\""))),
                    },
                    None => None,
                };
                Ok(StoreConfig {
                    kind: BackendKind::Postgres(Box::new(PostgresSettings {
                        pg,
                        url,
                        password_file: self.password_file.map(&resolve),
                        ca_file,
                        pool_size,
                        migrate: self.migrate.unwrap_or(false),
                        max_age,
                    })),
                })
            }
            other => Err(problem(
                "backend",
                format!("= {other:?} is not a backend; use \"embedded\" or \"postgres\""),
            )),
        }
    }
}

/// Whether every host of the URL is a loopback address, `localhost` or a Unix socket folder.
fn all_local(pg: &tokio_postgres::Config) -> bool {
    pg.get_hosts().iter().all(|host| match host {
        tokio_postgres::config::Host::Tcp(name) => {
            name == "localhost"
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        tokio_postgres::config::Host::Unix(_) => true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<StoreConfig, Problem> {
        let raw: RawStore = toml::from_str(text).map_err(|e| ("toml".into(), e.to_string()))?;
        raw.check(|p| PathBuf::from("/etc/outpost").join(p))
    }

    fn key_of(text: &str) -> String {
        match check(text) {
            Ok(_) => panic!("accepted: {text}"),
            Err((key, _)) => key,
        }
    }

    #[test]
    fn postgres_settings_are_checked() -> Result<(), Problem> {
        assert!(matches!(check("")?.kind, BackendKind::Embedded));
        let local = check("backend = \"postgres\"\nurl = \"postgres://outpost@127.0.0.1:5432/outpost\"\npool_size = 4\nmax_age = \"30d\"\n")?;
        let BackendKind::Postgres(settings) = local.kind else {
            return Err(("kind".into(), "not postgres".into()));
        };
        assert_eq!(settings.pool_size, 4);
        assert_eq!(settings.max_age, Some(Duration::from_secs(30 * 86400)));
        let remote = check("backend = \"postgres\"\nurl = \"postgres://outpost@db.example.com/outpost\"\nca_file = \"ca.pem\"\n")?;
        let BackendKind::Postgres(settings) = remote.kind else {
            return Err(("kind".into(), "not postgres".into()));
        };
        assert_eq!(settings.ca_file, Some(PathBuf::from("/etc/outpost/ca.pem")));

        assert_eq!(key_of("backend = \"postgres\"\n"), "store.url");
        assert_eq!(
            key_of("backend = \"postgres\"\nurl = \"postgres://outpost:secret@127.0.0.1/o\"\n"),
            "store.url"
        );
        assert_eq!(
            key_of("backend = \"postgres\"\nurl = \"postgres://outpost@db.example.com/o\"\n"),
            "store.ca_file"
        );
        assert_eq!(
            key_of("backend = \"postgres\"\nurl = \"postgres://o@127.0.0.1/o\"\npool_size = 0\n"),
            "store.pool_size"
        );
        assert_eq!(key_of("url = \"postgres://o@127.0.0.1/o\"\n"), "store.url");
        assert_eq!(key_of("backend = \"mysql\"\n"), "store.backend");
        Ok(())
    }
}
