//! `se summary` and `se models`: what a model costs, computed from its configuration.

use anyhow::Result;
use clap::Args;
use se_core::Complexity;
use se_models::{Family, MODELS};

#[derive(Args, Debug)]
pub struct SummaryArgs {
    /// Registered model name (see `se models`).
    #[arg(long, short)]
    pub model: String,
    /// Input height and width; default 224 for ImageNet models, 32 for CIFAR ones.
    #[arg(long)]
    pub input_size: Option<usize>,
    /// Input channels; default 3.
    #[arg(long)]
    pub in_channels: Option<usize>,
    /// Number of classes; default the model's (1000 ImageNet, 10 CIFAR).
    #[arg(long)]
    pub num_classes: Option<usize>,
    #[command(flatten)]
    pub variant: crate::commands::train::VariantArgs,
}

fn default_input_size(family: Family) -> usize {
    match family {
        Family::ImageNet => 224,
        Family::Cifar => 32,
    }
}

fn millions(count: usize) -> String {
    format!("{:.3}M", count as f64 / 1e6)
}

fn giga(macs: u64) -> String {
    format!("{:.4}", macs as f64 / 1e9)
}

pub fn run(args: &SummaryArgs) -> Result<()> {
    let entry = se_models::lookup(&args.model)?;
    let mut config = args.variant.apply((entry.config)())?;
    if let Some(channels) = args.in_channels {
        config.in_channels = channels;
    }
    if let Some(classes) = args.num_classes {
        config.num_classes = classes;
    }
    let size = args.input_size.unwrap_or(default_input_size(entry.family));
    let parts = config.complexity([size, size]);

    println!(
        "{} — input {}x{}x{}, {} classes",
        entry.name, config.in_channels, size, size, config.num_classes
    );
    println!(
        "{:<8} {:>16} {:>14} {:>10}",
        "part", "output (CxHxW)", "parameters", "GMACs"
    );
    let mut total = Complexity::default();
    for part in &parts {
        let [c, h, w] = part.output;
        println!(
            "{:<8} {:>16} {:>14} {:>10}",
            part.name,
            format!("{c}x{h}x{w}"),
            part.cost.params,
            giga(part.cost.macs)
        );
        total += part.cost;
    }
    println!(
        "{:<8} {:>16} {:>14} {:>10}",
        "total",
        "",
        total.params,
        giga(total.macs)
    );
    println!(
        "{} parameters, {} GFLOPs (multiply-adds)",
        millions(total.params),
        giga(total.macs)
    );
    Ok(())
}

pub fn list_models() -> Result<()> {
    println!(
        "{:<22} {:<9} {:>12} {:>8}",
        "model", "family", "parameters", "GMACs"
    );
    for entry in MODELS {
        let size = default_input_size(entry.family);
        let cost = (entry.config)().total_complexity([size, size]);
        let family = match entry.family {
            Family::ImageNet => "imagenet",
            Family::Cifar => "cifar",
        };
        println!(
            "{:<22} {:<9} {:>12} {:>8}",
            entry.name,
            family,
            millions(cost.params),
            giga(cost.macs)
        );
    }
    Ok(())
}
