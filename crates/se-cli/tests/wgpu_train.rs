//! `se train` on the wgpu backend (run by `cargo xtask test` with `--features wgpu` when a Vulkan
//! driver is installed; on a machine without a GPU, `SE_DEVICE=cpu` selects Mesa's lavapipe).
//! Software Vulkan is slow (seconds per step of SE-ResNet-20), so the run is short: two epochs
//! over 160 digits, in which the training loss must fall and the model beat chance.
#![cfg(feature = "wgpu")]

use std::process::Command;

#[test]
fn a_short_training_run_on_wgpu_learns() {
    let dir = tempfile::tempdir().unwrap();
    let args = "train --epochs 2 --train-limit 160 --test-limit 100 --batch-size 16 --lr 0.05 \
                --warmup-epochs 0 --workers 1 --run-dir run";
    let output = Command::new(env!("CARGO_BIN_EXE_se"))
        .args(args.split_whitespace())
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("(backend wgpu)"), "{stdout}");
    let summary = std::fs::read_to_string(dir.path().join("run/summary.json")).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    let top1 = summary["test"]["top1"].as_f64().unwrap();
    assert!(
        top1 > 0.15,
        "test top-1 {top1} after two short epochs (chance: 10%)\n{stdout}"
    );
    let metrics = std::fs::read_to_string(dir.path().join("run/metrics.csv")).unwrap();
    let losses: Vec<f64> = metrics
        .lines()
        .skip(1)
        .map(|row| row.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(losses.len(), 2, "{metrics}");
    assert!(
        losses[1] < losses[0],
        "training loss did not fall:\n{metrics}"
    );
}
