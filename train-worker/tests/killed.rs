//! Real train worker processes SIGKILLed mid-trial (and restarted at once, as a supervisor
//! does) while the rest of the platform runs in the test process: the job still ends, every
//! trial counted, none left RUNNING.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use duma_common::db::workers;
use duma_domain::{LeaseKind, WorkerKind};
use duma_e2e::data::classification_csv;
use duma_e2e::stack::{Stack, spawn_stack, spawn_stack_with, statuses};
use serde_json::json;

const CLASSIFICATION: &str = "TABULAR_CLASSIFICATION";

#[tokio::test]
async fn a_killed_train_worker_does_not_stop_the_job() {
    let stack = spawn_stack(0).await;
    let port = duma_testkit::free_port();
    let mut victim = Command::new(env!("CARGO_BIN_EXE_duma-train-worker"))
        .envs(stack.ctx.service_env())
        .env("DUMA_TRAIN_WORKER__PORT", port.to_string())
        .env("DUMA_TRAIN_WORKER__LEASE_TTL_MS", "1000")
        .env("DUMA_TRAIN_WORKER__HEARTBEAT_INTERVAL_MS", "200")
        .env(
            "DUMA_TRAIN_WORKER__CACHE_DIR",
            stack.ctx.dir.path().join("victim-cache"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let budget = json!({"MODEL_TRIAL_COUNT": 4});
    stack
        .start_a_job_and_wait_for_a_trial("kill", budget, "the victim never started a trial")
        .await;
    victim.kill().unwrap();
    victim.wait().unwrap();
    stack.start_train_worker();

    let job = stack.wait_for_end("kill", Duration::from_secs(120)).await;
    assert_eq!(job["status"], "STOPPED", "{job}");
    let trials = stack.trials("kill").await;
    assert_eq!(
        trials.len(),
        4,
        "the budget counts every trial, the lost one too"
    );
    assert!(!statuses(&trials).contains(&"RUNNING"));
    assert!(statuses(&trials).contains(&"COMPLETED"));
}

/// A child process killed (SIGKILL) when dropped, so a failing test leaves none behind.
struct Killed(std::process::Child);

impl Killed {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A real train worker process, with leases short enough that its death is noticed in a second.
fn train_worker_process(stack: &Stack, name: &str) -> Killed {
    let child = Command::new(env!("CARGO_BIN_EXE_duma-train-worker"))
        .envs(stack.ctx.service_env())
        .env(
            "DUMA_TRAIN_WORKER__PORT",
            duma_testkit::free_port().to_string(),
        )
        .env("DUMA_TRAIN_WORKER__LEASE_TTL_MS", "1000")
        .env("DUMA_TRAIN_WORKER__HEARTBEAT_INTERVAL_MS", "200")
        .env(
            "DUMA_TRAIN_WORKER__CACHE_DIR",
            stack.ctx.dir.path().join(name),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Killed(child)
}

/// The id of the train worker registered last.
async fn newest_train_worker(stack: &Stack) -> Option<uuid::Uuid> {
    let db = stack.ctx.pool.get().await.unwrap();
    db.query_opt(
        "SELECT id FROM workers WHERE kind = 'TRAIN' ORDER BY datetime_started DESC LIMIT 1",
        &[],
    )
    .await
    .unwrap()
    .map(|row| row.get::<_, duma_domain::WorkerId>(0).0)
}

/// The race the fault drills found: a worker SIGKILLed mid-trial and restarted at once (as a
/// supervisor does) must not take its dead predecessor's lease over before the predecessor's
/// trial is cleaned up — else that trial stays RUNNING and the job never ends. Every other lease
/// is held (by a busy worker that never finishes) and the reconciler is slower than the lease
/// expiry, as in production, so the restarted worker meets the expired lease first.
#[tokio::test]
async fn a_train_worker_killed_and_restarted_at_once_again_and_again_never_wedges_the_job() {
    const KILLS: u64 = 4;
    let stack = spawn_stack_with(0, |settings| settings.admin.reconcile_interval_ms = 2_500).await;
    let models = stack
        .builtin_models(CLASSIFICATION, &["RandomForestClassifier"])
        .await;
    stack
        .start_train_job(
            "drill",
            CLASSIFICATION,
            &models,
            json!({"MODEL_TRIAL_COUNT": 10}),
            classification_csv,
        )
        .await;
    let db = stack.ctx.pool.get().await.unwrap();
    let busy = workers::register(&db, WorkerKind::Train, "busy", &json!({}))
        .await
        .unwrap();
    workers::claim(&db, LeaseKind::Train, busy.id, Duration::from_secs(600))
        .await
        .unwrap()
        .expect("the job has two TRAIN leases");
    drop(db);
    let mut worker = train_worker_process(&stack, "cache-0");
    let mut killed_trials = HashSet::new();
    for kill in 1..=KILLS {
        // Wait for the victim to run a trial, then kill it at a varying point of that trial.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let victim = newest_train_worker(&stack).await.map(|id| id.to_string());
            let trials = stack.trials("drill").await;
            let running = trials.iter().find(|t| {
                t["status"] == "RUNNING"
                    && t["worker_id"].as_str() == victim.as_deref()
                    && !killed_trials.contains(&t["id"].to_string())
            });
            if let Some(trial) = running {
                killed_trials.insert(trial["id"].to_string());
                break;
            }
            assert!(
                Instant::now() < deadline,
                "kill {kill}: the victim ran no trial: {trials:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(37 * kill)).await;
        worker.kill();
        worker = train_worker_process(&stack, &format!("cache-{kill}"));
    }
    let job = stack.wait_for_end("drill", Duration::from_secs(30)).await;
    worker.kill();
    assert_eq!(job["status"], "STOPPED", "{job}");
    let trials = stack.trials("drill").await;
    assert!(!statuses(&trials).contains(&"RUNNING"), "{trials:?}");
    assert_eq!(trials.len(), 10, "the budget counts every trial");
}
