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
}

impl Measurement {
    fn images_per_second(&self) -> f64 {
        self.batch as f64 / (self.median_ms / 1e3)
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
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
        })
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

/// The peak resident memory of this process so far (Linux: `VmHWM`), in MiB.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Eval-mode forward passes of a `[batch, C, size, size]` input, through the inference form
/// unless `unfolded`; seconds per batch.
fn time_inference(
    config: &ResNetConfig,
    (batch, size): (usize, usize),
    timing: Timing,
    unfolded: bool,
    device: &burn::tensor::Device<Backend>,
) -> f64 {
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
    median_seconds(timing, || {
        let _ = model.forward(x.clone()).into_data();
    })
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
    if !args.json {
        println!(
            "| model | backend | input | infer b{} (img/s) | train b{} (img/s) | params |",
            args.batch, args.train_batch
        );
        println!("|---|---|---|---|---|---|");
    }
    for name in &args.model {
        let entry = se_models::lookup(name)?;
        let size = args.input_size.unwrap_or(match entry.family {
            Family::ImageNet => 224,
            Family::Cifar => 32,
        });
        let config = (entry.config)().with_in_channels(args.in_channels);
        let cost = config.total_complexity([size, size]);
        let params = cost.params;
        let measure = |mode, batch, seconds: f64| Measurement {
            model: entry.name.to_string(),
            mode,
            batch,
            input_size: size,
            median_ms: seconds * 1e3,
            params,
            macs: cost.macs,
        };
        let mut rows = Vec::new();
        if args.batch > 0 {
            let shape = (args.batch, size);
            let seconds = time_inference(&config, shape, timing, args.unfolded, &device);
            rows.push(measure("infer", args.batch, seconds));
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
                entry.name,
                backend::NAME,
                rate("infer"),
                rate("train"),
                params as f64 / 1e6
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
}
