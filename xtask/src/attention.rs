//! `cargo xtask attention-table`: trains ResNet-20 with each attention option on the embedded MNIST
//! digits under the same budget and seeds, measures inference throughput, and prints the markdown
//! table of docs/attention.md.

use std::path::{Path, PathBuf};
use std::process::Command;

const MODELS: [&str; 6] = [
    "resnet20",
    "se_resnet20",
    "eca_resnet20",
    "sse_resnet20",
    "scse_resnet20",
    "cbam_resnet20",
];

/// Options: `--seeds N` (3), `--epochs N` (1), `--train-limit N` (2000).
pub fn run(se: &Path, args: &[String]) -> Result<(), String> {
    let option = |name: &str, default: usize| crate::number_option(args, name, default);
    let (seeds, epochs, limit) = (
        option("--seeds", 3)?,
        option("--epochs", 1)?,
        option("--train-limit", 2000)?,
    );
    let out = PathBuf::from("target/attention-table");
    let _ = std::fs::remove_dir_all(&out);

    let mut rows = Vec::new();
    for model in MODELS {
        let mut accuracies = Vec::new();
        for seed in 1..=seeds {
            let run_dir = out.join(format!("{model}-seed{seed}"));
            let status = Command::new(se)
                .args(["train", "--model", model, "--seed", &seed.to_string()])
                .args([
                    "--epochs",
                    &epochs.to_string(),
                    "--train-limit",
                    &limit.to_string(),
                ])
                .args(["--run-dir", run_dir.to_str().unwrap()])
                .stdout(std::process::Stdio::null())
                .status()
                .map_err(|e| format!("cannot run {}: {e}", se.display()))?;
            if !status.success() {
                return Err(format!("training {model} (seed {seed}) failed"));
            }
            let summary =
                std::fs::read_to_string(run_dir.join("summary.json")).map_err(|e| e.to_string())?;
            let summary: serde_json::Value =
                serde_json::from_str(&summary).map_err(|e| e.to_string())?;
            accuracies.push(100.0 * summary["test"]["top1"].as_f64().unwrap_or(f64::NAN));
        }
        let bench = Command::new(se)
            .args([
                "bench",
                "--model",
                model,
                "--batch",
                "32",
                "--input-size",
                "28",
                "--in-channels",
                "1",
            ])
            .output()
            .map_err(|e| e.to_string())?;
        let bench = String::from_utf8_lossy(&bench.stdout);
        let cells: Vec<String> = bench
            .lines()
            .find(|line| line.starts_with(&format!("| {model} ")))
            .map(|line| line.split('|').map(|c| c.trim().to_string()).collect())
            .unwrap_or_default();
        let throughput = cells.get(4).cloned().unwrap_or_default();
        let summary = Command::new(se)
            .args([
                "summary",
                "--model",
                model,
                "--in-channels",
                "1",
                "--input-size",
                "28",
            ])
            .output()
            .map_err(|e| e.to_string())?;
        let total = String::from_utf8_lossy(&summary.stdout)
            .lines()
            .find(|line| line.starts_with("total"))
            .map(|line| {
                line.split_whitespace()
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let mean = accuracies.iter().sum::<f64>() / accuracies.len() as f64;
        let spread = (accuracies.iter().map(|a| (a - mean).powi(2)).sum::<f64>()
            / (accuracies.len().max(2) - 1) as f64)
            .sqrt();
        let each: Vec<String> = accuracies.iter().map(|a| format!("{a:.2}")).collect();
        rows.push(format!(
            "| {model} | {} | {} | {throughput} | {mean:.2} ± {spread:.2} | {} |",
            total.get(1).cloned().unwrap_or_default(),
            total.get(2).cloned().unwrap_or_default(),
            each.join(", ")
        ));
        eprintln!("{}", rows.last().unwrap());
    }
    println!(
        "{seeds} seeds, {epochs} epoch(s) on {limit} training digits (spread evenly over the classes), test on all 2,000; \
         MNIST input 1x28x28, 10 classes; throughput: flex, batch 32, images/s\n"
    );
    println!("| model | params | GMACs | infer b32 img/s | test top-1 % (mean ± sd) | per seed |");
    println!("|---|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
    Ok(())
}
