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
    /// Serve through this deployment (a stable URL): created if new, else switched to the
    /// version (or, with --canary, given a share of its traffic). `undeploy --name` deletes it.
    #[arg(long = "name", value_name = "DEPLOYMENT")]
    deployment: Option<String>,
    /// With --name: send this percent of the deployment's traffic to the version, the rest to
    /// what serves now.
    #[arg(long, requires = "deployment", value_parser = clap::value_parser!(u32).range(1..=99))]
    canary: Option<u32>,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["app", "deployment"])))]
pub struct UndeployArgs {
    /// Stop the inference job of this app's version.
    app: Option<String>,
    /// The app version [default: the latest]
    #[arg(long, requires = "app")]
    version: Option<i64>,
    /// Delete this deployment instead (and stop its versions).
    #[arg(long = "name", value_name = "DEPLOYMENT", conflicts_with = "app")]
    deployment: Option<String>,
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
                "stopped_early": count("STOPPED"), "running": count("RUNNING"),
                "errored": count("ERRORED")}});
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
                            "{} completed, {} stopped early, {} running, {} errored",
                            count("COMPLETED"),
                            count("STOPPED"),
                            count("RUNNING"),
                            count("ERRORED")
                        ),
                    ],
                ];
                if !job["error"].is_null() {
                    rows.push(field("error"));
                }
                if !job["waiting"].is_null() {
                    rows.push(field("waiting"));
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
    if let Some(name) = &args.deployment {
        return deploy_named(globals, &admin, &args, name).await;
    }
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

/// `deploy --name`: create the deployment, or switch it (all traffic, or a canary share).
async fn deploy_named(
    globals: &Globals,
    admin: &Admin,
    args: &DeployArgs,
    name: &str,
) -> Outcome<()> {
    let path = format!("/deployments/{}", segment(name));
    // The version as a number (weights need one): the latest unless given.
    let version = match args.version {
        Some(version) => version,
        None => admin
            .get(&format!("/train_jobs/{}/-1", segment(&args.app)))
            .await?["app_version"]
            .as_i64()
            .unwrap_or(-1),
    };
    let existing = match admin.get(&path).await {
        Ok(deployment) => Some(deployment),
        Err(Failure::Api { status, .. }) if status == reqwest::StatusCode::NOT_FOUND => None,
        Err(failure) => return Err(failure),
    };
    match (existing, args.canary) {
        (None, Some(_)) => {
            return Err(Failure::usage(format!(
                "--canary needs deployment {name} to exist: deploy a first version without it"
            )));
        }
        (None, None) => {
            admin
                .post(
                    "/deployments",
                    &json!({"name": name, "app": args.app, "app_version": version}),
                )
                .await?;
        }
        (Some(current), canary) => {
            let body = match canary {
                None => json!({"app_version": version}),
                Some(percent) => {
                    let serving = items(&current["routes"])
                        .find(|r| {
                            r["shadow"] == false && r["app_version"].as_i64() != Some(version)
                        })
                        .and_then(|r| r["app_version"].as_i64())
                        .ok_or_else(|| {
                            Failure::usage(format!(
                                "deployment {name} serves no other version to share traffic with"
                            ))
                        })?;
                    json!({"weights": {serving.to_string(): 100 - percent, version.to_string(): percent}})
                }
            };
            admin
                .send(
                    admin
                        .request(reqwest::Method::PATCH, &path)
                        .json(&body)
                        .timeout(Duration::from_secs(60)),
                )
                .await?;
        }
    }
    let spinner = if globals.output.live() {
        let spinner = indicatif::ProgressBar::new_spinner();
        spinner.set_message(format!("switching {name} to {} v{version}", args.app));
        spinner.enable_steady_tick(Duration::from_millis(120));
        spinner
    } else {
        indicatif::ProgressBar::hidden()
    };
    let deadline = Instant::now() + DEPLOY_DEADLINE;
    let settled = loop {
        let deployment = admin.get(&path).await?;
        match deployment["status"].as_str() {
            Some("SERVING") if deployment["pending"].is_null() => break Ok(deployment),
            Some("FAILED") => {
                break Err(Failure::other(format!(
                    "deployment {name} serves nothing: {}",
                    cell(&deployment["error"])
                )));
            }
            _ if !deployment["error"].is_null() => {
                break Err(Failure::other(format!(
                    "the change was given up: {}",
                    cell(&deployment["error"])
                )));
            }
            _ if Instant::now() >= deadline => {
                break Err(Failure::other(format!(
                    "deployment {name} is still switching after {} s",
                    DEPLOY_DEADLINE.as_secs()
                )));
            }
            _ => tokio::time::sleep(DEPLOY_POLL).await,
        }
    };
    spinner.finish_and_clear();
    let deployment = settled?;
    globals.output.show(&deployment, || {
        let routes: Vec<String> = items(&deployment["routes"])
            .map(|r| format!("v{} {}%", cell(&r["app_version"]), cell(&r["weight"])))
            .collect();
        format!(
            "Deployment {name} serves {} ({}) at {}",
            args.app,
            routes.join(", "),
            cell(&deployment["url"])
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

pub async fn undeploy(globals: &Globals, args: UndeployArgs) -> Outcome<()> {
    let (admin, _) = globals.admin().await?;
    if let Some(name) = &args.deployment {
        let deleted = admin
            .delete(&format!("/deployments/{}", segment(name)))
            .await?;
        globals.output.show(&deleted, || {
            format!("Deleted deployment {name} and stopped its versions")
        });
        return Ok(());
    }
    let target = AppVersion {
        app: args.app.unwrap_or_default(),
        version: args.version.unwrap_or(-1),
    };
    let job = admin
        .post(
            &format!("/inference_jobs/{}/stop", target.path()),
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
