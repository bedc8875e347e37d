//! The user's commands: everything an app or model developer does, over the admin's and the
//! predictors' public APIs. Each prints tables for people or, with `--output json`, JSON for
//! scripts; exits 0 when it did what was asked, 1 when the platform refused or could not be
//! reached (the error class and message, on one line), 2 for a command line that cannot work.

#![allow(
    clippy::print_stdout,
    reason = "printing results is what these commands do"
)]

mod api;
mod jobs;
mod login;
mod predict;
mod resources;
mod train;

use std::io::IsTerminal;

use clap::Subcommand;
use serde_json::Value;

pub use api::Outcome;

use api::Admin;
use login::Login;

/// Where `duma up` serves the admin by default.
const DEFAULT_ADMIN: &str = "http://localhost:3000";

/// Options every user command takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Globals {
    /// The admin's URL [default: where you logged in, else http://localhost:3000]
    #[arg(long, env = "DUMA_ADMIN", global = true)]
    admin: Option<String>,
    /// The predictors' URL (nginx), when clients reach them elsewhere than the `predictor_host`
    /// the admin hands out
    #[arg(long, env = "DUMA_PREDICTOR", global = true)]
    predictor: Option<String>,
    /// Tables for people, JSON for scripts
    #[arg(long, value_enum, default_value_t = Output::Table, global = true)]
    output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

impl Output {
    /// Prints `value` as JSON, or `human()` for people.
    pub fn show(self, value: &Value, human: impl FnOnce() -> String) {
        match self {
            Output::Json => println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            ),
            Output::Table => println!("{}", human()),
        }
    }

    /// Whether live views and progress bars may draw (people watching a terminal).
    pub fn live(self) -> bool {
        self == Output::Table && std::io::stderr().is_terminal()
    }
}

impl Globals {
    fn admin_url(&self, login: Option<&Login>) -> String {
        self.admin
            .clone()
            .or_else(|| login.map(|l| l.admin.clone()))
            .unwrap_or_else(|| DEFAULT_ADMIN.to_owned())
    }

    /// The admin, as the logged-in user.
    async fn admin(&self) -> Outcome<(Admin, Login)> {
        let login = login::required()?;
        let admin = Admin::new(&self.admin_url(Some(&login)), Some(login.token.clone()))?;
        Ok((admin, login))
    }
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Log in to the admin; the token is kept in your config folder (mode 0600).
    Login(login::LoginArgs),
    /// Forget the saved token.
    Logout,
    /// Who you are logged in as, and where.
    Whoami,
    /// Upload and list datasets.
    #[command(subcommand)]
    Datasets(resources::DatasetCommand),
    /// Upload, list, show and delete model templates.
    #[command(subcommand)]
    Models(resources::ModelCommand),
    /// Start a train job (uploading dataset files first), and optionally watch it.
    Train(train::TrainArgs),
    /// Train jobs: list, show, stop.
    #[command(subcommand)]
    Jobs(jobs::JobCommand),
    /// The trials of a train job.
    Trials(jobs::AppArgs),
    /// A trial's logs: messages, metrics and plots.
    Logs(jobs::LogsArgs),
    /// Serve a trained app version (an inference job), and wait until it serves.
    Deploy(jobs::DeployArgs),
    /// Stop serving an app version, or delete a deployment.
    Undeploy(jobs::UndeployArgs),
    /// Predictions of a served app for one query or a file of rows.
    Predict(predict::PredictArgs),
}

pub async fn run(globals: Globals, command: UserCommand) -> Outcome<()> {
    match command {
        UserCommand::Login(args) => login::login(&globals, args).await,
        UserCommand::Logout => login::logout(&globals),
        UserCommand::Whoami => login::whoami(&globals).await,
        UserCommand::Datasets(command) => resources::datasets(&globals, command).await,
        UserCommand::Models(command) => resources::models(&globals, command).await,
        UserCommand::Train(args) => train::train(&globals, args).await,
        UserCommand::Jobs(command) => jobs::jobs(&globals, command).await,
        UserCommand::Trials(args) => jobs::trials(&globals, args).await,
        UserCommand::Logs(args) => jobs::logs(&globals, args).await,
        UserCommand::Deploy(args) => jobs::deploy(&globals, args).await,
        UserCommand::Undeploy(args) => jobs::undeploy(&globals, args).await,
        UserCommand::Predict(args) => predict::predict(&globals, args).await,
    }
}

/// A table with `header`, for people.
fn table(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    table_within(header, rows, None)
}

/// [`table`], no wider than `width` columns when given (cells wrap).
fn table_within(
    header: &[&str],
    rows: impl IntoIterator<Item = Vec<String>>,
    width: Option<u16>,
) -> String {
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::UTF8_BORDERS_ONLY)
        .set_header(header.to_vec());
    if let Some(width) = width {
        table
            .set_content_arrangement(comfy_table::ContentArrangement::Dynamic)
            .set_width(width);
    }
    for row in rows {
        table.add_row(row);
    }
    table.to_string()
}

/// A JSON value as a table cell: text without quotes, null as `-`.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Bytes for people: `1.5 MiB`.
fn bytes(count: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut size = count as f64;
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < UNITS.len() {
        size /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{count} B")
    } else {
        format!("{size:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_and_sizes_read_well() {
        assert_eq!(cell(&Value::Null), "-");
        assert_eq!(cell(&serde_json::json!("text")), "text");
        assert_eq!(cell(&serde_json::json!(0.5)), "0.5");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
    }
}
