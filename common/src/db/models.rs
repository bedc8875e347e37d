use chrono::{DateTime, Utc};
use postgres_types::Json;
use tokio_postgres::Row;

use super::{DbResult, GenericClient};
use duma_domain::{AccessRight, KnobConfig, ModelId, TemplateKind, TemplateSource, UserId};

/// Violated by a second model of the same name by the same user.
pub const NAME_TAKEN: &str = "models_user_name_key";

pub use duma_domain::dependencies::Dependencies;

#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub id: ModelId,
    pub user_id: UserId,
    pub name: String,
    pub task: String,
    pub template_kind: TemplateKind,
    pub source_path: Option<String>,
    pub source_sha256: Option<String>,
    pub source_size_bytes: Option<i64>,
    pub model_class: String,
    pub knob_config: Option<KnobConfig>,
    pub dependencies: Dependencies,
    pub access_right: AccessRight,
    pub docker_image: Option<String>,
    /// What its developer says about it.
    pub description: Option<String>,
    /// What an ONNX model takes and answers (`duma_runtime::onnx::Signature`).
    pub signature: Option<serde_json::Value>,
    /// Trained parameters uploaded with a Python template: it serves them without training.
    pub checkpoint: Option<Checkpoint>,
    pub datetime_created: DateTime<Utc>,
}

/// A stored parameters file uploaded with a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub path: String,
    pub sha256: String,
    pub size_bytes: i64,
}

impl Model {
    /// What a runtime needs to run this model's template.
    pub fn template_source(&self) -> TemplateSource {
        TemplateSource {
            name: self.name.clone(),
            kind: self.template_kind,
            class: self.model_class.clone(),
            file: self.source_path.clone().zip(self.source_sha256.clone()),
            dependencies: self.dependencies.clone(),
            feature_names: self
                .signature
                .as_ref()
                .and_then(|s| serde_json::from_value(s.get("features")?.clone()).ok()),
        }
    }

    fn from_row(row: &Row) -> DbResult<Self> {
        let knob_config: Option<Json<KnobConfig>> = row.try_get("knob_config")?;
        let Json(dependencies) = row.try_get("dependencies")?;
        Ok(Self {
            id: row.try_get("id")?,
            user_id: row.try_get("user_id")?,
            name: row.try_get("name")?,
            task: row.try_get("task")?,
            template_kind: row.try_get("template_kind")?,
            source_path: row.try_get("source_path")?,
            source_sha256: row.try_get("source_sha256")?,
            source_size_bytes: row.try_get("source_size_bytes")?,
            model_class: row.try_get("model_class")?,
            knob_config: knob_config.map(|Json(c)| c),
            dependencies,
            access_right: row.try_get("access_right")?,
            docker_image: row.try_get("docker_image")?,
            description: row.try_get("description")?,
            signature: row
                .try_get::<_, Option<Json<serde_json::Value>>>("signature")?
                .map(|Json(s)| s),
            checkpoint: match row.try_get::<_, Option<String>>("checkpoint_path")? {
                Some(path) => Some(Checkpoint {
                    path,
                    sha256: row.try_get("checkpoint_sha256")?,
                    size_bytes: row.try_get("checkpoint_size_bytes")?,
                }),
                None => None,
            },
            datetime_created: row.try_get("datetime_created")?,
        })
    }
}

const COLUMNS: &str = "id, user_id, name, task, template_kind, source_path, source_sha256, \
    source_size_bytes, model_class, knob_config, dependencies, access_right, docker_image, \
    description, signature, checkpoint_path, checkpoint_sha256, checkpoint_size_bytes, \
    datetime_created";

#[derive(Debug, Clone)]
pub struct NewModel {
    pub id: ModelId,
    pub user_id: UserId,
    pub name: String,
    pub task: String,
    pub template_kind: TemplateKind,
    pub source_path: Option<String>,
    pub source_sha256: Option<String>,
    pub source_size_bytes: Option<i64>,
    pub model_class: String,
    pub knob_config: Option<KnobConfig>,
    pub dependencies: Dependencies,
    pub access_right: AccessRight,
    pub docker_image: Option<String>,
    pub description: Option<String>,
    pub signature: Option<serde_json::Value>,
    pub checkpoint: Option<Checkpoint>,
}

pub async fn insert(db: &impl GenericClient, new: &NewModel) -> DbResult<Model> {
    let sql = format!(
        "INSERT INTO models (id, user_id, name, task, template_kind, source_path, source_sha256, \
         source_size_bytes, model_class, knob_config, dependencies, access_right, docker_image, \
         description, signature, checkpoint_path, checkpoint_sha256, checkpoint_size_bytes) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
         $18) \
         RETURNING {COLUMNS}"
    );
    let row = db
        .query_one(
            &sql,
            &[
                &new.id,
                &new.user_id,
                &new.name,
                &new.task,
                &new.template_kind,
                &new.source_path,
                &new.source_sha256,
                &new.source_size_bytes,
                &new.model_class,
                &new.knob_config.as_ref().map(Json),
                &Json(&new.dependencies),
                &new.access_right,
                &new.docker_image,
                &new.description,
                &new.signature.as_ref().map(Json),
                &new.checkpoint.as_ref().map(|c| &c.path),
                &new.checkpoint.as_ref().map(|c| &c.sha256),
                &new.checkpoint.as_ref().map(|c| c.size_bytes),
            ],
        )
        .await?;
    Model::from_row(&row)
}

/// Inserts a built-in template, or refreshes it when it already exists (same owner and name).
pub async fn upsert_builtin(db: &impl GenericClient, new: &NewModel) -> DbResult<Model> {
    let sql = format!(
        "INSERT INTO models (id, user_id, name, task, template_kind, model_class, knob_config, \
         access_right) VALUES ($1, $2, $3, $4, 'native', $5, $6, 'PUBLIC') \
         ON CONFLICT ON CONSTRAINT {NAME_TAKEN} DO UPDATE SET task = EXCLUDED.task, \
         model_class = EXCLUDED.model_class, knob_config = EXCLUDED.knob_config \
         RETURNING {COLUMNS}"
    );
    let row = db
        .query_one(
            &sql,
            &[
                &new.id,
                &new.user_id,
                &new.name,
                &new.task,
                &new.model_class,
                &new.knob_config.as_ref().map(Json),
            ],
        )
        .await?;
    Model::from_row(&row)
}

pub async fn by_id(db: &impl GenericClient, id: ModelId) -> DbResult<Option<Model>> {
    let sql = format!("SELECT {COLUMNS} FROM models WHERE id = $1");
    db.query_opt(&sql, &[&id])
        .await?
        .map(|r| Model::from_row(&r))
        .transpose()
}

/// A user's own model of that name.
pub async fn by_user_and_name(
    db: &impl GenericClient,
    user_id: UserId,
    name: &str,
) -> DbResult<Option<Model>> {
    let sql = format!("SELECT {COLUMNS} FROM models WHERE user_id = $1 AND name = $2");
    db.query_opt(&sql, &[&user_id, &name])
        .await?
        .map(|r| Model::from_row(&r))
        .transpose()
}

/// Models a user may use: public ones and their own, optionally of one task; oldest first.
pub async fn list_available(
    db: &impl GenericClient,
    user_id: UserId,
    task: Option<&str>,
) -> DbResult<Vec<Model>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM models WHERE (access_right = 'PUBLIC' OR user_id = $1) \
         AND ($2::text IS NULL OR task = $2) ORDER BY datetime_created, id"
    );
    db.query(&sql, &[&user_id, &task])
        .await?
        .iter()
        .map(Model::from_row)
        .collect()
}

/// Deletes a model. A train job that uses it makes this fail with a foreign-key error.
pub async fn delete(db: &impl GenericClient, id: ModelId) -> DbResult<Option<Model>> {
    let sql = format!("DELETE FROM models WHERE id = $1 RETURNING {COLUMNS}");
    db.query_opt(&sql, &[&id])
        .await?
        .map(|r| Model::from_row(&r))
        .transpose()
}

/// Records the knob config read from the template when a train job first used it.
pub async fn set_knob_config(
    db: &impl GenericClient,
    id: ModelId,
    knob_config: &KnobConfig,
) -> DbResult<bool> {
    let n = db
        .execute(
            "UPDATE models SET knob_config = $2 WHERE id = $1",
            &[&id, &Json(knob_config)],
        )
        .await?;
    Ok(n == 1)
}
