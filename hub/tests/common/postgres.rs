//! A real PostgreSQL for the hub's suites: Debian's server binaries, a cluster made by `initdb` in a temp dir,
//! on a random loopback port, run by an unprivileged user (PostgreSQL refuses to run as root: when the
//! tests are root, as in CI, it runs as `nobody` through `runuser`). Stopped when dropped.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::TestError;

/// Where Debian installs the server binaries (`postgresql` package).
const PG_BIN_GLOB: &str = "/usr/lib/postgresql";

pub struct PgCluster {
    bin: PathBuf,
    pub dir: PathBuf,
    pub port: u16,
    /// Kept until the cluster is dropped.
    _temp: Option<tempfile::TempDir>,
}

fn bin_dir() -> Result<PathBuf, TestError> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir(PG_BIN_GLOB)
        .map_err(|e| format!("PostgreSQL is not installed ({PG_BIN_GLOB}: {e}); install Debian's `postgresql` package (scripts/test does)"))?
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().ok_or_else(|| {
        "no PostgreSQL server binaries under /usr/lib/postgresql; install `postgresql`".into()
    })
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a server binary as the cluster's user.
fn run(bin: &Path, program: &str, args: &[&str]) -> Result<(), TestError> {
    let mut command = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--"]).arg(bin.join(program));
        c
    } else {
        Command::new(bin.join(program))
    };
    let output = command.args(args).current_dir("/").output()?;
    if !output.status.success() {
        return Err(format!(
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(())
}

fn free_port() -> Result<u16, TestError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl PgCluster {
    /// A new cluster in its own temp dir.
    pub fn start() -> Result<PgCluster, TestError> {
        let temp = tempfile::tempdir()?;
        let dir = temp.path().join("pg");
        let mut cluster = PgCluster::init(&dir)?;
        cluster._temp = Some(temp);
        Ok(cluster)
    }

    /// A cluster in `dir` (made with `initdb` the first time; started again on its data afterwards).
    pub fn init(dir: &Path) -> Result<PgCluster, TestError> {
        let bin = bin_dir()?;
        if !dir.join("data").exists() {
            std::fs::create_dir_all(dir)?;
            // The unprivileged user must reach the folder through its parents.
            let mut parent = dir.parent();
            while let Some(p) = parent {
                if p.starts_with(std::env::temp_dir()) && p != std::env::temp_dir() {
                    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))?;
                }
                parent = p.parent();
            }
            if is_root() {
                let status = Command::new("chown")
                    .args(["-R", "nobody"])
                    .arg(dir)
                    .status()?;
                if !status.success() {
                    return Err("chown nobody failed".into());
                }
            }
            let data = dir.join("data");
            run(
                &bin,
                "initdb",
                &[
                    "-D",
                    &data.to_string_lossy(),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                    "--no-instructions",
                ],
            )?;
        }
        let mut cluster = PgCluster {
            bin,
            dir: dir.to_owned(),
            port: 0,
            _temp: None,
        };
        cluster.resume()?;
        Ok(cluster)
    }

    /// Starts the server on a new random port (after [`PgCluster::stop`]).
    pub fn resume(&mut self) -> Result<(), TestError> {
        if self.port == 0 {
            self.port = free_port()?;
        }
        let data = self.dir.join("data");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port,
            self.dir.display()
        );
        run(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-o",
                &options,
                "-l",
                &self.dir.join("log").to_string_lossy(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
    }

    /// Stops the server at once (`immediate`: like a crash; committed data survives through the WAL).
    pub fn stop(&self) -> Result<(), TestError> {
        let data = self.dir.join("data");
        run(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        )
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The hub.toml `[store]` table for this cluster.
    pub fn store_table(&self) -> String {
        format!(
            "[store]\nbackend = \"postgres\"\nurl = \"{}\"\nmigrate = true\npool_size = 8\n",
            self.url()
        )
    }

    /// A client for checks the test makes itself.
    pub async fn client(&self) -> Result<tokio_postgres::Client, TestError> {
        let (client, connection) = tokio_postgres::connect(
            &format!(
                "host=127.0.0.1 port={} user=postgres dbname=postgres",
                self.port
            ),
            tokio_postgres::NoTls,
        )
        .await?;
        tokio::spawn(connection);
        Ok(client)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
