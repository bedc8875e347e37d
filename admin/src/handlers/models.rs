use actix_multipart::Multipart;
use actix_web::{HttpRequest, HttpResponse, web};
use duma_common::db::DbError;
use duma_common::db::models::{self, Dependencies, Model, NewModel};
use duma_common::redis::events::Event;
use duma_domain::{AccessRight, ModelClass, ModelId, ModelName, TemplateKind, dependencies};

use crate::auth::{Caller, roles};
use crate::params::{Params, path_id};
use crate::requests::{CreateModelForm, TaskFilter};
use crate::state::AppState;
use crate::uploads;
use crate::views::{AvailableModelView, CreatedModelView, ModelView};
use duma_common::api_error::{ApiError, ApiResult, ErrorBody, ErrorCode};

/// The fields of an upload, parsed.
struct ModelFields {
    name: ModelName,
    task: String,
    model_class: ModelClass,
    dependencies: Dependencies,
    access_right: AccessRight,
    docker_image: Option<String>,
    description: Option<String>,
    feature_names: Option<Vec<String>>,
}

const MAX_DESCRIPTION_CHARS: usize = 4096;

fn parse_fields(params: &Params) -> Result<ModelFields, ApiError> {
    let invalid = |message: String| ApiError::new(ErrorCode::InvalidModel, message);
    let form: CreateModelForm = params.parse()?;
    let name = ModelName::parse(&form.name).map_err(|e| invalid(e.to_string()))?;
    let task = form.task.trim().to_owned();
    let model_class = ModelClass::parse(&form.model_class).map_err(|e| invalid(e.to_string()))?;
    let dependencies: Dependencies = match form.dependencies {
        None => Dependencies::new(),
        Some(map) => map
            .into_iter()
            .map(|(name, version)| match version {
                serde_json::Value::String(v) => Ok((name, v)),
                serde_json::Value::Null => Ok((name, String::new())),
                other => Err(invalid(format!(
                    "the version of {name} must be a string, not {other}"
                ))),
            })
            .collect::<Result<_, _>>()?,
    };
    dependencies::validate(&dependencies).map_err(|e| invalid(e.to_string()))?;
    let access_right = match form.access_right.as_deref() {
        None => AccessRight::Private,
        Some(raw) => raw
            .parse()
            .map_err(|e: duma_domain::UnknownVariant| invalid(e.to_string()))?,
    };
    if let Some(kind) = form.model_type.as_deref().filter(|kind| *kind != "py") {
        return Err(invalid(format!(
            "model_type {kind} is not supported: upload one Python file (model_type py)"
        )));
    }
    if form.model_file_name.is_some() {
        return Err(invalid(
            "model_file_name names the entry file of a zip model; a py model is the \
             uploaded file itself: leave it out"
                .to_owned(),
        ));
    }
    if let Some(description) = &form.model_description
        && description.chars().count() > MAX_DESCRIPTION_CHARS
    {
        return Err(invalid(format!(
            "model_description is longer than {MAX_DESCRIPTION_CHARS} characters"
        )));
    }
    Ok(ModelFields {
        name,
        task,
        model_class,
        dependencies,
        access_right,
        docker_image: form.docker_image,
        description: form.model_description,
        feature_names: form.feature_names,
    })
}

/// Upload a model template (Python source in file part `model_file_bytes`).
#[utoipa::path(post, path = "/models", tag = "models",
    request_body(content = crate::requests::CreateModelForm, content_type = "multipart/form-data"),
    responses((status = 200, body = CreatedModelView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    caller.require(roles::MODEL_DEVELOPERS)?;
    if !uploads::is_multipart(&req) {
        return Err(ApiError::new(
            ErrorCode::InvalidModel,
            "upload a model as multipart/form-data with file part `model_file_bytes`",
        ));
    }
    let id = ModelId::new();
    // A Python template or an ONNX model: which, its content says (`recognise`).
    let path = format!("models/{id}/file");
    let limit = {
        let db = state.pool.get().await?;
        crate::quotas::upload_limit(
            &db,
            &state,
            &caller,
            state.settings.admin.max_model_file_bytes,
        )
        .await?
    };
    // Trained parameters uploaded with a template (SINGA-Auto's part name).
    let checkpoint_path = format!("models/{id}/checkpoint");
    let multipart = Multipart::new(req.headers(), payload.into_inner());
    let parts = [
        uploads::FilePart {
            field: "model_file_bytes",
            path: &path,
        },
        uploads::FilePart {
            field: "checkpoint_id",
            path: &checkpoint_path,
        },
    ];
    let upload = uploads::read_multipart(&req, multipart, &parts, &state.store, limit).await?;
    let created = async {
        let fields = parse_fields(&upload.params)?;
        let source = upload.files[0].as_ref().ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidModel,
                "missing file part `model_file_bytes`",
            )
        })?;
        let (template_kind, signature) =
            recognise(&state, &source.path, fields.feature_names.clone()).await?;
        let checkpoint = match &upload.files[1] {
            None => None,
            Some(stored) => {
                check_checkpoint(&state, template_kind, &stored.path).await?;
                Some(models::Checkpoint {
                    path: stored.path.clone(),
                    sha256: stored.sha256.clone(),
                    size_bytes: i64::try_from(stored.size_bytes).unwrap_or(i64::MAX),
                })
            }
        };
        let db = state.pool.get().await?;
        let new = NewModel {
            id,
            user_id: caller.id,
            name: fields.name.to_string(),
            task: fields.task,
            template_kind,
            source_path: Some(source.path.clone()),
            source_sha256: Some(source.sha256.clone()),
            source_size_bytes: i64::try_from(source.size_bytes).ok(),
            model_class: fields.model_class.into_inner(),
            knob_config: None,
            dependencies: fields.dependencies,
            access_right: fields.access_right,
            docker_image: fields.docker_image,
            description: fields.description,
            signature,
            checkpoint,
        };
        models::insert(&db, &new).await.map_err(|e| {
            if e.is_duplicate_of(models::NAME_TAKEN) {
                ApiError::new(
                    ErrorCode::DuplicateModelName,
                    format!("you already have a model named {}", fields.name),
                )
            } else {
                e.into()
            }
        })
    }
    .await;
    match created {
        Ok(model) => {
            tracing::info!(model_id = %model.id, name = model.name, "model uploaded");
            state
                .publish(Event::ModelUploaded {
                    dependencies: model.dependencies.clone(),
                })
                .await;
            Ok(super::json(CreatedModelView::from(&model)))
        }
        Err(error) => {
            let _ = state.store.delete(&path).await;
            let _ = state.store.delete(&checkpoint_path).await;
            Err(error)
        }
    }
}

/// What an uploaded file is, by its content: an ONNX model (loaded now, so one that cannot be
/// served is refused with the reason, and its tensors are recorded), else a Python template
/// (whose code only a sandboxed worker runs).
async fn recognise(
    state: &AppState,
    path: &str,
    feature_names: Option<Vec<String>>,
) -> Result<(TemplateKind, Option<serde_json::Value>), ApiError> {
    // The first chunk decides; only an ONNX file is read whole.
    let head = first_chunk(state, path).await?;
    if !duma_runtime::onnx::looks_like_onnx(&head) {
        if !looks_like_text(&head) {
            return Err(ApiError::new(
                ErrorCode::InvalidModel,
                "the file is neither an ONNX model nor Python source (a template is UTF-8 text \
                 without NUL bytes)",
            ));
        }
        if feature_names.is_some() {
            return Err(ApiError::new(
                ErrorCode::InvalidModel,
                "feature_names name an ONNX model's input columns; a template reads its own",
            ));
        }
        return Ok((TemplateKind::Python, None));
    }
    let bytes = state.store.get_bytes(path).await?.to_vec();
    let inspector = match &state.settings.onnx.inspector {
        Some(path) => path.clone(),
        None => std::env::current_exe().map_err(|error| {
            ApiError::Internal(anyhow::anyhow!(
                "the admin binary, to inspect ONNX files: {error}"
            ))
        })?,
    };
    let library = &state.settings.onnx.runtime_path;
    let signature = crate::onnx_inspection::inspect(&inspector, library, bytes, ONNX_INSPECTION)
        .await
        .map_err(|reason| ApiError::new(ErrorCode::InvalidModel, reason))?;
    let mut signature = signature;
    if let Some(names) = feature_names {
        signature
            .name_features(names)
            .map_err(|reason| ApiError::new(ErrorCode::InvalidModel, reason))?;
    }
    let signature = serde_json::to_value(signature).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidModel,
            format!("unreadable signature: {e}"),
        )
    })?;
    Ok((TemplateKind::Onnx, Some(signature)))
}

/// The first chunk the store streams of a file (empty for an empty file): enough to tell what
/// the file is without reading it whole.
async fn first_chunk(state: &AppState, path: &str) -> Result<bytes::Bytes, ApiError> {
    use futures::StreamExt;
    let mut stream = Box::pin(state.store.get_stream(path).await?);
    Ok(stream.next().await.transpose()?.unwrap_or_default())
}

/// Whether the start of a file can be Python source: UTF-8 (a character cut at the end of the
/// chunk aside) with no NUL byte, which Python refuses in source.
fn looks_like_text(head: &[u8]) -> bool {
    if head.contains(&0) {
        return false;
    }
    match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && head.len() - e.valid_up_to() < 4,
    }
}

/// A checkpoint is parameters as Duma saves them: what a trial's `GET /trials/{id}/parameters`
/// gives, or `duma.params.save` writes (a zip). Only its first bytes are read here; the
/// template's sandboxed runner reads the rest when it serves it.
async fn check_checkpoint(
    state: &AppState,
    kind: TemplateKind,
    path: &str,
) -> Result<(), ApiError> {
    let invalid = |message: &str| ApiError::new(ErrorCode::InvalidModel, message);
    if kind != TemplateKind::Python {
        return Err(invalid(
            "an ONNX model carries its own weights: upload it without `checkpoint_id`",
        ));
    }
    let head = first_chunk(state, path).await?;
    if head.starts_with(PARAMETERS_MAGIC) {
        return Ok(());
    }
    // Pickle's protocol 2+ opcode, which SINGA-Auto's `.model` checkpoints start with.
    let why = if head.first() == Some(&0x80) {
        "the checkpoint is a pickle, which Duma never loads"
    } else {
        "the checkpoint is not Duma model parameters"
    };
    Err(ApiError::new(
        ErrorCode::InvalidModel,
        format!(
            "{why}: upload what `duma.params.save(model.dump_parameters(), path)` writes, or a \
             trial's GET /trials/{{trial_id}}/parameters"
        ),
    ))
}

/// What parameters saved by a Python template start with (`duma/params.py`: a zip).
const PARAMETERS_MAGIC: &[u8] = b"PK\x03\x04";

/// The longest an uploaded ONNX model may take to load.
const ONNX_INSPECTION: std::time::Duration = std::time::Duration::from_secs(60);

/// Models the caller may use: public ones and their own.
#[utoipa::path(get, path = "/models/available", tag = "models",
    params(TaskFilter),
    responses((status = 200, body = [AvailableModelView])), security(("bearer" = [])))]
pub async fn available(
    state: web::Data<AppState>,
    caller: Caller,
    params: Params,
) -> ApiResult<HttpResponse> {
    caller.require(roles::DEVELOPERS)?;
    let db = state.pool.get().await?;
    let TaskFilter { task } = params.parse()?;
    let list = models::list_available(&db, caller.id, task.as_deref()).await?;
    Ok(super::json(
        list.iter()
            .map(AvailableModelView::from)
            .collect::<Vec<_>>(),
    ))
}

/// The model with `id`, if the caller may see it (owner or admin).
async fn visible_model(state: &AppState, caller: &Caller, raw_id: &str) -> Result<Model, ApiError> {
    let id: ModelId = path_id(raw_id, ErrorCode::ModelNotFound, "model")?;
    let db = state.pool.get().await?;
    let model = models::by_id(&db, id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::ModelNotFound, format!("no model with id {id}")))?;
    caller.require_owner_or_admin(model.user_id, "model")?;
    Ok(model)
}

/// One model (non-admins: only their own).
#[utoipa::path(get, path = "/models/{model_id}", tag = "models",
    params(("model_id" = String, Path)),
    responses((status = 200, body = ModelView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    caller.require(roles::DEVELOPERS)?;
    let model = visible_model(&state, &caller, &id).await?;
    Ok(super::json(ModelView::from(&model)))
}

/// Delete a model no train job uses.
#[utoipa::path(delete, path = "/models/{model_id}", tag = "models",
    params(("model_id" = String, Path)),
    responses((status = 200, body = CreatedModelView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    caller.require(roles::MODEL_DEVELOPERS)?;
    let model = visible_model(&state, &caller, &id).await?;
    if model.template_kind == TemplateKind::Native {
        return Err(ApiError::new(
            ErrorCode::BuiltInModel,
            "built-in templates cannot be deleted",
        ));
    }
    let db = state.pool.get().await?;
    let deleted = models::delete(&db, model.id).await.map_err(|e| match e {
        DbError::ForeignKey { .. } => ApiError::new(
            ErrorCode::ModelUsed,
            format!("model {} is used by a train job", model.name),
        ),
        other => other.into(),
    })?;
    let files = deleted.iter().flat_map(|m| {
        m.source_path
            .iter()
            .chain(m.checkpoint.as_ref().map(|c| &c.path))
    });
    for path in files {
        if let Err(error) = state.store.delete(path).await {
            tracing::warn!(%error, path, "a deleted model's file could not be removed");
        }
    }
    Ok(super::json(CreatedModelView::from(&model)))
}

/// Download the uploaded template source.
#[utoipa::path(get, path = "/models/{model_id}/model_file", tag = "models",
    params(("model_id" = String, Path)),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn model_file(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    caller.require(roles::MODEL_DEVELOPERS)?;
    let model = visible_model(&state, &caller, &id).await?;
    let path = model.source_path.ok_or_else(|| {
        ApiError::new(
            ErrorCode::ModelNotFound,
            "built-in templates have no source file",
        )
    })?;
    super::file(&state.store, &path).await
}

#[cfg(test)]
mod tests {
    use super::looks_like_text;

    #[test]
    fn python_source_is_told_from_binary_files() {
        assert!(looks_like_text(b"class M:\n    pass\n"));
        assert!(looks_like_text("# é\n".as_bytes()));
        // A chunk may end inside a character.
        assert!(looks_like_text(&"x = 'é'".as_bytes()[..6]));
        assert!(!looks_like_text(b"\x80\x04\x95pickle"));
        assert!(!looks_like_text(b"ok\0then binary"));
        assert!(!looks_like_text(b"\xff\xfe\x00\x00"));
    }
}
