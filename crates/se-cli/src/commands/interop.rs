//! `se import`, `se export` and `se logits`: weights to and from PyTorch, and raw logits for
//! comparing with it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::config::Config;
use burn::tensor::{Tensor, TensorData};
use clap::Args;
use se_models::interop::{self, CheckpointFormat, InteropError, Layout, npy};
use se_models::{ResNet, ResNetConfig, weights};

use crate::backend::{self, Backend};

/// Whether a weights file is a PyTorch checkpoint (else Burn weights), by its extension.
fn is_pytorch_file(path: &Path) -> bool {
    CheckpointFormat::of(path).is_some()
}

/// The model config stored beside Burn weights: `X.json` for `X.mpk` (written by `se import`),
/// or a run folder's `model.json`.
fn config_beside(weights: &Path) -> Option<PathBuf> {
    [
        weights.with_extension("json"),
        weights.with_file_name("model.json"),
    ]
    .into_iter()
    .find(|path| path.is_file())
}

/// The model and where its weights come from, shared by the three commands.
#[derive(Args, Debug)]
pub struct ModelWeightsArgs {
    /// Registered model name (see `se models`); for Burn weights with a `.json` config beside
    /// them (from `se import` or a run folder) it may be left out.
    #[arg(long, short)]
    pub model: Option<String>,
    /// Weights: a PyTorch checkpoint (.pth, .pt, .bin, .safetensors) or Burn weights (.mpk).
    #[arg(long, required_unless_present = "run_dir", conflicts_with = "run_dir")]
    pub weights: Option<PathBuf>,
    /// A run folder: its final weights (`model.mpk`, with `model.json` beside them).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Key layout of a PyTorch checkpoint: timm, torchvision or cadene; default cadene for
    /// `legacy_*` models, timm otherwise.
    #[arg(long)]
    pub layout: Option<Layout>,
    /// Number of classes; default the checkpoint's classifier size.
    #[arg(long)]
    pub num_classes: Option<usize>,
}

impl ModelWeightsArgs {
    /// The weights file: `--weights`, or the run folder's `model.mpk`.
    pub fn weights(&self) -> PathBuf {
        match (&self.weights, &self.run_dir) {
            (Some(weights), _) => weights.clone(),
            (None, Some(run)) => run.join("model.mpk"),
            (None, None) => unreachable!("clap requires --weights or --run-dir"),
        }
    }

    fn registry_config(&self) -> Result<ResNetConfig> {
        let Some(name) = &self.model else {
            bail!("--model NAME is needed for {}", self.weights().display());
        };
        Ok(se_models::config(name)?)
    }

    fn layout(&self, config: &ResNetConfig) -> Result<Layout> {
        let layout = self.layout.unwrap_or_else(|| Layout::native(config));
        layout
            .check(config)
            .map_err(|message| anyhow::anyhow!("--layout {}: {message}", layout.name()))?;
        Ok(layout)
    }

    /// Builds the model and loads the weights; `partial` only applies to PyTorch checkpoints.
    pub fn load(&self, partial: bool) -> Result<(ResNet<Backend>, ResNetConfig)> {
        let device = backend::device()?;
        let path = &self.weights();
        if is_pytorch_file(path) {
            let mut config = self.registry_config()?;
            let layout = self.layout(&config)?;
            let state = interop::read_state_dict(path)?;
            if let Some(classes) = self
                .num_classes
                .or(interop::checkpoint_classes(&state, layout))
            {
                config.num_classes = classes;
            }
            let (model, report) = interop::import_state_dict(
                config.init::<Backend>(&device),
                &state,
                layout,
                partial,
            )
            .map_err(|mismatch| {
                let error = InteropError::Mismatch {
                    path: path.clone(),
                    mismatch,
                };
                anyhow::anyhow!(
                    "{error}  (--partial loads the tensors that fit and keeps the model's own \
                     values for the rest, e.g. a classifier for another number of classes)"
                )
            })?;
            eprintln!(
                "{}: {} tensors loaded ({} layout{})",
                path.display(),
                report.loaded,
                layout.name(),
                match report.prefix.as_str() {
                    "" => String::new(),
                    prefix => format!(", keys under `{prefix}`"),
                }
            );
            if !report.skipped.is_empty() {
                eprintln!(
                    "partial load, left at their initial values or unused:\n{}",
                    report.skipped
                );
            }
            return Ok((model, config));
        }
        if !path.is_file() {
            bail!("{}: no such file", path.display());
        }
        let mut config = match config_beside(path) {
            Some(json) => {
                let config = ResNetConfig::load(&json)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", json.display()))?;
                config
                    .validate()
                    .map_err(|e| anyhow::anyhow!("{}: {e}", json.display()))?;
                config
            }
            None => self.registry_config()?,
        };
        if let Some(classes) = self.num_classes {
            config.num_classes = classes;
        }
        let model = weights::load(config.init::<Backend>(&device), path, &device)?;
        Ok((model, config))
    }
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    #[command(flatten)]
    pub source: ModelWeightsArgs,
    /// Burn weights to write (.mpk), with the model config beside it (.json).
    #[arg(long, short)]
    pub output: PathBuf,
    /// Load what fits and keep initial values for the rest (e.g. a new classifier).
    #[arg(long)]
    pub partial: bool,
}

pub fn import(args: &ImportArgs) -> Result<()> {
    if !is_pytorch_file(&args.source.weights()) {
        bail!(
            "{}: expected a PyTorch checkpoint ({})",
            args.source.weights().display(),
            CheckpointFormat::extension_list()
        );
    }
    let (model, config) = args.source.load(args.partial)?;
    let output = args.output.with_extension("mpk");
    // Each file atomically: a failed or killed import leaves no torn file.
    weights::save(model, &output)
        .map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", output.display()))?;
    se_models::files::write_atomically(
        &output.with_extension("json"),
        config.to_string().as_bytes(),
    )
    .with_context(|| format!("{}: cannot write the model config", output.display()))?;
    println!(
        "wrote {} and {} ({} classes)",
        output.display(),
        output.with_extension("json").display(),
        config.num_classes
    );
    Ok(())
}

/// What `se export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// The weights in the layout's PyTorch key names, for `load_state_dict`.
    Safetensors,
    /// The network as an ONNX graph (opset 17, evaluation mode, dynamic batch and image size).
    Onnx,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub source: ModelWeightsArgs,
    /// The file to write.
    #[arg(long, short)]
    pub output: PathBuf,
    /// What to write [default: onnx for an `.onnx` output, else safetensors].
    #[arg(long, value_enum)]
    pub format: Option<ExportFormat>,
}

pub fn export(args: &ExportArgs) -> Result<()> {
    let (model, config) = args.source.load(false)?;
    let onnx = Some(std::ffi::OsStr::new("onnx"));
    let format = args.format.unwrap_or(if args.output.extension() == onnx {
        ExportFormat::Onnx
    } else {
        ExportFormat::Safetensors
    });
    if format == ExportFormat::Onnx {
        se_models::onnx::save(&model, config.in_channels, &args.output)?;
        println!(
            "wrote {} (ONNX opset {}, input `{}` [batch, {}, height, width], output `{}` \
             [batch, {}])",
            args.output.display(),
            se_models::onnx::OPSET,
            se_models::onnx::INPUT,
            config.in_channels,
            se_models::onnx::OUTPUT,
            config.num_classes
        );
        return Ok(());
    }
    let layout = args.source.layout(&config)?;
    let state = interop::export_state_dict(&model, layout);
    interop::write_safetensors(&state, &args.output)?;
    println!(
        "wrote {} ({} tensors, {} layout)",
        args.output.display(),
        state.len(),
        layout.name()
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct LogitsArgs {
    #[command(flatten)]
    pub source: ModelWeightsArgs,
    /// Input batch as NumPy .npy, float32 or float64, shape [N, C, H, W].
    #[arg(long, short)]
    pub input: PathBuf,
    /// Where to write the logits, float32 [N, classes].
    #[arg(long, short)]
    pub output: PathBuf,
}

pub fn logits(args: &LogitsArgs) -> Result<()> {
    let (model, config) = args.source.load(false)?;
    let input = npy::read_npy(&args.input)?;
    let shape: [usize; 4] = match input.shape.as_slice() {
        &[n, c, h, w] if c == config.in_channels => [n, c, h, w],
        shape => bail!(
            "{}: expected shape [N, {}, H, W], found {shape:?}",
            args.input.display(),
            config.in_channels
        ),
    };
    let device = backend::device()?;
    let x = Tensor::<Backend, 4>::from_data(TensorData::new(input.values, shape), &device);
    let logits = model.fold_batch_norms().forward(x);
    let dims = logits.dims().to_vec();
    let values = logits
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("f32 logits");
    npy::write_npy(
        &args.output,
        &npy::Array {
            shape: dims.clone(),
            values,
        },
    )?;
    println!("wrote {} {dims:?}", args.output.display());
    Ok(())
}
