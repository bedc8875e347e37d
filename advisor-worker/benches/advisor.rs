//! Bayesian (GP-EI) against random search on standard test functions: median simple regret after
//! 10/25/50/100 trials over 30 seeds, and the mean cost of a suggestion.
//!
//! Run with `scripts/bench-advisor` (release build). Prints a table and a verdict; not a test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::f64::consts::PI;
use std::time::{Duration, Instant};

use duma_advisor_worker::advisor::{
    Advisor, AdvisorKind, BayesianAdvisor, RandomAdvisor, advisor_kind,
};
use duma_domain::{KnobConfig, KnobValue, Knobs};
use serde_json::json;

const TRIALS: usize = 100;
const SEEDS: u64 = 30;
const CHECKPOINTS: [usize; 4] = [10, 25, 50, 100];
/// "Clearly better": the Bayesian median regret at most this fraction of random's.
const CLEARLY_BETTER: f64 = 0.5;
const MAX_SUGGESTION: Duration = Duration::from_millis(1);

struct Problem {
    name: &'static str,
    config: KnobConfig,
    /// The function to minimise; the advisors maximise its negation.
    f: fn(&Knobs) -> f64,
    global_min: f64,
}

fn number(knobs: &Knobs, name: &str) -> f64 {
    match &knobs[name] {
        KnobValue::Float(v) => *v,
        KnobValue::Int(v) => *v as f64,
        other => panic!("{name} is not a number: {other:?}"),
    }
}

fn branin(knobs: &Knobs) -> f64 {
    let (x1, x2) = (number(knobs, "x1"), number(knobs, "x2"));
    let b = 5.1 / (4.0 * PI * PI);
    let c = 5.0 / PI;
    let t = 1.0 / (8.0 * PI);
    (x2 - b * x1 * x1 + c * x1 - 6.0).powi(2) + 10.0 * (1.0 - t) * x1.cos() + 10.0
}

fn hartmann6(knobs: &Knobs) -> f64 {
    const ALPHA: [f64; 4] = [1.0, 1.2, 3.0, 3.2];
    const A: [[f64; 6]; 4] = [
        [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
        [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
        [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
        [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
    ];
    const P: [[f64; 6]; 4] = [
        [0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886],
        [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
        [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650],
        [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381],
    ];
    let x: Vec<f64> = (1..=6).map(|j| number(knobs, &format!("x{j}"))).collect();
    -(0..4)
        .map(|i| {
            let inner: f64 = (0..6).map(|j| A[i][j] * (x[j] - P[i][j]).powi(2)).sum();
            ALPHA[i] * (-inner).exp()
        })
        .sum::<f64>()
}

/// A log-scale learning rate, an integer width and a categorical activation; minimum 0 at
/// lr = 1e-3, width = 37, activation = "relu". The best learning rate shifts with the
/// activation, so the knobs interact.
fn mixed(knobs: &Knobs) -> f64 {
    let lr = number(knobs, "learning_rate").log10();
    let width = number(knobs, "width");
    let (shift, penalty) = match &knobs["activation"] {
        KnobValue::Str(s) if s == "relu" => (0.0, 0.0),
        KnobValue::Str(s) if s == "tanh" => (0.5, 0.3),
        KnobValue::Str(s) if s == "sigmoid" => (-1.0, 0.8),
        _ => (0.7, 1.5),
    };
    (lr + 3.0 + shift).powi(2) + ((width - 37.0) / 16.0).powi(2) + penalty
}

fn problems() -> Vec<Problem> {
    let config = |value| serde_json::from_value::<KnobConfig>(value).unwrap();
    let unit = json!({"type": "FloatKnob", "min": 0.0, "max": 1.0});
    vec![
        Problem {
            name: "branin (2 floats)",
            config: config(json!({
                "x1": {"type": "FloatKnob", "min": -5.0, "max": 10.0},
                "x2": {"type": "FloatKnob", "min": 0.0, "max": 15.0},
            })),
            f: branin,
            global_min: 0.397_887,
        },
        Problem {
            name: "hartmann6 (6 floats)",
            config: config(json!({
                "x1": unit, "x2": unit, "x3": unit, "x4": unit, "x5": unit, "x6": unit,
            })),
            f: hartmann6,
            global_min: -3.322_37,
        },
        Problem {
            name: "mixed (log float, int, categorical)",
            config: config(json!({
                "learning_rate": {"type": "FloatKnob", "min": 1e-5, "max": 1e-1, "is_exp": true},
                "width": {"type": "IntegerKnob", "min": 1, "max": 128},
                "activation": {
                    "type": "CategoricalKnob",
                    "values": ["relu", "tanh", "sigmoid", "elu", "selu"],
                },
                "epochs": {"type": "FixedKnob", "value": 10},
            })),
            f: mixed,
            global_min: 0.0,
        },
    ]
}

/// Regret after each checkpoint, and the time spent in propose + feedback.
fn run(problem: &Problem, mut advisor: impl Advisor) -> ([f64; 4], Duration) {
    let mut best = f64::INFINITY;
    let mut regrets = [0.0; 4];
    let mut spent = Duration::ZERO;
    for trial in 1..=TRIALS {
        let started = Instant::now();
        let knobs = advisor.propose().expect("a proposal");
        spent += started.elapsed();
        problem
            .config
            .check(&knobs)
            .expect("a proposal within the space");
        let value = (problem.f)(&knobs);
        let started = Instant::now();
        advisor.feedback(&knobs, -value);
        spent += started.elapsed();
        best = best.min(value);
        if let Some(i) = CHECKPOINTS.iter().position(|c| *c == trial) {
            regrets[i] = best - problem.global_min;
        }
    }
    (regrets, spent)
}

struct Summary {
    median_regret: [f64; 4],
    mean_suggestion: Duration,
}

fn summarise(runs: Vec<([f64; 4], Duration)>) -> Summary {
    let mut median_regret = [0.0; 4];
    for (i, median) in median_regret.iter_mut().enumerate() {
        let mut at: Vec<f64> = runs.iter().map(|(r, _)| r[i]).collect();
        at.sort_by(f64::total_cmp);
        *median = (at[(at.len() - 1) / 2] + at[at.len() / 2]) / 2.0;
    }
    let spent: Duration = runs.iter().map(|(_, d)| *d).sum();
    Summary {
        median_regret,
        mean_suggestion: spent / (runs.len() * TRIALS) as u32,
    }
}

fn main() {
    let started = Instant::now();
    println!(
        "Bayesian (GP-EI) vs random search: median simple regret over {SEEDS} seeds, {TRIALS} trials"
    );
    println!(
        "{:<36} {:>6} {:>12} {:>12} {:>9}",
        "problem", "trials", "Bayesian", "random", "ratio"
    );
    let mut failures = Vec::new();
    let mut slowest = Duration::ZERO;
    for problem in problems() {
        assert_eq!(advisor_kind(&problem.config), AdvisorKind::Bayesian);
        let bayesian = summarise(
            (0..SEEDS)
                .map(|seed| {
                    run(
                        &problem,
                        BayesianAdvisor::new(&problem.config, seed).unwrap(),
                    )
                })
                .collect(),
        );
        let random = summarise(
            (0..SEEDS)
                .map(|seed| run(&problem, RandomAdvisor::new(&problem.config, seed).unwrap()))
                .collect(),
        );
        for (i, trials) in CHECKPOINTS.iter().enumerate() {
            let (t, r) = (bayesian.median_regret[i], random.median_regret[i]);
            let ratio = if r > 0.0 { t / r } else { f64::NAN };
            println!(
                "{:<36} {:>6} {:>12.3e} {:>12.3e} {:>9.2e}",
                problem.name, trials, t, r, ratio
            );
            if *trials >= 50 && t > CLEARLY_BETTER * r {
                failures.push(format!(
                    "{}: Bayesian not clearly better than random at {trials} trials",
                    problem.name
                ));
            }
        }
        println!(
            "{:<36} {:>6} {:>10.1}µs {:>10.1}µs   mean per suggestion (propose + feedback)",
            problem.name,
            "",
            bayesian.mean_suggestion.as_secs_f64() * 1e6,
            random.mean_suggestion.as_secs_f64() * 1e6,
        );
        if bayesian.mean_suggestion > MAX_SUGGESTION {
            failures.push(format!(
                "{}: Bayesian suggestions cost over 1 ms",
                problem.name
            ));
        }
        slowest = slowest.max(bayesian.mean_suggestion);
    }
    println!(
        "targets: Bayesian median regret <= {CLEARLY_BETTER} x random at 50 and 100 trials; \
         <= 1000 µs per suggestion (slowest mean: {:.1} µs)",
        slowest.as_secs_f64() * 1e6
    );
    if failures.is_empty() {
        println!("verdict: PASS (all targets met)");
    } else {
        println!("verdict: FAIL");
        for failure in failures {
            println!("  - {failure}");
        }
    }
    println!("benchmark took {:.1} s", started.elapsed().as_secs_f64());
}
