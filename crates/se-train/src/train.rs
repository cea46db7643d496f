//! A training run: data → augmentation → loaders → Learner (metrics, dashboard, checkpoints) →
//! final model, best model, metrics CSV, curves, test evaluation. Everything lands in one run
//! folder ([`RunFolder`]); a resumed run continues from its last checkpoint.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::data::dataset::Dataset;
use burn::module::Module;
use burn::tensor::backend::AutodiffBackend;
use burn::train::Interrupter;
use se_models::{ResNetConfig, weights};

use crate::classifier::Classifier;
use crate::config::TrainConfig;
use crate::data::augment::{AugmentedDataset, Transform};
use crate::data::batcher::{ImageBatch, ImageBatcher};
use crate::data::{DataSplits, DatasetInfo, ImageDataset, MeanStd};
use crate::distributed::{
    Collective, GradientAverager, RunFingerprint, Shard, agree, broadcast_module,
};
use crate::error::{TrainError, run_error};
use crate::evaluate::evaluate;
use crate::finetune::FineTuneConfig;
use crate::guard::LossGuard;
use crate::learner::{LearnerSetup, Progress, fit_with_optimizer};
use crate::report::{EpochRow, curves_png, curves_svg, read_csv};
use crate::run::{RunFolder, TrainSummary};
use crate::schedule::LrSchedule;

/// How a run is carried out: on which devices, whether it continues, with which other processes.
#[derive(Clone)]
pub struct TrainOptions<B: AutodiffBackend> {
    /// The devices of the data-parallel replicas; the first holds the weights. One for most runs;
    /// several GPUs of one process use Burn's multi-device strategy: each step, every device runs
    /// a replica on its own batch of `batch_size` images (the epoch split into one contiguous
    /// part per device), and the mean of their gradients updates the weights.
    pub devices: Vec<B::Device>,
    /// Continue the run in the folder from its last checkpoint (the config must be the one saved
    /// there, possibly with more epochs).
    pub resume: bool,
    /// The other ranks of a data-parallel job over several processes or machines (MPI, see
    /// [`crate::distributed`]); `None` for one process. `batch_size` is then per rank and the
    /// learning rate applies to the averaged gradient. Rank 0 writes the run folder; rank
    /// `r > 0` keeps only its optimizer checkpoints in `run_dir/ranks/r` (for resuming with the
    /// same number of ranks) and validates on one batch.
    pub collective: Option<Arc<dyn Collective>>,
}

impl<B: AutodiffBackend> TrainOptions<B> {
    /// A new run on one device.
    pub fn new(device: B::Device) -> Self {
        Self::on_devices(vec![device])
    }

    /// A new run on several devices of this process.
    pub fn on_devices(devices: Vec<B::Device>) -> Self {
        Self {
            devices,
            resume: false,
            collective: None,
        }
    }

    /// Continues (`true`) or starts (`false`) the run in the folder.
    pub fn with_resume(self, resume: bool) -> Self {
        Self { resume, ..self }
    }

    /// Trains as one rank of `collective`'s job.
    pub fn with_collective(self, collective: Arc<dyn Collective>) -> Self {
        Self {
            collective: Some(collective),
            ..self
        }
    }
}

/// Trains as `config` says, writing into `run_dir`, as `options` say.
///
/// ```no_run
/// use burn::backend::{Autodiff, Flex};
/// use se_train::{TrainConfig, TrainOptions, train};
///
/// let config = TrainConfig::new().with_epochs(1);
/// let options = TrainOptions::<Autodiff<Flex>>::new(Default::default());
/// let summary = train(&config, "runs/first".as_ref(), options)?;
/// println!("test top-1 {:.2}%", summary.test.top1 * 100.0);
/// # Ok::<(), se_train::TrainError>(())
/// ```
pub fn train<B: AutodiffBackend>(
    config: &TrainConfig,
    run_dir: &Path,
    options: TrainOptions<B>,
) -> Result<TrainSummary, TrainError> {
    let started = Instant::now();
    config.validate()?;
    let TrainOptions {
        devices,
        resume,
        collective,
    } = options;
    let device = devices
        .first()
        .ok_or_else(|| run_error(run_dir, "no device to train on"))?
        .clone();
    if collective.is_some() && devices.len() > 1 {
        return Err(run_error(
            run_dir,
            "a data-parallel job over processes takes one device per process",
        ));
    }
    let (rank, ranks) = collective.as_ref().map_or((0, 1), |c| (c.rank(), c.size()));
    let run = RunFolder(match rank {
        0 => run_dir.to_path_buf(),
        rank => run_dir.join("ranks").join(rank.to_string()),
    });
    let start_epoch = start_epoch(&run, config, resume)?;

    let DataSplits {
        train,
        test,
        mut info,
        faults,
    } = config.data.load()?;
    if let Some((mean, std)) = normalisation(&run, config, start_epoch.is_some(), &info)? {
        (info.mean, info.std) = (mean, std);
    }
    let train = limit(train, config.train_limit);
    let mut test = limit(test, config.test_limit);
    // The epoch's order comes from the seed and the epoch number (the Shard of rank 0 of 1
    // when alone), not from Burn's loader, whose shuffle restarts with a resumed run: a run
    // resumed after a kill then trains on what the uninterrupted run would have.
    let first_epoch = start_epoch.unwrap_or(0) as u64;
    let train: ImageDataset = Arc::new(Shard::new(train, rank, ranks, config.seed, first_epoch));
    let epochs_now = config.epochs.saturating_sub(start_epoch.unwrap_or(0));
    let train_images = train.len() * ranks * epochs_now;
    if rank > 0 {
        test = limit(test, Some(config.batch_size)); // rank 0 validates on the whole set
    }
    if let Some(collective) = &collective {
        let data = serde_json::to_string(&info).unwrap_or_default();
        let fingerprint = RunFingerprint::new(&config.to_string(), &data, start_epoch.unwrap_or(0));
        agree(collective.as_ref(), &fingerprint)?;
    }
    let model_config = config.model_config(info.channels, info.num_classes())?;
    let min_size = model_config.min_input_size();
    if info.image_size.iter().any(|&side| side < min_size) {
        return Err(TrainError::ImageTooSmall {
            model: config.model.clone(),
            image_size: info.image_size,
            min_size,
        });
    }
    B::seed(&device, config.seed);
    let finetune = config.finetune.clone().unwrap_or_else(FineTuneConfig::new);
    let model = match start_epoch {
        // A resumed run's weights come from its checkpoint.
        None => finetune.initial_model::<B>(&model_config, &device)?,
        Some(_) => None,
    };
    let mut model = model.unwrap_or_else(|| model_config.init::<B>(&device));
    if finetune.freeze_bn {
        model = model.freeze_batch_norms();
    }
    run.write_start(config, &model_config, &info)?;

    let (train_loader, valid_loader, steps_per_epoch) = loaders::<B>(
        config,
        &info,
        train,
        test.clone(),
        &device,
        (rank, devices.len()),
        start_epoch,
    );
    let model = match &collective {
        // Identical replicas: rank 0's initial weights everywhere.
        Some(c) => broadcast_module(model, c.as_ref()),
        None => model,
    };
    let interrupter = Interrupter::new();
    let loss_guard = LossGuard::new(interrupter.clone());
    faults.stop_on_fault(interrupter.clone());
    let devices_count = devices.len();
    let setup = LearnerSetup {
        run: run.clone(),
        train_loader,
        valid_loader,
        epochs: config.epochs,
        start_epoch,
        model: Classifier::new(model, config.label_smoothing)
            .with_gradient_averager(collective.clone().map(GradientAverager::new))
            .with_gradient_scale(1.0 / devices.len() as f32)
            .with_loss_guard(loss_guard.clone())
            .with_frozen_parts(finetune.frozen_parts()),
        devices,
        interrupter,
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
    let fit_started = Instant::now();
    let final_model = fit_with_optimizer(config, setup).model;
    let fit_seconds = fit_started.elapsed().as_secs_f64();
    if let Some(error) = faults.first() {
        return Err(error.into());
    }
    if let Some(bad) = loss_guard.tripped() {
        let step = bad.step / devices_count;
        let epoch = start_epoch.unwrap_or(0) + step / steps_per_epoch.max(1) + 1;
        return Err(stop_non_finite(
            &run,
            epoch,
            Some(step % steps_per_epoch.max(1) + 1),
            bad.loss,
        ));
    }

    let mut epochs = config.epochs;
    if rank == 0 {
        let saved = weights::save(final_model.clone(), &run.final_model());
        saved.map_err(|e| run_error(&run.final_model(), e.to_string()))?;
        let rows = read_csv(&run.metrics()).map_err(|e| run_error(&run.metrics(), e.message))?;
        // A loss that went non-finite in validation only (the weights after an epoch's last
        // step): that epoch's checkpoint is not kept either.
        let losses = ["train_loss", "valid_loss"];
        if let Some(row) = rows
            .iter()
            .find(|r| losses.iter().any(|c| !r.get(c).is_finite()))
        {
            let loss = losses.iter().map(|c| row.get(c)).find(|v| !v.is_finite());
            return Err(stop_non_finite(
                &run,
                row.epoch,
                None,
                loss.unwrap_or(f64::NAN),
            ));
        }
        save_best_model::<B>(&run, &rows, &model_config, config.label_smoothing, &device);
        run.write(&run.curves(), curves_svg(&rows))?;
        match curves_png(&rows) {
            Ok(png) => run.write(&run.curves_png(), png)?,
            Err(e) => eprintln!("warning: {}: not drawn: {e}", run.curves_png().display()),
        }
        epochs = rows.last().map_or(epochs, |row| row.epoch);
    }
    let summary = TrainSummary {
        model: config.model.clone(),
        epochs,
        test: evaluate(&final_model, test, &info, config.batch_size, &device),
        seconds: started.elapsed().as_secs_f64(),
        parameters: Some(model_config.total_complexity(info.image_size).params),
        macs: Some(model_config.total_complexity(info.image_size).macs),
        train_images_per_second: Some(train_images as f64 / fit_seconds.max(1e-9)),
    };
    if rank == 0 {
        run.write(
            &run.summary(),
            serde_json::to_string_pretty(&summary).unwrap(),
        )?;
    }
    Ok(summary)
}

/// The input normalisation when it is not the data's own: a resumed run keeps the one it
/// started with (its `dataset.json`), a fine-tuning run takes the one given or its initial
/// weights' (ImageNet statistics for ImageNet weights). Said in one line.
fn normalisation(
    run: &RunFolder,
    config: &TrainConfig,
    resume: bool,
    info: &DatasetInfo,
) -> Result<Option<MeanStd>, TrainError> {
    if resume {
        return Ok(run.load_model_info().ok().and_then(|(_, saved)| {
            (saved.channels == info.channels).then_some((saved.mean, saved.std))
        }));
    }
    let Some(finetune) = &config.finetune else {
        return Ok(None);
    };
    let normalisation = finetune.normalisation(info)?;
    if let Some((mean, std)) = &normalisation {
        eprintln!("input normalised with mean {mean:?}, std {std:?} (not the data's own)");
    }
    Ok(normalisation)
}

/// Removes what the epochs from `epoch` on left (checkpoints, metrics rows), so that the newest
/// checkpoint is the last finite one, and says so.
fn stop_non_finite(
    run: &RunFolder,
    epoch: usize,
    iteration: Option<usize>,
    loss: f64,
) -> TrainError {
    if let Err(e) = run.forget_from(epoch) {
        return e;
    }
    TrainError::NonFiniteLoss {
        epoch,
        iteration,
        loss,
        last_checkpoint: run.last_checkpoint(),
    }
}

/// The epoch a run starts after: `None` for a new run (the folder must hold none), the last
/// checkpoint's for a resumed one (which must have epochs left).
fn start_epoch(
    run: &RunFolder,
    config: &TrainConfig,
    resume: bool,
) -> Result<Option<usize>, TrainError> {
    if !resume {
        if run.config().exists() {
            return Err(run_error(
                &run.0,
                "a run already lives here; resume it or choose another run folder",
            ));
        }
        return Ok(None);
    }
    let no_checkpoint = || run_error(&run.checkpoints(), "no checkpoint to resume from");
    let mut epoch = run.last_checkpoint().ok_or_else(no_checkpoint)?;
    // A run killed while a checkpoint was written leaves it torn: resume from the one before.
    while let Err(why) = run.verify_checkpoint(epoch) {
        eprintln!(
            "warning: the checkpoint of epoch {epoch} is incomplete ({why}); it is set aside \
             (*.mpk.torn) and the run resumes from the checkpoint before it"
        );
        run.set_aside_checkpoint(epoch)?;
        epoch = run.last_checkpoint().ok_or_else(no_checkpoint)?;
    }
    if epoch >= config.epochs {
        return Err(run_error(
            &run.0,
            format!(
                "already trained {epoch} of {} epochs; ask for more epochs to continue",
                config.epochs
            ),
        ));
    }
    // A kill between an epoch's metrics row and its checkpoint leaves a row the resumed run
    // writes again: keep the rows of checkpointed epochs only.
    run.forget_from(epoch + 1)?;
    Ok(Some(epoch))
}

/// The training loader (augmented, seeded per rank and epoch; shuffled by the [`Shard`] under
/// it), the validation loader,
/// and the steps per epoch (each of `devices` reads its own contiguous part of the epoch, and
/// one step takes a batch from each).
#[allow(clippy::type_complexity)]
fn loaders<B: AutodiffBackend>(
    config: &TrainConfig,
    info: &DatasetInfo,
    train: ImageDataset,
    test: ImageDataset,
    device: &B::Device,
    (rank, devices): (usize, usize),
    start_epoch: Option<usize>,
) -> (
    Arc<dyn DataLoader<B, ImageBatch<B>>>,
    Arc<dyn DataLoader<B::InnerBackend, ImageBatch<B::InnerBackend>>>,
    usize,
) {
    let batcher = ImageBatcher::new(info.mean.clone(), info.std.clone());
    let train_set = AugmentedDataset::new(
        train,
        Transform::Train(config.augmentation(), info.image_size),
        config.seed + rank as u64,
        start_epoch.unwrap_or(0) as u64,
    );
    let steps_per_epoch = train_set
        .len()
        .div_ceil(devices)
        .div_ceil(config.batch_size);
    let train_loader = DataLoaderBuilder::new(batcher.clone())
        .batch_size(config.batch_size)
        .num_workers(config.num_workers)
        .set_device(device.clone())
        .build(train_set);
    let valid_loader = DataLoaderBuilder::new(batcher)
        .batch_size(config.batch_size)
        .num_workers(config.num_workers)
        .set_device(device.clone())
        .build(AugmentedDataset::new(
            test,
            Transform::Eval(info.image_size),
            0,
            0,
        ));
    (train_loader, valid_loader, steps_per_epoch)
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

/// `dataset`, or with a `limit` shorter than it, that many of its images spread evenly over it
/// (`se train --train-limit`/`--test-limit`, `se eval --limit`).
pub fn limit(dataset: ImageDataset, limit: Option<usize>) -> ImageDataset {
    match limit {
        Some(len) if len < dataset.len() => Arc::new(EvenSubset {
            inner: dataset,
            len,
        }),
        _ => dataset,
    }
}

/// Copies the weights of the epoch with the lowest validation loss to `best-model.mpk` (as a
/// plain ResNet record, like `model.mpk`). Burn's checkpointer keeps that epoch's checkpoint.
fn save_best_model<B: AutodiffBackend>(
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
    let recorder = weights::Recorder::new();
    let loaded = Classifier::new(
        model_config.init::<B::InnerBackend>(device),
        label_smoothing,
    )
    .load_file(checkpoint.clone(), &recorder, device)
    .and_then(|classifier| weights::save(classifier.model, &run.best_model()));
    if let Err(e) = loaded {
        eprintln!(
            "warning: best model not saved from {}: {e}",
            checkpoint.display()
        );
    }
}
