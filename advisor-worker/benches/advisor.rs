//! Duma's Bayesian advisor (GP-EI) against random search and, when `DUMA_BENCH_PEERS` names the
//! results of `scripts/bench/advisor_peers.py`, Optuna's GPSampler and TPE on the same problems:
//! Branin (2 floats), Hartmann6 (6 floats), a mixed space (log float, integer, categorical), an
//! architecture (an arch knob of 8 positions with 4 operations each) and
//! noisy Branin (σ 0.5) and Hartmann6 (σ 0.05). Median simple regret after 10/25/50/100 trials
//! over 30 seeds, and the mean cost of a suggestion.
//!
//! Run with `scripts/bench-advisor` (release build). Prints one table and a verdict; not a test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::f64::consts::PI;
use std::time::{Duration, Instant};

use duma_advisor_worker::advisor::{
    Advisor, AdvisorKind, BayesianAdvisor, RandomAdvisor, advisor_kind,
};
use duma_domain::{KnobConfig, KnobValue, Knobs};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;

const TRIALS: usize = 100;
const SEEDS: u64 = 30;
const CHECKPOINTS: [usize; 4] = [10, 25, 50, 100];
/// "Clearly better": the Bayesian median regret at most this fraction of random's.
const CLEARLY_BETTER: f64 = 0.5;
/// The ceiling (the aim is 1 ms; Optuna's GPSampler takes 80–270 ms).
const MAX_SUGGESTION: Duration = Duration::from_millis(10);

struct Problem {
    name: &'static str,
    config: KnobConfig,
    /// The function to minimise; the advisors maximise its negation.
    f: fn(&Knobs) -> f64,
    global_min: f64,
    /// Standard deviation of the Gaussian noise added to what the advisor sees.
    noise: f64,
}

/// A standard normal draw (Box–Muller).
fn gaussian(rng: &mut StdRng) -> f64 {
    let u = 1.0 - rng.random::<f64>();
    (-2.0 * u.ln()).sqrt() * (2.0 * PI * rng.random::<f64>()).cos()
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

/// Positions and options of the arch problem.
const CELLS: usize = 8;
const OPS: usize = 4;

/// A synthetic architecture's error: each position's operation adds its own weight and one that
/// depends on the operation before it, so positions interact. The weights are fixed formulas,
/// the same in `scripts/bench/advisor_peers.py`.
fn arch_error(ops: &[usize]) -> f64 {
    let own = |p: usize, o: usize| (1.7 * p as f64 + 2.3 * o as f64 + 0.5).sin();
    let pair = |a: usize, b: usize| 0.6 * (1.1 * (a * b) as f64 + 0.7 * (a + b) as f64).cos();
    let mut error = 10.0;
    for (p, o) in ops.iter().enumerate() {
        error -= own(p, *o);
        if p > 0 {
            error -= pair(ops[p - 1], *o);
        }
    }
    error
}

fn arch(knobs: &Knobs) -> f64 {
    let KnobValue::List(cells) = &knobs["cells"] else {
        panic!("cells is not a list");
    };
    let ops: Vec<usize> = cells
        .iter()
        .map(|c| match c {
            KnobValue::Int(i) => *i as usize,
            other => panic!("not an operation: {other:?}"),
        })
        .collect();
    arch_error(&ops)
}

/// The best architecture's error, by trying all `OPS^CELLS` of them.
fn arch_minimum() -> f64 {
    (0..OPS.pow(CELLS as u32))
        .map(|code| {
            let ops: Vec<usize> = (0..CELLS).map(|p| code / OPS.pow(p as u32) % OPS).collect();
            arch_error(&ops)
        })
        .fold(f64::INFINITY, f64::min)
}

fn problems() -> Vec<Problem> {
    let config = |value| serde_json::from_value::<KnobConfig>(value).unwrap();
    let unit = json!({"type": "FloatKnob", "min": 0.0, "max": 1.0});
    let mut problems = vec![
        Problem {
            name: "branin",
            config: config(json!({
                "x1": {"type": "FloatKnob", "min": -5.0, "max": 10.0},
                "x2": {"type": "FloatKnob", "min": 0.0, "max": 15.0},
            })),
            f: branin,
            global_min: 0.397_887,
            noise: 0.0,
        },
        Problem {
            name: "hartmann6",
            config: config(json!({
                "x1": unit, "x2": unit, "x3": unit, "x4": unit, "x5": unit, "x6": unit,
            })),
            f: hartmann6,
            global_min: -3.322_37,
            noise: 0.0,
        },
        Problem {
            name: "mixed",
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
            noise: 0.0,
        },
        Problem {
            name: "arch",
            config: config(json!({
                "cells": {"type": "ArchKnob", "items": vec![(0..OPS).collect::<Vec<_>>(); CELLS]},
            })),
            f: arch,
            global_min: arch_minimum(),
            noise: 0.0,
        },
    ];
    // The same problems, observed through Gaussian noise.
    for (name, of, noise) in [
        ("branin+noise", "branin", 0.5),
        ("hartmann6+noise", "hartmann6", 0.05),
    ] {
        let base = problems.iter().find(|p| p.name == of).unwrap();
        let noisy = Problem {
            name,
            config: base.config.clone(),
            f: base.f,
            global_min: base.global_min,
            noise,
        };
        problems.push(noisy);
    }
    problems
}

/// Regret after each checkpoint, and the time spent in propose + feedback.
fn run(problem: &Problem, seed: u64, mut advisor: impl Advisor) -> ([f64; 4], Duration) {
    let mut noise = StdRng::seed_from_u64(1_000_003 * seed + 17);
    let (mut best_observed, mut best) = (f64::INFINITY, f64::INFINITY);
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
        let observed = value + problem.noise * gaussian(&mut noise);
        let started = Instant::now();
        advisor.feedback(&knobs, -observed);
        spent += started.elapsed();
        if observed < best_observed {
            (best_observed, best) = (observed, value);
        }
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

/// Optuna's figures for one problem and sampler, from `scripts/bench/advisor_peers.py`.
struct Peer {
    median_regret: Vec<f64>,
    suggestion_ms: f64,
}

/// The peers' results named by `DUMA_BENCH_PEERS` (a JSON file), by problem and sampler.
fn peers() -> Option<(serde_json::Value, String)> {
    let path = std::env::var("DUMA_BENCH_PEERS").ok()?;
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("DUMA_BENCH_PEERS={path}: {error}"));
    let value: serde_json::Value = serde_json::from_str(&text).expect("the peers' JSON");
    let versions = value["versions"].to_string();
    Some((value, versions))
}

fn peer(peers: &Option<(serde_json::Value, String)>, problem: &str, sampler: &str) -> Option<Peer> {
    let result = &peers.as_ref()?.0["results"][problem][sampler];
    Some(Peer {
        median_regret: result["regret"]
            .as_array()?
            .iter()
            .filter_map(serde_json::Value::as_f64)
            .collect(),
        suggestion_ms: result["suggestion_ms"].as_f64()?,
    })
}

fn cell(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.3e}"))
}

fn main() {
    let started = Instant::now();
    let peers = peers();
    println!(
        "Median simple regret over {SEEDS} seeds (true value at the best observed trial minus the \
         minimum), {TRIALS} trials"
    );
    if let Some((_, versions)) = &peers {
        println!("peers (same functions, spaces, noise and seeds): {versions}");
    } else {
        println!("peers: none (set DUMA_BENCH_PEERS, as scripts/bench-advisor does)");
    }
    println!(
        "{:<17} {:>6} {:>11} {:>11} {:>11} {:>11} {:>9}",
        "problem", "trials", "Duma GP-EI", "Optuna GP", "Optuna TPE", "random", "Duma/GP"
    );
    let mut failures = Vec::new();
    let mut slowest = Duration::ZERO;
    for problem in problems() {
        assert_eq!(advisor_kind(&problem.config), AdvisorKind::Bayesian);
        let bayesian = summarise(
            (0..SEEDS)
                .map(|seed| {
                    let advisor = BayesianAdvisor::new(&problem.config, seed).unwrap();
                    run(&problem, seed, advisor)
                })
                .collect(),
        );
        let random = summarise(
            (0..SEEDS)
                .map(|seed| {
                    let advisor = RandomAdvisor::new(&problem.config, seed).unwrap();
                    run(&problem, seed, advisor)
                })
                .collect(),
        );
        let gp = peer(&peers, problem.name, "GPSampler");
        let tpe = peer(&peers, problem.name, "TPE");
        for (i, trials) in CHECKPOINTS.iter().enumerate() {
            let duma = bayesian.median_regret[i];
            let gp_regret = gp.as_ref().and_then(|p| p.median_regret.get(i).copied());
            let ratio = gp_regret.map(|g| format!("{:.2}", duma / g));
            println!(
                "{:<17} {:>6} {:>11} {:>11} {:>11} {:>11} {:>9}",
                problem.name,
                trials,
                cell(Some(duma)),
                cell(gp_regret),
                cell(tpe.as_ref().and_then(|p| p.median_regret.get(i).copied())),
                cell(Some(random.median_regret[i])),
                ratio.unwrap_or_else(|| "-".to_owned()),
            );
            if *trials >= 50 && duma > CLEARLY_BETTER * random.median_regret[i] {
                failures.push(format!(
                    "{}: not clearly better than random at {trials} trials",
                    problem.name
                ));
            }
            if *trials >= 50
                && problem.noise == 0.0
                && problem.name != "mixed"
                && let Some(g) = gp_regret
                && duma > g
            {
                failures.push(format!(
                    "{}: regret above Optuna GPSampler's at {trials} trials",
                    problem.name
                ));
            }
        }
        println!(
            "{:<17} {:>6} {:>9.0}µs {:>9.0}µs {:>9.0}µs   mean time per suggestion",
            problem.name,
            "",
            bayesian.mean_suggestion.as_secs_f64() * 1e6,
            gp.as_ref().map_or(f64::NAN, |p| p.suggestion_ms * 1e3),
            tpe.as_ref().map_or(f64::NAN, |p| p.suggestion_ms * 1e3),
        );
        if bayesian.mean_suggestion > MAX_SUGGESTION {
            failures.push(format!(
                "{}: suggestions cost {:.1} ms (limit {} ms)",
                problem.name,
                bayesian.mean_suggestion.as_secs_f64() * 1e3,
                MAX_SUGGESTION.as_millis()
            ));
        }
        slowest = slowest.max(bayesian.mean_suggestion);
    }
    println!(
        "targets: regret <= Optuna GPSampler at 50 and 100 trials on branin and hartmann6; <= {} x \
         random at 50 and 100 on every problem; <= {} ms per suggestion (slowest mean: {:.0} µs). \
         Mixed before the gradient ascent (Duma 0.1.0 of 2026-12-04): 7.4e-7 @50, 6.6e-8 @100.",
        CLEARLY_BETTER,
        MAX_SUGGESTION.as_millis(),
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
