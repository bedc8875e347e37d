//! argon2id password hashes, computed off the async executor (they cost tens of milliseconds).

use argon2::Argon2;
use argon2::password_hash::{
    PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng,
};

use crate::error::ApiError;

pub async fn hash_password(password: String) -> Result<String, ApiError> {
    let hashed = actix_web::web::block(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
    })
    .await
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("password hashing task failed: {e}")))?;
    hashed.map_err(|e| ApiError::Internal(anyhow::anyhow!("hashing a password: {e}")))
}

/// False for a wrong password or an unreadable hash.
pub async fn verify_password(password: String, hash: String) -> Result<bool, ApiError> {
    actix_web::web::block(move || {
        PasswordHash::new(&hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("password check task failed: {e}")))
}
