//! Per-user quotas, checked where work or storage is created: bytes stored (datasets and template
//! files), train jobs and inference jobs live at once. The superadmin has none. The job counts are
//! read before the creating transaction, so two creations racing at the limit can both pass: a
//! bound against runaway use, not an exact ledger.

use duma_common::db::{GenericClient, inference_jobs, train_jobs, users};
use duma_domain::UserType;

use crate::auth::Caller;
use crate::state::AppState;
use duma_common::api_error::{ApiError, ErrorCode};

fn exceeded(message: String) -> ApiError {
    ApiError::new(ErrorCode::QuotaExceeded, message)
}

/// How many more bytes the caller may store, at most `cap`: the size limit of their next upload.
pub async fn upload_limit(
    db: &impl GenericClient,
    state: &AppState,
    caller: &Caller,
    cap: u64,
) -> Result<u64, ApiError> {
    if caller.user_type == UserType::Superadmin {
        return Ok(cap);
    }
    let quota = state.settings.admin.quota_stored_bytes;
    let used = u64::try_from(users::stored_bytes(db, caller.id).await?).unwrap_or(0);
    let left = quota.saturating_sub(used);
    if left == 0 {
        return Err(exceeded(format!(
            "you store {used} bytes, your quota is {quota}: delete datasets or models first"
        )));
    }
    Ok(left.min(cap))
}

/// The kinds of job a user has a live quota of.
#[derive(Debug, Clone, Copy)]
pub enum LiveJobs {
    Train,
    Inference,
}

/// 403 when the caller already has their quota of live jobs of `kind`.
pub async fn check_live_jobs(
    db: &impl GenericClient,
    state: &AppState,
    caller: &Caller,
    kind: LiveJobs,
) -> Result<(), ApiError> {
    if caller.user_type == UserType::Superadmin {
        return Ok(());
    }
    let quotas = &state.settings.admin;
    let (live, quota, what) = match kind {
        LiveJobs::Train => (
            train_jobs::count_live_of_user(db, caller.id).await?,
            quotas.quota_live_train_jobs,
            "train jobs in progress",
        ),
        LiveJobs::Inference => (
            inference_jobs::count_live_of_user(db, caller.id).await?,
            quotas.quota_live_inference_jobs,
            "inference jobs serving",
        ),
    };
    if live >= i64::from(quota) {
        return Err(exceeded(format!(
            "you have {live} {what}, your quota is {quota}: stop one first"
        )));
    }
    Ok(())
}
