//! PostgreSQL: the connection pool, embedded migrations and one repository module per table group.
//!
//! Repositories are plain async functions taking a `&impl GenericClient`, so they work on a pooled
//! connection and inside a transaction alike.

pub mod datasets;
pub mod deployments;
pub mod evaluations;
pub mod inference_jobs;
pub mod migrations;
pub mod models;
pub mod prediction_keys;
pub mod train_jobs;
pub mod trials;
pub mod users;
pub mod workers;

use std::str::FromStr;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use secrecy::ExposeSecret;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use crate::config::DatabaseSettings;

pub use deadpool_postgres::{GenericClient, Pool as PgPool, PoolError, Transaction};
pub use tokio_postgres::Error as PgError;

/// What a repository call can fail with. Constraint violations are typed so the API can map them
/// to 409/404 without parsing strings.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A unique constraint (or exclusion) was violated; `constraint` names it.
    #[error("duplicate value violates {constraint}")]
    Duplicate { constraint: String },
    /// A row refers to a missing row, or a referenced row is still in use.
    #[error("foreign key violation on {constraint}")]
    ForeignKey { constraint: String },
    /// A CHECK constraint rejected a value.
    #[error("check constraint {constraint} rejected a value")]
    Check { constraint: String },
    #[error("no pooled database connection available: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database error: {0}")]
    Postgres(#[source] tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for DbError {
    fn from(error: tokio_postgres::Error) -> Self {
        let Some(db) = error.as_db_error() else {
            return DbError::Postgres(error);
        };
        let constraint = db.constraint().unwrap_or_default().to_owned();
        match *db.code() {
            SqlState::UNIQUE_VIOLATION | SqlState::EXCLUSION_VIOLATION => {
                DbError::Duplicate { constraint }
            }
            SqlState::FOREIGN_KEY_VIOLATION => DbError::ForeignKey { constraint },
            SqlState::CHECK_VIOLATION => DbError::Check { constraint },
            _ => DbError::Postgres(error),
        }
    }
}

impl DbError {
    pub fn is_duplicate_of(&self, name: &str) -> bool {
        matches!(self, DbError::Duplicate { constraint } if constraint == name)
    }
}

pub type DbResult<T> = Result<T, DbError>;

/// Builds the pool. Connections are opened lazily; [`check`] proves the database answers.
pub fn pool(settings: &DatabaseSettings) -> anyhow::Result<Pool> {
    let mut config = tokio_postgres::Config::from_str(settings.url.expose_secret())
        .map_err(|e| anyhow::anyhow!("DUMA_DATABASE__URL is invalid: {e}"))?;
    config.connect_timeout(settings.connect_timeout());
    config.options(format!(
        "-c statement_timeout={}",
        settings.statement_timeout_ms
    ));
    config.application_name("duma");
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(settings.max_connections)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(settings.acquire_timeout()))
        .create_timeout(Some(settings.connect_timeout()))
        .recycle_timeout(Some(settings.connect_timeout()))
        .build()?;
    Ok(pool)
}

/// Proves the database answers a trivial query.
pub async fn check(pool: &Pool) -> DbResult<()> {
    let client = pool.get().await?;
    client.simple_query("SELECT 1").await?;
    Ok(())
}
