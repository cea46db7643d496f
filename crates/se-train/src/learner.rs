//! The Learner of a run: its metrics, loggers, checkpointer, dashboard or progress lines, the
//! optimizer the config names, and the execution strategy for several devices.

use std::sync::Arc;

use burn::data::dataloader::DataLoader;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, Optimizer, SgdConfig};
use burn::tensor::backend::AutodiffBackend;
use burn::train::logger::FileMetricLogger;
use burn::train::metric::{
    AccuracyMetric, CpuMemory, IterationSpeedMetric, LearningRateMetric, LossMetric, Metric,
    TopKAccuracyMetric,
};
use burn::train::{
    ExecutionStrategy, Interrupter, Learner, LearnerSummary, MultiDeviceOptim, SupervisedTraining,
    TrainingStrategy,
};
use se_models::weights;

use crate::classifier::Classifier;
use crate::config::{OptimizerKind, TrainConfig};
use crate::data::batcher::ImageBatch;
use crate::finetune::BodyLr;
use crate::progress::PlainProgress;
use crate::report::EpochCsvLogger;
use crate::run::RunFolder;
use crate::schedule::LrSchedule;

/// Everything the Learner needs except the optimizer (whose type differs per choice).
pub(crate) struct LearnerSetup<B: AutodiffBackend> {
    pub(crate) run: RunFolder,
    pub(crate) train_loader: Arc<dyn DataLoader<B, ImageBatch<B>>>,
    pub(crate) valid_loader: Arc<dyn DataLoader<B::InnerBackend, ImageBatch<B::InnerBackend>>>,
    pub(crate) epochs: usize,
    pub(crate) start_epoch: Option<usize>,
    pub(crate) model: Classifier<B>,
    /// The devices of the data-parallel replicas (the first holds the weights).
    pub(crate) devices: Vec<B::Device>,
    /// Stops the Learner early (the loss guard holds a handle to it).
    pub(crate) interrupter: Interrupter,
    pub(crate) schedule: LrSchedule,
    /// Top-5 accuracy is only logged with more than five classes.
    pub(crate) num_classes: usize,
    /// How progress is shown.
    pub(crate) progress: Progress,
}

/// How a run shows its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
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
    B: AutodiffBackend,
    O: Optimizer<Classifier<B>, B> + 'static,
{
    let run_dir = &setup.run.0;
    let (loss, accuracy, top5) = (
        LossMetric::new(),
        AccuracyMetric::new(),
        TopKAccuracyMetric::new(5),
    );
    let (learning_rate, speed, memory) = (
        LearningRateMetric::new(),
        IterationSpeedMetric::new(),
        CpuMemory::new(),
    );
    let mut summarised = vec![loss.name(), accuracy.name(), learning_rate.name()];
    let mut training = SupervisedTraining::new(run_dir, setup.train_loader, setup.valid_loader)
        .metrics((loss, accuracy))
        .metric_train_numeric(learning_rate)
        .metric_train_numeric(speed)
        .metric_train_numeric(memory)
        // Burn's per-iteration logs first: the checkpointer reads metrics back from it.
        .with_metric_logger(FileMetricLogger::new(run_dir))
        .with_metric_logger(EpochCsvLogger::new(setup.run.metrics()))
        .with_file_checkpointer(weights::Recorder::new())
        .with_interrupter(setup.interrupter)
        .num_epochs(setup.epochs);
    if setup.num_classes > 5 {
        summarised.push(top5.name());
        training = training.metrics((top5,));
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
    let model = training
        .launch(Learner::new(setup.model, optimizer, setup.schedule))
        .model;
    // Burn's own `.summary()` would print the whole module tree (~400 lines for a ResNet) above
    // the table; this is the same table without it.
    if setup.progress != Progress::Silent
        && let Ok(summary) = LearnerSummary::new(
            run_dir,
            &summarised.iter().map(|n| n.as_str()).collect::<Vec<_>>(),
        )
    {
        println!("{summary}");
    }
    model
}

/// Builds the optimizer the config names (with the body's learning-rate multiplier of a
/// fine-tuning run) and runs the Learner with it.
pub(crate) fn fit_with_optimizer<B: AutodiffBackend>(
    config: &TrainConfig,
    setup: LearnerSetup<B>,
) -> Classifier<B::InnerBackend> {
    let body_lr_mult = config.finetune.as_ref().map_or(1.0, |f| f.body_lr_mult);
    let weight_decay =
        (config.weight_decay > 0.0).then(|| WeightDecayConfig::new(config.weight_decay as f32));
    match &config.optimizer {
        OptimizerKind::Sgd { momentum, nesterov } => {
            let optimizer = SgdConfig::new()
                .with_momentum(Some(MomentumConfig {
                    momentum: *momentum,
                    dampening: 0.0, // PyTorch's default; Burn's is 0.1
                    nesterov: *nesterov,
                }))
                .with_weight_decay(weight_decay)
                .init();
            fit(setup, BodyLr::new(optimizer, body_lr_mult))
        }
        OptimizerKind::AdamW => {
            let optimizer = AdamWConfig::new()
                .with_weight_decay(config.weight_decay as f32)
                .init();
            fit(setup, BodyLr::new(optimizer, body_lr_mult))
        }
    }
}
