//! `se train`: train a model; `--resume` continues a run.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::config::Config;
use clap::{Args, ValueEnum};
use se_train::{DataSource, OptimizerKind, ScheduleKind, TrainConfig, TrainSummary};

use crate::backend;

/// Which kind of data `--data-dir` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DatasetKind {
    /// MNIST: the embedded 10,000 digits, or an IDX folder given with --data-dir.
    Mnist,
    /// CIFAR-10 binary folder (data_batch_1.bin .. test_batch.bin).
    Cifar10,
    /// CIFAR-100 binary folder (train.bin, test.bin).
    Cifar100,
    /// Image folder: train/<class>/*.png|jpg and val/<class>/*.
    Folder,
}

/// Where the data comes from (shared by train and eval).
#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// Kind of dataset.
    #[arg(long, value_enum)]
    pub dataset: Option<DatasetKind>,
    /// Dataset folder (not needed for the embedded MNIST digits).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Image side the model sees, for image folders.
    #[arg(long, default_value_t = 224)]
    pub image_size: usize,
}

impl DataArgs {
    /// `None` when no dataset was named (the caller picks its default).
    pub fn source(&self) -> Result<Option<DataSource>> {
        let kind = match (self.dataset, &self.data_dir) {
            (None, None) => return Ok(None),
            (Some(kind), _) => kind,
            (None, Some(_)) => {
                bail!("--data-dir needs --dataset (mnist, cifar10, cifar100 or folder)")
            }
        };
        let dir = || {
            self.data_dir.clone().with_context(|| {
                let name = kind.to_possible_value().map(|v| v.get_name().to_string());
                format!(
                    "--dataset {} needs --data-dir PATH",
                    name.unwrap_or_default()
                )
            })
        };
        Ok(Some(match kind {
            DatasetKind::Mnist => match &self.data_dir {
                None => DataSource::EmbeddedMnist,
                Some(dir) => DataSource::Mnist(dir.clone()),
            },
            DatasetKind::Cifar10 => DataSource::Cifar10(dir()?),
            DatasetKind::Cifar100 => DataSource::Cifar100(dir()?),
            DatasetKind::Folder => DataSource::Folder(dir()?, self.image_size),
        }))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OptimizerArg {
    Sgd,
    Adamw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScheduleArg {
    Cosine,
    Step,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Registered model name (`se models` lists them).
    #[arg(long, default_value = "se_resnet20")]
    pub model: String,
    #[command(flatten)]
    pub data: DataArgs,
    /// Run folder for the config, checkpoints, metrics and models (default: runs/<model>-<dataset>-<n>).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Continue the run in --run-dir from its last checkpoint (its saved config is used; --epochs may raise the total).
    #[arg(long)]
    pub resume: bool,
    /// Epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Images per step.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 0.1)]
    pub lr: f64,
    /// Linear warmup, in epochs.
    #[arg(long, default_value_t = 0.5)]
    pub warmup_epochs: f64,
    /// Learning-rate schedule after warmup.
    #[arg(long, value_enum, default_value_t = ScheduleArg::Cosine)]
    pub schedule: ScheduleArg,
    /// Step schedule: epochs between drops.
    #[arg(long, default_value_t = 30)]
    pub step_epochs: usize,
    /// Step schedule: factor of each drop.
    #[arg(long, default_value_t = 0.1)]
    pub gamma: f64,
    /// Optimizer.
    #[arg(long, value_enum, default_value_t = OptimizerArg::Sgd)]
    pub optimizer: OptimizerArg,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// Plain (heavy-ball) momentum instead of Nesterov.
    #[arg(long)]
    pub no_nesterov: bool,
    /// Weight decay.
    #[arg(long, default_value_t = 5e-4)]
    pub weight_decay: f64,
    /// Label smoothing of the loss.
    #[arg(long, default_value_t = 0.0)]
    pub label_smoothing: f32,
    /// Seed of weights, shuffling and augmentation.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Data-loader worker threads.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Train on N training images only, spread evenly over the set.
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Validate on N test images only, spread evenly over the set.
    #[arg(long)]
    pub test_limit: Option<usize>,
}

impl TrainArgs {
    fn config(&self) -> Result<TrainConfig> {
        se_models::lookup(&self.model)?;
        let data = self.data.source()?.unwrap_or(DataSource::EmbeddedMnist);
        let mut config = TrainConfig::new()
            .with_model(self.model.clone())
            .with_data(data)
            .with_batch_size(self.batch_size)
            .with_learning_rate(self.lr)
            .with_warmup_epochs(self.warmup_epochs)
            .with_schedule(match self.schedule {
                ScheduleArg::Cosine => ScheduleKind::Cosine,
                ScheduleArg::Step => ScheduleKind::Step {
                    every_epochs: self.step_epochs,
                    gamma: self.gamma,
                },
            })
            .with_optimizer(match self.optimizer {
                OptimizerArg::Sgd => OptimizerKind::Sgd {
                    momentum: self.momentum,
                    nesterov: !self.no_nesterov,
                },
                OptimizerArg::Adamw => OptimizerKind::AdamW,
            })
            .with_weight_decay(self.weight_decay)
            .with_label_smoothing(self.label_smoothing)
            .with_seed(self.seed)
            .with_num_workers(self.workers)
            .with_train_limit(self.train_limit)
            .with_test_limit(self.test_limit);
        if let Some(epochs) = self.epochs {
            config.epochs = epochs;
        }
        Ok(config)
    }

    /// `runs/<model>-<data>-<n>` with the first `n` not taken, so a new run never overwrites one.
    fn default_run_dir(config: &TrainConfig) -> PathBuf {
        let data = match &config.data {
            DataSource::EmbeddedMnist | DataSource::Mnist(_) => "mnist",
            DataSource::Cifar10(_) => "cifar10",
            DataSource::Cifar100(_) => "cifar100",
            DataSource::Folder(..) => "folder",
        };
        (1..)
            .map(|n| PathBuf::from("runs").join(format!("{}-{data}-{n}", config.model)))
            .find(|dir| !dir.exists())
            .expect("some run number is free")
    }
}

pub fn run(args: &TrainArgs) -> Result<()> {
    let (config, run_dir) = if args.resume {
        let run_dir = args.run_dir.clone().context("--resume needs --run-dir")?;
        let path = run_dir.join("config.json");
        let mut config = TrainConfig::load(&path).map_err(|e| {
            anyhow::anyhow!("{}: cannot read the run's config: {e}", path.display())
        })?;
        if let Some(epochs) = args.epochs {
            config.epochs = epochs;
        }
        (config, run_dir)
    } else {
        let config = args.config()?;
        let run_dir = args
            .run_dir
            .clone()
            .unwrap_or_else(|| TrainArgs::default_run_dir(&config));
        (config, run_dir)
    };
    println!(
        "training {} on {:?} for {} epochs, batch {} (backend {}), run folder {}",
        config.model,
        config.data,
        config.epochs,
        config.batch_size,
        backend::NAME,
        run_dir.display()
    );
    let summary: TrainSummary = se_train::train::<backend::TrainBackend>(
        &config,
        &run_dir,
        &backend::device()?,
        args.resume,
    )?;
    println!(
        "done in {:.0}s: test top-1 {:.2}%, top-5 {:.2}% on {} images; models, metrics.csv and curves.svg in {}",
        summary.seconds,
        100.0 * summary.test.top1,
        100.0 * summary.test.top5,
        summary.test.images,
        run_dir.display()
    );
    Ok(())
}
