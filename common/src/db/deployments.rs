//! Deployments: named endpoints of an app whose traffic goes to inference jobs of its versions
//! (`docs/deployments.md`).

use chrono::{DateTime, Utc};
use postgres_types::Json;
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;

use super::{DbResult, GenericClient};
use duma_domain::{DeploymentId, InferenceJobId, UserId};

/// Violated by a second deployment of the same name (names are platform-wide).
pub const NAME_TAKEN: &str = "deployments_name_key";

/// The service levels a deployment can be at (Rekcurd's).
pub const SERVICE_LEVELS: [&str; 3] = ["development", "staging", "production"];

/// Where a share of a deployment's traffic goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub app_version: i32,
    pub inference_job_id: InferenceJobId,
    /// Percent of the traffic (0 for a shadow).
    pub weight: u32,
    /// Gets a copy of the traffic; its answers are recorded, never returned.
    #[serde(default)]
    pub shadow: bool,
}

/// An inference job a switch took traffic from, stopped once its requests in flight are done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retiring {
    pub inference_job_id: InferenceJobId,
    pub after: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    pub id: DeploymentId,
    pub name: String,
    pub user_id: UserId,
    pub app: String,
    pub service_level: String,
    /// Replicas of each served trial of every version it starts.
    pub replicas: i32,
    /// What takes traffic now.
    pub routes: Vec<Route>,
    /// What will, once its inference jobs are RUNNING.
    pub pending: Option<Vec<Route>>,
    /// What took traffic before the last switch.
    pub previous: Option<Vec<Route>>,
    pub retiring: Vec<Retiring>,
    /// Why the last switch did not happen.
    pub error: Option<String>,
    pub datetime_created: DateTime<Utc>,
    pub datetime_updated: DateTime<Utc>,
}

impl Deployment {
    fn from_row(row: &Row) -> DbResult<Self> {
        let Json(routes) = row.try_get("routes")?;
        let pending: Option<Json<Vec<Route>>> = row.try_get("pending")?;
        let previous: Option<Json<Vec<Route>>> = row.try_get("previous")?;
        let Json(retiring) = row.try_get("retiring")?;
        Ok(Self {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            user_id: row.try_get("user_id")?,
            app: row.try_get("app")?,
            service_level: row.try_get("service_level")?,
            replicas: row.try_get("replicas")?,
            routes,
            pending: pending.map(|Json(p)| p),
            previous: previous.map(|Json(p)| p),
            retiring,
            error: row.try_get("error")?,
            datetime_created: row.try_get("datetime_created")?,
            datetime_updated: row.try_get("datetime_updated")?,
        })
    }

    /// Every inference job the deployment routes to, will route to, or has yet to retire.
    pub fn inference_jobs(&self) -> Vec<InferenceJobId> {
        let mut jobs: Vec<InferenceJobId> = self
            .routes
            .iter()
            .chain(self.pending.iter().flatten())
            .map(|r| r.inference_job_id)
            .chain(self.retiring.iter().map(|r| r.inference_job_id))
            .collect();
        jobs.sort();
        jobs.dedup();
        jobs
    }
}

const COLUMNS: &str = "id, name, user_id, app, service_level, replicas, routes, pending, previous, \
    retiring, error, datetime_created, datetime_updated";

/// A new deployment, taking no traffic until `pending` runs.
pub async fn insert(
    db: &impl GenericClient,
    name: &str,
    user_id: UserId,
    app: &str,
    service_level: &str,
    replicas: i32,
    pending: &[Route],
) -> DbResult<Deployment> {
    let sql = format!(
        "INSERT INTO deployments (id, name, user_id, app, service_level, replicas, pending) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
    );
    let row = db
        .query_one(
            &sql,
            &[
                &DeploymentId::new(),
                &name,
                &user_id,
                &app,
                &service_level,
                &replicas,
                &Json(pending),
            ],
        )
        .await?;
    Deployment::from_row(&row)
}

pub async fn by_name(db: &impl GenericClient, name: &str) -> DbResult<Option<Deployment>> {
    let sql = format!("SELECT {COLUMNS} FROM deployments WHERE name = $1");
    db.query_opt(&sql, &[&name])
        .await?
        .map(|row| Deployment::from_row(&row))
        .transpose()
}

/// [`by_name`], locked until the transaction ends (read-modify-write of its routing).
pub async fn by_name_for_update(
    db: &impl GenericClient,
    name: &str,
) -> DbResult<Option<Deployment>> {
    let sql = format!("SELECT {COLUMNS} FROM deployments WHERE name = $1 FOR UPDATE");
    db.query_opt(&sql, &[&name])
        .await?
        .map(|row| Deployment::from_row(&row))
        .transpose()
}

/// A user's deployments (every deployment for `None`), by name.
pub async fn list(db: &impl GenericClient, user_id: Option<UserId>) -> DbResult<Vec<Deployment>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM deployments WHERE $1::uuid IS NULL OR user_id = $1 ORDER BY name"
    );
    db.query(&sql, &[&user_id])
        .await?
        .iter()
        .map(Deployment::from_row)
        .collect()
}

/// Deployments with a switch waiting or jobs to retire (the reconciler's work).
pub async fn list_in_motion(db: &impl GenericClient) -> DbResult<Vec<Deployment>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM deployments \
         WHERE pending IS NOT NULL OR retiring <> '[]'::jsonb ORDER BY name"
    );
    db.query(&sql, &[])
        .await?
        .iter()
        .map(Deployment::from_row)
        .collect()
}

/// Writes a deployment's routing state (all of it: what the caller read and changed).
pub async fn save_routing(db: &impl GenericClient, deployment: &Deployment) -> DbResult<()> {
    db.execute(
        "UPDATE deployments SET routes = $2, pending = $3, previous = $4, retiring = $5, \
         error = $6, datetime_updated = now() WHERE id = $1",
        &[
            &deployment.id,
            &Json(&deployment.routes),
            &deployment.pending.as_ref().map(Json),
            &deployment.previous.as_ref().map(Json),
            &Json(&deployment.retiring),
            &deployment.error,
        ],
    )
    .await?;
    Ok(())
}

/// Whether a deployment other than `except` routes (or will route) traffic to `job`: a version
/// two deployments share is stopped by neither.
pub async fn routes_elsewhere(
    db: &impl GenericClient,
    job: InferenceJobId,
    except: DeploymentId,
) -> DbResult<bool> {
    let needle = Json(serde_json::json!([{ "inference_job_id": job }]));
    let row = db
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM deployments WHERE id <> $2 \
               AND (routes @> $1 OR coalesce(pending, '[]'::jsonb) @> $1))",
            &[&needle, &except],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// The most replicas a deployment other than `except` that routes (or will route) traffic to
/// `job` asks for: a version two deployments share serves the larger of their numbers.
pub async fn replicas_elsewhere(
    db: &impl GenericClient,
    job: InferenceJobId,
    except: DeploymentId,
) -> DbResult<Option<i32>> {
    let needle = Json(serde_json::json!([{ "inference_job_id": job }]));
    let row = db
        .query_one(
            "SELECT max(replicas) FROM deployments WHERE id <> $2 \
               AND (routes @> $1 OR coalesce(pending, '[]'::jsonb) @> $1)",
            &[&needle, &except],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// Sets the replicas a deployment asks for.
pub async fn set_replicas(
    db: &impl GenericClient,
    id: DeploymentId,
    replicas: i32,
) -> DbResult<()> {
    db.execute(
        "UPDATE deployments SET replicas = $2, datetime_updated = now() WHERE id = $1",
        &[&id, &replicas],
    )
    .await?;
    Ok(())
}

pub async fn delete(db: &impl GenericClient, id: DeploymentId) -> DbResult<()> {
    db.execute("DELETE FROM deployments WHERE id = $1", &[&id])
        .await?;
    Ok(())
}
