//! `se eval` and `se predict`: use a trained run.

use std::path::PathBuf;

use anyhow::{Result, bail};
use burn::config::Config;
use clap::Args;
use se_models::ResNet;
use se_train::data::{DataSplits, DatasetInfo};
use se_train::{DataSource, RunFolder, TrainConfig};

use burn::tensor::backend::{AutodiffBackend, Backend};

use crate::backend::{self, Job, Precision};
use crate::commands::train::DataArgs;

/// Which weights of a run.
#[derive(Args, Debug)]
pub struct WeightsArgs {
    /// Run folder written by `se train`.
    #[arg(long)]
    pub run_dir: PathBuf,
    /// Weights file; default the run's best-model.mpk (lowest validation loss), else model.mpk.
    #[arg(long)]
    pub weights: Option<PathBuf>,
}

impl WeightsArgs {
    pub(crate) fn weights(&self, run: &RunFolder) -> Result<PathBuf> {
        if let Some(path) = &self.weights {
            return Ok(path.clone());
        }
        match [run.best_model(), run.final_model()]
            .into_iter()
            .find(|p| p.is_file())
        {
            Some(path) => Ok(path),
            None => bail!(
                "{}: no best-model.mpk or model.mpk (has the run finished?)",
                run.0.display()
            ),
        }
    }
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub weights: WeightsArgs,
    /// Data to evaluate on (its test split); default the run's own dataset.
    #[command(flatten)]
    pub data: DataArgs,
    /// Evaluate on N test images only, spread evenly over the set (as `se train --test-limit`).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Images per batch.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Float precision of the computation: f16 and bf16 on GPU backends.
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub precision: Precision,
}

pub fn eval(args: &EvalArgs) -> Result<()> {
    // As `se train --test-limit 0`: no images is no evaluation, not a top-1 of 0%.
    if args.limit == Some(0) {
        bail!("--limit 0: there is nothing to evaluate; give at least 1 image");
    }
    backend::run_with_precision(args.precision, vec![backend::device()?], args)
}

impl Job for &EvalArgs {
    type Output = ();

    fn run<B: AutodiffBackend>(self, devices: Vec<B::Device>) -> Result<()> {
        eval_on::<B::InnerBackend>(self, &devices[0])
    }
}

/// A run's trained model, with the data to use it on: the data `data` names, else the run's
/// own; refused when its classes or channels are not the run's.
pub(crate) fn run_model_and_data<B: Backend>(
    weights: &WeightsArgs,
    data: &DataArgs,
    device: &B::Device,
) -> Result<(PathBuf, ResNet<B>, DatasetInfo, DataSplits)> {
    let run = RunFolder(weights.run_dir.clone());
    let path = weights.weights(&run)?;
    let (model, info) = run.load_model::<B>(&path, device)?;
    let source: DataSource = match data.source()? {
        Some(source) => source,
        None => {
            TrainConfig::load(run.config())
                .map_err(|e| anyhow::anyhow!("{}: {e}", run.config().display()))?
                .data
        }
    };
    let data = source.load()?;
    if data.info.num_classes() != info.num_classes() || data.info.channels != info.channels {
        bail!(
            "the data has {} classes of {}-channel images; the model was trained on {} classes of {}-channel images",
            data.info.num_classes(),
            data.info.channels,
            info.num_classes(),
            info.channels
        );
    }
    if data.info.class_names != info.class_names {
        let differ = data
            .info
            .class_names
            .iter()
            .zip(&info.class_names)
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| format!("class {i} is `{a}` in the data, `{b}` in the run"));
        bail!(
            "the data's classes are not the run's: {} (the run's: {})",
            differ.unwrap_or_default(),
            info.class_names.join(", ")
        );
    }
    Ok((path, model, info, data))
}

fn eval_on<B: Backend>(args: &EvalArgs, device: &B::Device) -> Result<()> {
    let (weights, model, info, data) = run_model_and_data::<B>(&args.weights, &args.data, device)?;
    let model = model.fold_batch_norms();
    let test = se_train::train::limit(data.test, args.limit);
    let report = se_train::evaluate(&model, test, &info, args.batch_size, device);
    if let Some(error) = data.faults.first() {
        bail!("{error} (the evaluation stopped being valid there)");
    }
    println!("{}: {} images", weights.display(), report.images);
    println!("top-1 accuracy {:.2}%", 100.0 * report.top1);
    println!("top-5 accuracy {:.2}%", 100.0 * report.top5);
    if info.num_classes() <= 20 {
        println!("confusion matrix (rows: true class, columns: predicted):");
        print!("{}", report.confusion_table(&info.class_names));
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    #[command(flatten)]
    pub weights: WeightsArgs,
    /// How many classes to show per image.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Float precision of the computation: f16 and bf16 on GPU backends.
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub precision: Precision,
    /// Image files (PNG or JPEG).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

pub fn predict(args: &PredictArgs) -> Result<()> {
    backend::run_with_precision(args.precision, vec![backend::device()?], args)
}

impl Job for &PredictArgs {
    type Output = ();

    fn run<B: AutodiffBackend>(self, devices: Vec<B::Device>) -> Result<()> {
        predict_on::<B::InnerBackend>(self, &devices[0])
    }
}

fn predict_on<B: Backend>(args: &PredictArgs, device: &B::Device) -> Result<()> {
    let run = RunFolder(args.weights.run_dir.clone());
    let weights = args.weights.weights(&run)?;
    let (model, info) = run.load_model::<B>(&weights, device)?;
    let model = model.fold_batch_norms();
    for path in &args.images {
        let image = se_train::load_image(path, info.channels)?;
        println!("{}:", path.display());
        for (class, probability) in se_train::predict(&model, image, &info, args.top, device) {
            println!(
                "  {:<16} {:>7.3}%",
                info.class_names[class],
                100.0 * probability
            );
        }
    }
    Ok(())
}
