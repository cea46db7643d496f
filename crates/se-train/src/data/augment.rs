//! Seeded augmentation on 8-bit HWC images: pad-and-random-crop, horizontal flip,
//! random-resized-crop, and resize + center-crop, each producing the model's input size.
//!
//! Reproducibility with several loader workers: the random numbers for an image come from
//! `(seed, index, how many times this index was read)`, not from a shared stream, so they do not
//! depend on which worker reads which image in which order.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use burn::config::Config;
use burn::data::dataset::Dataset;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::{ImageDataset, ImageItem};

/// Training-time augmentation.
#[derive(Config, Debug, PartialEq)]
pub struct AugmentConfig {
    /// Zero padding of the random crop (4 for CIFAR, 2 for MNIST; 0 turns it off).
    #[config(default = 0)]
    pub pad_crop: usize,
    /// Flip images horizontally with probability 1/2 (off for digits).
    #[config(default = false)]
    pub horizontal_flip: bool,
    /// Random-resized-crop with this smallest area fraction (0.08 for ImageNet); `None` resizes
    /// and center-crops instead. Only applies to images not already at the model's size.
    #[config(default = "None")]
    pub random_resized_crop: Option<f64>,
}

/// What happens to an image between the dataset and the batcher.
#[derive(Debug, Clone, PartialEq)]
pub enum Transform {
    /// Random augmentation to `[height, width]`.
    Train(AugmentConfig, [usize; 2]),
    /// Deterministic resize + center-crop to `[height, width]` (identity for images of that size).
    Eval([usize; 2]),
}

impl Transform {
    /// Applies the transform with the given random source.
    pub fn apply(&self, item: ImageItem, rng: &mut StdRng) -> ImageItem {
        match self {
            Transform::Eval(size) => fit(item, *size),
            Transform::Train(config, size) => {
                let mut item = match config.random_resized_crop {
                    Some(min_scale) if [item.height, item.width] != *size => {
                        random_resized_crop(&item, *size, min_scale, rng)
                    }
                    _ => fit(item, *size),
                };
                if config.pad_crop > 0 {
                    item = pad_random_crop(&item, config.pad_crop, rng);
                }
                if config.horizontal_flip && rng.random_bool(0.5) {
                    item = horizontal_flip(&item);
                }
                item
            }
        }
    }
}

/// Resize (shorter side to `size / 0.875`, as the ImageNet evaluation protocol) and center-crop,
/// or nothing for images already at `size`.
fn fit(item: ImageItem, size: [usize; 2]) -> ImageItem {
    if [item.height, item.width] == size {
        return item;
    }
    let scale = (size[0].max(size[1]) as f64 / 0.875) / item.height.min(item.width) as f64;
    let resized = resize(
        &item,
        [
            ((item.height as f64 * scale).round() as usize).max(size[0]),
            ((item.width as f64 * scale).round() as usize).max(size[1]),
        ],
    );
    let top = (resized.height - size[0]) / 2;
    let left = (resized.width - size[1]) / 2;
    crop_padded(&resized, top as isize, left as isize, size)
}

/// Crops `size` at (`top`, `left`); coordinates outside the image read as zero.
fn crop_padded(item: &ImageItem, top: isize, left: isize, size: [usize; 2]) -> ImageItem {
    let c = item.channels;
    let mut pixels = vec![0u8; size[0] * size[1] * c];
    for y in 0..size[0] {
        let sy = top + y as isize;
        if sy < 0 || sy >= item.height as isize {
            continue;
        }
        for x in 0..size[1] {
            let sx = left + x as isize;
            if sx < 0 || sx >= item.width as isize {
                continue;
            }
            let src = (sy as usize * item.width + sx as usize) * c;
            let dst = (y * size[1] + x) * c;
            pixels[dst..dst + c].copy_from_slice(&item.pixels[src..src + c]);
        }
    }
    ImageItem {
        pixels,
        height: size[0],
        width: size[1],
        ..*item
    }
}

/// Pads by `pad` zeros on every side and crops back to the original size at a random offset.
pub fn pad_random_crop(item: &ImageItem, pad: usize, rng: &mut StdRng) -> ImageItem {
    let dy = rng.random_range(0..=2 * pad) as isize - pad as isize;
    let dx = rng.random_range(0..=2 * pad) as isize - pad as isize;
    crop_padded(item, dy, dx, [item.height, item.width])
}

/// Mirrors the image left to right.
pub fn horizontal_flip(item: &ImageItem) -> ImageItem {
    let c = item.channels;
    let mut pixels = Vec::with_capacity(item.pixels.len());
    for row in item.pixels.chunks_exact(item.width * c) {
        for pixel in row.chunks_exact(c).rev() {
            pixels.extend_from_slice(pixel);
        }
    }
    ImageItem { pixels, ..*item }
}

/// Bilinear resize with half-pixel centres (PyTorch's `align_corners=False`).
pub fn resize(item: &ImageItem, size: [usize; 2]) -> ImageItem {
    if [item.height, item.width] == size {
        return item.clone();
    }
    let c = item.channels;
    let source = |out: usize, input: usize, i: usize| -> (usize, usize, f32) {
        let position = ((i as f32 + 0.5) * input as f32 / out as f32 - 0.5).max(0.0);
        let low = (position.floor() as usize).min(input - 1);
        let high = (low + 1).min(input - 1);
        (low, high, position - low as f32)
    };
    let mut pixels = Vec::with_capacity(size[0] * size[1] * c);
    for y in 0..size[0] {
        let (y0, y1, fy) = source(size[0], item.height, y);
        for x in 0..size[1] {
            let (x0, x1, fx) = source(size[1], item.width, x);
            for ch in 0..c {
                let top = item.at(y0, x0, ch) as f32 * (1.0 - fx) + item.at(y0, x1, ch) as f32 * fx;
                let bottom =
                    item.at(y1, x0, ch) as f32 * (1.0 - fx) + item.at(y1, x1, ch) as f32 * fx;
                pixels.push((top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8);
            }
        }
    }
    ImageItem {
        pixels,
        height: size[0],
        width: size[1],
        ..*item
    }
}

/// Inception-style crop: a random area in `[min_scale, 1]` of the image with aspect ratio in
/// `[3/4, 4/3]` (log-uniform), resized to `size`; ten tries, then the center crop.
pub fn random_resized_crop(
    item: &ImageItem,
    size: [usize; 2],
    min_scale: f64,
    rng: &mut StdRng,
) -> ImageItem {
    let area = (item.height * item.width) as f64;
    let (log_low, log_high) = ((3.0f64 / 4.0).ln(), (4.0f64 / 3.0).ln());
    for _ in 0..10 {
        let target = area * rng.random_range(min_scale..=1.0);
        let ratio = rng.random_range(log_low..=log_high).exp();
        let w = (target * ratio).sqrt().round() as usize;
        let h = (target / ratio).sqrt().round() as usize;
        if (1..=item.width).contains(&w) && (1..=item.height).contains(&h) {
            let top = rng.random_range(0..=item.height - h);
            let left = rng.random_range(0..=item.width - w);
            return resize(
                &crop_padded(item, top as isize, left as isize, [h, w]),
                size,
            );
        }
    }
    fit(item.clone(), size)
}

/// A dataset whose items go through a [`Transform`], reproducibly (see the module doc).
pub struct AugmentedDataset {
    inner: ImageDataset,
    transform: Transform,
    seed: u64,
    visits: Vec<AtomicU64>,
}

impl AugmentedDataset {
    /// Wraps `inner`. `first_epoch` lets a resumed run draw the numbers it would have drawn.
    pub fn new(inner: ImageDataset, transform: Transform, seed: u64, first_epoch: u64) -> Self {
        let visits = (0..inner.len())
            .map(|_| AtomicU64::new(first_epoch))
            .collect();
        Self {
            inner,
            transform,
            seed,
            visits,
        }
    }

    /// Shares the dataset as an [`ImageDataset`].
    pub fn shared(self) -> ImageDataset {
        Arc::new(self)
    }
}

/// SplitMix64: turns `(seed, index, visit)` into a well-mixed 64-bit seed.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Dataset<ImageItem> for AugmentedDataset {
    fn get(&self, index: usize) -> Option<ImageItem> {
        let item = self.inner.get(index)?;
        let visit = self.visits[index].fetch_add(1, Ordering::Relaxed);
        let mut rng = StdRng::seed_from_u64(mix(self.seed ^ mix(index as u64 ^ mix(visit))));
        Some(self.transform.apply(item, &mut rng))
    }

    fn len(&self) -> usize {
        self.inner.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::data::dataset::InMemDataset;

    /// A 3x4 gray image with values 0..12.
    fn ramp() -> ImageItem {
        ImageItem {
            pixels: (0..12).collect(),
            height: 3,
            width: 4,
            channels: 1,
            label: 5,
        }
    }

    #[test]
    fn flip_mirrors_rows_and_keeps_channels_together() {
        assert_eq!(
            horizontal_flip(&ramp()).pixels,
            vec![3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8]
        );
        let rgb = ImageItem {
            pixels: vec![1, 2, 3, 4, 5, 6],
            height: 1,
            width: 2,
            channels: 3,
            label: 0,
        };
        assert_eq!(horizontal_flip(&rgb).pixels, vec![4, 5, 6, 1, 2, 3]);
    }

    #[test]
    fn pad_crop_shifts_the_image_and_fills_with_zeros() {
        let mut seen = std::collections::HashSet::new();
        for seed in 0..64 {
            let out = pad_random_crop(&ramp(), 1, &mut StdRng::seed_from_u64(seed));
            assert_eq!((out.height, out.width, out.label), (3, 4, 5));
            // Every output is the ramp shifted by (dy, dx) in [-1, 1]^2.
            let shift = (0..9)
                .map(|k| (k / 3 - 1, k % 3 - 1))
                .find(|&(dy, dx)| {
                    (0..3).all(|y| {
                        (0..4).all(|x| {
                            let (sy, sx) = (y as isize + dy, x as isize + dx);
                            let expected = if (0..3).contains(&sy) && (0..4).contains(&sx) {
                                (sy * 4 + sx) as u8
                            } else {
                                0
                            };
                            out.at(y, x, 0) == expected
                        })
                    })
                })
                .expect("output is a shifted copy");
            seen.insert(shift);
        }
        assert_eq!(seen.len(), 9, "all nine shifts occur");
    }

    #[test]
    fn resize_is_bilinear_with_half_pixel_centres() {
        // 2x2 → 4x4: PyTorch's interpolate(mode="bilinear", align_corners=False) gives rows
        // [0, 25, 75, 100] for a [0, 100] row.
        let item = ImageItem {
            pixels: vec![0, 100, 0, 100],
            height: 2,
            width: 2,
            channels: 1,
            label: 0,
        };
        let out = resize(&item, [4, 4]);
        assert_eq!(&out.pixels[..4], &[0, 25, 75, 100]);
        let back = resize(&out, [2, 2]);
        assert_eq!(back.pixels, vec![13, 88, 13, 88]);
    }

    #[test]
    fn eval_transform_resizes_shorter_side_and_center_crops() {
        let item = ImageItem {
            pixels: vec![7; 20 * 10 * 3],
            height: 20,
            width: 10,
            channels: 3,
            label: 1,
        };
        let out = Transform::Eval([7, 7]).apply(item.clone(), &mut StdRng::seed_from_u64(0));
        assert_eq!((out.height, out.width, out.channels), (7, 7, 3));
        assert!(out.pixels.iter().all(|&p| p == 7));
        let train = Transform::Train(
            AugmentConfig::new().with_random_resized_crop(Some(0.08)),
            [5, 6],
        );
        let out = train.apply(item, &mut StdRng::seed_from_u64(3));
        assert_eq!((out.height, out.width), (5, 6));
    }

    #[test]
    fn augmented_dataset_is_reproducible_and_varies_across_epochs() {
        let items: Vec<ImageItem> = (0..4).map(|_| ramp()).collect();
        let inner: ImageDataset = Arc::new(InMemDataset::new(items));
        let config = AugmentConfig::new()
            .with_pad_crop(1)
            .with_horizontal_flip(true);
        let make = |first_epoch| {
            AugmentedDataset::new(
                inner.clone(),
                Transform::Train(config.clone(), [3, 4]),
                42,
                first_epoch,
            )
        };
        let (a, b) = (make(0), make(0));
        let epoch =
            |d: &AugmentedDataset| (0..4).map(|i| d.get(i).unwrap().pixels).collect::<Vec<_>>();
        let (a1, b1) = (epoch(&a), epoch(&b));
        assert_eq!(a1, b1, "same seed, same images");
        let a2 = epoch(&a);
        assert_ne!(a1, a2, "a new epoch draws new augmentations");
        assert_eq!(
            epoch(&make(1)),
            a2,
            "a run resumed at epoch 1 sees what epoch 1 saw"
        );
    }
}
