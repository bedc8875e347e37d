//! `duma`: the Duma command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use duma_common::service::ConfigArgs;

/// Duma: train, tune and serve machine-learning models.
#[derive(Parser)]
#[command(name = "duma", version)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the effective configuration (secrets redacted) and exit.
    Config,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match cli.config.load() {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    match cli.command {
        Command::Config => {
            eprintln!("{settings:#?}");
            ExitCode::SUCCESS
        }
    }
}
