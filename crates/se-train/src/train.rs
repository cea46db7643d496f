//! A training run: data → augmentation → loaders → Learner (metrics, dashboard, checkpoints) →
//! final model, best model, metrics CSV, curves, test evaluation. Everything lands in one run
//! folder; `resume` continues from its last checkpoint.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::config::Config;
use std::sync::Arc;

use crate::distributed::{Collective, GradientAverager, Shard, broadcast_module};
use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::data::dataset::Dataset;
use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, Optimizer, SgdConfig};
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::train::logger::FileMetricLogger;
use burn::train::metric::{
    AccuracyMetric, CpuMemory, IterationSpeedMetric, LearningRateMetric, LossMetric,
    TopKAccuracyMetric,
};
use burn::train::{
    ExecutionStrategy, Learner, MultiDeviceOptim, SupervisedTraining, TrainingStrategy,
};
use se_core::AutodiffKernelBackend;
use se_models::{ResNet, ResNetConfig};

use crate::classifier::Classifier;
use crate::config::{OptimizerKind, TrainConfig};
use crate::data::augment::{AugmentedDataset, Transform};
use crate::data::batcher::{ImageBatch, ImageBatcher};
use crate::data::{DataError, DataSplits, DatasetInfo, ImageDataset};
use crate::evaluate::{EvalReport, evaluate};
use crate::progress::PlainProgress;
use crate::report::{EpochCsvLogger, EpochRow, curves_svg, read_csv};
use crate::schedule::LrSchedule;

/// The recorder of every file in a run folder: named MessagePack, full precision.
pub type Recorder = NamedMpkFileRecorder<FullPrecisionSettings>;

/// What can stop a run before it starts or after it ends (never halfway: the Learner owns that).
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Bad or missing data.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Unknown model name.
    #[error(transparent)]
    Model(#[from] se_models::UnknownModel),
    /// The run folder is not in the state the request needs.
    #[error("{}: {message}", path.display())]
    RunFolder {
        /// The folder or file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

fn run_error(path: &Path, message: impl Into<String>) -> TrainError {
    TrainError::RunFolder {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// The files of a run folder.
#[derive(Debug, Clone)]
pub struct RunFolder(pub PathBuf);

impl RunFolder {
    /// `config.json`: the [`TrainConfig`].
    pub fn config(&self) -> PathBuf {
        self.0.join("config.json")
    }
    /// `model.json`: the model's [`ResNetConfig`] as trained (input channels, classes).
    pub fn model_config(&self) -> PathBuf {
        self.0.join("model.json")
    }
    /// `dataset.json`: the [`DatasetInfo`] (classes, input size, normalisation).
    pub fn dataset(&self) -> PathBuf {
        self.0.join("dataset.json")
    }
    /// `model.mpk`: the weights after the last epoch.
    pub fn final_model(&self) -> PathBuf {
        self.0.join("model.mpk")
    }
    /// `best-model.mpk`: the weights of the epoch with the lowest validation loss.
    pub fn best_model(&self) -> PathBuf {
        self.0.join("best-model.mpk")
    }
    /// `metrics.csv`: one row per epoch.
    pub fn metrics(&self) -> PathBuf {
        self.0.join("metrics.csv")
    }
    /// `curves.svg`: loss and accuracy per epoch.
    pub fn curves(&self) -> PathBuf {
        self.0.join("curves.svg")
    }
    /// `summary.json`: the final test evaluation.
    pub fn summary(&self) -> PathBuf {
        self.0.join("summary.json")
    }
    /// Burn's checkpoint folder.
    pub fn checkpoints(&self) -> PathBuf {
        self.0.join("checkpoint")
    }

    /// The highest epoch with a saved model checkpoint.
    pub fn last_checkpoint(&self) -> Option<usize> {
        std::fs::read_dir(self.checkpoints())
            .ok()?
            .filter_map(|entry| {
                let name = entry.ok()?.file_name().into_string().ok()?;
                name.strip_prefix("model-")?
                    .strip_suffix(".mpk")?
                    .parse()
                    .ok()
            })
            .max()
    }

    /// Reads the model config and dataset info written at the start of a run.
    pub fn load_model_info(&self) -> Result<(ResNetConfig, DatasetInfo), TrainError> {
        let model = ResNetConfig::load(self.model_config()).map_err(|e| {
            run_error(
                &self.model_config(),
                format!("cannot read the model config: {e}"),
            )
        })?;
        let text = std::fs::read_to_string(self.dataset())
            .map_err(|e| run_error(&self.dataset(), e.to_string()))?;
        let info = serde_json::from_str(&text)
            .map_err(|e| run_error(&self.dataset(), format!("not a dataset description: {e}")))?;
        Ok((model, info))
    }

    /// Loads trained weights (`model.mpk` or `best-model.mpk`) into the run's model.
    pub fn load_model<B: burn::tensor::backend::Backend>(
        &self,
        weights: &Path,
        device: &B::Device,
    ) -> Result<(ResNet<B>, DatasetInfo), TrainError> {
        let (config, info) = self.load_model_info()?;
        let model = config
            .init::<B>(device)
            .load_file(weights.to_path_buf(), &Recorder::new(), device)
            .map_err(|e| run_error(weights, format!("cannot load weights: {e}")))?;
        Ok((model, info))
    }
}

/// The outcome of a run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TrainSummary {
    /// The model name.
    pub model: String,
    /// Epochs trained in total (over resumes).
    pub epochs: usize,
    /// Evaluation of the final model on the test split.
    pub test: EvalReport,
    /// Wall time of this invocation, seconds.
    pub seconds: f64,
}

/// `n` images spread evenly over a dataset (every `len / n`-th), so a subset of class-sorted data
/// keeps every class in proportion.
struct EvenSubset {
    inner: ImageDataset,
    len: usize,
}

impl Dataset<crate::data::ImageItem> for EvenSubset {
    fn get(&self, index: usize) -> Option<crate::data::ImageItem> {
        (index < self.len).then(|| self.inner.get(index * self.inner.len() / self.len))?
    }

    fn len(&self) -> usize {
        self.len
    }
}

fn limit(dataset: ImageDataset, limit: Option<usize>) -> ImageDataset {
    match limit {
        Some(len) if len < dataset.len() => Arc::new(EvenSubset {
            inner: dataset,
            len,
        }),
        _ => dataset,
    }
}

/// Trains as `config` says, writing into `run_dir`. With `resume`, continues the run in `run_dir`
/// from its last checkpoint (the config must be the one saved there, possibly with more epochs).
pub fn train<B: AutodiffKernelBackend>(
    config: &TrainConfig,
    run_dir: &Path,
    device: &B::Device,
    resume: bool,
) -> Result<TrainSummary, TrainError> {
    run_training::<B>(config, run_dir, std::slice::from_ref(device), resume, None)
}

/// [`train`] on several devices of one process (several GPUs), with Burn's multi-device
/// strategy: each step, every device runs a replica on its own batch of `config.batch_size`
/// images (the epoch split into one contiguous part per device), and the mean of their gradients
/// updates the weights on the first device. One step sees `batch_size * devices` images and the
/// learning rate applies to the mean gradient, as with [`train_distributed`]. BatchNorm running
/// statistics are averaged over the devices. With one device this is [`train`].
pub fn train_on_devices<B: AutodiffKernelBackend>(
    config: &TrainConfig,
    run_dir: &Path,
    devices: &[B::Device],
    resume: bool,
) -> Result<TrainSummary, TrainError> {
    run_training::<B>(config, run_dir, devices, resume, None)
}

/// [`train`] as one rank of a data-parallel job over `collective` (see [`crate::distributed`]).
///
/// `config.batch_size` is per rank (a step sees `batch_size * ranks` images in all) and the
/// learning rate applies to the averaged gradient as given. Rank 0 writes the run folder
/// (config, metrics, dashboard, checkpoints, models, summary); rank `r > 0` keeps only the
/// Learner's checkpoints of its optimizer state, in `run_dir/ranks/r`, for `--resume` with the
/// same number of ranks, and validates on one batch only.
pub fn train_distributed<B: AutodiffKernelBackend>(
    config: &TrainConfig,
    run_dir: &Path,
    device: &B::Device,
    resume: bool,
    collective: Arc<dyn Collective>,
) -> Result<TrainSummary, TrainError> {
    let devices = std::slice::from_ref(device);
    run_training::<B>(config, run_dir, devices, resume, Some(collective))
}

fn run_training<B: AutodiffKernelBackend>(
    config: &TrainConfig,
    run_dir: &Path,
    devices: &[B::Device],
    resume: bool,
    collective: Option<Arc<dyn Collective>>,
) -> Result<TrainSummary, TrainError> {
    let started = Instant::now();
    let device = devices
        .first()
        .ok_or_else(|| run_error(run_dir, "no device to train on"))?;
    let (rank, ranks) = collective.as_ref().map_or((0, 1), |c| (c.rank(), c.size()));
    let run_dir = &match rank {
        0 => run_dir.to_path_buf(),
        rank => run_dir.join("ranks").join(rank.to_string()),
    };
    let run = RunFolder(run_dir.to_path_buf());
    let start_epoch = if resume {
        let epoch = run
            .last_checkpoint()
            .ok_or_else(|| run_error(&run.checkpoints(), "no checkpoint to resume from"))?;
        if epoch >= config.epochs {
            return Err(run_error(
                run_dir,
                format!(
                    "already trained {epoch} of {} epochs; ask for more epochs to continue",
                    config.epochs
                ),
            ));
        }
        Some(epoch)
    } else {
        if run.config().exists() {
            return Err(run_error(
                run_dir,
                "a run already lives here; resume it or choose another run folder",
            ));
        }
        None
    };

    let DataSplits { train, test, info } = config.data.load()?;
    let mut train = limit(train, config.train_limit);
    let mut test = limit(test, config.test_limit);
    if ranks > 1 {
        let first_epoch = start_epoch.unwrap_or(0) as u64;
        train = Arc::new(Shard::new(train, rank, ranks, config.seed, first_epoch));
        if rank > 0 {
            test = limit(test, Some(config.batch_size)); // rank 0 validates on the whole set
        }
    }
    let model_config = se_models::config(&config.model)?
        .with_in_channels(info.channels)
        .with_num_classes(info.num_classes());

    std::fs::create_dir_all(run_dir).map_err(|e| run_error(run_dir, e.to_string()))?;
    let write = |path: PathBuf, text: String| {
        std::fs::write(&path, text).map_err(|e| run_error(&path, e.to_string()))
    };
    write(run.config(), config.to_string())?;
    write(run.model_config(), model_config.to_string())?;
    write(run.dataset(), serde_json::to_string_pretty(&info).unwrap())?;

    B::seed(device, config.seed);
    let batcher = ImageBatcher::new(info.mean.clone(), info.std.clone());
    let first_epoch = start_epoch.unwrap_or(0) as u64;
    let train_set = AugmentedDataset::new(
        train,
        Transform::Train(config.augmentation(), info.image_size),
        config.seed + rank as u64,
        first_epoch,
    );
    // Each device reads its own contiguous part of the epoch; one step takes a batch from each.
    let steps_per_epoch = train_set
        .len()
        .div_ceil(devices.len())
        .div_ceil(config.batch_size);
    let train_loader = DataLoaderBuilder::new(batcher.clone())
        .batch_size(config.batch_size)
        .shuffle(config.seed)
        .num_workers(config.num_workers)
        .set_device(device.clone())
        .build(train_set);
    let valid_loader = DataLoaderBuilder::new(batcher)
        .batch_size(config.batch_size)
        .num_workers(config.num_workers)
        .set_device(device.clone())
        .build(AugmentedDataset::new(
            test.clone(),
            Transform::Eval(info.image_size),
            0,
            0,
        ));

    let setup = LearnerSetup {
        run: run.clone(),
        train_loader,
        valid_loader,
        epochs: config.epochs,
        start_epoch,
        model: Classifier::new(
            match &collective {
                // Identical replicas: rank 0's initial weights everywhere.
                Some(c) => broadcast_module(model_config.init::<B>(device), c.as_ref()),
                None => model_config.init::<B>(device),
            },
            config.label_smoothing,
        )
        .with_gradient_averager(collective.clone().map(GradientAverager::new))
        .with_gradient_scale(1.0 / devices.len() as f32),
        devices: devices.to_vec(),
        progress: match (rank, ranks) {
            (0, 1) => Progress::Auto,
            // mpirun forwards output through a pseudo-terminal the dashboard cannot drive.
            (0, _) => Progress::Lines,
            _ => Progress::Silent,
        },
        num_classes: info.num_classes(),
        schedule: LrSchedule::new(
            config.learning_rate,
            config.warmup_epochs,
            config.epochs,
            steps_per_epoch,
            config.schedule.clone(),
        ),
    };
    let weight_decay =
        (config.weight_decay > 0.0).then(|| WeightDecayConfig::new(config.weight_decay as f32));
    let final_model = match &config.optimizer {
        OptimizerKind::Sgd { momentum, nesterov } => {
            let optimizer = SgdConfig::new()
                .with_momentum(Some(MomentumConfig {
                    momentum: *momentum,
                    dampening: 0.0, // PyTorch's default; Burn's is 0.1
                    nesterov: *nesterov,
                }))
                .with_weight_decay(weight_decay)
                .init();
            fit(setup, optimizer)
        }
        OptimizerKind::AdamW => {
            let optimizer = AdamWConfig::new()
                .with_weight_decay(config.weight_decay as f32)
                .init();
            fit(setup, optimizer)
        }
    }
    .model;
    if rank > 0 {
        let test_report = evaluate(&final_model, test, &info, config.batch_size, device);
        return Ok(TrainSummary {
            model: config.model.clone(),
            epochs: config.epochs,
            test: test_report,
            seconds: started.elapsed().as_secs_f64(),
        });
    }

    let recorder = Recorder::new();
    final_model
        .clone()
        .save_file(run.final_model(), &recorder)
        .map_err(|e| run_error(&run.final_model(), e.to_string()))?;
    let rows = read_csv(&run.metrics()).map_err(|e| run_error(&run.metrics(), e))?;
    save_best_model::<B>(&run, &rows, &model_config, config.label_smoothing, device);
    write(run.curves(), curves_svg(&rows))?;

    let test_report = evaluate(&final_model, test, &info, config.batch_size, device);
    let summary = TrainSummary {
        model: config.model.clone(),
        epochs: rows.last().map_or(config.epochs, |row| row.epoch),
        test: test_report,
        seconds: started.elapsed().as_secs_f64(),
    };
    write(
        run.summary(),
        serde_json::to_string_pretty(&summary).unwrap(),
    )?;
    Ok(summary)
}

/// Everything the Learner needs except the optimizer (whose type differs per choice).
struct LearnerSetup<B: AutodiffKernelBackend> {
    run: RunFolder,
    train_loader: Arc<dyn DataLoader<B, ImageBatch<B>>>,
    valid_loader: Arc<dyn DataLoader<B::InnerBackend, ImageBatch<B::InnerBackend>>>,
    epochs: usize,
    start_epoch: Option<usize>,
    model: Classifier<B>,
    /// The devices of the data-parallel replicas (the first holds the weights).
    devices: Vec<B::Device>,
    schedule: LrSchedule,
    /// Top-5 accuracy is only logged with more than five classes.
    num_classes: usize,
    /// How progress is shown.
    progress: Progress,
}

/// How a run shows its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// Burn's dashboard in a terminal, plain lines otherwise.
    Auto,
    /// Plain lines (rank 0 of a distributed run).
    Lines,
    /// Nothing (the other ranks).
    Silent,
}

/// Runs the Learner with metrics, checkpoints and the dashboard (or plain progress lines when
/// stdout is not a terminal), and returns the trained classifier in inference mode.
fn fit<B, O>(setup: LearnerSetup<B>, optimizer: O) -> Classifier<B::InnerBackend>
where
    B: AutodiffKernelBackend,
    O: Optimizer<Classifier<B>, B> + 'static,
{
    let run_dir = &setup.run.0;
    let mut training = SupervisedTraining::new(run_dir, setup.train_loader, setup.valid_loader)
        .metrics((LossMetric::new(), AccuracyMetric::new()))
        .metric_train_numeric(LearningRateMetric::new())
        .metric_train_numeric(IterationSpeedMetric::new())
        .metric_train_numeric(CpuMemory::new())
        // Burn's per-iteration logs first: the checkpointer reads metrics back from it.
        .with_metric_logger(FileMetricLogger::new(run_dir))
        .with_metric_logger(EpochCsvLogger::new(setup.run.metrics()))
        .with_file_checkpointer(Recorder::new())
        .num_epochs(setup.epochs)
        .summary();
    if setup.num_classes > 5 {
        training = training.metrics((TopKAccuracyMetric::new(5),));
    }
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    match setup.progress {
        Progress::Silent => training = training.renderer(PlainProgress::silent()),
        Progress::Lines => training = training.renderer(PlainProgress::default()),
        Progress::Auto if !terminal => training = training.renderer(PlainProgress::default()),
        Progress::Auto => {}
    }
    if let Some(epoch) = setup.start_epoch {
        training = training.checkpoint(epoch);
    }
    if setup.devices.len() > 1 {
        training = training.with_training_strategy(TrainingStrategy::Default(
            ExecutionStrategy::multi(setup.devices, MultiDeviceOptim::OptimMainDevice),
        ));
    }
    training
        .launch(Learner::new(setup.model, optimizer, setup.schedule))
        .model
}

/// Copies the weights of the epoch with the lowest validation loss to `best-model.mpk` (as a
/// plain ResNet record, like `model.mpk`). Burn's checkpointer keeps that epoch's checkpoint.
fn save_best_model<B: AutodiffKernelBackend>(
    run: &RunFolder,
    rows: &[EpochRow],
    model_config: &ResNetConfig,
    label_smoothing: f32,
    device: &B::Device,
) {
    let Some(best) = rows
        .iter()
        .filter(|row| row.get("valid_loss").is_finite())
        .min_by(|a, b| a.get("valid_loss").total_cmp(&b.get("valid_loss")))
    else {
        return;
    };
    let checkpoint = run.checkpoints().join(format!("model-{}.mpk", best.epoch));
    let recorder = Recorder::new();
    let loaded = Classifier::new(
        model_config.init::<B::InnerBackend>(device),
        label_smoothing,
    )
    .load_file(checkpoint.clone(), &recorder, device)
    .and_then(|classifier| classifier.model.save_file(run.best_model(), &recorder));
    if let Err(e) = loaded {
        eprintln!(
            "warning: best model not saved from {}: {e}",
            checkpoint.display()
        );
    }
}
