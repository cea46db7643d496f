//! `se`: train, evaluate, run and inspect SE-ResNets.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;

/// Squeeze-and-Excitation networks on Burn.
#[derive(Parser, Debug)]
#[command(name = "se", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print a model's per-stage parameters and multiply-adds.
    Summary(commands::summary::SummaryArgs),
    /// List the registered models.
    Models,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Summary(args) => commands::summary::run(&args),
        Command::Models => commands::summary::list_models(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
