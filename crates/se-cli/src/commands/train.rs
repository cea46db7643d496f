//! `se train`: train a model; `--resume` continues a run.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::config::Config;
use clap::{Args, ValueEnum};
use se_core::{Gate, SePlacement, Squeeze};
use se_models::interop::Layout;
use se_models::{AttentionVariant, ResNetConfig};
use se_train::{
    DataSource, FineTuneConfig, OptimizerKind, ScheduleKind, TrainConfig, TrainOptions,
    TrainSummary,
};

use crate::backend::{self, Job, Precision};

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

/// How several processes train one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Distributed {
    /// One rank per process of an MPI job; gradients are averaged with MPI all-reduce.
    Mpi,
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

/// The paper's ablations as changes to the model's attention (`se_models::AttentionVariant`).
#[derive(Args, Debug, Clone, Default)]
pub struct VariantArgs {
    /// Ablation: the SE reduction ratio r, hidden width exactly C/r (paper §6.1).
    #[arg(long)]
    pub reduction: Option<usize>,
    /// Ablation: the SE squeeze; `none` is the paper's NoSqueeze (§6.2, §6.3).
    #[arg(long, value_enum)]
    pub squeeze: Option<SqueezeArg>,
    /// Ablation: the SE excitation's gate (§6.3).
    #[arg(long, value_enum)]
    pub gate: Option<GateArg>,
    /// Ablation: where the attention sits in the block (§6.5).
    #[arg(long, value_enum)]
    pub placement: Option<PlacementArg>,
    /// Ablation: only these stages (1-4) carry attention, e.g. `--se-stages 3` (§6.4).
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub se_stages: Option<Vec<usize>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SqueezeArg {
    Avg,
    Max,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GateArg {
    Sigmoid,
    Relu,
    Tanh,
    HardSigmoid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlacementArg {
    Standard,
    Pre,
    Post,
    Identity,
}

impl VariantArgs {
    /// The variant these options ask for; `None` when none is given.
    pub fn variant(&self) -> Option<AttentionVariant> {
        let variant = AttentionVariant::new()
            .with_reduction(self.reduction)
            .with_squeeze(self.squeeze.map(|s| match s {
                SqueezeArg::Avg => Squeeze::Avg,
                SqueezeArg::Max => Squeeze::Max,
                SqueezeArg::None => Squeeze::None,
            }))
            .with_gate(self.gate.map(|g| match g {
                GateArg::Sigmoid => Gate::Sigmoid,
                GateArg::Relu => Gate::Relu,
                GateArg::Tanh => Gate::Tanh,
                GateArg::HardSigmoid => Gate::HardSigmoid,
            }))
            .with_placement(self.placement.map(|p| match p {
                PlacementArg::Standard => SePlacement::Standard,
                PlacementArg::Pre => SePlacement::Pre,
                PlacementArg::Post => SePlacement::Post,
                PlacementArg::Identity => SePlacement::Identity,
            }))
            .with_stages(self.se_stages.clone());
        (!variant.is_identity()).then_some(variant)
    }

    /// `config` with the variant applied, refused with the option's name when it does not fit.
    pub fn apply(&self, config: ResNetConfig) -> Result<ResNetConfig> {
        let Some(variant) = self.variant() else {
            return Ok(config);
        };
        let config = variant.apply(config).map_err(|e| {
            let option = match e.option {
                "stages" => "--se-stages".to_string(),
                other => format!("--{other}"),
            };
            anyhow::anyhow!(
                "{option} {}",
                e.to_string().trim_start_matches(e.option).trim()
            )
        })?;
        config.validate().map_err(|e| match e.field {
            "attention_stages" => anyhow::anyhow!("--se-stages {}: {}", e.value, e.rule),
            _ => anyhow::anyhow!("{e}"),
        })?;
        Ok(config)
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

// Every default below is `TrainConfig`'s own, so the library and the CLI cannot drift apart.

fn defaults() -> TrainConfig {
    TrainConfig::new()
}

fn default_optimizer() -> OptimizerArg {
    match defaults().optimizer {
        OptimizerKind::Sgd { .. } => OptimizerArg::Sgd,
        OptimizerKind::AdamW => OptimizerArg::Adamw,
    }
}

fn default_momentum() -> f64 {
    match (defaults().optimizer, OptimizerKind::default_sgd()) {
        (OptimizerKind::Sgd { momentum, .. }, _) | (_, OptimizerKind::Sgd { momentum, .. }) => {
            momentum
        }
        _ => unreachable!("default_sgd is SGD"),
    }
}

fn default_schedule() -> ScheduleArg {
    match defaults().schedule {
        ScheduleKind::Cosine => ScheduleArg::Cosine,
        ScheduleKind::Step { .. } => ScheduleArg::Step,
    }
}

fn default_step() -> (usize, f64) {
    match ScheduleKind::default_step() {
        ScheduleKind::Step {
            every_epochs,
            gamma,
        } => (every_epochs, gamma),
        ScheduleKind::Cosine => unreachable!("default_step is a step schedule"),
    }
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Registered model name (`se models` lists them).
    #[arg(long, default_value_t = defaults().model)]
    pub model: String,
    #[command(flatten)]
    pub data: DataArgs,
    /// Run folder for the config, checkpoints, metrics and models (default: runs/<model>-<dataset>-<n>).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Continue the run in --run-dir from its last checkpoint (its saved config is used; --epochs may raise the total).
    #[arg(long)]
    pub resume: bool,
    /// Data-parallel training over the ranks of `mpirun -np N se train --distributed mpi ...`
    /// (an `se` built with `--features mpi`); --batch-size is per rank.
    #[arg(long, value_enum)]
    pub distributed: Option<Distributed>,
    /// Train on several GPUs of this machine in one process, e.g. `--devices 0,1` (data parallel,
    /// --batch-size per device; default: one device, see SE_DEVICE).
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub devices: Option<Vec<usize>>,
    /// Float precision of weights, activations and gradients: f16 and bf16 on GPU backends
    /// (weights are saved in f32 either way).
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub precision: Precision,
    /// Epochs [default: `TrainConfig`'s, 5; on --resume, the run's own].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Images per step.
    #[arg(long, default_value_t = defaults().batch_size)]
    pub batch_size: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = defaults().learning_rate)]
    pub lr: f64,
    /// Linear warmup, in epochs.
    #[arg(long, default_value_t = defaults().warmup_epochs)]
    pub warmup_epochs: f64,
    /// Learning-rate schedule after warmup.
    #[arg(long, value_enum, default_value_t = default_schedule())]
    pub schedule: ScheduleArg,
    /// Step schedule: epochs between drops.
    #[arg(long, default_value_t = default_step().0)]
    pub step_epochs: usize,
    /// Step schedule: factor of each drop.
    #[arg(long, default_value_t = default_step().1)]
    pub gamma: f64,
    /// Optimizer.
    #[arg(long, value_enum, default_value_t = default_optimizer())]
    pub optimizer: OptimizerArg,
    /// SGD momentum.
    #[arg(long, default_value_t = default_momentum())]
    pub momentum: f64,
    /// Plain (heavy-ball) momentum instead of Nesterov.
    #[arg(long)]
    pub no_nesterov: bool,
    /// Weight decay.
    #[arg(long, default_value_t = defaults().weight_decay)]
    pub weight_decay: f64,
    /// Label smoothing of the loss.
    #[arg(long, default_value_t = defaults().label_smoothing)]
    pub label_smoothing: f32,
    /// Seed of weights, shuffling and augmentation.
    #[arg(long, default_value_t = defaults().seed)]
    pub seed: u64,
    /// Data-loader worker threads.
    #[arg(long, default_value_t = defaults().num_workers)]
    pub workers: usize,
    /// Train on N training images only, spread evenly over the set.
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Validate on N test images only, spread evenly over the set.
    #[arg(long)]
    pub test_limit: Option<usize>,
    /// Start from these weights (fine-tuning): Burn weights (.mpk, from `se import` or a run)
    /// or a PyTorch checkpoint (.pth, .safetensors, ...). The classifier is re-created for the
    /// data's classes; every other tensor must fit.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Key layout of a PyTorch --init checkpoint: timm, torchvision or cadene (default cadene
    /// for legacy_* models, timm otherwise).
    #[arg(long)]
    pub layout: Option<Layout>,
    /// Keep these parts as initialised, a prefix of stem,layer1,layer2,layer3,layer4: no
    /// gradient, BatchNorm statistics fixed.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub freeze: Vec<String>,
    /// Every BatchNorm uses and keeps its running statistics (scale and shift still learn).
    #[arg(long)]
    pub freeze_bn: bool,
    /// Learning rate of everything but the classifier, as a multiple of --lr.
    #[arg(long, default_value_t = FineTuneConfig::new().body_lr_mult)]
    pub body_lr_mult: f64,
    /// Per-channel mean of the input normalisation, e.g. 0.485,0.456,0.406 [default: the data's,
    /// or ImageNet's for --init with PyTorch weights, or the --init run's].
    #[arg(long, value_delimiter = ',', num_args = 1.., requires = "std")]
    pub mean: Option<Vec<f32>>,
    /// Per-channel standard deviation of the input normalisation (with --mean).
    #[arg(long, value_delimiter = ',', num_args = 1.., requires = "mean")]
    pub std: Option<Vec<f32>>,
    #[command(flatten)]
    pub variant: VariantArgs,
}

impl TrainArgs {
    fn config(&self) -> Result<TrainConfig> {
        // A variant that does not fit the model is refused here, before anything is written.
        self.variant.apply(se_models::config(&self.model)?)?;
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
        let finetune = FineTuneConfig::new()
            .with_init(self.init.clone())
            .with_layout(self.layout)
            .with_freeze(self.freeze.clone())
            .with_freeze_bn(self.freeze_bn)
            .with_body_lr_mult(self.body_lr_mult)
            .with_normalize(self.mean.clone().zip(self.std.clone()));
        if finetune != FineTuneConfig::new() {
            config.finetune = Some(finetune);
        }
        config.variant = self.variant.variant();
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

/// The option of `se train` that sets a [`TrainConfig`] field, for messages.
fn flag(field: &str) -> &str {
    match field {
        "batch_size" => "--batch-size",
        "learning_rate" => "--lr",
        "epochs" => "--epochs",
        "warmup_epochs" => "--warmup-epochs",
        "weight_decay" => "--weight-decay",
        "label_smoothing" => "--label-smoothing",
        "momentum" => "--momentum",
        "every_epochs" => "--step-epochs",
        "gamma" => "--gamma",
        "train_limit" => "--train-limit",
        "test_limit" => "--test-limit",
        "image_size" => "--image-size",
        "freeze" => "--freeze",
        "body_lr_mult" => "--body-lr-mult",
        "normalize" => "--mean/--std",
        other => other,
    }
}

/// Refuses a config no run can start with, naming the option, before anything is written.
fn check(config: &TrainConfig) -> Result<()> {
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("{} {}: {}", flag(e.field), e.value, e.rule))
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
        if args.variant.variant().is_some() {
            bail!("--resume continues the run's own model: leave out the ablation options");
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
    check(&config)?;
    if let Some(devices) = &args.devices {
        let mut seen = devices.clone();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() != devices.len() {
            bail!("--devices {devices:?}: each device at most once");
        }
    }
    if args.distributed == Some(Distributed::Mpi) {
        if args.run_dir.is_none() {
            bail!("--distributed needs --run-dir: every rank must agree on the run folder");
        }
        if args.precision != Precision::F32 {
            bail!("--precision does not combine with --distributed yet: MPI ranks train in f32");
        }
        if args.devices.is_some() {
            bail!(
                "--devices does not combine with --distributed: run one rank per GPU instead \
                 (each rank takes the GPU of its local rank, or SE_DEVICE)"
            );
        }
        return train_mpi(&config, &run_dir, args.resume);
    }
    let devices = match &args.devices {
        Some(indices) => backend::devices(indices)?,
        None => vec![backend::device()?],
    };
    println!(
        "training {} on {:?} for {} epochs, batch {} (backend {}, {}), run folder {}",
        config.model,
        config.data,
        config.epochs,
        config.batch_size,
        backend::NAME,
        args.precision.name(),
        run_dir.display()
    );
    if devices.len() > 1 {
        println!(
            "data parallel on {} devices {devices:?}: batch {} per device, {} per step in all; \
             learning rate {} applies to the gradient averaged over the devices (not scaled)",
            devices.len(),
            config.batch_size,
            config.batch_size * devices.len(),
            config.learning_rate,
        );
    }
    let summary = backend::run_with_precision(
        args.precision,
        devices,
        TrainJob {
            config: &config,
            run_dir: &run_dir,
            resume: args.resume,
        },
    )?;
    report(&summary, &run_dir);
    Ok(())
}

/// `se train` on one or several devices, at any precision.
struct TrainJob<'a> {
    config: &'a TrainConfig,
    run_dir: &'a std::path::Path,
    resume: bool,
}

impl Job for TrainJob<'_> {
    type Output = TrainSummary;

    fn run<B: burn::tensor::backend::AutodiffBackend>(
        self,
        devices: Vec<B::Device>,
    ) -> Result<TrainSummary> {
        let options = TrainOptions::<B>::on_devices(devices).with_resume(self.resume);
        Ok(se_train::train(self.config, self.run_dir, options)?)
    }
}

fn report(summary: &TrainSummary, run_dir: &std::path::Path) {
    println!(
        "done in {:.0}s: test top-1 {:.2}%, top-5 {:.2}% on {} images; models, metrics.csv and curves (.svg, .png) in {}",
        summary.seconds,
        100.0 * summary.test.top1,
        100.0 * summary.test.top5,
        summary.test.images,
        run_dir.display()
    );
}

/// One rank of an MPI job. A rank that fails aborts the whole job (the others would wait in
/// their next all-reduce); mpirun likewise ends the job when a rank dies.
#[cfg(feature = "mpi")]
fn train_mpi(config: &TrainConfig, run_dir: &std::path::Path, resume: bool) -> Result<()> {
    use std::sync::Arc;

    let (_universe, collective) =
        se_train::distributed::mpi::init().map_err(|e| anyhow::anyhow!("MPI: {e}"))?;
    let collective = Arc::new(collective);
    collective.abort_on_panic();
    let (rank, ranks) = (
        se_train::distributed::Collective::rank(collective.as_ref()),
        se_train::distributed::Collective::size(collective.as_ref()),
    );
    if rank == 0 {
        println!(
            "training {} on {:?} for {} epochs (backend {}), run folder {}\n\
             distributed over {ranks} MPI ranks: batch {} per rank, {} per step in all; learning \
             rate {} applies to the gradient averaged over the ranks (not scaled); BatchNorm \
             statistics per rank",
            config.model,
            config.data,
            config.epochs,
            backend::NAME,
            run_dir.display(),
            config.batch_size,
            config.batch_size * ranks,
            config.learning_rate,
        );
    }
    let result = backend::device().and_then(|device| {
        let options = TrainOptions::<backend::TrainBackend>::new(device)
            .with_resume(resume)
            .with_collective(collective.clone());
        se_train::train(config, run_dir, options).map_err(Into::into)
    });
    match result {
        Ok(summary) => {
            if rank == 0 {
                report(&summary, run_dir);
            }
            Ok(())
        }
        Err(error) => {
            eprintln!("error on rank {rank} of {ranks}: {error:#}");
            collective.abort(1)
        }
    }
}

#[cfg(not(feature = "mpi"))]
fn train_mpi(_: &TrainConfig, _: &std::path::Path, _: bool) -> Result<()> {
    bail!(
        "this `se` was built without MPI: build it with `cargo build --release -p se-cli \
         --features mpi` (needs apt-get install libopenmpi-dev openmpi-bin libclang-dev)"
    )
}
