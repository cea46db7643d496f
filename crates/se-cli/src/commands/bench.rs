//! `se bench`: images per second of models, inference and training step, on this binary's
//! backend. A markdown table by default; `--json` prints one line per measurement, the format
//! `cargo xtask bench` collects (one process per measurement, so that the peak memory is its own).

use std::time::Instant;

use anyhow::Result;
use burn::module::AutodiffModule;
use burn::optim::{GradientsParams, Optimizer, SgdConfig};
use burn::tensor::backend::Backend as _;
use burn::tensor::{Distribution, Int, Tensor};
use clap::Args;
use se_models::{Family, ResNetConfig};

use crate::backend::{self, Backend, TrainBackend};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Registered model names.
    #[arg(long, short, required = true, num_args = 1..)]
    pub model: Vec<String>,
    /// Batch size of inference (0 skips inference).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Batch size of the training step (0 skips training).
    #[arg(long, default_value_t = 0)]
    pub train_batch: usize,
    /// Input side; default 224 for ImageNet models, 32 for CIFAR ones.
    #[arg(long)]
    pub input_size: Option<usize>,
    /// Input channels.
    #[arg(long, default_value_t = 3)]
    pub in_channels: usize,
    /// Timed repetitions after one warm-up (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub repeat: usize,
    /// Keep timing past `--repeat` until the timed steps add up to this many seconds: the
    /// steady-state rate of a fast step (a batch-1 CIFAR pass takes about a millisecond), not
    /// that of its first few runs.
    #[arg(long, default_value_t = 0.0)]
    pub min_seconds: f64,
    /// One JSON object per measurement instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Time inference on the training graph (BatchNorms as layers) instead of the inference
    /// form `se eval` and `se predict` run (BatchNorms folded into the convolutions): what the
    /// folding buys.
    #[arg(long)]
    pub unfolded: bool,
    /// Time the models' inference pass by pass in turn, in one process (the models in order,
    /// then in reverse: A B B A ...), not one model after the other: on a machine whose speed
    /// drifts, each round's passes see the same conditions. Adds each model's time over the
    /// first one's, the median of the rounds' ratios: list the plain twin first to read an SE
    /// model's overhead (`-m resnet50 se_resnet50`).
    #[arg(long)]
    pub alternate: bool,
}

/// One measurement.
#[derive(Debug, Clone)]
struct Measurement {
    model: String,
    mode: &'static str,
    batch: usize,
    input_size: usize,
    median_ms: f64,
    params: usize,
    /// Multiply-adds of one image's forward pass.
    macs: u64,
    /// With `--alternate`: the first model and this one's time over its, the median of the
    /// rounds.
    relative: Option<(String, f64)>,
}

impl Measurement {
    fn images_per_second(&self) -> f64 {
        self.batch as f64 / (self.median_ms / 1e3)
    }

    fn json(&self) -> serde_json::Value {
        let mut json = serde_json::json!({
            "framework": "burn",
            "backend": backend::NAME,
            "model": self.model,
            "mode": self.mode,
            "batch": self.batch,
            "input_size": self.input_size,
            "median_ms": self.median_ms,
            "images_per_second": self.images_per_second(),
            "params": self.params,
            "macs_per_image": self.macs,
            "peak_rss_mb": peak_rss_mb(),
        });
        if let Some((first, ratio)) = &self.relative {
            json["relative_to"] = first.as_str().into();
            json["time_ratio"] = (*ratio).into();
        }
        json
    }
}

/// How many times a step is timed: at least `repeat` times and `min_seconds` in all.
#[derive(Debug, Clone, Copy)]
struct Timing {
    repeat: usize,
    min_seconds: f64,
}

/// The median timing of `step`, after one warm-up call, in seconds: `timing.repeat` timings,
/// or more until they add up to `timing.min_seconds` (at most 100,000).
fn median_seconds(timing: Timing, mut step: impl FnMut()) -> f64 {
    step();
    let mut times = Vec::new();
    let mut total = 0.0;
    while times.len() < timing.repeat.max(1)
        || (total < timing.min_seconds && times.len() < 100_000)
    {
        let start = Instant::now();
        step();
        let seconds = start.elapsed().as_secs_f64();
        times.push(seconds);
        total += seconds;
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Each step's median timing in seconds, and the median over the rounds of its time over the
/// first step's, the steps timed in turn: each round runs them all, in order and in the next
/// round in reverse, after one warm-up call each; `timing.repeat` rounds, or more until they
/// add up to `timing.min_seconds` (at most 100,000).
fn alternated_seconds(timing: Timing, steps: &mut [Box<dyn FnMut() + '_>]) -> Vec<(f64, f64)> {
    steps.iter_mut().for_each(|step| step());
    let mut rounds: Vec<Vec<f64>> = Vec::new();
    let mut total = 0.0;
    while rounds.len() < timing.repeat.max(1)
        || (total < timing.min_seconds && rounds.len() < 100_000)
    {
        let mut round = vec![0.0; steps.len()];
        let mut order: Vec<usize> = (0..steps.len()).collect();
        if rounds.len() % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let start = Instant::now();
            steps[i]();
            round[i] = start.elapsed().as_secs_f64();
        }
        total += round.iter().sum::<f64>();
        rounds.push(round);
    }
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    (0..steps.len())
        .map(|i| {
            let times = rounds.iter().map(|round| round[i]).collect();
            let ratios = rounds.iter().map(|round| round[i] / round[0]).collect();
            (median(times), median(ratios))
        })
        .collect()
}

/// The peak resident memory of this process so far (Linux: `VmHWM`), in MiB.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// One eval-mode forward pass of a `[batch, C, size, size]` input per call, through the
/// inference form unless `unfolded`.
fn inference_step(
    config: &ResNetConfig,
    (batch, size): (usize, usize),
    unfolded: bool,
    device: &burn::tensor::Device<Backend>,
) -> impl FnMut() + use<> {
    let model = config.init::<Backend>(device);
    let model = if unfolded {
        model
    } else {
        model.fold_batch_norms()
    };
    let x = Tensor::<Backend, 4>::random(
        [batch, config.in_channels, size, size],
        Distribution::Default,
        device,
    );
    move || {
        let _ = model.forward(x.clone()).into_data();
    }
}

/// Training steps (forward, cross-entropy, backward, SGD update); seconds per step.
fn time_training(
    config: &ResNetConfig,
    batch: usize,
    size: usize,
    timing: Timing,
    device: &burn::tensor::Device<Backend>,
) -> f64 {
    let mut model = config.init::<TrainBackend>(device);
    let mut optimizer = SgdConfig::new().init::<TrainBackend, se_models::ResNet<TrainBackend>>();
    let x = Tensor::<TrainBackend, 4>::random(
        [batch, config.in_channels, size, size],
        Distribution::Default,
        device,
    );
    let targets = Tensor::<TrainBackend, 1, Int>::zeros([batch], device);
    let loss_fn = burn::nn::loss::CrossEntropyLossConfig::new().init(device);
    let seconds = median_seconds(timing, || {
        let loss = loss_fn.forward(model.forward(x.clone()), targets.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(0.01, model.clone(), grads);
        // Wait for the update (GPU backends run asynchronously).
        let _ = model.fc.weight.val().into_data();
    });
    let _ = model.valid();
    seconds
}

pub fn run(args: &BenchArgs) -> Result<()> {
    let device = backend::device()?;
    let timing = Timing {
        repeat: args.repeat,
        min_seconds: args.min_seconds,
    };
    if args.alternate {
        return run_alternated(args, timing, &device);
    }
    if !args.json {
        println!(
            "| model | backend | input | infer b{} (img/s) | train b{} (img/s) | params |",
            args.batch, args.train_batch
        );
        println!("|---|---|---|---|---|---|");
    }
    for name in &args.model {
        let (config, model) = prepare(args, name)?;
        let size = model.input_size;
        let measure = |mode, batch, seconds: f64| Measurement {
            mode,
            batch,
            median_ms: seconds * 1e3,
            ..model.clone()
        };
        let mut rows = Vec::new();
        if args.batch > 0 {
            let shape = (args.batch, size);
            let step = inference_step(&config, shape, args.unfolded, &device);
            rows.push(measure("infer", args.batch, median_seconds(timing, step)));
        }
        if args.train_batch > 0 {
            let seconds = time_training(&config, args.train_batch, size, timing, &device);
            rows.push(measure("train", args.train_batch, seconds));
        }
        Backend::sync(&device)?;
        if args.json {
            for row in &rows {
                println!("{}", row.json());
            }
        } else {
            let rate = |mode: &str| {
                rows.iter()
                    .find(|row| row.mode == mode)
                    .map_or("-".into(), |row| format!("{:.1}", row.images_per_second()))
            };
            println!(
                "| {} | {} | {size}x{size} | {} | {} | {:.2}M |",
                model.model,
                backend::NAME,
                rate("infer"),
                rate("train"),
                model.params as f64 / 1e6
            );
        }
    }
    Ok(())
}

/// Registered model `name`'s configuration (with `--in-channels`), and its inference row at
/// `--batch`, untimed: its input side (`--input-size`, else its family's), size and cost.
fn prepare(args: &BenchArgs, name: &str) -> Result<(ResNetConfig, Measurement)> {
    let entry = se_models::lookup(name)?;
    let input_size = args.input_size.unwrap_or(match entry.family {
        Family::ImageNet => 224,
        Family::Cifar => 32,
    });
    let config = (entry.config)().with_in_channels(args.in_channels);
    let cost = config.total_complexity([input_size, input_size]);
    let row = Measurement {
        model: entry.name.to_string(),
        mode: "infer",
        batch: args.batch,
        input_size,
        median_ms: 0.0,
        params: cost.params,
        macs: cost.macs,
        relative: None,
    };
    Ok((config, row))
}

/// `--alternate`: the models' inference timed pass by pass in turn.
fn run_alternated(
    args: &BenchArgs,
    timing: Timing,
    device: &burn::tensor::Device<Backend>,
) -> Result<()> {
    if args.model.len() < 2 || args.batch == 0 || args.train_batch > 0 {
        anyhow::bail!(
            "--alternate times the inference of two or more models (--batch > 0, no --train-batch)"
        );
    }
    let mut rows = Vec::new();
    let mut steps: Vec<Box<dyn FnMut()>> = Vec::new();
    for name in &args.model {
        let (config, row) = prepare(args, name)?;
        let shape = (args.batch, row.input_size);
        steps.push(Box::new(inference_step(
            &config,
            shape,
            args.unfolded,
            device,
        )));
        rows.push(row);
    }
    let timings = alternated_seconds(timing, &mut steps);
    Backend::sync(device)?;
    let first = rows[0].model.clone();
    if !args.json {
        println!(
            "| model | backend | input | infer b{} (img/s) | time / {first}'s (median of rounds) |",
            args.batch
        );
        println!("|---|---|---|---|---|");
    }
    for (row, (seconds, ratio)) in rows.iter_mut().zip(timings) {
        row.median_ms = seconds * 1e3;
        row.relative = Some((first.clone(), ratio));
        if args.json {
            println!("{}", row.json());
        } else {
            let size = row.input_size;
            println!(
                "| {} | {} | {size}x{size} | {:.1} | ×{ratio:.3} |",
                row.model,
                backend::NAME,
                row.images_per_second()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_step_is_timed_repeat_times_and_then_until_min_seconds() {
        let mut calls = 0;
        let timing = Timing {
            repeat: 3,
            min_seconds: 0.0,
        };
        median_seconds(timing, || calls += 1);
        assert_eq!(calls, 4, "one warm-up and three timings");

        let (mut calls, start) = (0, Instant::now());
        let timing = Timing {
            repeat: 3,
            min_seconds: 0.02,
        };
        let median = median_seconds(timing, || {
            calls += 1;
            std::thread::sleep(Duration::from_millis(1));
        });
        assert!(start.elapsed().as_secs_f64() >= 0.02);
        // Each sleep takes at least a millisecond: 20 timings reach 0.02 s.
        assert!((4..=21).contains(&calls), "{calls} calls");
        assert!(median >= 0.001, "{median}");
    }

    /// The steps run in turn, in order and then in reverse, after one warm-up call each; a step
    /// three times as slow as the first reads about three times its time.
    #[test]
    fn alternated_steps_run_in_turn_and_compare_with_the_first() {
        let calls = std::cell::RefCell::new(Vec::new());
        let step = |index: usize, millis: u64| {
            let calls = &calls;
            Box::new(move || {
                calls.borrow_mut().push(index);
                std::thread::sleep(Duration::from_millis(millis));
            }) as Box<dyn FnMut()>
        };
        let timing = Timing {
            repeat: 3,
            min_seconds: 0.0,
        };
        let mut steps = vec![step(0, 2), step(1, 6)];
        let timings = alternated_seconds(timing, &mut steps);
        drop(steps);
        assert_eq!(calls.into_inner(), [0, 1, 0, 1, 1, 0, 0, 1]);
        assert_eq!(timings.len(), 2);
        assert_eq!(timings[0].1, 1.0, "the first against itself");
        assert!(timings[1].0 >= 0.006, "{timings:?}");
        // 3 without the sleeps' overshoot (up to ~2 ms on a loaded machine).
        assert!((1.5..=4.5).contains(&timings[1].1), "{timings:?}");
    }
}
