//! `duma`: the Duma command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use duma_common::service::ConfigArgs;

mod stack;

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
    /// Run the whole platform as local processes until Ctrl-C or `duma down`.
    Up(stack::UpArgs),
    /// Stop the platform `duma up` runs from the same data directory.
    Down(stack::DownArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config => match cli.config.load() {
            Ok(settings) => {
                eprintln!("{settings:#?}");
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Up(args) => report(stack::up(args, cli.config.config)),
        Command::Down(args) => report(stack::down(&args)),
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("duma: {error:#}");
            ExitCode::FAILURE
        }
    }
}
