//! `se analyze`: what a trained run's excitations learned (the paper's §6.4, Fig. 6 and 7).

use std::path::PathBuf;

use anyhow::{Result, bail};
use burn::tensor::backend::{AutodiffBackend, Backend};
use clap::Args;
use se_train::analysis::{ablate_late, analyze};

use crate::backend::{self, Job};
use crate::commands::eval::{WeightsArgs, run_model_and_data};
use crate::commands::train::DataArgs;

#[derive(Args, Debug)]
pub struct AnalyzeArgs {
    #[command(flatten)]
    pub weights: WeightsArgs,
    /// Data whose test split is analysed; default the run's own dataset.
    #[command(flatten)]
    pub data: DataArgs,
    /// Images per batch.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// The two classes (names) whose images Fig. 7 shows; default the first two.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub classes: Option<Vec<String>>,
    /// Also evaluate with the last stage's excitations replaced by their dataset means, and
    /// count the parameters that saves (the paper's §6.4 observation).
    #[arg(long)]
    pub ablate_late: bool,
    /// Output folder; default <run-dir>/analysis.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: &AnalyzeArgs) -> Result<()> {
    backend::run_with_precision(backend::Precision::F32, vec![backend::device()?], args)
}

impl Job for &AnalyzeArgs {
    type Output = ();

    fn run<B: AutodiffBackend>(self, devices: Vec<B::Device>) -> Result<()> {
        analyze_on::<B::InnerBackend>(self, &devices[0])
    }
}

fn analyze_on<B: Backend>(args: &AnalyzeArgs, device: &B::Device) -> Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size 0: must be at least 1");
    }
    let (weights, model, info, data) = run_model_and_data::<B>(&args.weights, &args.data, device)?;
    if model.se_modules().is_empty() {
        bail!(
            "{}: the model has no SE modules with a squeeze, so no channel excitations to analyse",
            weights.display()
        );
    }
    let classes = match &args.classes {
        None => (0..info.num_classes().min(2)).collect(),
        Some(names) if names.len() != 2 => {
            bail!("--classes: two class names, e.g. --classes cat,dog")
        }
        Some(names) => names
            .iter()
            .map(|name| {
                info.class_names
                    .iter()
                    .position(|c| c == name)
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "--classes: no class `{name}` (the run's: {})",
                            info.class_names.join(", ")
                        )
                    })
            })
            .collect::<Result<Vec<_>>>()?,
    };
    let mut analysis = analyze(
        &model,
        data.test.clone(),
        &info,
        classes,
        args.batch_size,
        device,
    );
    if args.ablate_late {
        let ablation = ablate_late(&model, &analysis, data.test, &info, args.batch_size, device);
        analysis.ablation = Some(ablation);
    }
    if let Some(error) = data.faults.first() {
        bail!("{error} (the analysis stopped being valid there)");
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.weights.run_dir.join("analysis"));
    let title = format!("{}", weights.display());
    analysis.write(&out, &title).map_err(anyhow::Error::msg)?;
    print!("{}", analysis.report(&title));
    println!("\nwritten to {}", out.display());
    Ok(())
}
