//! What the excitations learn (the paper's §6.4, Fig. 6 and 7): the mean channel weights of every
//! SE module per class over a test split, how class-specific each module is, and the
//! observation that the last stage's excitations can be replaced by constants at little cost.
//!
//! [`analyze`] runs the model once over the data with a [`Recorder`] as its excitation hook;
//! [`ablate_late`] runs it again with the last stage's weights replaced by their dataset means.
//! [`Analysis`] writes the CSV, the figures (SVG and PNG) and `report.md`.

use std::fmt::Write as _;
use std::path::Path;

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use plotters::coord::Shift;
use plotters::prelude::*;
use se_core::ExcitationHook;
use se_models::ResNet;
use se_models::files::write_atomically;

use crate::data::{DatasetInfo, ImageDataset};
use crate::evaluate::{BatchHook, EvalReport, evaluate_hooked};
use crate::plot::{self, DrawResult, Picture, value_range};

/// The excitations of one SE module over a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleExcitations {
    /// State-dict name, e.g. `layer3.1.se`.
    pub name: String,
    /// Stage, 1 to 4.
    pub stage: usize,
    /// Mean weight of each channel over the images of each class: `[class][channel]`.
    pub class_means: Vec<Vec<f64>>,
    /// Mean weight of each channel over all images.
    pub mean: Vec<f64>,
    /// Fraction of all weights (images x channels) within 0.01 of 0 or 1: a saturated gate
    /// passes or blocks its channel whatever the image.
    pub saturated: f64,
    /// Each kept image's weights, for the modules of the last stage and the images of the
    /// classes [`analyze`] was asked to keep: `(class, weights)`.
    pub images: Vec<(usize, Vec<f32>)>,
}

impl ModuleExcitations {
    /// Channels of the module.
    pub fn channels(&self) -> usize {
        self.mean.len()
    }

    /// The standard deviation of each channel's class means (0 for a channel every class
    /// excites alike).
    pub fn channel_spreads(&self) -> Vec<f64> {
        let classes = self.class_means.len().max(1) as f64;
        (0..self.channels())
            .map(|c| {
                let values = self.class_means.iter().map(|m| m[c]);
                let mean = values.clone().sum::<f64>() / classes;
                (values.map(|v| (v - mean).powi(2)).sum::<f64>() / classes).sqrt()
            })
            .collect()
    }

    /// How class-specific the module is: [`channel_spreads`](Self::channel_spreads) averaged
    /// over the channels.
    pub fn class_spread(&self) -> f64 {
        self.channel_spreads().iter().sum::<f64>() / self.channels().max(1) as f64
    }
}

/// The excitations of every SE module of a model over a dataset, and the model's accuracy there.
#[derive(Debug, Clone)]
pub struct Analysis {
    /// Class names, in label order.
    pub class_names: Vec<String>,
    /// Images of each class.
    pub images_per_class: Vec<usize>,
    /// The modules in the order the input meets them.
    pub modules: Vec<ModuleExcitations>,
    /// The classes whose images are kept for Fig. 7.
    pub kept_classes: Vec<usize>,
    /// Accuracy of the model as it is.
    pub eval: EvalReport,
    /// The last stage's excitations replaced by their means, if asked for.
    pub ablation: Option<LateAblation>,
}

/// The outcome of [`ablate_late`].
#[derive(Debug, Clone, PartialEq)]
pub struct LateAblation {
    /// The stage whose excitations were replaced.
    pub stage: usize,
    /// Accuracy with the replacement.
    pub eval: EvalReport,
    /// Parameters of that stage's SE modules (their FC layers), which constants replace.
    pub se_parameters: usize,
    /// The constants that replace them: one per channel and module.
    pub constants: usize,
    /// Parameters of the whole model.
    pub model_parameters: usize,
}

/// Sums of the weights each SE module gives each class, filled batch by batch.
pub struct Recorder {
    /// The batch's labels, set before it runs.
    labels: Vec<usize>,
    /// The module the next hook call belongs to.
    next: usize,
    /// `[module][class][channel]` sums.
    sums: Vec<Vec<Vec<f64>>>,
    /// Weights within 0.01 of 0 or 1, per module.
    saturated: Vec<usize>,
    /// Images of each class.
    counts: Vec<usize>,
    /// Modules whose per-image weights are kept, and the classes kept.
    keep_modules: Vec<bool>,
    keep_classes: Vec<usize>,
    images: Vec<Vec<(usize, Vec<f32>)>>,
}

impl Recorder {
    /// A recorder for `classes` classes and one SE module per entry of `keep_modules`, keeping
    /// the per-image weights of the modules marked there for the images of `keep_classes`.
    pub fn new(classes: usize, keep_modules: Vec<bool>, keep_classes: Vec<usize>) -> Self {
        let modules = keep_modules.len();
        Self {
            labels: Vec::new(),
            next: 0,
            sums: vec![vec![Vec::new(); classes]; modules],
            saturated: vec![0; modules],
            counts: vec![0; classes],
            keep_modules,
            keep_classes,
            images: vec![Vec::new(); modules],
        }
    }
}

impl<B: Backend> ExcitationHook<B> for Recorder {
    fn excitation(&mut self, weights: Tensor<B, 2>) -> Tensor<B, 2> {
        let module = self.next;
        self.next += 1;
        let [_, channels] = weights.dims();
        let values: Vec<f32> = weights
            .clone()
            .into_data()
            .convert::<f32>()
            .to_vec()
            .unwrap();
        if module >= self.sums.len() {
            return weights; // a module the model did not list; nothing to attribute it to
        }
        for (row, &label) in values.chunks_exact(channels).zip(&self.labels) {
            let sums = &mut self.sums[module][label];
            sums.resize(channels, 0.0);
            for (sum, &w) in sums.iter_mut().zip(row) {
                *sum += w as f64;
            }
            let saturated = row
                .iter()
                .filter(|&&w| w.abs() < 0.01 || (w - 1.0).abs() < 0.01);
            self.saturated[module] += saturated.count();
            if self.keep_modules[module] && self.keep_classes.contains(&label) {
                self.images[module].push((label, row.to_vec()));
            }
        }
        weights
    }
}

impl<B: Backend> BatchHook<B> for Recorder {
    fn begin_batch(&mut self, labels: &[usize]) {
        self.next = 0;
        self.labels = labels.to_vec();
        for &label in labels {
            self.counts[label] += 1;
        }
    }
}

/// Replaces the weights of chosen modules by constants, one per channel.
struct Replacer {
    next: usize,
    /// Per module: the constants, or `None` to leave it.
    constants: Vec<Option<Vec<f32>>>,
}

impl<B: Backend> ExcitationHook<B> for Replacer {
    fn excitation(&mut self, weights: Tensor<B, 2>) -> Tensor<B, 2> {
        let module = self.next;
        self.next += 1;
        match self.constants.get(module) {
            Some(Some(constants)) => {
                let [n, c] = weights.dims();
                let row = TensorData::new(constants.clone(), [1, c]);
                Tensor::<B, 2>::from_data(row, &weights.device()).repeat_dim(0, n)
            }
            _ => weights,
        }
    }
}

impl<B: Backend> BatchHook<B> for Replacer {
    fn begin_batch(&mut self, _labels: &[usize]) {
        self.next = 0;
    }
}

/// Runs `model` over `dataset` and records every SE module's weights per class, keeping the
/// per-image weights of the last stage's modules for the images of `keep_classes` (Fig. 7).
pub fn analyze<B: Backend>(
    model: &ResNet<B>,
    dataset: ImageDataset,
    info: &DatasetInfo,
    keep_classes: Vec<usize>,
    batch_size: usize,
    device: &B::Device,
) -> Analysis {
    let listed = model.se_modules();
    let last_stage = listed.iter().map(|m| m.stage).max().unwrap_or(0);
    let keep_modules = listed.iter().map(|m| m.stage == last_stage).collect();
    let classes = info.num_classes();
    let mut recorder = Recorder::new(classes, keep_modules, keep_classes.clone());
    let eval = evaluate_hooked(
        model,
        dataset,
        info,
        batch_size,
        device,
        Some(&mut recorder),
    );
    let total: usize = recorder.counts.iter().sum();
    let modules = listed
        .iter()
        .enumerate()
        .map(|(index, listed)| {
            let channels = listed.module.fc2.weight.dims()[1];
            let class_means: Vec<Vec<f64>> = (0..classes)
                .map(|class| {
                    let sums = &recorder.sums[index][class];
                    let count = recorder.counts[class].max(1) as f64;
                    (0..channels)
                        .map(|c| sums.get(c).copied().unwrap_or(0.0) / count)
                        .collect()
                })
                .collect();
            let mean = (0..channels)
                .map(|c| {
                    let sum: f64 = (0..classes)
                        .map(|class| recorder.sums[index][class].get(c).copied().unwrap_or(0.0))
                        .sum();
                    sum / total.max(1) as f64
                })
                .collect();
            ModuleExcitations {
                name: listed.name.clone(),
                stage: listed.stage,
                class_means,
                mean,
                saturated: recorder.saturated[index] as f64 / (total * channels).max(1) as f64,
                images: std::mem::take(&mut recorder.images[index]),
            }
        })
        .collect();
    Analysis {
        class_names: info.class_names.clone(),
        images_per_class: recorder.counts,
        modules,
        kept_classes: keep_classes,
        eval,
        ablation: None,
    }
}

/// The paper's §6.4 observation made testable: runs `model` over `dataset` with the weights of
/// the last stage's SE modules replaced by their dataset means (from `analysis`), and counts
/// the parameters those modules hold.
pub fn ablate_late<B: Backend>(
    model: &ResNet<B>,
    analysis: &Analysis,
    dataset: ImageDataset,
    info: &DatasetInfo,
    batch_size: usize,
    device: &B::Device,
) -> LateAblation {
    let listed = model.se_modules();
    let stage = listed.iter().map(|m| m.stage).max().unwrap_or(0);
    let constants = analysis
        .modules
        .iter()
        .map(|m| (m.stage == stage).then(|| m.mean.iter().map(|&v| v as f32).collect()))
        .collect();
    let mut replacer = Replacer { next: 0, constants };
    let eval = evaluate_hooked(
        model,
        dataset,
        info,
        batch_size,
        device,
        Some(&mut replacer),
    );
    let late = listed.iter().filter(|m| m.stage == stage);
    LateAblation {
        stage,
        eval,
        se_parameters: late.clone().map(|m| m.module.num_params()).sum(),
        constants: late.map(|m| m.module.fc2.weight.dims()[1]).sum(),
        model_parameters: model.num_params(),
    }
}

impl Analysis {
    /// The class names followed by `all`, as the CSV and the figures label them.
    fn series_names(&self) -> impl Iterator<Item = &str> {
        self.class_names
            .iter()
            .map(String::as_str)
            .chain(std::iter::once("all"))
    }

    /// `module,stage,class,channel,mean_excitation`, one row per module, class (and `all`)
    /// and channel.
    pub fn csv(&self) -> String {
        let mut out = String::from("module,stage,class,channel,mean_excitation\n");
        for module in &self.modules {
            let series = module
                .class_means
                .iter()
                .chain(std::iter::once(&module.mean));
            for (name, means) in self.series_names().zip(series) {
                for (channel, value) in means.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "{},{},{},{channel},{value:.6}",
                        module.name,
                        module.stage,
                        csv_field(name)
                    );
                }
            }
        }
        out
    }

    /// The summary in markdown: accuracy, a row per module, the spread per stage, and the
    /// ablation when there is one.
    pub fn report(&self, title: &str) -> String {
        let mut out = format!("# Excitation analysis: {title}\n\n");
        let images: usize = self.images_per_class.iter().sum();
        let _ = writeln!(
            out,
            "{images} test images of {} classes; top-1 accuracy {:.2}%.\n",
            self.class_names.len(),
            100.0 * self.eval.top1
        );
        out += "Per SE module: the mean weight over all images and channels; the class spread \
                (standard deviation across classes of a channel's mean weight, averaged over \
                channels: 0 when the module treats every class alike); the largest such \
                deviation of one channel; and the fraction of weights within 0.01 of 0 or 1 \
                (saturated).\n\n";
        out += "| module | stage | channels | mean weight | class spread | max channel spread | saturated |\n";
        out += "|---|---:|---:|---:|---:|---:|---:|\n";
        for module in &self.modules {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.3} | {:.4} | {:.4} | {:.1}% |",
                module.name,
                module.stage,
                module.channels(),
                module.mean.iter().sum::<f64>() / module.channels().max(1) as f64,
                module.class_spread(),
                module.channel_spreads().into_iter().fold(0.0, f64::max),
                100.0 * module.saturated
            );
        }
        out += "\n| stage | modules | mean class spread |\n|---:|---:|---:|\n";
        for (stage, spread, count) in self.stage_spreads() {
            let _ = writeln!(out, "| {stage} | {count} | {spread:.4} |");
        }
        let spreads: Vec<f64> = self.stage_spreads().iter().map(|s| s.1).collect();
        let rising = spreads.windows(2).all(|w| w[1] >= w[0]);
        let _ = writeln!(
            out,
            "\nThe paper (Fig. 6) finds the excitations class-agnostic in early stages and \
             increasingly class-specific with depth. Here the mean class spread {} from the \
             first stage to the last ({}).",
            if rising {
                "rises at every stage"
            } else {
                "does not rise at every stage"
            },
            spreads
                .iter()
                .map(|s| format!("{s:.4}"))
                .collect::<Vec<_>>()
                .join(" → ")
        );
        if let Some(ablation) = &self.ablation {
            let change = 100.0 * (ablation.eval.top1 - self.eval.top1);
            let _ = writeln!(
                out,
                "\n## The last stage's excitations as constants (`--ablate-late`)\n\n\
                 The weights of every SE module of stage {} replaced by their mean over the \
                 data (the paper, §6.4: the last stage's excitations are nearly saturated and \
                 class-agnostic, so removing them costs little).\n\n\
                 | | top-1 | SE parameters of stage {} | constants instead | share of the model |\n\
                 |---|---:|---:|---:|---:|\n\
                 | as trained | {:.2}% | {} | | {:.2}% |\n\
                 | constant excitations | {:.2}% ({change:+.2} points) | | {} | |\n",
                ablation.stage,
                ablation.stage,
                100.0 * self.eval.top1,
                ablation.se_parameters,
                100.0 * ablation.se_parameters as f64 / ablation.model_parameters.max(1) as f64,
                100.0 * ablation.eval.top1,
                ablation.constants,
            );
        }
        out += "\nFiles: `excitations.csv` (mean weight per module, class and channel), \
                `fig6.svg`/`.png` (mean weight per channel, a line per class and all classes, \
                a panel per module), `fig7.svg`/`.png` (the last stage's weights across images: \
                median and quartiles of each channel for two classes).\n";
        out
    }

    /// `(stage, mean class spread of its modules, modules)`, by stage.
    fn stage_spreads(&self) -> Vec<(usize, f64, usize)> {
        let mut stages: Vec<usize> = self.modules.iter().map(|m| m.stage).collect();
        stages.dedup();
        stages
            .into_iter()
            .map(|stage| {
                let spreads: Vec<f64> = self
                    .modules
                    .iter()
                    .filter(|m| m.stage == stage)
                    .map(ModuleExcitations::class_spread)
                    .collect();
                let count = spreads.len();
                (
                    stage,
                    spreads.iter().sum::<f64>() / count.max(1) as f64,
                    count,
                )
            })
            .collect()
    }

    /// Writes `excitations.csv`, `fig6.svg`, `fig6.png`, `fig7.svg`, `fig7.png` and `report.md`
    /// into `dir` (created), each atomically.
    pub fn write(&self, dir: &Path, title: &str) -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.join(name);
            write_atomically(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))
        };
        write("excitations.csv", self.csv().as_bytes())?;
        let fig6 = ClassMeans(self);
        write("fig6.svg", plot::svg(&fig6)?.as_bytes())?;
        write("fig6.png", &plot::png(&fig6)?)?;
        let fig7 = AcrossImages(self);
        write("fig7.svg", plot::svg(&fig7)?.as_bytes())?;
        write("fig7.png", &plot::png(&fig7)?)?;
        write("report.md", self.report(title).as_bytes())
    }
}

/// A CSV field, quoted when it holds a comma or a quote.
fn csv_field(name: &str) -> String {
    if name.contains([',', '"', '\n']) {
        format!("\"{}\"", name.replace('"', "\"\""))
    } else {
        name.to_string()
    }
}

/// Panel size of the figures, pixels.
const PANEL: (u32, u32) = (330, 240);

/// Fig. 6: a panel per module (a row per stage), the mean weight of each channel, a line per
/// class and a thick black one for all classes.
struct ClassMeans<'a>(&'a Analysis);

/// The stages in order and the modules of each: the grid of Fig. 6.
fn grid(analysis: &Analysis) -> Vec<Vec<&ModuleExcitations>> {
    let mut rows: Vec<Vec<&ModuleExcitations>> = Vec::new();
    for module in &analysis.modules {
        match rows.last_mut() {
            Some(row) if row[0].stage == module.stage => row.push(module),
            _ => rows.push(vec![module]),
        }
    }
    rows
}

impl Picture for ClassMeans<'_> {
    fn size(&self) -> (u32, u32) {
        let rows = grid(self.0);
        let columns = rows.iter().map(Vec::len).max().unwrap_or(1);
        (PANEL.0 * columns as u32, PANEL.1 * rows.len().max(1) as u32)
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        area.fill(&WHITE)?;
        let rows = grid(self.0);
        let columns = rows.iter().map(Vec::len).max().unwrap_or(1);
        let panels = area.split_evenly((rows.len().max(1), columns));
        for (r, row) in rows.iter().enumerate() {
            for (c, module) in row.iter().enumerate() {
                let panel = &panels[r * columns + c];
                let values = module.class_means.iter().flatten().chain(&module.mean);
                let range = value_range(values.copied());
                let mut chart = ChartBuilder::on(panel)
                    .caption(&module.name, ("sans-serif", 14))
                    .margin(6)
                    .x_label_area_size(32)
                    .y_label_area_size(36)
                    .build_cartesian_2d(0.0..(module.channels().max(2) - 1) as f64, range)?;
                chart
                    .configure_mesh()
                    .disable_mesh()
                    .x_desc("channel")
                    .x_label_formatter(&|x| format!("{x:.0}"))
                    .label_style(("sans-serif", 10))
                    .draw()?;
                for (class, means) in module.class_means.iter().enumerate() {
                    let color = Palette99::pick(class).to_rgba();
                    let points = means.iter().enumerate().map(|(i, &v)| (i as f64, v));
                    let series =
                        chart.draw_series(LineSeries::new(points, color.stroke_width(1)))?;
                    if r == 0 && c == 0 {
                        let name = &self.0.class_names[class];
                        series
                            .label(name.as_str())
                            .legend(move |(x, y)| PathElement::new([(x, y), (x + 12, y)], color));
                    }
                }
                let points = module.mean.iter().enumerate().map(|(i, &v)| (i as f64, v));
                let series = chart.draw_series(LineSeries::new(points, BLACK.stroke_width(2)))?;
                if r == 0 && c == 0 {
                    series
                        .label("all")
                        .legend(|(x, y)| PathElement::new([(x, y), (x + 12, y)], BLACK));
                    chart
                        .configure_series_labels()
                        .label_font(("sans-serif", 9))
                        .border_style(BLACK)
                        .background_style(WHITE.mix(0.8))
                        .draw()?;
                }
            }
        }
        area.present()
    }
}

/// Fig. 7: a panel per module of the last stage; for each kept class, the median weight of
/// each channel across its images and the band between the quartiles.
struct AcrossImages<'a>(&'a Analysis);

/// Median and quartiles of each channel over `images`.
fn quartiles(images: &[&Vec<f32>], channels: usize) -> Vec<[f64; 3]> {
    (0..channels)
        .map(|c| {
            let mut values: Vec<f32> = images.iter().map(|w| w[c]).collect();
            values.sort_by(f32::total_cmp);
            let at = |q: f64| match values.len() {
                0 => f64::NAN,
                n => values[((n - 1) as f64 * q).round() as usize] as f64,
            };
            [at(0.25), at(0.5), at(0.75)]
        })
        .collect()
}

impl Picture for AcrossImages<'_> {
    fn size(&self) -> (u32, u32) {
        let late = self
            .0
            .modules
            .iter()
            .filter(|m| !m.images.is_empty())
            .count();
        (PANEL.0 * late.max(1) as u32, PANEL.1 + 20)
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        area.fill(&WHITE)?;
        let late: Vec<&ModuleExcitations> = self
            .0
            .modules
            .iter()
            .filter(|m| !m.images.is_empty())
            .collect();
        let panels = area.split_evenly((1, late.len().max(1)));
        for (index, (module, panel)) in late.iter().zip(&panels).enumerate() {
            let per_class: Vec<(usize, Vec<[f64; 3]>)> = self
                .0
                .kept_classes
                .iter()
                .map(|&class| {
                    let images: Vec<&Vec<f32>> = module
                        .images
                        .iter()
                        .filter(|(label, _)| *label == class)
                        .map(|(_, w)| w)
                        .collect();
                    (class, quartiles(&images, module.channels()))
                })
                .collect();
            let values = per_class
                .iter()
                .flat_map(|(_, q)| q.iter().flatten().copied());
            let mut chart = ChartBuilder::on(panel)
                .caption(&module.name, ("sans-serif", 14))
                .margin(6)
                .x_label_area_size(32)
                .y_label_area_size(36)
                .build_cartesian_2d(
                    0.0..(module.channels().max(2) - 1) as f64,
                    value_range(values),
                )?;
            chart
                .configure_mesh()
                .disable_mesh()
                .x_desc("channel")
                .x_label_formatter(&|x| format!("{x:.0}"))
                .label_style(("sans-serif", 10))
                .draw()?;
            for (class, q) in &per_class {
                let color = Palette99::pick(*class).to_rgba();
                let upper = q.iter().enumerate().map(|(i, v)| (i as f64, v[2]));
                let lower = q.iter().enumerate().rev().map(|(i, v)| (i as f64, v[0]));
                let band: Vec<(f64, f64)> =
                    upper.chain(lower).filter(|p| p.1.is_finite()).collect();
                chart.draw_series(std::iter::once(Polygon::new(band, color.mix(0.2).filled())))?;
                let median = q.iter().enumerate().map(|(i, v)| (i as f64, v[1]));
                let series = chart.draw_series(LineSeries::new(
                    median.filter(|p| p.1.is_finite()),
                    color.stroke_width(2),
                ))?;
                if index == 0 {
                    let name = format!("{} (median, quartiles)", self.0.class_names[*class]);
                    series
                        .label(name)
                        .legend(move |(x, y)| PathElement::new([(x, y), (x + 12, y)], color));
                }
            }
            if index == 0 {
                chart
                    .configure_series_labels()
                    .label_font(("sans-serif", 9))
                    .border_style(BLACK)
                    .background_style(WHITE.mix(0.8))
                    .draw()?;
            }
        }
        area.present()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::ImageItem;
    use burn::data::dataset::InMemDataset;
    use std::sync::Arc;

    type B = burn::backend::Flex;

    #[test]
    fn the_recorder_averages_each_class_and_keeps_the_late_images() {
        let mut recorder = Recorder::new(2, vec![true], vec![1]);
        BatchHook::<B>::begin_batch(&mut recorder, &[0, 1, 1]);
        let weights =
            Tensor::<B, 2>::from_floats([[0.2, 0.4], [0.6, 0.8], [1.0, 0.0]], &Default::default());
        let out = ExcitationHook::<B>::excitation(&mut recorder, weights.clone());
        assert_eq!(
            out.into_data(),
            weights.into_data(),
            "the recorder changes nothing"
        );
        assert_eq!(recorder.counts, [1, 2]);
        let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6);
        assert!(close(&recorder.sums[0][0], &[0.2, 0.4]));
        assert!(close(&recorder.sums[0][1], &[1.6, 0.8]));
        assert_eq!(recorder.saturated, [2]);
        assert_eq!(
            recorder.images[0],
            [(1, vec![0.6f32, 0.8]), (1, vec![1.0, 0.0])]
        );
    }

    /// 24 random 8x8 gray images of 3 classes, with their description.
    fn data() -> (ImageDataset, DatasetInfo) {
        let items: Vec<ImageItem> = (0..24)
            .map(|i| ImageItem {
                pixels: (0..64).map(|p| ((p * 37 + i * 101) % 256) as u8).collect(),
                height: 8,
                width: 8,
                channels: 1,
                label: i % 3,
            })
            .collect();
        let info = DatasetInfo {
            kind: "folder".into(),
            channels: 1,
            image_size: [8, 8],
            class_names: vec!["a".into(), "b,c".into(), "d".into()],
            mean: vec![0.5],
            std: vec![0.25],
        };
        (Arc::new(InMemDataset::new(items)), info)
    }

    #[test]
    fn analysis_covers_every_se_module_and_writes_its_files() {
        let device = Default::default();
        let (dataset, info) = data();
        let model = se_models::config("se_resnet20")
            .unwrap()
            .with_in_channels(1)
            .with_num_classes(3)
            .init::<B>(&device);
        let mut analysis = analyze(&model, dataset.clone(), &info, vec![0, 2], 10, &device);
        assert_eq!(analysis.images_per_class, [8, 8, 8]);
        // The hook watches without changing the result.
        let plain = crate::evaluate(&model, dataset.clone(), &info, 10, &device);
        assert_eq!(analysis.eval, plain);
        let names: Vec<&str> = analysis.modules.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names[0], "layer1.0.se");
        assert_eq!(names[8], "layer3.2.se");
        assert_eq!(names.len(), 9);
        for module in &analysis.modules {
            let channels = [16, 32, 64][module.stage - 1];
            assert_eq!(module.channels(), channels);
            // The overall mean is the mean of the class means (equal class sizes).
            for c in 0..channels {
                let of_classes = module.class_means.iter().map(|m| m[c]).sum::<f64>() / 3.0;
                assert!((module.mean[c] - of_classes).abs() < 1e-6);
                assert!((0.0..=1.0).contains(&module.mean[c]), "sigmoid weights");
            }
            // Per-image weights only for the last stage, and only of the kept classes.
            let kept = module.images.len();
            assert_eq!(kept, if module.stage == 3 { 16 } else { 0 });
            assert!(
                module
                    .images
                    .iter()
                    .all(|(class, w)| *class != 1 && w.len() == channels)
            );
        }
        let ablation = ablate_late(&model, &analysis, dataset, &info, 10, &device);
        assert_eq!(ablation.stage, 3);
        assert_eq!(ablation.se_parameters, 3 * 580); // three 64 → 4 → 64 SE modules
        assert_eq!(ablation.constants, 3 * 64);
        assert_eq!(ablation.eval.images, 24);
        analysis.ablation = Some(ablation);

        let csv = analysis.csv();
        let rows = 16 * 4 * 3 + 32 * 4 * 3 + 64 * 4 * 3; // channels x (3 classes + all) per module
        assert_eq!(csv.lines().count(), 1 + rows);
        assert!(csv.contains("\nlayer1.0.se,1,a,0,"));
        assert!(csv.contains("\nlayer3.2.se,3,\"b,c\",63,"));
        assert!(csv.contains("\nlayer2.1.se,2,all,31,"));

        let dir = tempfile::tempdir().unwrap();
        analysis.write(dir.path(), "test run").unwrap();
        for file in [
            "excitations.csv",
            "fig6.svg",
            "fig6.png",
            "fig7.svg",
            "fig7.png",
            "report.md",
        ] {
            let bytes = std::fs::read(dir.path().join(file)).unwrap();
            assert!(bytes.len() > 100, "{file}: {} bytes", bytes.len());
        }
        let svg = std::fs::read_to_string(dir.path().join("fig6.svg")).unwrap();
        for name in ["layer1.0.se", "layer3.2.se", "all"] {
            assert!(svg.contains(name), "fig6 lacks {name}");
        }
        let png =
            image::load_from_memory(&std::fs::read(dir.path().join("fig6.png")).unwrap()).unwrap();
        assert_eq!((png.width(), png.height()), (3 * PANEL.0, 3 * PANEL.1));
        let report = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
        assert!(report.contains("| layer3.2.se | 3 | 64 |"), "{report}");
        assert!(
            report.contains("last stage's excitations as constants"),
            "{report}"
        );
        assert!(report.contains("| as trained |"), "{report}");
    }

    /// Weights of 0 in stage 3 (standard placement) pass nothing of the residual branches
    /// there: each block is `relu(shortcut)`, so the stage is the first block's projection
    /// shortcut followed by a ReLU. The replacement must give exactly that.
    #[test]
    fn the_replacer_swaps_the_weights_of_the_chosen_modules_only() {
        use burn::tensor::Distribution;
        use burn::tensor::activation::relu;
        use se_core::ResidualBlock;
        let device = Default::default();
        let model = se_models::config("se_resnet20")
            .unwrap()
            .with_in_channels(1)
            .with_num_classes(3)
            .init::<B>(&device);
        let x = Tensor::<B, 4>::random([2, 1, 8, 8], Distribution::Default, &device);
        let mut zeros = Replacer {
            next: 0,
            constants: (0..9).map(|i| (i >= 6).then(|| vec![0.0; 64])).collect(),
        };
        let logits = model.forward_hooked(x.clone(), &mut zeros);
        let ResidualBlock::Basic(first) = &model.layer3[0] else {
            panic!("basic blocks");
        };
        let stage2 = model.forward_parts(x.clone(), 0..3);
        let expected = model.head(relu(first.downsample.as_ref().unwrap().forward(stage2)));
        logits.clone().into_data().assert_approx_eq::<f32>(
            &expected.into_data(),
            burn::tensor::Tolerance::absolute(1e-5),
        );
        // Without replacements the logits are the model's own.
        let mut none = Replacer {
            next: 0,
            constants: vec![None; 9],
        };
        let own = model.forward_hooked(x.clone(), &mut none);
        own.into_data().assert_approx_eq::<f32>(
            &model.forward(x).into_data(),
            burn::tensor::Tolerance::absolute(1e-6),
        );
    }
}
