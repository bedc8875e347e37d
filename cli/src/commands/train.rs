//! `duma train`: start a train job (uploading dataset files first) and, with `--watch`, follow
//! it live: progress against the budget, the trials table redrawn in place, the best score so
//! far. Ctrl-C detaches; the job keeps running.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::api::{Admin, Failure, Outcome, segment};
use super::resources::{available_models, items, upload_dataset};
use super::{Globals, Output, cell, table_within};

/// How often the live view asks for the job and its trials.
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// Trials shown in the live view (the newest; the count of the others is shown).
const SHOWN_TRIALS: usize = 15;

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// The app: names the job and its versions.
    app: String,
    /// The task, e.g. TABULAR_CLASSIFICATION.
    #[arg(long)]
    task: String,
    /// Training data: a file to upload, or a dataset id.
    #[arg(long, value_name = "FILE|ID")]
    train: String,
    /// Validation data: a file to upload, or a dataset id.
    #[arg(long, value_name = "FILE|ID")]
    val: String,
    /// Models to tune, by name or id [default: every model available for the task]
    #[arg(long, num_args = 1..)]
    models: Vec<String>,
    /// Trials per model (the budget's MODEL_TRIAL_COUNT).
    #[arg(long)]
    trials: Option<u32>,
    /// Time budget in hours (TIME_HOURS).
    #[arg(long)]
    hours: Option<f64>,
    /// Feature columns of a table (train argument `features`) [default: all but the target]
    #[arg(long, num_args = 1.., value_delimiter = ',')]
    features: Vec<String>,
    /// The target column of a table (train argument `target`).
    #[arg(long)]
    target: Option<String>,
    /// Follow the job live until it ends (Ctrl-C detaches; the job keeps running).
    #[arg(long)]
    watch: bool,
}

pub async fn train(globals: &Globals, args: TrainArgs) -> Outcome<()> {
    let (admin, _) = globals.admin().await?;
    // Models first: a wrong name fails before any upload.
    let models = model_ids(&admin, &args.models, &args.task).await?;
    let train = dataset(globals, &admin, &args.train, &args.task).await?;
    let val = dataset(globals, &admin, &args.val, &args.task).await?;
    let mut budget = Map::new();
    if let Some(trials) = args.trials {
        budget.insert("MODEL_TRIAL_COUNT".into(), json!(trials));
    }
    if let Some(hours) = args.hours {
        budget.insert("TIME_HOURS".into(), json!(hours));
    }
    let mut train_args = Map::new();
    if !args.features.is_empty() {
        train_args.insert("features".into(), json!(args.features));
    }
    if let Some(target) = &args.target {
        train_args.insert("target".into(), json!(target));
    }
    let mut body = json!({"app": args.app, "task": args.task, "train_dataset_id": train,
                          "val_dataset_id": val, "budget": budget, "train_args": train_args});
    if let Some(models) = models {
        body["model_ids"] = json!(models);
    }
    let job = admin.post("/train_jobs", &body).await?;
    let version = job["app_version"].as_i64().unwrap_or(-1);
    if !args.watch {
        globals.output.show(&job, || {
            format!(
                "Started train job {} v{version}. Follow it: duma train … --watch, or duma jobs show '{}:{version}'",
                args.app, args.app
            )
        });
        return Ok(());
    }
    if globals.output == Output::Table {
        println!("Started train job {} v{version}.", args.app);
    }
    watch(globals, &admin, &args.app, version).await
}

/// A dataset argument: an existing file is uploaded (its id returned), else it must be an id.
async fn dataset(globals: &Globals, admin: &Admin, given: &str, task: &str) -> Outcome<String> {
    let path = Path::new(given);
    if path.is_file() {
        let dataset = upload_dataset(globals, admin, path, task, None).await?;
        if globals.output == Output::Table {
            println!(
                "Uploaded {given} as dataset {} (sha256 {})",
                cell(&dataset["id"]),
                cell(&dataset["sha256"])
            );
        }
        return Ok(cell(&dataset["id"]));
    }
    if looks_like_id(given) {
        return Ok(given.to_owned());
    }
    Err(Failure::usage(format!(
        "{given}: no such file, and not a dataset id"
    )))
}

fn looks_like_id(text: &str) -> bool {
    text.len() == 36 && text.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// Model arguments (names or ids) as ids; `None` for every model of the task.
async fn model_ids(admin: &Admin, given: &[String], task: &str) -> Outcome<Option<Vec<String>>> {
    if given.is_empty() {
        return Ok(None);
    }
    let available = available_models(admin, Some(task)).await?;
    let mut ids = Vec::new();
    for wanted in given {
        let matching: Vec<&Value> = items(&available)
            .filter(|m| m["id"].as_str() == Some(wanted) || m["name"].as_str() == Some(wanted))
            .collect();
        match matching.as_slice() {
            [model] => ids.push(cell(&model["id"])),
            [] => {
                return Err(Failure::usage(format!(
                    "no model `{wanted}` is available for {task} (see duma models ls --task {task})"
                )));
            }
            _ => {
                return Err(Failure::usage(format!(
                    "several models are named `{wanted}`: give its id (duma models ls --task {task})"
                )));
            }
        }
    }
    Ok(Some(ids))
}

/// Follows a train job until it ends or Ctrl-C.
pub async fn watch(globals: &Globals, admin: &Admin, app: &str, version: i64) -> Outcome<()> {
    let job_path = format!("/train_jobs/{}/{version}", segment(app));
    let live = globals.output.live();
    let mut drawn_lines = 0usize;
    let mut reported: HashSet<String> = HashSet::new();
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let job = admin.get(&job_path).await?;
        let trials = admin.get(&format!("{job_path}/trials")).await?;
        let ended = matches!(job["status"].as_str(), Some("STOPPED" | "ERRORED"));
        if live {
            // Lines must not wrap, or redrawing in place would miss some.
            let width = console::Term::stdout().size().1.max(40);
            let screen = screen(&job, &trials, !ended, width);
            let mut out = std::io::stdout().lock();
            if drawn_lines > 0 {
                // Back to the first line drawn, and clear from there.
                let _ = write!(out, "\x1b[{drawn_lines}F\x1b[J");
            }
            let _ = write!(out, "{screen}");
            let _ = out.flush();
            drawn_lines = screen.matches('\n').count();
        } else if globals.output == Output::Table {
            for trial in items(&trials) {
                let status = trial["status"].as_str().unwrap_or_default();
                let id = cell(&trial["id"]);
                if matches!(status, "COMPLETED" | "STOPPED" | "ERRORED") && reported.insert(id) {
                    println!(
                        "trial {} ({}) {status}, score {}, {}",
                        cell(&trial["no"]),
                        cell(&trial["model_name"]),
                        score(&trial["score"]),
                        duration(trial)
                    );
                }
            }
        }
        if ended {
            return finish(globals, &job, &trials);
        }
        tokio::select! {
            _ = tokio::time::sleep(WATCH_EVERY) => {}
            _ = &mut interrupted => {
                if globals.output == Output::Table {
                    println!(
                        "\nDetached: {app} v{version} keeps running (duma jobs show '{app}:{version}'; duma jobs stop '{app}:{version}')."
                    );
                } else {
                    globals.output.show(&json!({"detached": true, "job": job}), String::new);
                }
                return Ok(());
            }
        }
    }
}

fn finish(globals: &Globals, job: &Value, trials: &Value) -> Outcome<()> {
    let best = best_trial(trials);
    match globals.output {
        Output::Json => globals
            .output
            .show(&json!({"job": job, "trials": trials}), String::new),
        Output::Table => match best {
            Some(best) => println!(
                "{} v{} {}: best score {} by {} (trial {}, {})",
                cell(&job["app"]),
                cell(&job["app_version"]),
                cell(&job["status"]),
                score(&best["score"]),
                cell(&best["model_name"]),
                cell(&best["no"]),
                cell(&best["id"]),
            ),
            None => println!(
                "{} v{} {} with no completed trial",
                cell(&job["app"]),
                cell(&job["app_version"]),
                cell(&job["status"])
            ),
        },
    }
    if job["status"] == "ERRORED" {
        return Err(Failure::other(format!(
            "the train job ended ERRORED: {}",
            cell(&job["error"])
        )));
    }
    Ok(())
}

/// The live view, `width` columns wide: one status line, the trials table (oldest first), a hint.
fn screen(job: &Value, trials: &Value, running: bool, width: u16) -> String {
    let mut all: Vec<&Value> = items(trials).collect();
    all.sort_by_key(|t| (started(t), t["no"].as_i64()));
    let done = all
        .iter()
        .filter(|t| {
            matches!(
                t["status"].as_str(),
                Some("COMPLETED" | "STOPPED" | "ERRORED")
            )
        })
        .count();
    let budget = &job["budget"];
    let models = all
        .iter()
        .filter_map(|t| t["model_name"].as_str())
        .collect::<HashSet<_>>()
        .len()
        .max(1);
    let trials_part = match budget["MODEL_TRIAL_COUNT"].as_i64() {
        Some(count) if count > 0 => format!("trials {done}/{}", count as usize * models),
        _ => format!("trials {done}"),
    };
    let elapsed = since(&job["datetime_started"], &job["datetime_stopped"]);
    let time_part = match budget["TIME_HOURS"].as_f64() {
        Some(hours) if hours > 0.0 => format!(
            "{} of {}",
            clock(elapsed),
            clock(Duration::from_secs_f64(hours * 3600.0))
        ),
        _ => clock(elapsed),
    };
    let best = match best_trial(trials) {
        Some(best) => format!(
            "best {} ({}, trial {})",
            score(&best["score"]),
            cell(&best["model_name"]),
            cell(&best["no"])
        ),
        None => "no score yet".to_owned(),
    };
    let status = format!(
        "{} v{} · {} · {trials_part} · {time_part} · {best}",
        cell(&job["app"]),
        cell(&job["app_version"]),
        cell(&job["status"])
    );
    let mut screen: String = status.chars().take(usize::from(width) - 1).collect();
    screen.push('\n');
    if let Some(waiting) = job["waiting"].as_str() {
        // Why nothing runs (no worker has the GPUs asked for): the whole reason, wrapped.
        for line in textwrap::wrap(&format!("waiting: {waiting}"), usize::from(width) - 1) {
            screen.push_str(&line);
            screen.push('\n');
        }
    }
    let hidden = all.len().saturating_sub(SHOWN_TRIALS);
    let shown = all.iter().rev().take(SHOWN_TRIALS).rev().map(|trial| {
        vec![
            cell(&trial["no"]),
            cell(&trial["model_name"]),
            cell(&trial["status"]),
            score(&trial["score"]),
            duration(trial),
            knobs(&trial["proposal"]["knobs"]),
        ]
    });
    screen.push_str(&table_within(
        &["TRIAL", "MODEL", "STATUS", "SCORE", "TIME", "KNOBS"],
        shown,
        Some(width - 1),
    ));
    screen.push('\n');
    if hidden > 0 {
        screen.push_str(&format!("(and {hidden} earlier trials)\n"));
    }
    if running {
        screen.push_str("Ctrl-C detaches; the job keeps running.\n");
    }
    screen
}

/// The completed trial with the highest score (the earliest of equals).
fn best_trial(trials: &Value) -> Option<&Value> {
    let mut best: Option<(&Value, f64)> = None;
    for trial in items(trials).filter(|t| t["status"] == "COMPLETED") {
        if let Some(score) = trial["score"].as_f64()
            && best.is_none_or(|(_, top)| score > top)
        {
            best = Some((trial, score));
        }
    }
    best.map(|(trial, _)| trial)
}

fn score(value: &Value) -> String {
    value
        .as_f64()
        .map(|s| format!("{s:.4}"))
        .unwrap_or_else(|| "-".to_owned())
}

/// Knobs on one short line: `C=0.1235 max_iter=100`.
pub fn knobs(value: &Value) -> String {
    let text = match value.as_object() {
        Some(knobs) => knobs
            .iter()
            .map(|(k, v)| match v.as_f64() {
                Some(f) if !v.is_i64() && !v.is_u64() => format!("{k}={f:.4}"),
                _ => format!("{k}={}", cell(v)),
            })
            .collect::<Vec<_>>()
            .join(" "),
        None => "-".to_owned(),
    };
    if text.chars().count() > 48 {
        format!("{}…", text.chars().take(47).collect::<String>())
    } else {
        text
    }
}

fn started(trial: &Value) -> Option<DateTime<Utc>> {
    http_date(&trial["datetime_started"])
}

/// An HTTP date (the API's datetimes) as UTC.
fn http_date(value: &Value) -> Option<DateTime<Utc>> {
    value
        .as_str()
        .and_then(|text| DateTime::parse_from_rfc2822(text).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// A trial's running or final time.
fn duration(trial: &Value) -> String {
    clock(since(
        &trial["datetime_started"],
        &trial["datetime_stopped"],
    ))
}

/// From an HTTP date to another (or to now).
fn since(start: &Value, stop: &Value) -> Duration {
    let Some(start) = http_date(start) else {
        return Duration::ZERO;
    };
    let end = http_date(stop).unwrap_or_else(Utc::now);
    (end - start).to_std().unwrap_or_default()
}

fn clock(elapsed: Duration) -> String {
    let seconds = elapsed.as_secs();
    if seconds < 60 {
        format!("{:.1}s", elapsed.as_secs_f64())
    } else if seconds < 3600 {
        format!("{}:{:02}", seconds / 60, seconds % 60)
    } else {
        format!(
            "{}:{:02}:{:02}",
            seconds / 3600,
            (seconds / 60) % 60,
            seconds % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_live_view_shows_progress_the_best_trial_and_each_trial() {
        let job = json!({"app": "demo", "app_version": 2, "status": "RUNNING",
                         "budget": {"MODEL_TRIAL_COUNT": 3, "TIME_HOURS": 0.5},
                         "datetime_started": "Tue, 01 Dec 2026 16:00:00 GMT",
                         "datetime_stopped": null});
        let trials = json!([
            {"id": "a", "no": 1, "model_name": "LogReg", "status": "COMPLETED", "score": 0.9,
             "proposal": {"knobs": {"C": 0.123456, "max_iter": 100}},
             "datetime_started": "Tue, 01 Dec 2026 16:00:01 GMT",
             "datetime_stopped": "Tue, 01 Dec 2026 16:00:03 GMT"},
            {"id": "b", "no": 2, "model_name": "LogReg", "status": "COMPLETED", "score": 0.95,
             "proposal": {"knobs": {"C": 1.5, "max_iter": 200}},
             "datetime_started": "Tue, 01 Dec 2026 16:00:03 GMT",
             "datetime_stopped": "Tue, 01 Dec 2026 16:01:33 GMT"},
            {"id": "c", "no": 3, "model_name": "LogReg", "status": "RUNNING", "score": null,
             "proposal": {"knobs": {"C": 2.0}}, "datetime_started": "Tue, 01 Dec 2026 16:01:33 GMT",
             "datetime_stopped": null}
        ]);
        let screen = screen(&job, &trials, true, 160);
        let first = screen.lines().next().unwrap();
        assert!(
            first.starts_with("demo v2 · RUNNING · trials 2/3 · "),
            "{first}"
        );
        assert!(
            first.contains(" of 30:00 · best 0.9500 (LogReg, trial 2)"),
            "{first}"
        );
        assert!(screen.contains("C=0.1235 max_iter=100"), "{screen}");
        assert!(
            screen.contains("2.0s") && screen.contains("1:30"),
            "{screen}"
        );
        assert!(screen.ends_with("Ctrl-C detaches; the job keeps running.\n"));
        assert_eq!(best_trial(&trials).unwrap()["id"], "b");
        // A narrow terminal: no line wraps, so redrawing in place stays exact.
        for line in super::screen(&job, &trials, true, 60).lines() {
            assert!(line.chars().count() < 60, "{line}");
        }
    }

    #[test]
    fn a_waiting_job_says_why_within_the_width() {
        let job = json!({"app": "gpu", "app_version": 1, "status": "RUNNING",
                         "budget": {"MODEL_TRIAL_COUNT": 2, "GPU_COUNT": 4},
                         "datetime_started": "Tue, 01 Dec 2026 16:00:00 GMT",
                         "datetime_stopped": null,
                         "waiting": "waiting for a train worker with 4 GPUs (GPU_COUNT): the most \
                                     any live one has is 1; start one on a machine with enough"});
        let screen = screen(&job, &json!([]), true, 40);
        assert!(screen.contains("waiting: waiting for a train"), "{screen}");
        assert!(screen.contains("has is 1;"), "{screen}");
        for line in screen.lines() {
            assert!(line.chars().count() < 40, "{line}");
        }
        let calm = json!({"app": "cpu", "app_version": 1, "status": "RUNNING",
                          "budget": {}, "datetime_started": "Tue, 01 Dec 2026 16:00:00 GMT",
                          "datetime_stopped": null});
        assert!(!super::screen(&calm, &json!([]), true, 80).contains("waiting"));
    }

    #[test]
    fn ids_are_told_from_file_names() {
        assert!(looks_like_id("01a23255-7fcf-7702-bec5-0978c8293a4f"));
        assert!(!looks_like_id("train.csv"));
    }
}
