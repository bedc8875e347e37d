//! Plain-SQL migrations embedded in every binary; only `duma-admin migrate` (or a test kit) runs
//! them, so replicas never race at boot.

use std::str::FromStr;
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use crate::accounts::Account;
use crate::config::{DatabaseSettings, RolePasswords};

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
    for migration in report.applied_migrations() {
        tracing::info!(migration = %migration, "applied migration");
    }
    set_role_passwords(&client, &settings.role_passwords).await?;
    drop(client);
    let _ = driver.await;
    Ok(report.applied_migrations().len())
}

/// Lets each service role with a configured password log in with it; roles without one are
/// left as they are (created unable to log in). The server gets a SCRAM verifier, never the
/// password itself.
async fn set_role_passwords(
    client: &tokio_postgres::Client,
    passwords: &RolePasswords,
) -> anyhow::Result<()> {
    for account in Account::ALL {
        let Some(password) = passwords.of(account) else {
            continue;
        };
        let role = account.database_role();
        let verifier =
            postgres_protocol::password::scram_sha_256(password.expose_secret().as_bytes());
        // A verifier is base64, digits and `$:=` only: nothing to escape.
        client
            .batch_execute(&format!(
                "ALTER ROLE {role} WITH LOGIN PASSWORD '{verifier}'"
            ))
            .await
            .map_err(|e| anyhow::anyhow!("setting the password of role {role}: {e}"))?;
        tracing::info!(role, "service role can log in");
    }
    Ok(())
}
