//! Tuning through the platform: a template whose score is a known function (Branin, the same
//! template `scripts/bench-tuning` uses) must be tuned far better than random search could manage
//! by luck. Before the fix that clears proposals whose knobs came back a digit off, this was
//! near random search.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use duma_e2e::stack::spawn_stack;

const TASK: &str = "TABULAR_REGRESSION";
const RUNS: usize = 3;
const TRIALS: usize = 40;
const BRANIN_MIN: f64 = 0.397_887;

fn branin(x1: f64, x2: f64) -> f64 {
    use std::f64::consts::PI;
    let (b, c, t) = (5.1 / (4.0 * PI * PI), 5.0 / PI, 1.0 / (8.0 * PI));
    (x2 - b * x1 * x1 + c * x1 - 6.0).powi(2) + 10.0 * (1.0 - t) * x1.cos() + 10.0
}

/// The regret random search reaches in `TRIALS` trials at quantile `q`, over many simulated runs.
fn random_search_regret(q: f64) -> f64 {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut uniform = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut regrets: Vec<f64> = (0..20_000)
        .map(|_| {
            (0..TRIALS)
                .map(|_| branin(-5.0 + 15.0 * uniform(), 15.0 * uniform()))
                .fold(f64::INFINITY, f64::min)
                - BRANIN_MIN
        })
        .collect();
    regrets.sort_by(f64::total_cmp);
    regrets[(q * regrets.len() as f64) as usize]
}

/// The median of three runs must beat what random search reaches in one run of a hundred: random
/// search itself would pass with probability 3/10 000.
#[tokio::test]
async fn tuning_a_known_function_through_the_platform_beats_random_search_by_far() {
    let stack = spawn_stack(2).await;
    let source = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/bench/tuning_templates.py"),
    )
    .unwrap();
    let model = stack
        .upload_model("branin", TASK, source, "Branin", json!({}))
        .await;
    let data = stack.upload_dataset(TASK, "x,y\n1,1\n2,2\n".into()).await;
    let bar = random_search_regret(0.01);
    let mut regrets = Vec::new();
    for run in 0..RUNS {
        let app = format!("branin-{run}");
        stack
            .post(
                "/train_jobs",
                json!({"app": app, "task": TASK, "train_dataset_id": data, "val_dataset_id": data,
                       "budget": {"MODEL_TRIAL_COUNT": TRIALS, "TIME_HOURS": 1}, "model_ids": [model]}),
            )
            .await;
        let job = stack.wait_for_end(&app, Duration::from_secs(300)).await;
        assert_eq!(job["status"], "STOPPED", "{job}");
        let trials = stack.trials(&app).await;
        assert_eq!(trials.len(), TRIALS);
        let best = trials
            .iter()
            .filter_map(|t| t["score"].as_f64())
            .fold(f64::NEG_INFINITY, f64::max);
        regrets.push(-best - BRANIN_MIN);
    }
    regrets.sort_by(f64::total_cmp);
    eprintln!(
        "Branin regret after {TRIALS} trials through the platform: {regrets:?}; random search: \
         median {:.3}, 1st percentile {bar:.4}",
        random_search_regret(0.5)
    );
    assert!(
        regrets[RUNS / 2] < bar,
        "median regret {:.4} is no better than random search's luckiest hundredth ({bar:.4}): \
         {regrets:?}",
        regrets[RUNS / 2]
    );
}
