//! `cargo xtask reproduce`: the paper's ablations as experiments. Each arm of an experiment is
//! the same CIFAR-style ResNet-20 recipe with one thing changed (SE or not, reduction ratio,
//! squeeze, gate, stages, placement, attention module), trained with the same seeds and budget by
//! the release `se`; each (arm, seed) is a run folder, so an interrupted experiment resumes
//! where it stopped. The table (mean ± std of top-1 error, parameters, GMACs, training
//! throughput, and the paper's number for the same arm) is printed, written beside the runs and
//! into docs/reproduction.md.

use std::path::{Path, PathBuf};
use std::process::Command;

pub const USAGE: &str = "usage: cargo xtask [--backend B] reproduce --experiment NAME [options]

experiments (arms; paper table):
  se-vs-plain   ResNet-20, SE-ResNet-20                          (Tables 2 and 4)
  ratio         SE reduction r = 2, 4, 8, 16, 32                 (Table 10)
  squeeze       global average, global max, no squeeze           (Tables 11 and 16)
  excitation    sigmoid, tanh, ReLU gates                        (Table 12)
  stages        no SE, SE in stage 1, 2 or 3 alone, SE everywhere (Table 13)
  placement     standard, SE-PRE, SE-POST, SE-Identity           (Table 14)
  attention     none, SE, ECA, sSE, scSE, CBAM                   (not in the paper)

options:
  --seeds N        seeds 1..N per arm (default 3)
  --epochs E       epochs per run (default 5, the default `se train` recipe)
  --dataset D      mnist (default: the embedded digits) or cifar10
  --data-dir DIR   the CIFAR-10 binary folder (with --dataset cifar10)
  --train-limit N  train on N images only (spread evenly over the set)
  --out DIR        run folders (default runs/reproduce/<experiment>/<dataset>-e<E>[-n<N>])
  --no-docs        do not write the table into docs/reproduction.md

A finished (arm, seed) is not run again; a half-finished one resumes from its checkpoint.";

/// One arm: a label, the model, the `se train` options that make it, and the paper's top-1
/// error for the same arm (ImageNet SE-ResNet-50 unless the experiment says otherwise).
struct Arm {
    label: &'static str,
    model: &'static str,
    options: &'static [&'static str],
    paper: Option<f64>,
}

const fn arm(
    label: &'static str,
    model: &'static str,
    options: &'static [&'static str],
    paper: Option<f64>,
) -> Arm {
    Arm {
        label,
        model,
        options,
        paper,
    }
}

/// An experiment: its arms and what the paper's column is.
struct Experiment {
    name: &'static str,
    arms: &'static [Arm],
    paper: &'static str,
}

const EXPERIMENTS: &[Experiment] = &[
    Experiment {
        name: "se-vs-plain",
        arms: &[
            arm("ResNet-20", "resnet20", &[], Some(24.80)),
            arm("SE-ResNet-20", "se_resnet20", &[], Some(23.29)),
        ],
        paper: "ImageNet top-1 error of ResNet-50 / SE-ResNet-50 (Table 2, re-implementation); \
                on CIFAR-10 the paper has ResNet-110 6.37 / SE 5.21 and ResNet-164 5.46 / SE 4.39 (Table 4)",
    },
    Experiment {
        name: "ratio",
        arms: &[
            arm("r = 2", "se_resnet20", &["--reduction", "2"], Some(22.29)),
            arm("r = 4", "se_resnet20", &["--reduction", "4"], Some(22.25)),
            arm("r = 8", "se_resnet20", &["--reduction", "8"], Some(22.26)),
            arm("r = 16", "se_resnet20", &["--reduction", "16"], Some(22.28)),
            arm("r = 32", "se_resnet20", &["--reduction", "32"], Some(22.72)),
        ],
        paper: "ImageNet top-1 error of SE-ResNet-50 with reduction r (Table 10)",
    },
    Experiment {
        name: "squeeze",
        arms: &[
            arm("avg", "se_resnet20", &["--squeeze", "avg"], Some(22.28)),
            arm("max", "se_resnet20", &["--squeeze", "max"], Some(22.57)),
            arm(
                "none (NoSqueeze)",
                "se_resnet20",
                &["--squeeze", "none"],
                Some(22.93),
            ),
        ],
        paper: "ImageNet top-1 error of SE-ResNet-50 with each squeeze (Tables 11 and 16)",
    },
    Experiment {
        name: "excitation",
        arms: &[
            arm(
                "sigmoid",
                "se_resnet20",
                &["--gate", "sigmoid"],
                Some(22.28),
            ),
            arm("tanh", "se_resnet20", &["--gate", "tanh"], Some(23.00)),
            arm("ReLU", "se_resnet20", &["--gate", "relu"], Some(23.47)),
        ],
        paper: "ImageNet top-1 error of SE-ResNet-50 with each excitation gate (Table 12)",
    },
    Experiment {
        name: "stages",
        arms: &[
            arm("no SE", "resnet20", &[], Some(23.30)),
            arm(
                "SE in stage 1",
                "se_resnet20",
                &["--se-stages", "1"],
                Some(23.03),
            ),
            arm(
                "SE in stage 2",
                "se_resnet20",
                &["--se-stages", "2"],
                Some(23.04),
            ),
            arm(
                "SE in stage 3",
                "se_resnet20",
                &["--se-stages", "3"],
                Some(22.68),
            ),
            arm("SE everywhere", "se_resnet20", &[], Some(22.28)),
        ],
        paper: "ImageNet top-1 error of ResNet-50 with SE in one stage (Table 13; the paper's \
                stages 2, 3, 4 of four, here stages 1, 2, 3 of three)",
    },
    Experiment {
        name: "placement",
        arms: &[
            arm(
                "standard",
                "se_resnet20",
                &["--placement", "standard"],
                Some(22.28),
            ),
            arm(
                "SE-PRE",
                "se_resnet20",
                &["--placement", "pre"],
                Some(22.23),
            ),
            arm(
                "SE-POST",
                "se_resnet20",
                &["--placement", "post"],
                Some(22.78),
            ),
            arm(
                "SE-Identity",
                "se_resnet20",
                &["--placement", "identity"],
                Some(22.20),
            ),
        ],
        paper: "ImageNet top-1 error of SE-ResNet-50 with each placement (Table 14)",
    },
    Experiment {
        name: "attention",
        arms: &[
            arm("none", "resnet20", &[], None),
            arm("SE", "se_resnet20", &[], None),
            arm("ECA", "eca_resnet20", &[], None),
            arm("sSE", "sse_resnet20", &[], None),
            arm("scSE", "scse_resnet20", &[], None),
            arm("CBAM", "cbam_resnet20", &[], None),
        ],
        paper: "not in the paper",
    },
];

/// What `--dataset` and `--data-dir` choose.
struct Data {
    name: String,
    options: Vec<String>,
}

fn text_option(args: &[String], name: &str) -> Result<Option<String>, String> {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .cloned()
            .map(Some)
            .ok_or_else(|| format!("{name} needs a value")),
        None => Ok(None),
    }
}

pub fn run(se: &Path, backend: &str, args: &[String]) -> Result<(), String> {
    let known = [
        "--experiment",
        "--seeds",
        "--epochs",
        "--dataset",
        "--data-dir",
        "--train-limit",
        "--out",
    ];
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--no-docs" => {}
            a if known.contains(&a) => {
                rest.next();
            }
            other => return Err(format!("reproduce: unknown option `{other}`\n\n{USAGE}")),
        }
    }
    let name = text_option(args, "--experiment")?
        .ok_or_else(|| format!("reproduce needs --experiment\n\n{USAGE}"))?;
    let experiment = EXPERIMENTS.iter().find(|e| e.name == name).ok_or_else(|| {
        let names: Vec<&str> = EXPERIMENTS.iter().map(|e| e.name).collect();
        format!(
            "unknown experiment `{name}`; choose one of: {}",
            names.join(", ")
        )
    })?;
    let seeds = crate::number_option(args, "--seeds", 3)?;
    let epochs = crate::number_option(args, "--epochs", 5)?;
    if seeds == 0 || epochs == 0 {
        return Err("--seeds and --epochs must be at least 1".into());
    }
    let limit = text_option(args, "--train-limit")?;
    let data = match text_option(args, "--dataset")?.as_deref() {
        None | Some("mnist") => Data {
            name: "mnist".into(),
            options: vec![],
        },
        Some("cifar10") => {
            let dir = text_option(args, "--data-dir")?
                .ok_or("--dataset cifar10 needs --data-dir (the CIFAR-10 binary folder)")?;
            Data {
                name: "cifar10".into(),
                options: vec![
                    "--dataset".into(),
                    "cifar10".into(),
                    "--data-dir".into(),
                    dir,
                ],
            }
        }
        Some(other) => return Err(format!("--dataset {other}: mnist or cifar10")),
    };
    let budget = match &limit {
        Some(n) => format!("{}-e{epochs}-n{n}", data.name),
        None => format!("{}-e{epochs}", data.name),
    };
    let out = match text_option(args, "--out")? {
        Some(dir) => PathBuf::from(dir),
        None => Path::new("runs/reproduce")
            .join(experiment.name)
            .join(&budget),
    };

    let mut rows = Vec::new();
    for arm in experiment.arms {
        let mut results = Vec::new();
        for seed in 1..=seeds {
            let run_dir = out.join(format!("{}-seed{seed}", slug(arm.label)));
            results.push(train_arm(se, arm, seed, epochs, &limit, &data, &run_dir)?);
        }
        let row = table_row(arm, &results);
        eprintln!("{row}");
        rows.push(row);
    }
    let table = table(
        experiment, &rows, seeds, epochs, &limit, &data, backend, args,
    );
    println!("{table}");
    write(&out.join("table.md"), &table)?;
    if !args.iter().any(|a| a == "--no-docs") {
        let docs = Path::new("docs/reproduction.md");
        let key = format!("{}:{budget}", experiment.name);
        write(
            docs,
            &with_section(
                &std::fs::read_to_string(docs).unwrap_or_default(),
                &key,
                &table,
            ),
        )?;
        eprintln!(
            "xtask: the table is in {} (section `{key}`)",
            docs.display()
        );
    }
    Ok(())
}

/// What one finished run reports.
struct RunResult {
    top1_error: f64,
    parameters: Option<u64>,
    macs: Option<u64>,
    images_per_second: Option<f64>,
}

/// Whether `dir` holds a checkpoint to resume from, by `se train --resume`'s rule
/// (`se_train::RunFolder::last_checkpoint`: a `model-<epoch>.mpk` file). The folder is made when
/// training starts, its files when the first epoch ends.
fn has_checkpoint(dir: &Path) -> bool {
    let is_checkpoint = |name: &str| {
        name.strip_prefix("model-")
            .and_then(|rest| rest.strip_suffix(".mpk"))
            .is_some_and(|epoch| epoch.parse::<usize>().is_ok())
    };
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .filter_map(Result::ok)
            .any(|entry| entry.file_name().to_str().is_some_and(is_checkpoint))
    })
}

/// Trains one (arm, seed), resuming a half-finished run and reusing a finished one.
fn train_arm(
    se: &Path,
    arm: &Arm,
    seed: usize,
    epochs: usize,
    limit: &Option<String>,
    data: &Data,
    run_dir: &Path,
) -> Result<RunResult, String> {
    let summary = run_dir.join("summary.json");
    if !summary.is_file() {
        let mut command = Command::new(se);
        command
            .arg("train")
            .args(["--run-dir", run_dir.to_str().unwrap()]);
        if has_checkpoint(&run_dir.join("checkpoint")) {
            eprintln!("xtask: resuming {}", run_dir.display());
            command.arg("--resume");
        } else {
            // A folder without a checkpoint holds nothing worth keeping (a run killed before
            // its first epoch ended, whose checkpoint folder may exist but be empty).
            let _ = std::fs::remove_dir_all(run_dir);
            command
                .args(["--model", arm.model, "--seed", &seed.to_string()])
                .args(arm.options)
                .args(&data.options);
            if let Some(n) = limit {
                command.args(["--train-limit", n]);
            }
        }
        command.args(["--epochs", &epochs.to_string()]);
        eprintln!("xtask: {} seed {seed} → {}", arm.label, run_dir.display());
        let status = command
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(|e| format!("cannot run {}: {e}", se.display()))?;
        if !status.success() {
            return Err(format!("training {} (seed {seed}) failed", arm.label));
        }
    }
    let text =
        std::fs::read_to_string(&summary).map_err(|e| format!("{}: {e}", summary.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", summary.display()))?;
    let top1 = value["test"]["top1"]
        .as_f64()
        .ok_or_else(|| format!("{}: no test.top1", summary.display()))?;
    Ok(RunResult {
        top1_error: 100.0 * (1.0 - top1),
        parameters: value["parameters"].as_u64(),
        macs: value["macs"].as_u64(),
        images_per_second: value["train_images_per_second"].as_f64(),
    })
}

/// Lower-case letters and digits, the rest as `-`: a folder name for an arm.
fn slug(label: &str) -> String {
    let mut slug = String::new();
    for c in label.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    slug.trim_matches('-').to_string()
}

/// Mean and sample standard deviation.
fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

fn table_row(arm: &Arm, results: &[RunResult]) -> String {
    let errors: Vec<f64> = results.iter().map(|r| r.top1_error).collect();
    let (mean, std) = mean_std(&errors);
    let speeds: Vec<f64> = results.iter().filter_map(|r| r.images_per_second).collect();
    let speed = match speeds.len() {
        0 => "".to_string(),
        _ => format!("{:.0}", mean_std(&speeds).0),
    };
    let first = &results[0];
    let each: Vec<String> = errors.iter().map(|e| format!("{e:.2}")).collect();
    format!(
        "| {} | {mean:.2} ± {std:.2} | {} | {} | {} | {speed} | {} |",
        arm.label,
        each.join(", "),
        first.parameters.map_or(String::new(), |p| p.to_string()),
        first
            .macs
            .map_or(String::new(), |m| format!("{:.4}", m as f64 / 1e9)),
        arm.paper.map_or("—".to_string(), |p| format!("{p:.2}")),
    )
}

#[allow(clippy::too_many_arguments)]
fn table(
    experiment: &Experiment,
    rows: &[String],
    seeds: usize,
    epochs: usize,
    limit: &Option<String>,
    data: &Data,
    backend: &str,
    args: &[String],
) -> String {
    let data_name = match data.name.as_str() {
        "mnist" => "the embedded MNIST digits (8,000 train, 2,000 test)",
        _ => "CIFAR-10 (50,000 train, 10,000 test)",
    };
    let limit = limit
        .as_ref()
        .map_or(String::new(), |n| format!(", training on {n} images"));
    let mut out = format!(
        "### {}\n\n{data_name}{limit}; {epochs} epoch(s) of the default `se train` recipe per run, \
         seeds 1-{seeds}; `{backend}` backend on {}.\n\
         Command: `cargo xtask --backend {backend} reproduce {}`\n\n",
        experiment.name,
        machine(),
        args.join(" ")
    );
    out += &format!(
        "| arm | top-1 error % (mean ± std) | per seed | parameters | GMACs | train img/s | paper top-1 error % |\n\
         |---|---:|---|---:|---:|---:|---:|\n{}\n\nPaper column: {}.\n",
        rows.join("\n"),
        experiment.paper
    );
    out
}

/// The CPU model and its core count, from /proc/cpuinfo where there is one.
fn machine() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("an unknown CPU".to_string(), |m| m.trim().to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {cores} cores")
}

/// `document` with the section `key` (between its markers) replaced by `table`, or appended.
fn with_section(document: &str, key: &str, table: &str) -> String {
    let start = format!("<!-- reproduce:{key}:start -->");
    let end = format!("<!-- reproduce:{key}:end -->");
    let section = format!("{start}\n{}\n{end}", table.trim_end());
    match (document.find(&start), document.find(&end)) {
        (Some(a), Some(b)) if b > a => {
            format!("{}{section}{}", &document[..a], &document[b + end.len()..])
        }
        _ => format!("{}\n\n{section}\n", document.trim_end()),
    }
}

/// Writes `contents` to `path` atomically (temporary name, fsync, rename).
fn write(path: &Path, contents: &str) -> Result<(), String> {
    let error = |e: std::io::Error| format!("{}: {e}", path.display());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(error)?;
    }
    let temporary = path.with_extension("md.tmp");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&temporary).map_err(error)?;
        file.write_all(contents.as_bytes()).map_err(error)?;
        file.sync_all().map_err(error)?;
    }
    std::fs::rename(&temporary, path).map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_is_replaced_in_place_or_appended() {
        let doc = "# Title\n\nintro\n";
        let once = with_section(doc, "ratio:mnist-e1", "table one\n");
        assert_eq!(
            once,
            "# Title\n\nintro\n\n<!-- reproduce:ratio:mnist-e1:start -->\ntable one\n<!-- reproduce:ratio:mnist-e1:end -->\n"
        );
        let twice = with_section(&(once.clone() + "\nafter\n"), "ratio:mnist-e1", "table two");
        assert!(
            twice.contains("table two") && !twice.contains("table one"),
            "{twice}"
        );
        assert!(twice.ends_with("\nafter\n"), "{twice}");
        let other = with_section(&once, "placement:mnist-e1", "p");
        assert!(other.contains("table one") && other.contains("placement:mnist-e1:start"));
    }

    #[test]
    fn an_empty_checkpoint_folder_is_not_resumed() {
        let dir = std::env::temp_dir().join(format!("xtask-checkpoint-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(!has_checkpoint(&dir), "no folder");
        std::fs::create_dir_all(&dir).unwrap();
        assert!(!has_checkpoint(&dir), "a run killed in its first epoch");
        std::fs::write(dir.join("model-1.mpk.torn"), b"x").unwrap();
        assert!(!has_checkpoint(&dir), "a checkpoint set aside as torn");
        std::fs::write(dir.join("model-1.mpk"), b"x").unwrap();
        assert!(has_checkpoint(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn statistics_and_names() {
        let (mean, std) = mean_std(&[1.0, 2.0, 3.0]);
        assert_eq!((mean, std), (2.0, 1.0));
        assert_eq!(mean_std(&[4.0]), (4.0, 0.0));
        assert_eq!(slug("none (NoSqueeze)"), "none-nosqueeze");
        assert_eq!(slug("r = 16"), "r-16");
        for experiment in EXPERIMENTS {
            let mut slugs: Vec<String> = experiment.arms.iter().map(|a| slug(a.label)).collect();
            slugs.sort();
            slugs.dedup();
            assert_eq!(slugs.len(), experiment.arms.len(), "{}", experiment.name);
        }
    }
}
