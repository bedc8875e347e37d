//! Plain-SQL migrations embedded in every binary; only `duma-admin migrate` (or a test kit) runs
//! them, so replicas never race at boot.

use std::str::FromStr;

use secrecy::ExposeSecret;
use tokio_postgres::NoTls;

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

/// Applies every pending migration; a no-op when the schema is current. Returns how many ran.
pub async fn run(settings: &DatabaseSettings) -> anyhow::Result<usize> {
    let mut config = tokio_postgres::Config::from_str(settings.url.expose_secret())?;
    config.connect_timeout(settings.connect_timeout());
    let (mut client, connection) = config.connect(NoTls).await?;
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
