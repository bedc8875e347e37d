use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use super::{DbResult, GenericClient};
use duma_domain::{UserId, UserType};

/// Violated by a second account with the same email (case-insensitive).
pub const EMAIL_TAKEN: &str = "users_email_key";

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub password_hash: String,
    pub user_type: UserType,
    pub datetime_created: DateTime<Utc>,
    pub banned_date: Option<DateTime<Utc>>,
}

impl User {
    fn from_row(row: &Row) -> DbResult<Self> {
        Ok(Self {
            id: row.try_get("id")?,
            email: row.try_get("email")?,
            password_hash: row.try_get("password_hash")?,
            user_type: row.try_get("user_type")?,
            datetime_created: row.try_get("datetime_created")?,
            banned_date: row.try_get("banned_date")?,
        })
    }

    pub fn is_banned(&self) -> bool {
        self.banned_date.is_some()
    }
}

const COLUMNS: &str = "id, email, password_hash, user_type, datetime_created, banned_date";

pub async fn insert(
    db: &impl GenericClient,
    email: &str,
    password_hash: &str,
    user_type: UserType,
) -> DbResult<User> {
    let sql = format!(
        "INSERT INTO users (id, email, password_hash, user_type) VALUES ($1, $2, $3, $4) \
         RETURNING {COLUMNS}"
    );
    let row = db
        .query_one(&sql, &[&UserId::new(), &email, &password_hash, &user_type])
        .await?;
    User::from_row(&row)
}

pub async fn by_id(db: &impl GenericClient, id: UserId) -> DbResult<Option<User>> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE id = $1");
    db.query_opt(&sql, &[&id])
        .await?
        .map(|r| User::from_row(&r))
        .transpose()
}

pub async fn by_email(db: &impl GenericClient, email: &str) -> DbResult<Option<User>> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE lower(email) = lower($1)");
    db.query_opt(&sql, &[&email])
        .await?
        .map(|r| User::from_row(&r))
        .transpose()
}

/// Every user, oldest first.
pub async fn list(db: &impl GenericClient) -> DbResult<Vec<User>> {
    let sql = format!("SELECT {COLUMNS} FROM users ORDER BY datetime_created, id");
    db.query(&sql, &[])
        .await?
        .iter()
        .map(User::from_row)
        .collect()
}

/// Bans a user who is not banned yet; `None` if there is no such unbanned user.
pub async fn ban(db: &impl GenericClient, id: UserId) -> DbResult<Option<User>> {
    let sql = format!(
        "UPDATE users SET banned_date = now() WHERE id = $1 AND banned_date IS NULL \
         RETURNING {COLUMNS}"
    );
    db.query_opt(&sql, &[&id])
        .await?
        .map(|r| User::from_row(&r))
        .transpose()
}

pub async fn set_password_hash(
    db: &impl GenericClient,
    id: UserId,
    password_hash: &str,
) -> DbResult<bool> {
    let n = db
        .execute(
            "UPDATE users SET password_hash = $2 WHERE id = $1",
            &[&id, &password_hash],
        )
        .await?;
    Ok(n == 1)
}

/// Bytes the user stores: their datasets and their uploaded template files.
pub async fn stored_bytes(db: &impl GenericClient, id: UserId) -> DbResult<i64> {
    let row = db
        .query_one(
            "SELECT (SELECT coalesce(sum(size_bytes), 0) FROM datasets WHERE user_id = $1)::bigint \
                  + (SELECT coalesce(sum(source_size_bytes), 0) FROM models WHERE user_id = $1)::bigint",
            &[&id],
        )
        .await?;
    Ok(row.try_get(0)?)
}
