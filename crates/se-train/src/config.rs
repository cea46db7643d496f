//! `TrainConfig`: everything a run needs, saved as `config.json` in its run folder.

use std::path::PathBuf;

use burn::config::Config;

use crate::data::augment::AugmentConfig;
use crate::data::cifar::Cifar;
use crate::data::{DataError, DataSplits, cifar, folder, mnist};

/// Where the images come from.
#[derive(Config, Debug, PartialEq)]
pub enum DataSource {
    /// The 10,000 MNIST digits compiled into the binary (8,000 train / 2,000 test).
    EmbeddedMnist,
    /// An MNIST IDX folder (`train-images-idx3-ubyte[.gz]`, ...).
    Mnist(PathBuf),
    /// A CIFAR-10 binary folder (`data_batch_1.bin` .. `test_batch.bin`).
    Cifar10(PathBuf),
    /// A CIFAR-100 binary folder (`train.bin`, `test.bin`).
    Cifar100(PathBuf),
    /// An image folder (`train/<class>/*`, `val/<class>/*`) shown to the model at this size.
    Folder(PathBuf, usize),
}

impl DataSource {
    /// Reads the data.
    pub fn load(&self) -> Result<DataSplits, DataError> {
        match self {
            DataSource::EmbeddedMnist => Ok(mnist::embedded()),
            DataSource::Mnist(dir) => mnist::load_dir(dir),
            DataSource::Cifar10(dir) => cifar::load_dir(dir, Cifar::Ten),
            DataSource::Cifar100(dir) => cifar::load_dir(dir, Cifar::Hundred),
            DataSource::Folder(dir, size) => folder::load_dir(dir, *size),
        }
    }

    /// The usual augmentation for this kind of data.
    pub fn default_augmentation(&self) -> AugmentConfig {
        match self {
            // Digits: small shifts only; a flipped digit is another symbol.
            DataSource::EmbeddedMnist | DataSource::Mnist(_) => {
                AugmentConfig::new().with_pad_crop(2)
            }
            DataSource::Cifar10(_) | DataSource::Cifar100(_) => AugmentConfig::new()
                .with_pad_crop(4)
                .with_horizontal_flip(true),
            DataSource::Folder(..) => AugmentConfig::new()
                .with_horizontal_flip(true)
                .with_random_resized_crop(Some(0.08)),
        }
    }
}

/// The optimizer.
#[derive(Config, Debug, PartialEq)]
pub enum OptimizerKind {
    /// SGD with momentum, PyTorch semantics (no dampening), optionally Nesterov.
    Sgd {
        /// Momentum factor.
        momentum: f64,
        /// Nesterov momentum.
        nesterov: bool,
    },
    /// AdamW (decoupled weight decay).
    AdamW,
}

impl OptimizerKind {
    /// SGD as ResNets are trained: momentum 0.9, Nesterov.
    pub fn default_sgd() -> Self {
        OptimizerKind::Sgd {
            momentum: 0.9,
            nesterov: true,
        }
    }
}

/// How the learning rate moves over the run.
#[derive(Config, Debug, PartialEq)]
pub enum ScheduleKind {
    /// Cosine decay from the peak to zero at the last iteration.
    Cosine,
    /// Multiply by `gamma` every `every_epochs` epochs.
    Step {
        /// Epochs between drops.
        every_epochs: usize,
        /// Factor of each drop.
        gamma: f64,
    },
}

impl ScheduleKind {
    /// The step schedule's usual shape: a tenth every 30 epochs (ImageNet ResNets).
    pub fn default_step() -> Self {
        ScheduleKind::Step {
            every_epochs: 30,
            gamma: 0.1,
        }
    }
}

/// A training run.
#[derive(Config, Debug)]
pub struct TrainConfig {
    /// Registered model name (`se models` lists them).
    #[config(default = "String::from(\"se_resnet20\")")]
    pub model: String,
    /// The data.
    #[config(default = "DataSource::EmbeddedMnist")]
    pub data: DataSource,
    /// Training augmentation; `None` uses the data source's default.
    #[config(default = "None")]
    pub augment: Option<AugmentConfig>,
    /// Use only `n` training images, spread evenly over the set (quick runs and tests).
    #[config(default = "None")]
    pub train_limit: Option<usize>,
    /// Use only `n` test images, spread evenly over the set.
    #[config(default = "None")]
    pub test_limit: Option<usize>,
    /// Epochs.
    #[config(default = 5)]
    pub epochs: usize,
    /// Images per training step.
    #[config(default = 64)]
    pub batch_size: usize,
    /// Peak learning rate (after warmup).
    #[config(default = 0.1)]
    pub learning_rate: f64,
    /// Epochs of linear warmup from `learning_rate / 10` (fractions allowed).
    #[config(default = 0.5)]
    pub warmup_epochs: f64,
    /// Learning-rate schedule after warmup.
    #[config(default = "ScheduleKind::Cosine")]
    pub schedule: ScheduleKind,
    /// Optimizer.
    #[config(default = "OptimizerKind::default_sgd()")]
    pub optimizer: OptimizerKind,
    /// L2 weight decay (coupled for SGD, as PyTorch's; decoupled for AdamW).
    #[config(default = 5e-4)]
    pub weight_decay: f64,
    /// Label smoothing of the cross-entropy loss (0 = off).
    #[config(default = 0.0)]
    pub label_smoothing: f32,
    /// Seed of weights, shuffling and augmentation.
    #[config(default = 42)]
    pub seed: u64,
    /// Data-loader worker threads.
    #[config(default = 2)]
    pub num_workers: usize,
}

impl TrainConfig {
    /// The augmentation in force.
    pub fn augmentation(&self) -> AugmentConfig {
        self.augment
            .clone()
            .unwrap_or_else(|| self.data.default_augmentation())
    }
}
