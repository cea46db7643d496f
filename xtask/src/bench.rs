//! `cargo xtask [--backend B] bench [--vs-pytorch] [--vs-onnxruntime]`: throughput (images per
//! second) of inference and training steps for a set of models and batch sizes, one `se bench
//! --json` process per measurement (so each has its own peak memory); with `--vs-pytorch`, the
//! same measurement in PyTorch eager (and, for inference, channels-last with
//! `inference_mode`), with `--vs-onnxruntime` in ONNX Runtime (`bench/pytorch/bench.py`), each
//! right after the Burn one, for several rounds, so that the machine's drift hits every side
//! alike. Every row also gets its GFLOP/s and the fraction of the machine's large-GEMM rate
//! measured in the same run. Writes `results.md` and `results.json` (with the machine and the
//! command) into one folder under `bench-results/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

pub const USAGE: &str = "usage: cargo xtask [--backend B] bench [--vs-pytorch] [--vs-onnxruntime] \
[--models a,b,..] [--repeat N] [--min-seconds S] [--rounds N] [--overhead-seconds S] [--python PATH] \
[--out DIR]

  --vs-pytorch      PyTorch eager (train and infer) and channels-last + inference_mode (infer)
  --vs-onnxruntime  ONNX Runtime, the PyTorch model exported to ONNX, all graph optimisations,
                    one thread per core (infer)

  --models    registered models (default: se_resnet20, resnet20, se_resnet56, se_resnet50,
              resnet50); CIFAR ones at 32x32 (inference b1 and b32, training b128), ImageNet
              ones at 224x224 (inference b1 and b8, training b16)
  --modes     infer, train or both (default: infer,train)
  --repeat    timed repetitions per measurement, after one warm-up (median; default 5)
  --min-seconds  and more until they add up to S seconds (default 1: the steady state of
              fast steps, not their first few runs)
  --rounds    measurements per row, alternating Burn and PyTorch (median; default 3 with
              --vs-pytorch, else 1)
  --overhead-seconds  SE's inference overhead: each SE model and its plain twin (both listed)
              timed pass by pass in turn in one `se bench --alternate` process for at least
              S seconds and 20 rounds (default 10; 0 skips it)
  --python    the python with torch, timm and onnxruntime (default: $SE_TORCH_PYTHON, else the
              venv made by bench/pytorch/setup.sh)
  --out       result folder (default: bench-results/<UTC time>)";

/// One measurement to make: a model, an input side, a mode (`infer`/`train`) and a batch.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Row {
    model: String,
    input_size: usize,
    mode: &'static str,
    batch: usize,
}

/// He et al.'s CIFAR depths: such models run at 32x32, all others at 224x224.
fn is_cifar(model: &str) -> bool {
    let depth: String = model
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect();
    let depth: String = depth.chars().rev().collect();
    ["20", "32", "44", "56", "110", "164"].contains(&depth.as_str())
}

fn plan(models: &[String]) -> Vec<Row> {
    let mut rows = Vec::new();
    for model in models {
        let (size, infer, train) = if is_cifar(model) {
            (32, [1, 32], 128)
        } else {
            (224, [1, 8], 16)
        };
        let row = |mode, batch| Row {
            model: model.clone(),
            input_size: size,
            mode,
            batch,
        };
        rows.extend(infer.map(|batch| row("infer", batch)));
        rows.push(row("train", train));
    }
    rows
}

struct Options {
    vs_pytorch: bool,
    vs_onnxruntime: bool,
    models: Vec<String>,
    modes: Vec<String>,
    repeat: usize,
    min_seconds: f64,
    rounds: usize,
    overhead_seconds: f64,
    python: Option<PathBuf>,
    out: Option<PathBuf>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        vs_pytorch: false,
        vs_onnxruntime: false,
        models: [
            "se_resnet20",
            "resnet20",
            "se_resnet56",
            "se_resnet50",
            "resnet50",
        ]
        .map(String::from)
        .to_vec(),
        modes: vec!["infer".into(), "train".into()],
        repeat: 5,
        min_seconds: 1.0,
        rounds: 0,
        overhead_seconds: 10.0,
        python: std::env::var_os("SE_TORCH_PYTHON").map(PathBuf::from),
        out: None,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .cloned()
                .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
        };
        let number = |text: String| {
            text.parse::<usize>()
                .map_err(|_| format!("{arg}: not a number: {text}"))
        };
        let seconds = |text: String| {
            text.parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .ok_or_else(|| format!("{arg}: not a number of seconds: {text}"))
        };
        match arg.as_str() {
            "--vs-pytorch" => options.vs_pytorch = true,
            "--vs-onnxruntime" => options.vs_onnxruntime = true,
            "--models" => options.models = value()?.split(',').map(String::from).collect(),
            "--modes" => options.modes = value()?.split(',').map(String::from).collect(),
            "--repeat" => options.repeat = number(value()?)?,
            "--min-seconds" => options.min_seconds = seconds(value()?)?,
            "--rounds" => options.rounds = number(value()?)?,
            "--overhead-seconds" => options.overhead_seconds = seconds(value()?)?,
            "--python" => options.python = Some(value()?.into()),
            "--out" => options.out = Some(value()?.into()),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    if options.rounds == 0 {
        options.rounds = if options.peers().is_empty() { 1 } else { 3 };
    }
    Ok(options)
}

impl Options {
    /// The peers measured beside Burn: `bench.py --runtime` names, with the modes each runs.
    fn peers(&self) -> Vec<(&'static str, &'static [&'static str])> {
        let mut peers: Vec<(&'static str, &'static [&'static str])> = Vec::new();
        if self.vs_pytorch {
            peers.push(("eager", &["infer", "train"]));
            peers.push(("channels_last", &["infer"]));
        }
        if self.vs_onnxruntime {
            peers.push(("onnxruntime", &["infer"]));
        }
        peers
    }
}

/// Runs a measuring command and reads its JSON line(s).
fn measure(mut command: Command) -> Result<Value, String> {
    let output = command
        .output()
        .map_err(|e| format!("could not run {command:?}: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "{command:?} failed:\n{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str::<Value>(line).ok())
        .ok_or_else(|| format!("{command:?} printed no JSON:\n{stdout}"))
}

fn burn_command(se: &Path, row: &Row, options: &Options) -> Command {
    let (infer, train) = match row.mode {
        "infer" => (row.batch, 0),
        _ => (0, row.batch),
    };
    let mut command = Command::new(se);
    command
        .args(["bench", "--json", "--model", &row.model])
        .args([
            format!("--batch={infer}"),
            format!("--train-batch={train}"),
            format!("--input-size={}", row.input_size),
            format!("--repeat={}", options.repeat),
            format!("--min-seconds={}", options.min_seconds),
        ]);
    command
}

fn peer_command(
    python: &Path,
    script: &Path,
    row: &Row,
    options: &Options,
    runtime: &str,
) -> Command {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut command = Command::new(python);
    command
        .arg(script)
        .arg(format!("--runtime={runtime}"))
        .args([
            format!("--model={}", row.model),
            format!("--mode={}", row.mode),
            format!("--batch={}", row.batch),
            format!("--input-size={}", row.input_size),
            format!("--repeat={}", options.repeat),
            format!("--min-seconds={}", options.min_seconds),
            format!("--threads={threads}"),
        ]);
    command
}

/// Each SE row with its plain twin's row (the model without `se_`, same mode and batch), where
/// both are measured.
fn se_twins(rows: &[Row]) -> Vec<(Row, Row)> {
    rows.iter()
        .filter_map(|row| {
            let twin = Row {
                model: row.model.strip_prefix("se_")?.to_string(),
                ..row.clone()
            };
            rows.contains(&twin).then(|| (row.clone(), twin))
        })
        .collect()
}

/// `se bench --alternate` of a plain model and its SE twin: their inference timed pass by pass
/// in turn, the SE model's line (the last) carrying its time over the plain one's.
fn alternated_command(se: &Path, se_row: &Row, plain: &Row, options: &Options) -> Command {
    let mut command = Command::new(se);
    command
        .args([
            "bench",
            "--json",
            "--alternate",
            "--model",
            &plain.model,
            &se_row.model,
        ])
        .args([
            format!("--batch={}", se_row.batch),
            format!("--input-size={}", se_row.input_size),
            "--repeat=20".to_string(),
            format!("--min-seconds={}", options.overhead_seconds),
        ]);
    command
}

/// The python of the PyTorch venv: `--python`, `$SE_TORCH_PYTHON`, or `bench/pytorch/setup.sh`.
fn python(options: &Options, root: &Path) -> Result<PathBuf, String> {
    if let Some(python) = &options.python {
        return Ok(python.clone());
    }
    eprintln!(
        "setting up the PyTorch venv (bench/pytorch/setup.sh; the first time downloads torch)"
    );
    let output = Command::new(root.join("bench/pytorch/setup.sh"))
        .output()
        .map_err(|e| format!("could not run bench/pytorch/setup.sh: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "bench/pytorch/setup.sh failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    Ok(PathBuf::from(
        stdout.lines().last().unwrap_or_default().trim(),
    ))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn shell_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The CPU model, core count, memory and OS of this machine.
fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split(':').nth(1))
        .unwrap_or("unknown")
        .trim()
        .to_string();
    let avx512 = cpuinfo.contains("avx512f");
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_gib = meminfo
        .lines()
        .find(|line| line.starts_with("MemTotal"))
        .and_then(|line| line.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map(|kib| (kib / 1024.0 / 1024.0 * 10.0).round() / 10.0);
    json!({
        "cpu": cpu,
        "avx512": avx512,
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "memory_gib": memory_gib,
        "os": shell_output("uname", &["-sr"]),
    })
}

/// The large-GEMM rate of this machine (GFLOP/s), measured by `bench.py --peak`.
fn gemm_peak(python: &Path, script: &Path) -> Result<f64, String> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut command = Command::new(python);
    command
        .arg(script)
        .args([
            "--peak",
            "--model=-",
            "--mode=infer",
            "--batch=1",
            "--input-size=1",
        ])
        .arg(format!("--threads={threads}"));
    measure(command)?["gflops"]
        .as_f64()
        .ok_or_else(|| "bench.py --peak printed no gflops".to_string())
}

/// Floating-point operations per image: a multiply-add is two; a training step (forward, the
/// two backward products, update) about three forward passes.
fn flops_per_image(macs: f64, mode: &str) -> f64 {
    match mode {
        "train" => 6.0 * macs,
        _ => 2.0 * macs,
    }
}

pub fn run(se: &Path, backend: &str, args: &[String]) -> Result<(), String> {
    let options = parse(args)?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let peers = options.peers();
    let python = if peers.is_empty() {
        None
    } else {
        Some(python(&options, &root)?)
    };
    let script = root.join("bench/pytorch/bench.py");
    let rows: Vec<Row> = plan(&options.models)
        .into_iter()
        .filter(|row| options.modes.iter().any(|mode| mode == row.mode))
        .collect();

    // The machine's large-GEMM rate, before and after the measurements (the better of the two).
    let mut peaks = Vec::new();
    if let Some(python) = &python {
        peaks.push(gemm_peak(python, &script)?);
    }
    // (row, framework) -> one JSON object per round.
    let mut raw: BTreeMap<(Row, String), Vec<Value>> = BTreeMap::new();
    for round in 1..=options.rounds {
        for row in &rows {
            eprintln!(
                "round {round}/{}: {} {} b{} ({}x{})",
                options.rounds, row.model, row.mode, row.batch, row.input_size, row.input_size
            );
            let burn = measure(burn_command(se, row, &options))?;
            raw.entry((row.clone(), "burn".into()))
                .or_default()
                .push(burn);
            for (runtime, modes) in &peers {
                if !modes.contains(&row.mode) {
                    continue;
                }
                let python = python.as_ref().expect("a python for the peers");
                let peer = measure(peer_command(python, &script, row, &options, runtime))?;
                let framework = peer["framework"].as_str().unwrap_or(runtime).to_string();
                raw.entry((row.clone(), framework)).or_default().push(peer);
            }
        }
    }
    // SE's inference overhead read pass by pass: rows measured minutes apart differ by more
    // than the few percent it is on this kind of machine.
    let mut paired: BTreeMap<Row, Value> = BTreeMap::new();
    if options.overhead_seconds > 0.0 {
        for (se_row, plain) in se_twins(&rows) {
            if se_row.mode != "infer" {
                continue;
            }
            eprintln!(
                "SE overhead: {} and {} b{}, pass by pass in turn",
                se_row.model, plain.model, se_row.batch
            );
            let line = measure(alternated_command(se, &se_row, &plain, &options))?;
            paired.insert(se_row, line);
        }
    }
    if let Some(python) = &python {
        peaks.push(gemm_peak(python, &script)?);
    }
    let peak = peaks.iter().copied().fold(None, |best: Option<f64>, p| {
        Some(best.map_or(p, |b| b.max(p)))
    });

    let summary = |row: &Row, framework: &str| -> Option<(f64, f64, f64, Value)> {
        let runs = raw.get(&(row.clone(), framework.to_string()))?;
        let mut rates: Vec<f64> = runs
            .iter()
            .filter_map(|r| r["images_per_second"].as_f64())
            .collect();
        let peak = runs
            .iter()
            .filter_map(|r| r["peak_rss_mb"].as_f64())
            .fold(0.0, f64::max);
        let params = runs[0]["params"].as_f64().unwrap_or(0.0);
        Some((median(&mut rates), peak, params, runs[0]["backend"].clone()))
    };
    let frameworks: Vec<String> = std::iter::once("burn".to_string())
        .chain(raw.keys().map(|(_, f)| f.clone()).filter(|f| f != "burn"))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let order = |f: &str| {
        ["burn", "pytorch", "pytorch-channels-last", "onnxruntime"]
            .iter()
            .position(|x| *x == f)
            .unwrap_or(9)
    };
    let mut frameworks = frameworks;
    frameworks.sort_by_key(|f| order(f));

    let mut table = String::from(
        "| model | input | mode | batch | runtime | img/s | GFLOP/s | of GEMM peak | Burn / this | peak MiB | params |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut results = Vec::new();
    let mut backends = BTreeMap::new();
    for row in &rows {
        let Some((burn, ..)) = summary(row, "burn") else {
            continue;
        };
        let macs = raw[&(row.clone(), "burn".to_string())][0]["macs_per_image"]
            .as_f64()
            .unwrap_or(f64::NAN);
        for framework in &frameworks {
            let Some((rate, rss, params, backend_name)) = summary(row, framework) else {
                continue;
            };
            backends.insert(framework.clone(), backend_name);
            let gflops = rate * flops_per_image(macs, row.mode) / 1e9;
            let of_peak = peak.map(|p| gflops / p);
            let versus = (framework != "burn").then(|| burn / rate);
            table += &format!(
                "| {} | {s}x{s} | {} | {} | {framework} | {rate:.1} | {gflops:.1} | {} | {} | {rss:.0} | {:.2}M |\n",
                row.model,
                row.mode,
                row.batch,
                of_peak.map_or("-".into(), |f| format!("{:.0}%", 100.0 * f)),
                versus.map_or("-".into(), |v| format!("{v:.2}")),
                params / 1e6,
                s = row.input_size,
            );
            results.push(json!({
                "model": row.model, "input_size": row.input_size, "mode": row.mode,
                "batch": row.batch, "framework": framework, "images_per_second": rate,
                "gflops": gflops, "fraction_of_gemm_peak": of_peak, "burn_over_this": versus,
                "peak_rss_mb": rss, "params": params, "macs_per_image": macs,
            }));
        }
    }

    // SE overhead: each SE model against its plain twin, paired pass by pass where it was.
    let mut overhead = String::from(
        "| SE model vs plain | mode | batch | Burn time ratio | SE share of Burn time | measured | PyTorch time ratio |\n\
         |---|---|---|---|---|---|---|\n",
    );
    let mut overhead_rows = Vec::new();
    for (row, twin) in se_twins(&rows) {
        let paired_ratio = paired
            .get(&row)
            .and_then(|line| line["time_ratio"].as_f64());
        let (ratio, how) = match paired_ratio {
            Some(ratio) => (ratio, "pass by pass in turn"),
            None => {
                let (Some(se), Some(plain)) = (summary(&row, "burn"), summary(&twin, "burn"))
                else {
                    continue;
                };
                (plain.0 / se.0, "separate runs")
            }
        };
        let torch_ratio = summary(&row, "pytorch")
            .zip(summary(&twin, "pytorch"))
            .map(|(se, plain)| plain.0 / se.0);
        overhead += &format!(
            "| {} vs {} | {} | {} | ×{ratio:.3} | {:.1}% | {how} | {} |\n",
            row.model,
            twin.model,
            row.mode,
            row.batch,
            100.0 * (1.0 - 1.0 / ratio),
            torch_ratio.map_or("-".into(), |r| format!("×{r:.3}")),
        );
        overhead_rows.push(json!({
            "model": row.model, "plain": twin.model, "mode": row.mode, "batch": row.batch,
            "burn_time_ratio": ratio, "measured": how, "pytorch_time_ratio": torch_ratio,
        }));
    }

    let command = format!("cargo xtask --backend {backend} bench {}", args.join(" "));
    let machine = machine();
    let stamp = shell_output("date", &["-u", "+%Y%m%d-%H%M%S"]);
    let commit = shell_output("git", &["rev-parse", "--short", "HEAD"]);
    let mut markdown = format!(
        "# Benchmark {stamp}\n\n- command: `{command}`\n- machine: {} ({} cores{}), {} GiB, {}\n\
         - Burn: backend {backend}, release build, commit {commit}\n- peers: {}\n\
         - large-GEMM peak: {}\n\
         - {} timed repetitions per measurement, or more until {} s (median), median of {} round(s); GFLOP/s count a \
         multiply-add as two operations and a training step as three forward passes\n\n{table}",
        machine["cpu"].as_str().unwrap_or_default(),
        machine["cores"],
        if machine["avx512"] == true {
            ", AVX-512"
        } else {
            ""
        },
        machine["memory_gib"],
        machine["os"].as_str().unwrap_or_default(),
        peer_names(&backends),
        peak.map_or("not measured (needs the peers' venv)".into(), |p| format!(
            "{p:.1} GFLOP/s (float32 2048x2048 matrix product, every core)"
        )),
        options.repeat,
        options.min_seconds,
        options.rounds,
    );
    if !overhead_rows.is_empty() {
        let paired = match options.overhead_seconds > 0.0 {
            true => format!(
                "in inference the two timed pass by pass in turn in one `se bench --alternate` \
                 process, at least 20 rounds and {} s, median of the rounds' ratios",
                options.overhead_seconds
            ),
            false => "each from its own rows' medians".to_string(),
        };
        markdown += &format!("\nSE overhead (time over the plain twin's; {paired}):\n\n{overhead}");
    }
    let out = options
        .out
        .clone()
        .unwrap_or_else(|| root.join("bench-results").join(&stamp));
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let report = json!({
        "command": command, "machine": machine, "backend": backend, "commit": commit,
        "peers": backends, "gemm_peak_gflops": peak, "repeat": options.repeat,
        "min_seconds": options.min_seconds,
        "rounds": options.rounds,
        "overhead_seconds": options.overhead_seconds,
        "results": results,
        "se_overhead": overhead_rows,
        "se_overhead_raw": paired.values().collect::<Vec<_>>(),
        "raw": raw.iter().map(|((_, _), runs)| runs.clone()).collect::<Vec<_>>(),
    });
    for (name, text) in [
        ("results.md", markdown.clone()),
        (
            "results.json",
            serde_json::to_string_pretty(&report).unwrap(),
        ),
    ] {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    println!("{markdown}\nwritten to {}", out.display());
    Ok(())
}

/// The peers' versions and settings, for the report's header.
fn peer_names(backends: &BTreeMap<String, Value>) -> String {
    let peers: Vec<String> = backends
        .iter()
        .filter(|(framework, _)| *framework != "burn")
        .map(|(framework, backend)| format!("{framework} ({})", backend.as_str().unwrap_or("?")))
        .collect();
    match peers.is_empty() {
        true => "not measured".into(),
        false => peers.join("; "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cifar_models_are_told_apart_by_depth() {
        assert!(is_cifar("se_resnet20") && is_cifar("resnet110") && is_cifar("cbam_resnet56"));
        assert!(
            !is_cifar("se_resnet50") && !is_cifar("resnet152") && !is_cifar("se_resnext50_32x4d")
        );
        let rows = plan(&["se_resnet20".into(), "resnet50".into()]);
        let described: Vec<_> = rows
            .iter()
            .map(|r| (r.model.as_str(), r.input_size, r.mode, r.batch))
            .collect();
        assert_eq!(
            described,
            [
                ("se_resnet20", 32, "infer", 1),
                ("se_resnet20", 32, "infer", 32),
                ("se_resnet20", 32, "train", 128),
                ("resnet50", 224, "infer", 1),
                ("resnet50", 224, "infer", 8),
                ("resnet50", 224, "train", 16),
            ]
        );
    }

    #[test]
    fn se_rows_pair_with_their_plain_twins_only_where_both_are_measured() {
        let rows = plan(&[
            "resnet20".into(),
            "se_resnet20".into(),
            "se_resnet50".into(),
        ]);
        let twins = se_twins(&rows);
        let pairs: Vec<_> = twins
            .iter()
            .map(|(se, plain)| (se.model.as_str(), plain.model.as_str(), se.mode, se.batch))
            .collect();
        assert_eq!(
            pairs,
            [
                ("se_resnet20", "resnet20", "infer", 1),
                ("se_resnet20", "resnet20", "infer", 32),
                ("se_resnet20", "resnet20", "train", 128),
            ]
        );
        let options = parse(&["--overhead-seconds".into(), "4".into()]).unwrap();
        let (se_row, plain) = &twins[1];
        let command = alternated_command(Path::new("se"), se_row, plain, &options);
        let args: Vec<_> = command.get_args().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            args,
            [
                "bench",
                "--json",
                "--alternate",
                "--model",
                "resnet20",
                "se_resnet20",
                "--batch=32",
                "--input-size=32",
                "--repeat=20",
                "--min-seconds=4",
            ]
        );
        assert!(parse(&["--overhead-seconds".into(), "-1".into()]).is_err());
    }
}
