//! `se`: train, evaluate, run and inspect SE-ResNets.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod backend;
mod commands;

/// Squeeze-and-Excitation networks on Burn.
#[derive(Parser, Debug)]
#[command(name = "se", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per run: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Train a model (default: SE-ResNet-20 on the embedded MNIST digits).
    Train(commands::train::TrainArgs),
    /// Evaluate a trained run: top-1, top-5 and the confusion matrix.
    Eval(commands::eval::EvalArgs),
    /// Classify image files with a trained run: top classes with probabilities.
    Predict(commands::eval::PredictArgs),
    /// What a trained run's SE modules learned: mean excitations per class (CSV, the paper's
    /// Fig. 6 and 7 as SVG and PNG, report.md); --ablate-late tests the paper's §6.4.
    Analyze(commands::analyze::AnalyzeArgs),
    /// Print a model's per-stage parameters and multiply-adds.
    Summary(commands::summary::SummaryArgs),
    /// Measure inference and training throughput (images per second).
    Bench(commands::bench::BenchArgs),
    /// List the registered models.
    Models,
    /// Convert a PyTorch checkpoint (timm, torchvision, Cadene) into Burn weights.
    Import(commands::interop::ImportArgs),
    /// Write a model's weights as .safetensors in PyTorch's (timm's or Cadene's) key names.
    Export(commands::interop::ExportArgs),
    /// Run a model on a .npy input batch and write the logits as .npy (eval mode).
    Logits(commands::interop::LogitsArgs),
}

fn main() -> ExitCode {
    // Every step frees and allocates the same activation buffers: keep them (see its docs).
    se_kernels::keep_freed_buffers();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => commands::train::run(&args),
        Command::Eval(args) => commands::eval::eval(&args),
        Command::Predict(args) => commands::eval::predict(&args),
        Command::Analyze(args) => commands::analyze::run(&args),
        Command::Summary(args) => commands::summary::run(&args),
        Command::Bench(args) => commands::bench::run(&args),
        Command::Models => commands::summary::list_models(),
        Command::Import(args) => commands::interop::import(&args),
        Command::Export(args) => commands::interop::export(&args),
        Command::Logits(args) => commands::interop::logits(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
