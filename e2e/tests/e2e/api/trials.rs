use bytes::Bytes;
use duma_common::db::{train_jobs, trials};
use duma_domain::{KnobValue, Knobs, Proposal, TrainJobId, TrialLogKind};
use serde_json::json;

use duma_e2e::admin::{TestApp, spawn_app};
use duma_e2e::client::{TestUser, expect_error, json_ok};

const TASK: &str = "TABULAR_CLASSIFICATION";

/// Adds a finished trial with saved parameters to the first sub job of a train job, as a train
/// worker would.
pub async fn completed_trial(app: &TestApp, train_job_id: &str, no: u32, score: f64) -> String {
    let db = app.ctx.pool.get().await.unwrap();
    let job: TrainJobId = train_job_id.parse().unwrap();
    let sub = train_jobs::sub_jobs(&db, job).await.unwrap().remove(0);
    let mut knobs = Knobs::new();
    knobs.insert("k".into(), KnobValue::Int(no.into()));
    let trial = trials::insert_running(
        &db,
        sub.id,
        sub.model_id,
        None,
        None,
        &Proposal::new(no, knobs),
    )
    .await
    .unwrap()
    .expect("a live sub job");
    let stored = app
        .ctx
        .store
        .put_bytes(
            &format!("params/{}", trial.id),
            Bytes::from(format!("params-{no}")),
        )
        .await
        .unwrap();
    let saved = trials::SavedParams {
        path: stored.path,
        sha256: stored.sha256,
        size_bytes: stored.size_bytes as i64,
    };
    trials::complete(&db, trial.id, Some(score), Some(&saved))
        .await
        .unwrap();
    let logs = vec![
        duma_domain::TrialLog {
            datetime: chrono::Utc::now(),
            kind: TrialLogKind::Plot,
            payload: json!({"title": "Loss", "metrics": ["loss"], "x_axis": "epoch"}),
        },
        duma_domain::TrialLog {
            datetime: chrono::Utc::now(),
            kind: TrialLogKind::Metrics,
            payload: json!({"loss": 0.5, "epoch": 1}),
        },
        duma_domain::TrialLog {
            datetime: chrono::Utc::now(),
            kind: TrialLogKind::Message,
            payload: json!({"message": "hello"}),
        },
    ];
    trials::insert_logs(&db, trial.id, &logs).await.unwrap();
    trial.id.to_string()
}

pub async fn train_job_with_trials(
    app: &TestApp,
    user: &TestUser,
    app_name: &str,
) -> (String, Vec<String>) {
    let created = json_ok(app.train_job(user, app_name, TASK, &[]).await).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let mut ids = Vec::new();
    for (no, score) in [(1, 0.5), (2, 0.9), (3, 0.7)] {
        ids.push(completed_trial(app, &id, no, score).await);
    }
    (id, ids)
}

#[tokio::test]
async fn trials_list_best_get_logs_and_parameters() {
    let app = spawn_app().await;
    let alice = app.user("APP_DEVELOPER").await;
    let (_, ids) = train_job_with_trials(&app, &alice, "shop").await;

    let all = json_ok(
        app.get(Some(&alice.token), "/train_jobs/shop/1/trials")
            .await,
    )
    .await;
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 3);
    for field in [
        "id",
        "no",
        "worker_id",
        "proposal",
        "datetime_started",
        "status",
        "datetime_stopped",
        "model_name",
        "score",
        "is_params_saved",
    ] {
        assert!(all[0].get(field).is_some(), "{field} missing in {}", all[0]);
    }
    assert_eq!(all[0]["proposal"]["trial_no"], 1);
    assert_eq!(all[0]["proposal"]["knobs"]["k"], 1);
    let page = json_ok(
        app.get(
            Some(&alice.token),
            "/train_jobs/shop/1/trials?limit=1&offset=1",
        )
        .await,
    )
    .await;
    assert_eq!(page[0]["no"], 2);

    let best = json_ok(
        app.get(Some(&alice.token), "/train_jobs/shop/1/trials?type=best")
            .await,
    )
    .await;
    let scores: Vec<f64> = best
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["score"].as_f64().unwrap())
        .collect();
    assert_eq!(
        scores,
        vec![0.9, 0.7],
        "best: highest first, max_count 2 by default"
    );
    let best1 = json_ok(
        app.get(
            Some(&alice.token),
            "/train_jobs/shop/1/trials?type=best&max_count=1",
        )
        .await,
    )
    .await;
    assert_eq!(best1.as_array().unwrap().len(), 1);

    let trial = json_ok(
        app.get(Some(&alice.token), &format!("/trials/{}", ids[1]))
            .await,
    )
    .await;
    assert_eq!(trial["status"], "COMPLETED");
    assert_eq!(trial["is_params_saved"], true);

    let logs = json_ok(
        app.get(Some(&alice.token), &format!("/trials/{}/logs", ids[1]))
            .await,
    )
    .await;
    assert_eq!(
        logs["plots"],
        json!([{"title": "Loss", "metrics": ["loss"], "x_axis": "epoch"}])
    );
    assert_eq!(logs["metrics"][0]["loss"], 0.5);
    assert!(
        logs["metrics"][0]["time"]
            .as_str()
            .unwrap()
            .ends_with(" GMT")
    );
    assert_eq!(logs["messages"][0]["message"], "hello");

    let params = app
        .get(
            Some(&alice.token),
            &format!("/trials/{}/parameters", ids[1]),
        )
        .await;
    assert_eq!(params.status(), 200);
    assert_eq!(params.headers()["content-type"], "application/octet-stream");
    assert_eq!(params.bytes().await.unwrap().as_ref(), b"params-2");
}

#[tokio::test]
async fn trials_are_private_to_their_owner_and_admins() {
    let app = spawn_app().await;
    let alice = app.user("APP_DEVELOPER").await;
    let mallory = app.user("MODEL_DEVELOPER").await;
    let admin = app.user("ADMIN").await;
    let (_, ids) = train_job_with_trials(&app, &alice, "shop").await;
    for suffix in ["", "/logs", "/parameters"] {
        let path = format!("/trials/{}{suffix}", ids[0]);
        expect_error(
            app.get(Some(&mallory.token), &path).await,
            403,
            "UnauthorizedError",
        )
        .await;
        expect_error(app.get(None, &path).await, 401, "UnauthorizedError").await;
        assert_eq!(app.get(Some(&admin.token), &path).await.status(), 200);
    }
    expect_error(
        app.get(
            Some(&alice.token),
            &format!("/trials/{}", uuid::Uuid::new_v4()),
        )
        .await,
        404,
        "InvalidTrialError",
    )
    .await;
    expect_error(
        app.get(Some(&alice.token), "/trials/xyz").await,
        404,
        "InvalidTrialError",
    )
    .await;
    // Apps are per-user namespaces: another user's app simply does not exist for mallory.
    expect_error(
        app.get(Some(&mallory.token), "/train_jobs/shop/1/trials")
            .await,
        404,
        "InvalidTrainJobError",
    )
    .await;
}
