//! BatchNorm for `[N, C, H, W]` maps, plus the per-channel scaling that SE and BatchNorm share.
//!
//! Same fields, statistics and modes as `burn::nn::BatchNorm` (batch statistics under autodiff,
//! running statistics otherwise; running variance unbiased as PyTorch's). It differs in how it
//! computes: the statistics come from one [`plane_moments`] kernel (every plane's mean and
//! variance, combined per channel), and the normalisation is one [`plane_affine`] kernel, so a
//! backend with its own kernels (flex) makes two passes over the map forward and two backward
//! instead of Burn's dozen element-wise ops.

use burn::config::Config;
use burn::module::{Module, Param, RunningState};
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use se_kernels::{plane_affine, plane_moments};

/// Multiplies every `[H, W]` plane of `x` by its own factor, and adds its own offset if given:
/// one [`plane_affine`] kernel.
///
/// # Shapes
/// - `x`: `[N, C, H, W]`
/// - `scale`, `shift`: `[N, C]`
/// - output: `[N, C, H, W]`
pub fn scale_planes<B: Backend>(
    x: Tensor<B, 4>,
    scale: Tensor<B, 2>,
    shift: Option<Tensor<B, 2>>,
) -> Tensor<B, 4> {
    let shift = shift.unwrap_or_else(|| scale.zeros_like());
    plane_affine(x, scale, shift, None, false)
}

/// Configuration of a [`BatchNorm2d`].
#[derive(Config, Debug)]
pub struct BatchNorm2dConfig {
    /// Channels.
    pub num_features: usize,
    /// Added to the variance before the square root.
    #[config(default = 1e-5)]
    pub epsilon: f64,
    /// Weight of the new batch in the running statistics.
    #[config(default = 0.1)]
    pub momentum: f64,
}

impl BatchNorm2dConfig {
    /// Builds the layer: scale 1, shift 0, running mean 0, running variance 1.
    pub fn init<B: Backend>(&self, device: &B::Device) -> BatchNorm2d<B> {
        let ones = || Tensor::ones([self.num_features], device);
        BatchNorm2d {
            gamma: Param::from_tensor(ones()),
            beta: Param::from_tensor(Tensor::zeros([self.num_features], device)),
            running_mean: RunningState::new(Tensor::zeros([self.num_features], device)),
            running_var: RunningState::new(ones()),
            momentum: self.momentum,
            epsilon: self.epsilon,
            frozen: false,
            folded: false,
        }
    }
}

/// Batch normalisation over the channels of `[N, C, H, W]` maps.
#[derive(Module, Debug)]
pub struct BatchNorm2d<B: Backend> {
    /// Learned scale (PyTorch's `weight`).
    pub gamma: Param<Tensor<B, 1>>,
    /// Learned shift (PyTorch's `bias`).
    pub beta: Param<Tensor<B, 1>>,
    /// Running mean.
    pub running_mean: RunningState<Tensor<B, 1>>,
    /// Running (unbiased) variance.
    pub running_var: RunningState<Tensor<B, 1>>,
    /// Weight of the new batch in the running statistics.
    pub momentum: f64,
    /// Added to the variance before the square root.
    pub epsilon: f64,
    /// Normalise with the running statistics and leave them as they are, even while training
    /// (PyTorch's `bn.eval()` when fine-tuning). Not saved with the weights: a property of the
    /// run, set again when it resumes.
    #[module(skip)]
    pub frozen: bool,
    /// Folded into the convolution before it ([`fold_into`](Self::fold_into)): the layer
    /// applies nothing, the convolution's weights and bias do its work.
    #[module(skip)]
    pub folded: bool,
}

impl<B: Backend> BatchNorm2d<B> {
    /// Normalises with the batch's statistics when training (autodiff backend, unless
    /// [`frozen`](Self::frozen)) and the running ones otherwise, then scales and shifts.
    ///
    /// # Shapes
    /// - `x`: `[N, C, H, W]`
    /// - output: `[N, C, H, W]`
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let affine = self.affine(x.clone());
        affine.apply(x)
    }

    /// `relu(self.forward(x))` in one pass over the map.
    pub fn forward_relu(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let affine = self.affine(x.clone());
        affine.apply_then(x, None, true)
    }

    /// The per-channel map `y = scale * x + shift` this layer applies to `x`: from the batch's
    /// statistics under autodiff (updating the running ones), from the running ones otherwise.
    /// Under autodiff it also returns the per-plane means of `x` it computed on the way, which an
    /// SE module after it can reuse as its squeeze (see `block::norm_attention_add_relu`).
    pub fn affine(&self, x: Tensor<B, 4>) -> ChannelAffine<B> {
        let device = x.device();
        if self.folded {
            return ChannelAffine::identity(x.dims()[1], None, &device);
        }
        let (mean, var, plane_means) = if B::ad_enabled(&device) && !self.frozen {
            let (mean, var, plane_means) = self.batch_statistics(x);
            (mean, var, Some(plane_means))
        } else {
            (
                self.running_mean.value().to_device(&device),
                self.running_var.value().to_device(&device),
                None,
            )
        };
        let scale = self.gamma.val() / var.add_scalar(self.epsilon).sqrt();
        let shift = self.beta.val() - mean * scale.clone();
        ChannelAffine {
            scale,
            shift,
            plane_means,
        }
    }

    /// Folds this layer's inference map (running statistics, scale and shift) into `conv`, the
    /// convolution whose output it normalises: `conv`'s weights are scaled channel by channel
    /// and its bias becomes the shift, so that `conv` alone computes `norm(conv(x))`, and this
    /// layer is marked [`folded`](Self::folded) and applies nothing from then on. The inference
    /// form of a network (ONNX Runtime and TensorRT fold the same way). Doing it twice is
    /// refused: a second fold would scale the weights again.
    ///
    /// # Panics
    /// If the layer is already folded, or `conv` has another number of output channels.
    pub fn fold_into(&mut self, conv: &mut Conv2d<B>) {
        assert!(
            !self.folded,
            "this BatchNorm is already folded into its convolution"
        );
        let [channels] = self.gamma.dims();
        let [out_channels, ..] = conv.weight.dims();
        assert_eq!(channels, out_channels, "BatchNorm and convolution channels");
        let device = conv.weight.device();
        let var = self.running_var.value().to_device(&device);
        let mean = self.running_mean.value().to_device(&device);
        let scale = self.gamma.val().to_device(&device) / var.add_scalar(self.epsilon).sqrt();
        let shift = self.beta.val().to_device(&device) - mean * scale.clone();
        // Each filter as one plane, scaled by the per-plane kernel in one pass (flex's
        // broadcasting multiply walked the weights one index at a time: a third of a second
        // for SE-ResNet-50).
        let per_filter = scale.clone().reshape([1, channels]);
        conv.weight = conv.weight.clone().map(|w| {
            let dims = w.dims();
            let filters = w.reshape([1, channels, dims[1] * dims[2] * dims[3], 1]);
            let zeros = per_filter.zeros_like();
            plane_affine(filters, per_filter, zeros, None, false).reshape(dims)
        });
        let bias = match conv.bias.take() {
            Some(bias) => bias.val() * scale + shift,
            None => shift,
        };
        conv.bias = Some(Param::from_tensor(bias));
        self.folded = true;
    }

    /// Mean and biased variance per channel, and the mean of every `[H, W]` plane `[N, C]`.
    /// The channel's variance is the mean of its planes' variances plus the variance of their
    /// means (the planes are equally large).
    fn batch_statistics(&self, x: Tensor<B, 4>) -> (Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 2>) {
        let [n, c, h, w] = x.dims();
        let count = n * h * w;
        let (plane_means, plane_vars) = plane_moments(x);
        let mean = plane_means.clone().mean_dim(0); // [1, C]
        let spread = (plane_means.clone() - mean.clone()).square().mean_dim(0);
        let var = (plane_vars.mean_dim(0) + spread).reshape([c]);
        let mean = mean.reshape([c]);

        let unbiased = var
            .clone()
            .detach()
            .mul_scalar(count as f64 / (count.max(2) - 1) as f64);
        let momentum = self.momentum;
        let blend = |running: Tensor<B, 1>, batch: Tensor<B, 1>| {
            running.mul_scalar(1.0 - momentum) + batch.mul_scalar(momentum)
        };
        let device = mean.device();
        self.running_mean.update(blend(
            self.running_mean.value_sync().to_device(&device),
            mean.clone().detach(),
        ));
        self.running_var.update(blend(
            self.running_var.value_sync().to_device(&device),
            unbiased,
        ));
        (mean, var, plane_means)
    }
}

/// A per-channel affine map, as a BatchNorm applies it.
#[derive(Debug, Clone)]
pub struct ChannelAffine<B: Backend> {
    /// Factor per channel, `[C]`.
    pub scale: Tensor<B, 1>,
    /// Offset per channel, `[C]`.
    pub shift: Tensor<B, 1>,
    /// The mean of every `[H, W]` plane of the input, `[N, C]`, when it was computed anyway.
    pub plane_means: Option<Tensor<B, 2>>,
}

impl<B: Backend> ChannelAffine<B> {
    /// The map that changes nothing (scale 1, shift 0) over `channels`, carrying `plane_means`.
    pub fn identity(
        channels: usize,
        plane_means: Option<Tensor<B, 2>>,
        device: &B::Device,
    ) -> Self {
        Self {
            scale: Tensor::ones([channels], device),
            shift: Tensor::zeros([channels], device),
            plane_means,
        }
    }

    /// `scale * x + shift`, channel by channel.
    ///
    /// # Shapes
    /// - `x`: `[N, C, H, W]`
    /// - output: `[N, C, H, W]`
    pub fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.apply_then(x, None, false)
    }

    /// `scale * x + shift (+ residual)`, then a ReLU if `relu`, in one pass.
    ///
    /// # Shapes
    /// - `x`, `residual`: `[N, C, H, W]`
    /// - output: `[N, C, H, W]`
    pub fn apply_then(
        &self,
        x: Tensor<B, 4>,
        residual: Option<Tensor<B, 4>>,
        relu: bool,
    ) -> Tensor<B, 4> {
        let (scale, shift) = self.per_plane(x.dims()[0]);
        plane_affine(x, scale, shift, residual, relu)
    }

    /// Scale and shift repeated for each of `n` samples, `[N, C]` each, as [`scale_planes`]
    /// takes them.
    pub fn per_plane(&self, n: usize) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let [c] = self.scale.dims();
        let repeat = |v: Tensor<B, 1>| v.reshape([1, c]).repeat_dim(0, n);
        (repeat(self.scale.clone()), repeat(self.shift.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{TestBackend, assert_close, tensor, values};
    use burn::module::AutodiffModule;

    type AD = burn::backend::Autodiff<TestBackend>;

    /// Two images, two channels of 1x2: channel 0 holds 1, 3 | 5, 7 (mean 4, biased var 5),
    /// channel 1 holds 2, 2 | 2, 2 (mean 2, var 0).
    fn input<Bk: Backend>() -> Tensor<Bk, 4> {
        tensor([1.0, 3.0, 2.0, 2.0, 5.0, 7.0, 2.0, 2.0], [2, 2, 1, 2])
    }

    #[test]
    fn training_normalises_with_batch_statistics_and_updates_running_ones() {
        let device = Default::default();
        let mut bn = BatchNorm2dConfig::new(2).init::<AD>(&device);
        bn.gamma = Param::from_tensor(Tensor::from_floats([2.0, 1.0], &device));
        bn.beta = Param::from_tensor(Tensor::from_floats([0.5, -1.0], &device));
        let out = bn.forward(input());
        let s = (5.0f32 + 1e-5).sqrt();
        // gamma × each value less the mean, as the formula reads.
        #[rustfmt::skip]
        #[allow(clippy::neg_multiply)]
        let expected = [
            2.0 * -3.0 / s + 0.5, 2.0 * -1.0 / s + 0.5, -1.0, -1.0,
            2.0 * 1.0 / s + 0.5, 2.0 * 3.0 / s + 0.5, -1.0, -1.0,
        ];
        assert_close(out.inner(), &expected);
        // Running: 0.9 * 0 + 0.1 * 4, and 0.9 * 1 + 0.1 * (5 * 4 / 3) for the unbiased variance.
        assert_close(bn.running_mean.value_sync().inner(), &[0.4, 0.2]);
        assert_close(
            bn.running_var.value_sync().inner(),
            &[0.9 + 0.1 * 20.0 / 3.0, 0.9],
        );

        // Eval mode (inner backend) uses the running statistics.
        let eval = bn.valid().forward(input());
        let v = 0.9f32 + 0.1 * 20.0 / 3.0;
        let first = 2.0 * (1.0 - 0.4) / (v + 1e-5).sqrt() + 0.5;
        assert!((values(eval)[0] - first).abs() < 1e-5);
    }

    #[test]
    fn a_frozen_batch_norm_trains_with_its_running_statistics_and_keeps_them() {
        let device = Default::default();
        let mut bn = BatchNorm2dConfig::new(2).init::<AD>(&device);
        bn.running_mean = RunningState::new(Tensor::from_floats([1.0, 2.0], &device));
        bn.running_var = RunningState::new(Tensor::from_floats([4.0, 1.0], &device));
        bn.frozen = true;
        let out = bn.forward(input().require_grad());
        // Channel 0 is (x - 1) / 2, channel 1 is (x - 2) / 1 = 0.
        let a = 1.0 / (4.0f32 + 1e-5).sqrt();
        let expected = [0.0, 2.0 * a, 0.0, 0.0, 4.0 * a, 6.0 * a, 0.0, 0.0];
        assert_close(out.clone().inner(), &expected);
        assert_close(bn.running_mean.value_sync().inner(), &[1.0, 2.0]);
        assert_close(bn.running_var.value_sync().inner(), &[4.0, 1.0]);
        // Scale and shift still learn: the gradient reaches gamma.
        let grads = out.sum().backward();
        assert!(bn.gamma.val().grad(&grads).is_some());
    }

    /// A 1x1 conv `[2x, 3x]` and a BatchNorm that maps channel 0 by `(y - 1) / 2` and channel 1
    /// by `2 y / 2 - 1`: folded, the conv's weights are `[1, 3]` and its bias `[0, -1]`, and the
    /// layer then applies nothing.
    #[test]
    fn folding_moves_the_batch_norm_into_the_convolution() {
        let device = Default::default();
        let mut conv = crate::block::conv(1, 2, 1, 1, 1).init::<TestBackend>(&device);
        conv.weight = Param::from_tensor(tensor([2.0, 3.0], [2, 1, 1, 1]));
        let mut bn = BatchNorm2dConfig::new(2).init::<TestBackend>(&device);
        bn.gamma = Param::from_tensor(Tensor::from_floats([1.0, 2.0], &device));
        bn.beta = Param::from_tensor(Tensor::from_floats([0.5, -1.0], &device));
        bn.running_mean = RunningState::new(Tensor::from_floats([1.0, 0.0], &device));
        bn.running_var = RunningState::new(Tensor::from_floats([4.0 - 1e-5, 4.0 - 1e-5], &device));
        let x: Tensor<TestBackend, 4> = tensor([1.0, 2.0, 3.0], [1, 1, 1, 3]);
        let unfolded = bn.forward(conv.forward(x.clone()));

        bn.fold_into(&mut conv);
        assert!(bn.folded);
        assert_close(conv.weight.val(), &[1.0, 3.0]);
        assert_close(conv.bias.as_ref().unwrap().val(), &[0.0, -1.0]);
        let folded = bn.forward(conv.forward(x));
        // Channel 0: x; channel 1: 3x - 1.
        assert_close(folded, &[1.0, 2.0, 3.0, 2.0, 5.0, 8.0]);
        assert_close(unfolded, &[1.0, 2.0, 3.0, 2.0, 5.0, 8.0]);

        let fold = std::panic::AssertUnwindSafe(|| bn.fold_into(&mut conv));
        let again = std::panic::catch_unwind(fold);
        assert!(
            again.is_err(),
            "a second fold would scale the weights twice"
        );
    }

    #[test]
    fn matches_burns_batch_norm_in_both_modes() {
        let device = Default::default();
        let x: Tensor<AD, 4> = Tensor::random(
            [3, 4, 5, 6],
            burn::tensor::Distribution::Normal(1.0, 2.0),
            &device,
        );
        let ours = BatchNorm2dConfig::new(4).init::<AD>(&device);
        let burns = burn::nn::BatchNormConfig::new(4).init::<AD>(&device);
        let inner = x.clone().inner();
        assert_close(
            ours.valid().forward(inner.clone()),
            &values(burns.valid().forward(inner)),
        );
        assert_close(
            ours.forward(x.clone()).inner(),
            &values(burns.forward(x).inner()),
        );
        // Burn keeps the biased variance; both keep the same running mean.
        assert_close(
            ours.running_mean.value_sync().inner(),
            &values(burns.running_mean.value_sync().inner()),
        );
    }
}
