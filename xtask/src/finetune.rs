//! `cargo xtask finetune-table`: the transfer-learning example of docs/finetune.md on the
//! embedded digits (no hub is reachable): pretrain SE-ResNet-20 on the digits 0-4, then train on
//! the digits 5-9 with 20, 50 and 200 images per class, once from those weights (new classifier)
//! and once from scratch, under the same budget; prints the markdown table.
//!
//! The digits are written as image folders (`<split>/<digit>/<i>.png`), so both arms go
//! through `se train --dataset folder` as a user's own images would.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const SIDE: usize = 28;

/// Reads a gzipped IDX file: its dimensions and bytes.
fn read_idx(path: &Path) -> Result<(Vec<usize>, Vec<u8>), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let rank = *bytes
        .get(3)
        .ok_or_else(|| format!("{}: empty", path.display()))? as usize;
    let header = 4 + 4 * rank;
    if bytes.len() < header {
        return Err(format!("{}: truncated header", path.display()));
    }
    let dims = (0..rank)
        .map(|d| u32::from_be_bytes(bytes[4 + 4 * d..8 + 4 * d].try_into().unwrap()) as usize)
        .collect();
    Ok((dims, bytes[header..].to_vec()))
}

/// The embedded digits of one split (`train` or `t10k`): `(label, pixels)`.
fn digits(split: &str) -> Result<Vec<(u8, Vec<u8>)>, String> {
    let dir = Path::new("datasets/mnist");
    let (_, images) = read_idx(&dir.join(format!("{split}-images-idx3-ubyte.gz")))?;
    let (_, labels) = read_idx(&dir.join(format!("{split}-labels-idx1-ubyte.gz")))?;
    Ok(labels
        .into_iter()
        .zip(images.chunks(SIDE * SIDE).map(<[u8]>::to_vec))
        .collect())
}

/// Writes `root/<split>/<digit>/<i>.png` for the digits in `classes`, at most `per_class` each.
fn write_folder(
    root: &Path,
    split: &str,
    images: &[(u8, Vec<u8>)],
    classes: std::ops::Range<u8>,
    per_class: usize,
) -> Result<(), String> {
    for digit in classes {
        let dir = root.join(split).join(digit.to_string());
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let chosen = images.iter().filter(|(label, _)| *label == digit);
        for (i, (_, pixels)) in chosen.take(per_class).enumerate() {
            let picture = image::GrayImage::from_raw(SIDE as u32, SIDE as u32, pixels.clone())
                .ok_or("a digit of the wrong size")?;
            let path = dir.join(format!("{i}.png"));
            picture
                .save(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(())
}

/// Trains with `args` into `run_dir`; returns (test top-1 %, wall seconds).
fn train(se: &Path, run_dir: &Path, args: &[&str]) -> Result<(f64, f64), String> {
    let started = Instant::now();
    let output = Command::new(se)
        .arg("train")
        .args(args)
        .args(["--run-dir", run_dir.to_str().unwrap(), "--workers", "1"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", se.display()))?;
    if !output.status.success() {
        return Err(format!(
            "se train {args:?} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let seconds = started.elapsed().as_secs_f64();
    let summary =
        std::fs::read_to_string(run_dir.join("summary.json")).map_err(|e| e.to_string())?;
    let summary: serde_json::Value = serde_json::from_str(&summary).map_err(|e| e.to_string())?;
    Ok((
        100.0 * summary["test"]["top1"].as_f64().unwrap_or(f64::NAN),
        seconds,
    ))
}

/// Options: `--pretrain-epochs N` (3), `--epochs N` (15, for each few-shot arm).
pub fn run(se: &Path, args: &[String]) -> Result<(), String> {
    let option = |name: &str, default: usize| crate::number_option(args, name, default);
    let (pretrain_epochs, epochs) = (option("--pretrain-epochs", 3)?, option("--epochs", 15)?);
    let out = PathBuf::from("target/finetune-table");
    let _ = std::fs::remove_dir_all(&out);
    let (train_digits, test_digits) = (digits("train")?, digits("t10k")?);

    let pretrain = out.join("digits-0-4");
    write_folder(&pretrain, "train", &train_digits, 0..5, usize::MAX)?;
    write_folder(&pretrain, "val", &test_digits, 0..5, usize::MAX)?;
    let common = [
        "--dataset",
        "folder",
        "--image-size",
        "28",
        "--model",
        "se_resnet20",
    ];
    let pretrain_run = out.join("pretrain");
    let pretrain_epochs = pretrain_epochs.to_string();
    let mut pretrain_args = common.to_vec();
    pretrain_args.extend(["--data-dir", pretrain.to_str().unwrap()]);
    pretrain_args.extend(["--epochs", &pretrain_epochs]);
    let (top1, seconds) = train(se, &pretrain_run, &pretrain_args)?;
    println!(
        "pretrained SE-ResNet-20 on the digits 0-4 ({pretrain_epochs} epochs): {top1:.2}% on \
         their test images, {seconds:.0} s\n"
    );

    let weights = pretrain_run.join("model.mpk");
    let epochs = epochs.to_string();
    println!(
        "| images per class (digits 5-9) | fine-tuned top-1 % | time s | from scratch top-1 % | time s |"
    );
    println!("|---|---|---|---|---|");
    for per_class in [20, 50, 200] {
        let data = out.join(format!("digits-5-9-{per_class}"));
        write_folder(&data, "train", &train_digits, 5..10, per_class)?;
        write_folder(&data, "val", &test_digits, 5..10, usize::MAX)?;
        let batch = (5 * per_class / 10).clamp(10, 64).to_string();
        let arm = |init: Option<&Path>, name: &str| {
            let mut arm_args: Vec<&str> = common.to_vec();
            arm_args.extend(["--data-dir", data.to_str().unwrap(), "--epochs", &epochs]);
            arm_args.extend(["--batch-size", &batch, "--warmup-epochs", "1"]);
            if let Some(init) = init {
                arm_args.extend(["--init", init.to_str().unwrap(), "--lr", "0.02"]);
            }
            train(se, &out.join(format!("{name}-{per_class}")), &arm_args)
        };
        let (tuned, tuned_s) = arm(Some(&weights), "finetune")?;
        let (scratch, scratch_s) = arm(None, "scratch")?;
        println!("| {per_class} | {tuned:.2} | {tuned_s:.0} | {scratch:.2} | {scratch_s:.0} |");
    }
    Ok(())
}
