//! `duma jobs …`, `trials`, `logs`, `deploy`, `undeploy`: train jobs, their trials, and serving.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::api::{Admin, Failure, Outcome, segment};
use super::resources::items;
use super::{Globals, cell, table};

/// How long `duma deploy` waits for the inference job to serve.
const DEPLOY_DEADLINE: Duration = Duration::from_secs(600);
const DEPLOY_POLL: Duration = Duration::from_millis(250);

/// `APP` or `APP:VERSION` (the latest version when left out).
#[derive(Debug, Clone)]
pub struct AppVersion {
    pub app: String,
    pub version: i64,
}

impl std::str::FromStr for AppVersion {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("the app name is empty".into());
        }
        // App names may hold `:` themselves: only a number after the last one is a version.
        Ok(match text.rsplit_once(':') {
            Some((app, version)) if !app.is_empty() => match version.parse::<i64>() {
                Ok(version) if version > 0 => Self {
                    app: app.to_owned(),
                    version,
                },
                _ => Self {
                    app: text.to_owned(),
                    version: -1,
                },
            },
            _ => Self {
                app: text.to_owned(),
                version: -1,
            },
        })
    }
}

impl AppVersion {
    fn path(&self) -> String {
        format!("{}/{}", segment(&self.app), self.version)
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum JobCommand {
    /// Your train jobs.
    Ls,
    /// A train job (the app's latest version unless `APP:VERSION`) and its trials' summary.
    Show { app: AppVersion },
    /// Stop a train job.
    Stop { app: AppVersion },
}

#[derive(Debug, clap::Args)]
pub struct AppArgs {
    /// `APP` or `APP:VERSION`.
    app: AppVersion,
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The trial's id (see `duma trials APP`).
    trial: String,
}

#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    app: String,
    /// The app version [default: the latest]
    #[arg(long)]
    version: Option<i64>,
}

impl DeployArgs {
    fn app_version(&self) -> AppVersion {
        AppVersion {
            app: self.app.clone(),
            version: self.version.unwrap_or(-1),
        }
    }
}

pub async fn jobs(globals: &Globals, command: JobCommand) -> Outcome<()> {
    let (admin, login) = globals.admin().await?;
    match command {
        JobCommand::Ls => {
            let list = admin
                .get(&format!("/train_jobs?user_id={}", segment(&login.user_id)))
                .await?;
            globals.output.show(&list, || {
                table(
                    &["APP", "VERSION", "TASK", "STATUS", "STARTED", "STOPPED"],
                    items(&list).map(|j| {
                        vec![
                            cell(&j["app"]),
                            cell(&j["app_version"]),
                            cell(&j["task"]),
                            cell(&j["status"]),
                            cell(&j["datetime_started"]),
                            cell(&j["datetime_stopped"]),
                        ]
                    }),
                )
            });
        }
        JobCommand::Show { app } => {
            let job = admin.get(&format!("/train_jobs/{}", app.path())).await?;
            let trials = admin
                .get(&format!("/train_jobs/{}/trials", app.path()))
                .await?;
            let count = |status: &str| items(&trials).filter(|t| t["status"] == status).count();
            let summary = json!({"job": job, "trials": {
                "total": items(&trials).count(), "completed": count("COMPLETED"),
                "running": count("RUNNING"), "errored": count("ERRORED")}});
            globals.output.show(&summary, || {
                let field = |key: &str| vec![key.to_owned(), cell(&job[key])];
                let mut rows = vec![
                    field("app"),
                    field("app_version"),
                    field("task"),
                    field("status"),
                    vec!["budget".into(), job["budget"].to_string()],
                    field("datetime_started"),
                    field("datetime_stopped"),
                    vec![
                        "trials".into(),
                        format!(
                            "{} completed, {} running, {} errored",
                            count("COMPLETED"),
                            count("RUNNING"),
                            count("ERRORED")
                        ),
                    ],
                ];
                if !job["error"].is_null() {
                    rows.push(field("error"));
                }
                table(&["FIELD", "VALUE"], rows)
            });
        }
        JobCommand::Stop { app } => {
            let job = admin
                .post(&format!("/train_jobs/{}/stop", app.path()), &json!({}))
                .await?;
            // Stopping is synchronous: the job is STOPPED once this answers.
            globals.output.show(&job, || {
                format!(
                    "Train job {} v{} is STOPPED",
                    cell(&job["app"]),
                    cell(&job["app_version"])
                )
            });
        }
    }
    Ok(())
}

pub async fn trials(globals: &Globals, args: AppArgs) -> Outcome<()> {
    let (admin, _) = globals.admin().await?;
    let trials = admin
        .get(&format!("/train_jobs/{}/trials", args.app.path()))
        .await?;
    globals.output.show(&trials, || {
        table(
            &["ID", "TRIAL", "MODEL", "STATUS", "SCORE", "KNOBS"],
            items(&trials).map(|t| {
                vec![
                    cell(&t["id"]),
                    cell(&t["no"]),
                    cell(&t["model_name"]),
                    cell(&t["status"]),
                    cell(&t["score"]),
                    super::train::knobs(&t["proposal"]["knobs"]),
                ]
            }),
        )
    });
    Ok(())
}

pub async fn logs(globals: &Globals, args: LogsArgs) -> Outcome<()> {
    let (admin, _) = globals.admin().await?;
    let logs = admin
        .get(&format!("/trials/{}/logs", segment(&args.trial)))
        .await?;
    globals.output.show(&logs, || {
        let mut out = String::new();
        for message in items(&logs["messages"]) {
            out.push_str(&format!(
                "{}  {}\n",
                cell(&message["time"]),
                cell(&message["message"])
            ));
        }
        let metrics: Vec<&Value> = items(&logs["metrics"]).collect();
        if !metrics.is_empty() {
            out.push_str(&format!("\n{} metric records; last: ", metrics.len()));
            out.push_str(&metrics[metrics.len() - 1].to_string());
            out.push('\n');
        }
        let plots: Vec<String> = items(&logs["plots"]).map(|p| cell(&p["title"])).collect();
        if !plots.is_empty() {
            out.push_str(&format!("plots: {}\n", plots.join(", ")));
        }
        if out.is_empty() {
            out.push_str("(no logs)");
        }
        out.trim_end().to_owned()
    });
    Ok(())
}

pub async fn deploy(globals: &Globals, args: DeployArgs) -> Outcome<()> {
    let (admin, _) = globals.admin().await?;
    let target = args.app_version();
    let mut body = json!({"app": target.app});
    if target.version > 0 {
        body["app_version"] = json!(target.version);
    }
    let created = admin.post("/inference_jobs", &body).await?;
    let version = created["app_version"].as_i64().unwrap_or(target.version);
    let spinner = if globals.output.live() {
        let spinner = indicatif::ProgressBar::new_spinner();
        spinner.set_message(format!("starting {} v{version}", target.app));
        spinner.enable_steady_tick(Duration::from_millis(120));
        spinner
    } else {
        indicatif::ProgressBar::hidden()
    };
    let running = wait_running(&admin, &target.app, version).await;
    spinner.finish_and_clear();
    let job = running?;
    globals.output.show(&job, || {
        format!(
            "{} v{} is RUNNING at http://{}/predict",
            cell(&job["app"]),
            cell(&job["app_version"]),
            cell(&job["predictor_host"])
        )
    });
    Ok(())
}

async fn wait_running(admin: &Admin, app: &str, version: i64) -> Outcome<Value> {
    let path = format!("/inference_jobs/{}/{version}", segment(app));
    let deadline = Instant::now() + DEPLOY_DEADLINE;
    loop {
        let job = admin.get(&path).await?;
        match job["status"].as_str() {
            Some("RUNNING") => return Ok(job),
            Some("ERRORED" | "STOPPED") => {
                return Err(Failure::other(format!(
                    "the inference job ended {}: {}",
                    cell(&job["status"]),
                    cell(&job["error"])
                )));
            }
            _ if Instant::now() >= deadline => {
                return Err(Failure::other(format!(
                    "{app} v{version} is not serving after {} s; see duma jobs show '{app}:{version}'",
                    DEPLOY_DEADLINE.as_secs()
                )));
            }
            _ => tokio::time::sleep(DEPLOY_POLL).await,
        }
    }
}

pub async fn undeploy(globals: &Globals, args: DeployArgs) -> Outcome<()> {
    let (admin, _) = globals.admin().await?;
    let job = admin
        .post(
            &format!("/inference_jobs/{}/stop", args.app_version().path()),
            &json!({}),
        )
        .await?;
    globals.output.show(&job, || {
        format!(
            "Stopped serving {} v{}",
            cell(&job["app"]),
            cell(&job["app_version"])
        )
    });
    Ok(())
}

/// The running inference job of an app version (for predictions).
pub async fn running_job(admin: &Admin, app: &str, version: i64) -> Outcome<Value> {
    admin
        .get(&format!("/inference_jobs/{}/{version}", segment(app)))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_app_may_name_its_version_after_the_last_colon() {
        let parse = |text: &str| text.parse::<AppVersion>().unwrap();
        assert_eq!(parse("demo").version, -1);
        let versioned = parse("demo:3");
        assert_eq!((versioned.app.as_str(), versioned.version), ("demo", 3));
        let colons = parse("team:demo");
        assert_eq!((colons.app.as_str(), colons.version), ("team:demo", -1));
        assert_eq!(parse("team:demo:2").app, "team:demo");
        assert!("".parse::<AppVersion>().is_err());
        assert_eq!(parse("a b").path(), "a%20b/-1");
    }
}
