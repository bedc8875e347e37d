use std::time::Duration;

use actix_multipart::Multipart;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use duma_common::db::datasets::{self, NewDataset};
use duma_domain::DatasetId;

use crate::auth::{Caller, roles};
use crate::params::Params;
use crate::requests::{CreateDatasetForm, TaskFilter};
use crate::state::AppState;
use crate::uploads::{self, FetchPolicy};
use crate::views::DatasetView;
use duma_common::api_error::{ApiError, ApiResult, ErrorBody, ErrorCode};

/// Upload a dataset: multipart with fields `name`, `task` and file part `dataset`, or the field
/// `dataset_url` to have the admin download it.
#[utoipa::path(post, path = "/datasets", tag = "datasets",
    request_body(content = crate::requests::CreateDatasetForm, content_type = "multipart/form-data"),
    responses((status = 200, body = DatasetView), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    caller.require(roles::DEVELOPERS)?;
    let id = DatasetId::new();
    let path = format!("datasets/{id}");
    let limit = {
        let db = state.pool.get().await?;
        crate::quotas::upload_limit(&db, &state, &caller, state.settings.admin.max_dataset_bytes)
            .await?
    };
    let (params, uploaded) = if uploads::is_multipart(&req) {
        let multipart = Multipart::new(req.headers(), payload.into_inner());
        let part = uploads::FilePart {
            field: "dataset",
            path: &path,
        };
        let mut upload =
            uploads::read_multipart(&req, multipart, &[part], &state.store, limit).await?;
        (upload.params, upload.files.remove(0))
    } else {
        (
            Params::from_request(&req, &mut payload.into_inner()).await?,
            None,
        )
    };
    let stored = async {
        let CreateDatasetForm {
            name,
            task,
            dataset_url,
            ..
        } = params.parse()?;
        let stored = match (uploaded, dataset_url.as_deref()) {
            (Some(stored), _) => stored,
            (None, Some(url)) => {
                let policy = FetchPolicy {
                    timeout: Duration::from_millis(state.settings.admin.dataset_url_timeout_ms),
                    allow_private: state.settings.admin.dataset_url_allow_private,
                    limit,
                };
                uploads::fetch_url(url, &policy, &state.store, &path).await?
            }
            (None, None) => {
                return Err(ApiError::new(
                    ErrorCode::InvalidDataset,
                    "send the dataset as multipart file part `dataset`, or give `dataset_url`",
                ));
            }
        };
        let db = state.pool.get().await?;
        let dataset = datasets::insert(
            &db,
            &NewDataset {
                id,
                user_id: caller.id,
                name: &name,
                task: &task,
                store_path: &stored.path,
                size_bytes: i64::try_from(stored.size_bytes).unwrap_or(i64::MAX),
                sha256: &stored.sha256,
            },
        )
        .await?;
        Ok::<_, ApiError>(dataset)
    }
    .await;
    match stored {
        Ok(dataset) => {
            tracing::info!(dataset_id = %dataset.id, size_bytes = dataset.size_bytes, "dataset stored");
            // The view the OpenAPI document promises, as `GET /datasets` lists it.
            Ok(super::json(DatasetView::from(&dataset)))
        }
        Err(error) => {
            let _ = state.store.delete(&path).await;
            Err(error)
        }
    }
}

/// List the caller's datasets, optionally of one task.
#[utoipa::path(get, path = "/datasets", tag = "datasets",
    params(TaskFilter),
    responses((status = 200, body = [DatasetView])), security(("bearer" = [])))]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    params: Params,
) -> ApiResult<HttpResponse> {
    caller.require(roles::DEVELOPERS)?;
    let db = state.pool.get().await?;
    let TaskFilter { task } = params.parse()?;
    let list = datasets::list_by_user(&db, caller.id, task.as_deref()).await?;
    Ok(super::json(
        list.iter().map(DatasetView::from).collect::<Vec<_>>(),
    ))
}
