//! Evaluation of a trained model on a dataset (top-1, top-5, confusion matrix) and prediction on
//! single images.

use burn::data::dataloader::DataLoaderBuilder;
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use rand::SeedableRng;
use rand::rngs::StdRng;
use se_core::ExcitationHook;
use se_models::ResNet;

use crate::data::augment::{AugmentedDataset, Transform};
use crate::data::batcher::{ImageBatch, ImageBatcher};
use crate::data::{DatasetInfo, ImageDataset, ImageItem};

/// Accuracy figures and the confusion matrix of a model on a dataset.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EvalReport {
    /// Images evaluated.
    pub images: usize,
    /// Top-1 accuracy in [0, 1].
    pub top1: f64,
    /// Top-5 accuracy in [0, 1] (top-k with k = number of classes when fewer than 5).
    pub top5: f64,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
}

impl EvalReport {
    /// The confusion matrix as text, rows = true class, columns = predicted class.
    pub fn confusion_table(&self, class_names: &[String]) -> String {
        let width = self
            .confusion
            .iter()
            .flatten()
            .map(|n| n.to_string().len())
            .chain(class_names.iter().map(|n| n.len().min(8)))
            .max()
            .unwrap_or(1)
            .max(3);
        let label = |name: &str| name.chars().take(8).collect::<String>();
        let mut out = format!("{:>8} |", "true\\pred");
        for name in class_names {
            out += &format!(" {:>width$}", label(name));
        }
        out.push('\n');
        for (row, name) in self.confusion.iter().zip(class_names) {
            out += &format!("{:>9} |", label(name));
            for count in row {
                out += &format!(" {count:>width$}");
            }
            out.push('\n');
        }
        out
    }
}

/// An [`ExcitationHook`] that is told each batch's labels before the batch runs (what the
/// excitation analysis needs to attribute the weights to classes).
pub trait BatchHook<B: Backend>: ExcitationHook<B> {
    /// Called before each batch with its labels.
    fn begin_batch(&mut self, labels: &[usize]);
}

/// Runs `model` over `dataset` (resized and normalised as `info` says) in batches.
pub fn evaluate<B: Backend>(
    model: &ResNet<B>,
    dataset: ImageDataset,
    info: &DatasetInfo,
    batch_size: usize,
    device: &B::Device,
) -> EvalReport {
    evaluate_hooked(model, dataset, info, batch_size, device, None)
}

/// [`evaluate`], with every SE module's channel weights shown to `hook`.
pub fn evaluate_hooked<B: Backend>(
    model: &ResNet<B>,
    dataset: ImageDataset,
    info: &DatasetInfo,
    batch_size: usize,
    device: &B::Device,
    mut hook: Option<&mut dyn BatchHook<B>>,
) -> EvalReport {
    let classes = info.num_classes();
    let dataset = AugmentedDataset::new(dataset, Transform::Eval(info.image_size), 0, 0);
    let loader = DataLoaderBuilder::new(ImageBatcher::new(info.mean.clone(), info.std.clone()))
        .batch_size(batch_size)
        .set_device(device.clone())
        .build(dataset);
    let mut confusion = vec![vec![0usize; classes]; classes];
    let (mut images, mut top5_hits) = (0, 0);
    let k = 5.min(classes);
    for batch in loader.iter() {
        let ImageBatch { images: x, targets } = batch;
        let targets: Vec<i64> = targets.into_data().convert::<i64>().to_vec().unwrap();
        let logits = match hook.as_deref_mut() {
            Some(hook) => {
                hook.begin_batch(&targets.iter().map(|&t| t as usize).collect::<Vec<_>>());
                model.forward_hooked(x, hook)
            }
            None => model.forward(x),
        };
        let ranked: Vec<i64> = logits
            .argsort_descending(1)
            .narrow(1, 0, k)
            .into_data()
            .convert::<i64>()
            .to_vec()
            .unwrap();
        for (row, &target) in ranked.chunks_exact(k).zip(&targets) {
            confusion[target as usize][row[0] as usize] += 1;
            top5_hits += row.contains(&target) as usize;
            images += 1;
        }
    }
    let correct: usize = (0..classes).map(|c| confusion[c][c]).sum();
    let fraction = |hits: usize| {
        if images == 0 {
            0.0
        } else {
            hits as f64 / images as f64
        }
    };
    EvalReport {
        images,
        top1: fraction(correct),
        top5: fraction(top5_hits),
        confusion,
    }
}

/// Class probabilities for one image, highest first: `(class index, probability)`, at most `k`.
pub fn predict<B: Backend>(
    model: &ResNet<B>,
    image: ImageItem,
    info: &DatasetInfo,
    k: usize,
    device: &B::Device,
) -> Vec<(usize, f32)> {
    let image = Transform::Eval(info.image_size).apply(image, &mut StdRng::seed_from_u64(0));
    let x = ImageBatcher::new(info.mean.clone(), info.std.clone()).image::<B>(&image, device);
    let probabilities: Vec<f32> = softmax(model.forward(x), 1)
        .into_data()
        .convert::<f32>()
        .to_vec()
        .unwrap();
    let mut ranked: Vec<(usize, f32)> = probabilities.into_iter().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked.truncate(k);
    ranked
}

/// Reads an image file as the model expects it: gray for one-channel models, RGB otherwise.
pub fn load_image(
    path: &std::path::Path,
    channels: usize,
) -> Result<ImageItem, crate::data::DataError> {
    let rgb = crate::data::folder::decode_rgb(path)?;
    let (width, height) = rgb.dimensions();
    let pixels = match channels {
        1 => image::DynamicImage::ImageRgb8(rgb).to_luma8().into_raw(),
        _ => rgb.into_raw(),
    };
    Ok(ImageItem {
        pixels,
        height: height as usize,
        width: width as usize,
        channels: channels.min(3),
        label: 0,
    })
}
