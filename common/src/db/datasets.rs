use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use super::{DbResult, GenericClient};
use duma_domain::{DatasetId, UserId};

#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub id: DatasetId,
    pub user_id: UserId,
    pub name: String,
    pub task: String,
    /// Object-store path of the content.
    pub store_path: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub datetime_created: DateTime<Utc>,
}

impl Dataset {
    fn from_row(row: &Row) -> DbResult<Self> {
        Ok(Self {
            id: row.try_get("id")?,
            user_id: row.try_get("user_id")?,
            name: row.try_get("name")?,
            task: row.try_get("task")?,
            store_path: row.try_get("store_path")?,
            size_bytes: row.try_get("size_bytes")?,
            sha256: row.try_get("sha256")?,
            datetime_created: row.try_get("datetime_created")?,
        })
    }
}

const COLUMNS: &str = "id, user_id, name, task, store_path, size_bytes, sha256, datetime_created";

pub struct NewDataset<'a> {
    pub id: DatasetId,
    pub user_id: UserId,
    pub name: &'a str,
    pub task: &'a str,
    pub store_path: &'a str,
    pub size_bytes: i64,
    pub sha256: &'a str,
}

pub async fn insert(db: &impl GenericClient, new: &NewDataset<'_>) -> DbResult<Dataset> {
    let sql = format!(
        "INSERT INTO datasets (id, user_id, name, task, store_path, size_bytes, sha256) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
    );
    let row = db
        .query_one(
            &sql,
            &[
                &new.id,
                &new.user_id,
                &new.name,
                &new.task,
                &new.store_path,
                &new.size_bytes,
                &new.sha256,
            ],
        )
        .await?;
    Dataset::from_row(&row)
}

pub async fn by_id(db: &impl GenericClient, id: DatasetId) -> DbResult<Option<Dataset>> {
    let sql = format!("SELECT {COLUMNS} FROM datasets WHERE id = $1");
    db.query_opt(&sql, &[&id])
        .await?
        .map(|r| Dataset::from_row(&r))
        .transpose()
}

/// A user's datasets, newest first, optionally of one task.
pub async fn list_by_user(
    db: &impl GenericClient,
    user_id: UserId,
    task: Option<&str>,
) -> DbResult<Vec<Dataset>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM datasets WHERE user_id = $1 AND ($2::text IS NULL OR task = $2) \
         ORDER BY datetime_created DESC, id DESC"
    );
    db.query(&sql, &[&user_id, &task])
        .await?
        .iter()
        .map(Dataset::from_row)
        .collect()
}
