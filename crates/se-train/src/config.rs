//! `TrainConfig`: everything a run needs, saved as `config.json` in its run folder.

use std::path::PathBuf;

use burn::config::Config;

use crate::data::augment::AugmentConfig;
use crate::data::cifar::Cifar;
use crate::data::{DataError, DataSplits, cifar, folder, mnist};
use crate::finetune::FineTuneConfig;
use se_models::AttentionVariant;

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
    /// Pretrained weights, frozen parts, body learning rate (`None`: from scratch, all trained).
    #[config(default = "None")]
    pub finetune: Option<FineTuneConfig>,
    /// Changes to the model's attention for an ablation (`None`: the model as registered).
    #[config(default = "None")]
    pub variant: Option<AttentionVariant>,
}

impl TrainConfig {
    /// The network this run trains, for `channels`-channel images of `classes` classes: the
    /// registered model with the run's variant applied.
    pub fn model_config(
        &self,
        channels: usize,
        classes: usize,
    ) -> Result<se_models::ResNetConfig, crate::TrainError> {
        let config = se_models::config(&self.model)?
            .with_in_channels(channels)
            .with_num_classes(classes);
        let config = match &self.variant {
            Some(variant) => variant.apply(config)?,
            None => config,
        };
        config.validate()?;
        Ok(config)
    }

    /// The augmentation in force.
    pub fn augmentation(&self) -> AugmentConfig {
        self.augment
            .clone()
            .unwrap_or_else(|| self.data.default_augmentation())
    }
}

/// A [`TrainConfig`] value a run cannot start with: the field, its value, and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} = {value}: {rule}")]
pub struct InvalidTrainConfig {
    /// The field of [`TrainConfig`].
    pub field: &'static str,
    /// Its value, as written.
    pub value: String,
    /// What it must be.
    pub rule: &'static str,
}

impl TrainConfig {
    /// Checks every number a run depends on, so that a bad value is refused before anything
    /// is written, instead of failing (or silently diverging) mid-run. Data and model are
    /// checked where they are read.
    pub fn validate(&self) -> Result<(), InvalidTrainConfig> {
        fn invalid(
            field: &'static str,
            value: impl std::fmt::Display,
            rule: &'static str,
        ) -> Result<(), InvalidTrainConfig> {
            Err(InvalidTrainConfig {
                field,
                value: value.to_string(),
                rule,
            })
        }
        let finite_non_negative = |x: f64| x.is_finite() && x >= 0.0;
        if self.epochs == 0 {
            return invalid("epochs", self.epochs, "must be at least 1");
        }
        if self.batch_size == 0 {
            return invalid("batch_size", self.batch_size, "must be at least 1");
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return invalid(
                "learning_rate",
                self.learning_rate,
                "a finite number above 0",
            );
        }
        if !finite_non_negative(self.warmup_epochs) {
            return invalid(
                "warmup_epochs",
                self.warmup_epochs,
                "a finite number from 0",
            );
        }
        if !finite_non_negative(self.weight_decay) {
            return invalid("weight_decay", self.weight_decay, "a finite number from 0");
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return invalid("label_smoothing", self.label_smoothing, "in [0, 1)");
        }
        if let OptimizerKind::Sgd { momentum, .. } = self.optimizer
            && !(0.0..1.0).contains(&momentum)
        {
            return invalid("momentum", momentum, "in [0, 1)");
        }
        if let ScheduleKind::Step {
            every_epochs,
            gamma,
        } = self.schedule
        {
            if every_epochs == 0 {
                return invalid("every_epochs", every_epochs, "must be at least 1");
            }
            if !(gamma.is_finite() && gamma > 0.0) {
                return invalid("gamma", gamma, "a finite number above 0");
            }
        }
        for (field, limit) in [
            ("train_limit", self.train_limit),
            ("test_limit", self.test_limit),
        ] {
            if limit == Some(0) {
                return invalid(field, 0, "must be at least 1 image");
            }
        }
        if let DataSource::Folder(_, size) = self.data
            && size == 0
        {
            return invalid("image_size", size, "must be at least 1");
        }
        match &self.finetune {
            Some(finetune) => finetune.validate(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `config.json` written before a field with a default existed still loads (resume).
    #[test]
    fn a_config_without_the_fine_tuning_field_loads() {
        let mut json: serde_json::Value =
            serde_json::from_str(&TrainConfig::new().to_string()).unwrap();
        json.as_object_mut().unwrap().remove("finetune");
        let config: TrainConfig = serde_json::from_value(json).unwrap();
        assert_eq!(config.finetune, None);
    }

    #[test]
    fn the_defaults_are_valid_and_each_bad_value_is_named() {
        assert_eq!(TrainConfig::new().validate(), Ok(()));
        let field = |config: TrainConfig| config.validate().unwrap_err().field;
        assert_eq!(field(TrainConfig::new().with_batch_size(0)), "batch_size");
        assert_eq!(field(TrainConfig::new().with_epochs(0)), "epochs");
        assert_eq!(
            field(TrainConfig::new().with_learning_rate(0.0)),
            "learning_rate"
        );
        assert_eq!(
            field(TrainConfig::new().with_learning_rate(f64::NAN)),
            "learning_rate"
        );
        assert_eq!(
            field(TrainConfig::new().with_warmup_epochs(-1.0)),
            "warmup_epochs"
        );
        assert_eq!(
            field(TrainConfig::new().with_weight_decay(f64::INFINITY)),
            "weight_decay"
        );
        assert_eq!(
            field(TrainConfig::new().with_label_smoothing(1.0)),
            "label_smoothing"
        );
        assert_eq!(
            field(TrainConfig::new().with_train_limit(Some(0))),
            "train_limit"
        );
        let sgd = OptimizerKind::Sgd {
            momentum: 1.5,
            nesterov: false,
        };
        assert_eq!(field(TrainConfig::new().with_optimizer(sgd)), "momentum");
        let step = ScheduleKind::Step {
            every_epochs: 0,
            gamma: 0.1,
        };
        assert_eq!(
            field(TrainConfig::new().with_schedule(step)),
            "every_epochs"
        );
        let finetune = crate::finetune::FineTuneConfig::new().with_freeze(vec!["fc".into()]);
        assert_eq!(
            field(TrainConfig::new().with_finetune(Some(finetune))),
            "freeze"
        );
        let error = TrainConfig::new()
            .with_batch_size(0)
            .validate()
            .unwrap_err();
        assert_eq!(error.to_string(), "batch_size = 0: must be at least 1");
    }
}
