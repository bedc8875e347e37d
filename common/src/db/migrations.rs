//! Plain-SQL migrations embedded in every binary; only `duma-admin migrate` (or a test kit) runs
//! them, so replicas never race at boot.

use std::str::FromStr;
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use crate::config::DatabaseSettings;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// The migrations compiled into this binary, oldest first.
pub fn embedded() -> Vec<refinery::Migration> {
    embedded::migrations::runner().get_migrations().to_vec()
}

/// A fingerprint of the embedded migrations, so test kits can cache a migrated template database.
pub fn fingerprint() -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for migration in embedded() {
        hasher.update(migration.name());
        hasher.update(migration.checksum().to_le_bytes());
    }
    hex::encode(&hasher.finalize()[..8])
}

/// How long `run` keeps trying to reach a PostgreSQL that is still starting.
const CONNECT_PATIENCE: Duration = Duration::from_secs(60);

/// Applies every pending migration; a no-op when the schema is current. Returns how many ran.
/// Retries the connection for up to a minute: at a stack's first start the server may still be
/// initialising (refusing connections) when the migration starts.
pub async fn run(settings: &DatabaseSettings) -> anyhow::Result<usize> {
    let mut config = tokio_postgres::Config::from_str(settings.url.expose_secret())?;
    config.connect_timeout(settings.connect_timeout());
    let deadline = Instant::now() + CONNECT_PATIENCE;
    let (mut client, connection) = loop {
        match config.connect(NoTls).await {
            Ok(connected) => break connected,
            // Not reachable, or "the database system is starting up"; a refused login fails now.
            Err(error)
                if Instant::now() < deadline
                    && (error.as_db_error().is_none()
                        || error.code() == Some(&SqlState::CANNOT_CONNECT_NOW)) =>
            {
                tracing::info!(%error, "PostgreSQL is not reachable yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => return Err(error.into()),
        }
    };
    let driver = tokio::spawn(connection);
    let report = embedded::migrations::runner()
        .run_async(&mut client)
        .await?;
    drop(client);
    let _ = driver.await;
    for migration in report.applied_migrations() {
        tracing::info!(migration = %migration, "applied migration");
    }
    Ok(report.applied_migrations().len())
}
