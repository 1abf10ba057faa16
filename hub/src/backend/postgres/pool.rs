//! The connection pool: its timeouts, TLS when `ca_file` is set, and the password from a file.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};

use super::tls;
use crate::backend::config::PostgresSettings;
use crate::backend::BackendError;

/// How long a request waits for a free connection before the hub answers 503.
pub const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long opening a connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The pool for `settings`, over TLS when `ca_file` is set. Connections are opened lazily.
pub fn connect(settings: &PostgresSettings) -> Result<Pool, BackendError> {
    let mut pg = settings.pg.clone();
    pg.connect_timeout(CONNECT_TIMEOUT);
    if pg.get_application_name().is_none() {
        pg.application_name("outpost-hub");
    }
    if let Some(file) = &settings.password_file {
        let password = crate::secret_file::read(file)
            .map_err(|e| BackendError::Database(format!("store.password_file: {e}")))?;
        pg.password(password);
    }
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match &settings.ca_file {
        Some(ca_file) => {
            pg.ssl_mode(tokio_postgres::config::SslMode::Require);
            let tls = tls::connector(ca_file)?;
            Manager::from_config(pg, tls, manager_config)
        }
        None => Manager::from_config(pg, tokio_postgres::NoTls, manager_config),
    };
    Pool::builder(manager)
        .max_size(settings.pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(POOL_WAIT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|e| BackendError::Database(format!("cannot build the connection pool: {e}")))
}
