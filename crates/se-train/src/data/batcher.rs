//! Turns images into the model's input: `[N, C, H, W]` floats, normalised per channel.

use burn::data::dataloader::batcher::Batcher;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use super::ImageItem;

/// A batch of images and their labels.
#[derive(Debug, Clone)]
pub struct ImageBatch<B: Backend> {
    /// `[N, C, H, W]`, normalised.
    pub images: Tensor<B, 4>,
    /// `[N]` class indices.
    pub targets: Tensor<B, 1, Int>,
}

/// Converts 8-bit HWC images to normalised CHW floats: `(pixel / 255 - mean[c]) / std[c]`.
#[derive(Debug, Clone)]
pub struct ImageBatcher {
    mean: Vec<f32>,
    std: Vec<f32>,
}

impl ImageBatcher {
    /// A batcher with per-channel statistics (one entry per channel).
    pub fn new(mean: Vec<f32>, std: Vec<f32>) -> Self {
        assert_eq!(mean.len(), std.len(), "one mean and one std per channel");
        Self { mean, std }
    }

    /// Normalised CHW values of one image.
    pub fn normalise(&self, item: &ImageItem) -> Vec<f32> {
        assert_eq!(
            item.channels,
            self.mean.len(),
            "image has {} channels, the batcher expects {}",
            item.channels,
            self.mean.len()
        );
        let plane = item.height * item.width;
        let mut out = vec![0.0f32; plane * item.channels];
        for (i, pixel) in item.pixels.chunks_exact(item.channels).enumerate() {
            for (c, &value) in pixel.iter().enumerate() {
                out[c * plane + i] = (value as f32 / 255.0 - self.mean[c]) / self.std[c];
            }
        }
        out
    }

    /// One image as a `[1, C, H, W]` tensor.
    pub fn image<B: Backend>(&self, item: &ImageItem, device: &B::Device) -> Tensor<B, 4> {
        let shape = [1, item.channels, item.height, item.width];
        Tensor::from_data(TensorData::new(self.normalise(item), shape), device)
    }
}

impl<B: Backend> Batcher<B, ImageItem, ImageBatch<B>> for ImageBatcher {
    fn batch(&self, items: Vec<ImageItem>, device: &B::Device) -> ImageBatch<B> {
        let first = &items[0];
        let shape = [items.len(), first.channels, first.height, first.width];
        let mut values = Vec::with_capacity(shape.iter().product());
        for item in &items {
            assert_eq!(
                [item.channels, item.height, item.width],
                shape[1..],
                "images of one batch must share a size (the transform resizes them)"
            );
            values.extend(self.normalise(item));
        }
        let labels: Vec<i64> = items.iter().map(|item| item.label as i64).collect();
        ImageBatch {
            images: Tensor::from_data(TensorData::new(values, shape), device),
            targets: Tensor::from_data(TensorData::new(labels, [items.len()]), device),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn batches_hwc_bytes_into_normalised_nchw() {
        let item = |label, base: u8| ImageItem {
            pixels: vec![base, 255, 0, 51, base, 102, 255, 0], // 2x2 pixels of 2 channels
            height: 2,
            width: 2,
            channels: 2,
            label,
        };
        let batcher = ImageBatcher::new(vec![0.0, 0.5], vec![1.0, 0.5]);
        let batch: ImageBatch<Flex> =
            batcher.batch(vec![item(3, 0), item(8, 255)], &Default::default());
        assert_eq!(batch.images.dims(), [2, 2, 2, 2]);
        let values: Vec<f32> = batch.images.into_data().to_vec().unwrap();
        // Image 0, channel 0: pixels 0, 0, 0, 255 → /255; channel 1: 255, 51, 102, 0 → (v/255 - .5)/.5
        let expected0 = [0.0, 0.0, 0.0, 1.0, 1.0, -0.6, -0.2, -1.0];
        for (a, e) in values[..8].iter().zip(expected0) {
            assert!((a - e).abs() < 1e-6, "{values:?}");
        }
        assert!((values[8] - 1.0).abs() < 1e-6);
        let targets: Vec<i64> = batch.targets.into_data().convert::<i64>().to_vec().unwrap();
        assert_eq!(targets, vec![3, 8]);
    }
}
