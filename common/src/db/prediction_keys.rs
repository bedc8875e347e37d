//! Prediction keys of apps (`prediction_keys`): stored as SHA-256 digests, never in clear.

use chrono::{DateTime, Utc};
use duma_domain::{PredictionKeyId, UserId};
use sha2::{Digest, Sha256};
use tokio_postgres::Row;

use super::{DbResult, GenericClient};

/// What every key starts with, so a leaked one is recognisable (e.g. by secret scanners).
pub const KEY_PREFIX: &str = "duma_pk_";

#[derive(Debug, Clone)]
pub struct PredictionKey {
    pub id: PredictionKeyId,
    pub user_id: UserId,
    pub app: String,
    pub prefix: String,
    pub datetime_created: DateTime<Utc>,
}

impl PredictionKey {
    fn from_row(row: &Row) -> DbResult<Self> {
        Ok(Self {
            id: row.try_get("id")?,
            user_id: row.try_get("user_id")?,
            app: row.try_get("app")?,
            prefix: row.try_get("prefix")?,
            datetime_created: row.try_get("datetime_created")?,
        })
    }
}

/// The digest a key is stored and looked up by.
pub fn digest(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

const COLUMNS: &str = "id, user_id, app, prefix, datetime_created";

/// Stores the digest of `key` for the user's app.
pub async fn create(
    db: &impl GenericClient,
    user_id: UserId,
    app: &str,
    key: &str,
) -> DbResult<PredictionKey> {
    let prefix: String = key.chars().take(KEY_PREFIX.len() + 6).collect();
    let sql = format!(
        "INSERT INTO prediction_keys (id, user_id, app, key_sha256, prefix) \
         VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
    );
    let row = db
        .query_one(
            &sql,
            &[
                &PredictionKeyId::new(),
                &user_id,
                &app,
                &digest(key),
                &prefix,
            ],
        )
        .await?;
    PredictionKey::from_row(&row)
}

/// The keys of the user's app, oldest first.
pub async fn list(
    db: &impl GenericClient,
    user_id: UserId,
    app: &str,
) -> DbResult<Vec<PredictionKey>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM prediction_keys WHERE user_id = $1 AND app = $2 \
         ORDER BY datetime_created, id"
    );
    db.query(&sql, &[&user_id, &app])
        .await?
        .iter()
        .map(PredictionKey::from_row)
        .collect()
}

/// Deletes one of the user's app's keys; false if there is no such key.
pub async fn delete(
    db: &impl GenericClient,
    user_id: UserId,
    app: &str,
    id: PredictionKeyId,
) -> DbResult<bool> {
    let deleted = db
        .execute(
            "DELETE FROM prediction_keys WHERE id = $1 AND user_id = $2 AND app = $3",
            &[&id, &user_id, &app],
        )
        .await?;
    Ok(deleted == 1)
}

/// The digests of the keys of the app an inference job serves (empty: the app is open).
pub async fn digests_for_inference_job(
    db: &impl GenericClient,
    inference_job_id: duma_domain::InferenceJobId,
) -> DbResult<Vec<Vec<u8>>> {
    let rows = db
        .query(
            "SELECT k.key_sha256 FROM prediction_keys k \
             JOIN train_jobs t ON t.user_id = k.user_id AND t.app = k.app \
             JOIN inference_jobs i ON i.train_job_id = t.id \
             WHERE i.id = $1",
            &[&inference_job_id],
        )
        .await?;
    rows.iter()
        .map(|row| row.try_get(0).map_err(Into::into))
        .collect()
}
