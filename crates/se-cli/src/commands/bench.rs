//! `se bench`: images per second of a model, inference and training step, on this binary's backend.

use std::time::Instant;

use anyhow::Result;
use burn::module::AutodiffModule;
use burn::optim::{GradientsParams, Optimizer, SgdConfig};
use burn::tensor::backend::Backend as _;
use burn::tensor::{Distribution, Int, Tensor};
use clap::Args;
use se_models::Family;

use crate::backend::{self, Backend, TrainBackend};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Registered model names.
    #[arg(long, short, required = true, num_args = 1..)]
    pub model: Vec<String>,
    /// Batch size of inference.
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
    /// Timed repetitions (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub repeat: usize,
}

/// Median of `repeat` timings of `step`, after one warm-up call, in seconds.
fn median_seconds(repeat: usize, mut step: impl FnMut()) -> f64 {
    step();
    let mut times: Vec<f64> = (0..repeat.max(1))
        .map(|_| {
            let start = Instant::now();
            step();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

pub fn run(args: &BenchArgs) -> Result<()> {
    println!(
        "| model | backend | input | infer b{} (img/s) | train b{} (img/s) | params |",
        args.batch, args.train_batch
    );
    println!("|---|---|---|---|---|---|");
    let device = backend::device()?;
    for name in &args.model {
        let entry = se_models::lookup(name)?;
        let size = args.input_size.unwrap_or(match entry.family {
            Family::ImageNet => 224,
            Family::Cifar => 32,
        });
        let config = (entry.config)().with_in_channels(args.in_channels);
        let params = config.total_complexity([size, size]).params;
        let model = config.init::<Backend>(&device);
        let x = Tensor::<Backend, 4>::random(
            [args.batch, args.in_channels, size, size],
            Distribution::Default,
            &device,
        );
        let infer = median_seconds(args.repeat, || {
            let _ = model.forward(x.clone()).into_data();
        });
        let train = if args.train_batch > 0 {
            let mut model = config.init::<TrainBackend>(&device);
            let mut optimizer =
                SgdConfig::new().init::<TrainBackend, se_models::ResNet<TrainBackend>>();
            let x = Tensor::<TrainBackend, 4>::random(
                [args.train_batch, args.in_channels, size, size],
                Distribution::Default,
                &device,
            );
            let targets = Tensor::<TrainBackend, 1, Int>::zeros([args.train_batch], &device);
            let seconds = median_seconds(args.repeat, || {
                let logits = model.forward(x.clone());
                let loss = burn::nn::loss::CrossEntropyLossConfig::new()
                    .init(&device)
                    .forward(logits, targets.clone());
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optimizer.step(0.01, model.clone(), grads);
                let _ = model.fc.weight.val().into_data();
            });
            let _ = model.valid();
            format!("{:.1}", args.train_batch as f64 / seconds)
        } else {
            "-".into()
        };
        Backend::sync(&device)?;
        println!(
            "| {} | {} | {size}x{size} | {:.1} | {train} | {:.2}M |",
            entry.name,
            backend::NAME,
            args.batch as f64 / infer,
            params as f64 / 1e6
        );
    }
    Ok(())
}
