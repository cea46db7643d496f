//! Attention modules a residual block can carry where the paper puts SE, answering the seed's
//! closing questions: better channel attention (ECA), spatial attention (sSE), both (scSE, CBAM).
//!
//! - **ECA** (Wang et al., CVPR 2020): no reduction; a 1-D convolution across the pooled channel
//!   vector, kernel size from the channel count (`γ = 2`, `b = 1`), then a sigmoid.
//! - **sSE** (Roy, Navab, Wachinger, MICCAI 2018): a 1x1 conv `C → 1` and a sigmoid give one weight
//!   per position.
//! - **scSE** (same paper): channel SE and spatial SE side by side, combined by sum (or max).
//! - **CBAM** (Woo et al., ECCV 2018): channel attention from average- and max-pooled descriptors
//!   through one shared MLP, then spatial attention from the channel-wise mean and max maps through
//!   a 7x7 conv and BatchNorm (timm's `CbamModule`).

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv1d, Conv1dConfig, Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig1d, PaddingConfig2d};
use burn::tensor::Tensor;
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::backend::Backend;

use crate::complexity::{Complexity, Size, linear};
use crate::norm::{BatchNorm2d, BatchNorm2dConfig, scale_planes};
use crate::squeeze_excitation::{Hook, SqueezeExcitation, SqueezeExcitationConfig, make_divisible};

/// Global average and max over the spatial positions: two `[N, C]` descriptors.
fn pooled<B: Backend>(x: Tensor<B, 4>) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let [n, c, h, w] = x.dims();
    let flat = x.reshape([n, c, h * w]);
    (
        flat.clone().mean_dim(2).reshape([n, c]),
        flat.max_dim(2).reshape([n, c]),
    )
}

/// Multiplies every position of `x` (all channels) by its weight in `map`.
///
/// # Shapes
/// - `x`: `[N, C, H, W]`, `map`: `[N, 1, H, W]`
fn scale_positions<B: Backend>(x: Tensor<B, 4>, map: Tensor<B, 4>) -> Tensor<B, 4> {
    x * map
}

// ---------------------------------------------------------------------------------------------
// ECA

/// Configuration of [`Eca`].
#[derive(Config, Debug)]
pub struct EcaConfig {
    /// `γ` of the adaptive kernel size `k = |log2(C) + b| / γ`, rounded up to odd.
    #[config(default = 2.0)]
    pub gamma: f64,
    /// `b` of the adaptive kernel size.
    #[config(default = 1.0)]
    pub beta: f64,
    /// A fixed kernel size instead of the adaptive one.
    #[config(default = "None")]
    pub kernel_size: Option<usize>,
}

impl EcaConfig {
    /// The 1-D kernel size for `channels` channels (timm's `EcaModule` rule, at least 3).
    pub fn kernel_size(&self, channels: usize) -> usize {
        self.kernel_size.unwrap_or_else(|| {
            let t = (((channels as f64).log2() + self.beta).abs() / self.gamma) as usize;
            (if t % 2 == 1 { t } else { t + 1 }).max(3)
        })
    }

    /// Builds the module for `channels` channels.
    pub fn init<B: Backend>(&self, channels: usize, device: &B::Device) -> Eca<B> {
        let k = self.kernel_size(channels);
        Eca {
            conv: Conv1dConfig::new(1, 1, k)
                .with_padding(PaddingConfig1d::Explicit((k - 1) / 2, (k - 1) / 2))
                .with_bias(false)
                .init(device),
        }
    }

    /// Parameters and multiply-adds on a `channels x size` map.
    pub fn complexity(&self, channels: usize, size: Size) -> Complexity {
        let k = self.kernel_size(channels);
        Complexity {
            params: k,
            macs: (k * channels + 2 * channels * size[0] * size[1]) as u64,
        }
    }
}

/// Efficient Channel Attention: channel weights from a 1-D conv over the pooled channel vector.
#[derive(Module, Debug)]
pub struct Eca<B: Backend> {
    /// The `1 → 1` channel conv of kernel `k` (timm's `conv`).
    pub conv: Conv1d<B>,
}

impl<B: Backend> Eca<B> {
    /// Channel weights `[N, C]`.
    pub fn excitation(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let (avg, _) = pooled(x);
        let [n, c] = avg.dims();
        sigmoid(self.conv.forward(avg.reshape([n, 1, c]))).reshape([n, c])
    }

    /// `[N, C, H, W] → [N, C, H, W]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let weights = self.excitation(x.clone());
        scale_planes(x, weights, None)
    }
}

// ---------------------------------------------------------------------------------------------
// sSE

/// Spatial squeeze and channel excitation: one weight per position from a 1x1 conv `C → 1`.
#[derive(Module, Debug)]
pub struct SpatialSe<B: Backend> {
    /// The `C → 1` 1x1 conv, with bias.
    pub conv: Conv2d<B>,
}

/// Builds an [`SpatialSe`] over `channels` channels.
pub fn spatial_se<B: Backend>(channels: usize, device: &B::Device) -> SpatialSe<B> {
    SpatialSe {
        conv: Conv2dConfig::new([channels, 1], [1, 1]).init(device),
    }
}

fn spatial_se_complexity(channels: usize, size: Size) -> Complexity {
    let positions = size[0] * size[1];
    Complexity {
        params: channels + 1,
        macs: (channels * positions + channels * positions) as u64,
    }
}

impl<B: Backend> SpatialSe<B> {
    /// Position weights `[N, 1, H, W]`.
    pub fn excitation(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        sigmoid(self.conv.forward(x))
    }

    /// `[N, C, H, W] → [N, C, H, W]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let map = self.excitation(x.clone());
        scale_positions(x, map)
    }
}

// ---------------------------------------------------------------------------------------------
// scSE

/// How scSE merges its channel-recalibrated and spatially recalibrated maps.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum ScseMerge {
    /// Element-wise sum (Roy et al.'s default).
    Sum,
    /// Element-wise maximum.
    Max,
}

/// Configuration of [`Scse`].
#[derive(Config, Debug)]
pub struct ScseConfig {
    /// The channel branch (Roy et al. use reduction 2; the default here is SE's 16).
    #[config(default = "SqueezeExcitationConfig::new()")]
    pub channel: SqueezeExcitationConfig,
    /// How the two branches merge.
    #[config(default = "ScseMerge::Sum")]
    pub merge: ScseMerge,
}

/// Concurrent spatial and channel SE.
#[derive(Module, Debug)]
pub struct Scse<B: Backend> {
    /// Channel branch (`cse.fc1`, `cse.fc2`).
    pub cse: SqueezeExcitation<B>,
    /// Spatial branch (`sse.conv`).
    pub sse: SpatialSe<B>,
    /// Merge of the branches.
    pub merge: ScseMerge,
}

impl<B: Backend> Scse<B> {
    /// `[N, C, H, W] → [N, C, H, W]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let channel = self.cse.forward(x.clone());
        let spatial = self.sse.forward(x);
        match self.merge {
            ScseMerge::Sum => channel + spatial,
            ScseMerge::Max => channel.max_pair(spatial),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// CBAM

/// Configuration of [`Cbam`] (timm's `CbamModule` defaults).
#[derive(Config, Debug)]
pub struct CbamConfig {
    /// Reduction of the shared MLP.
    #[config(default = 16.0)]
    pub reduction: f64,
    /// Rounding divisor of the MLP width (timm's CBAM uses 1).
    #[config(default = 1)]
    pub divisor: usize,
    /// Kernel of the spatial conv.
    #[config(default = 7)]
    pub spatial_kernel: usize,
}

impl CbamConfig {
    fn hidden(&self, channels: usize) -> usize {
        make_divisible(channels as f64 / self.reduction, self.divisor, None, 0.0)
    }

    /// Builds the module for `channels` channels.
    pub fn init<B: Backend>(&self, channels: usize, device: &B::Device) -> Cbam<B> {
        let hidden = self.hidden(channels);
        let k = self.spatial_kernel;
        Cbam {
            fc1: LinearConfig::new(channels, hidden)
                .with_bias(false)
                .init(device),
            fc2: LinearConfig::new(hidden, channels)
                .with_bias(false)
                .init(device),
            spatial_conv: Conv2dConfig::new([2, 1], [k, k])
                .with_padding(PaddingConfig2d::Explicit(k / 2, k / 2, k / 2, k / 2))
                .with_bias(false)
                .init(device),
            spatial_bn: BatchNorm2dConfig::new(1).init(device),
        }
    }

    /// Parameters and multiply-adds on a `channels x size` map.
    pub fn complexity(&self, channels: usize, size: Size) -> Complexity {
        let hidden = self.hidden(channels);
        let positions = size[0] * size[1];
        let k2 = self.spatial_kernel * self.spatial_kernel;
        let mlp = linear(channels, hidden, false) + linear(hidden, channels, false);
        Complexity {
            // The MLP runs twice (average and max descriptors) but is shared.
            params: mlp.params + 2 * k2 + 2,
            macs: 2 * mlp.macs + (2 * k2 * positions + 5 * channels * positions) as u64,
        }
    }
}

/// Convolutional Block Attention Module: channel attention, then spatial attention.
#[derive(Module, Debug)]
pub struct Cbam<B: Backend> {
    /// Shared MLP, reduction (timm `channel.fc1`).
    pub fc1: Linear<B>,
    /// Shared MLP, expansion (timm `channel.fc2`).
    pub fc2: Linear<B>,
    /// `2 → 1` conv over the channel-wise mean and max maps (timm `spatial.conv.conv`).
    pub spatial_conv: Conv2d<B>,
    /// Its BatchNorm (timm `spatial.conv.bn`).
    pub spatial_bn: BatchNorm2d<B>,
}

impl<B: Backend> Cbam<B> {
    /// Channel weights `[N, C]`: `sigmoid(mlp(avg) + mlp(max))`.
    pub fn channel_weights(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let (avg, max) = pooled(x);
        let mlp = |v: Tensor<B, 2>| self.fc2.forward(relu(self.fc1.forward(v)));
        sigmoid(mlp(avg) + mlp(max))
    }

    /// Position weights `[N, 1, H, W]` from the channel-wise mean and max.
    pub fn spatial_weights(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let descriptors = Tensor::cat(vec![x.clone().mean_dim(1), x.max_dim(1)], 1);
        sigmoid(
            self.spatial_bn
                .forward(self.spatial_conv.forward(descriptors)),
        )
    }

    /// `[N, C, H, W] → [N, C, H, W]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let weights = self.channel_weights(x.clone());
        let x = scale_planes(x, weights, None);
        let map = self.spatial_weights(x.clone());
        scale_positions(x, map)
    }
}

// ---------------------------------------------------------------------------------------------
// The choice

/// Which attention module a block carries, with its configuration.
#[derive(Config, Debug)]
pub enum AttentionConfig {
    /// Squeeze-and-Excitation (the paper).
    Se(SqueezeExcitationConfig),
    /// Efficient Channel Attention.
    Eca(EcaConfig),
    /// Spatial SE.
    Sse,
    /// Concurrent spatial and channel SE.
    Scse(ScseConfig),
    /// CBAM.
    Cbam(CbamConfig),
}

impl AttentionConfig {
    /// Builds the module for `channels` channels.
    pub fn init<B: Backend>(&self, channels: usize, device: &B::Device) -> Attention<B> {
        match self {
            AttentionConfig::Se(config) => Attention::Se(config.init(channels, device)),
            AttentionConfig::Eca(config) => Attention::Eca(config.init(channels, device)),
            AttentionConfig::Sse => Attention::Sse(spatial_se(channels, device)),
            AttentionConfig::Scse(config) => Attention::Scse(Scse {
                cse: config.channel.init(channels, device),
                sse: spatial_se(channels, device),
                merge: config.merge,
            }),
            AttentionConfig::Cbam(config) => Attention::Cbam(config.init(channels, device)),
        }
    }

    /// Parameters and multiply-adds on a `channels x size` map.
    pub fn complexity(&self, channels: usize, size: Size) -> Complexity {
        match self {
            AttentionConfig::Se(config) => config.complexity(channels, size),
            AttentionConfig::Eca(config) => config.complexity(channels, size),
            AttentionConfig::Sse => spatial_se_complexity(channels, size),
            AttentionConfig::Scse(config) => {
                let merge = Complexity {
                    params: 0,
                    macs: (channels * size[0] * size[1]) as u64,
                };
                config.channel.complexity(channels, size)
                    + spatial_se_complexity(channels, size)
                    + merge
            }
            AttentionConfig::Cbam(config) => config.complexity(channels, size),
        }
    }
}

/// An attention module of any kind; a block holds one as its `se` field.
// Built once per block and never moved in a loop: boxing the large variants would only add
// an indirection to every forward pass.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Attention<B: Backend> {
    /// Squeeze-and-Excitation.
    Se(SqueezeExcitation<B>),
    /// Efficient Channel Attention.
    Eca(Eca<B>),
    /// Spatial SE.
    Sse(SpatialSe<B>),
    /// Concurrent spatial and channel SE.
    Scse(Scse<B>),
    /// CBAM.
    Cbam(Cbam<B>),
}

impl<B: Backend> Attention<B> {
    /// Re-weights `x`; the output has the input's shape.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        match self {
            Attention::Se(module) => module.forward(x),
            Attention::Eca(module) => module.forward(x),
            Attention::Sse(module) => module.forward(x),
            Attention::Scse(module) => module.forward(x),
            Attention::Cbam(module) => module.forward(x),
        }
    }

    /// [`forward`](Self::forward), showing an SE module's channel weights to `hook` (the other
    /// modules, whose weights are not one per channel, run as they are).
    pub fn forward_hooked(&self, x: Tensor<B, 4>, hook: Hook<'_, B>) -> Tensor<B, 4> {
        match self {
            Attention::Se(module) => module.forward_hooked(x, hook),
            _ => self.forward(x),
        }
    }

    /// The module's BatchNorm, if it has one (CBAM's spatial branch).
    pub fn batch_norm_mut(&mut self) -> Option<&mut BatchNorm2d<B>> {
        match self {
            Attention::Cbam(module) => Some(&mut module.spatial_bn),
            _ => None,
        }
    }

    /// The module when its output is `weights * x` with the weights a function of the mean of
    /// each plane alone (SE with average squeeze): a block can then apply it in the same pass
    /// as the BatchNorm before it. `None` for the others.
    pub fn as_mean_excitation(&self) -> Option<&SqueezeExcitation<B>> {
        match self {
            Attention::Se(module) if module.squeeze == crate::Squeeze::Avg => Some(module),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{TestBackend, assert_close, tensor, values};
    use burn::module::Param;

    type B = TestBackend;

    fn sig(v: f32) -> f32 {
        1.0 / (1.0 + (-v).exp())
    }

    /// Four channels of 2x2 with averages `[2.5, 0.5, 1.0, 2.0]` (as in the SE tests).
    fn four_channels() -> Tensor<B, 4> {
        tensor(
            [
                1.0, 2.0, 3.0, 4.0, -1.0, 0.0, 1.0, 2.0, 0.0, 0.0, 0.0, 4.0, 2.0, 2.0, 2.0, 2.0,
            ],
            [1, 4, 2, 2],
        )
    }

    /// Two channels at two positions: channel 0 = `[1, 2]`, channel 1 = `[3, -1]`.
    fn two_channels() -> Tensor<B, 4> {
        tensor([1.0, 2.0, 3.0, -1.0], [1, 2, 1, 2])
    }

    #[test]
    fn eca_kernel_size_follows_the_channel_count_like_timm() {
        let config = EcaConfig::new();
        let sizes: Vec<usize> = [4, 64, 128, 256, 512, 1024, 2048]
            .map(|c| config.kernel_size(c))
            .to_vec();
        assert_eq!(sizes, [3, 3, 5, 5, 5, 5, 7]);
    }

    #[test]
    fn eca_convolves_the_pooled_channel_vector() {
        let device = Default::default();
        let mut eca = EcaConfig::new().init::<B>(4, &device);
        eca.conv.weight = Param::from_data([[[0.5f32, -1.0, 0.25]]], &device);
        // Pooled [2.5, 0.5, 1, 2], zero-padded, cross-correlated with [0.5, -1, 0.25]:
        // [-2.5 + 0.125, 1.25 - 0.5 + 0.25, 0.25 - 1 + 0.5, 0.5 - 2] = [-2.375, 1.0, -0.25, -1.5].
        let expected = [-2.375f32, 1.0, -0.25, -1.5].map(sig);
        assert_close(eca.excitation(four_channels()), &expected);
        let out = values(eca.forward(four_channels()));
        assert!((out[3] - 4.0 * expected[0]).abs() < 1e-5);
        assert!((out[15] - 2.0 * expected[3]).abs() < 1e-5);
    }

    fn spatial_se_with_weights() -> SpatialSe<B> {
        let device = Default::default();
        let mut sse = spatial_se::<B>(2, &device);
        sse.conv.weight = Param::from_data([[[[0.5f32]], [[-1.0]]]], &device);
        sse.conv.bias = Some(Param::from_data([0.25f32], &device));
        sse
    }

    #[test]
    fn spatial_se_weights_each_position() {
        // Position 0: 0.5 * 1 - 3 + 0.25 = -2.25; position 1: 0.5 * 2 + 1 + 0.25 = 2.25.
        let (m0, m1) = (sig(-2.25), sig(2.25));
        let sse = spatial_se_with_weights();
        assert_close(sse.excitation(two_channels()), &[m0, m1]);
        assert_close(sse.forward(two_channels()), &[m0, 2.0 * m1, 3.0 * m0, -m1]);
    }

    #[test]
    fn scse_sums_or_maxes_its_two_branches() {
        let device = Default::default();
        let scse = |merge| {
            let mut cse = SqueezeExcitationConfig::paper(2).init::<B>(2, &device);
            // Zero weights and biases: the channel gate is sigmoid(0) = 1/2 everywhere.
            cse.fc1.weight = Param::from_tensor(cse.fc1.weight.val().zeros_like());
            cse.fc1.bias = Some(Param::from_data([0.0f32], &device));
            cse.fc2.weight = Param::from_tensor(cse.fc2.weight.val().zeros_like());
            cse.fc2.bias = Some(Param::from_data([0.0f32, 0.0], &device));
            Scse {
                cse,
                sse: spatial_se_with_weights(),
                merge,
            }
        };
        let (m0, m1) = (sig(-2.25), sig(2.25));
        let x = [1.0f32, 2.0, 3.0, -1.0];
        let spatial = [m0, m1, m0, m1];
        let sum: Vec<f32> = (0..4).map(|i| 0.5 * x[i] + spatial[i] * x[i]).collect();
        assert_close(scse(ScseMerge::Sum).forward(two_channels()), &sum);
        let max: Vec<f32> = (0..4)
            .map(|i| (0.5 * x[i]).max(spatial[i] * x[i]))
            .collect();
        assert_close(scse(ScseMerge::Max).forward(two_channels()), &max);
    }

    #[test]
    fn cbam_applies_channel_then_spatial_attention() {
        let device = Default::default();
        let mut cbam = CbamConfig::new().init::<B>(2, &device);
        assert_eq!(cbam.fc1.weight.dims(), [2, 1]); // 2 / 16 rounds to the minimum, 1
        cbam.fc1.weight = Param::from_data([[1.0f32], [0.0]], &device);
        cbam.fc2.weight = Param::from_data([[1.0f32, -1.0]], &device);
        let mut kernel = [[[[0.0f32; 7]; 7]; 2]; 1];
        kernel[0][0][3][3] = 1.0; // centre tap on the channel-mean map
        kernel[0][1][3][3] = -0.5; // and on the channel-max map
        cbam.spatial_conv.weight = Param::from_data(kernel, &device);

        // Channel: avg [1.5, 1], max [2, 3]; mlp(v) = relu(v0) * [1, -1];
        // mlp(avg) + mlp(max) = [3.5, -3.5].
        let (c0, c1) = (sig(3.5), sig(-3.5));
        assert_close(cbam.channel_weights(two_channels()), &[c0, c1]);
        // After it: channel 0 = [c0, 2 c0], channel 1 = [3 c1, -c1].
        let scaled = [c0, 2.0 * c0, 3.0 * c1, -c1];
        // Spatial, per position p: (mean_p - 0.5 max_p) / sqrt(1 + eps) (fresh BatchNorm in eval).
        let s = (1.0f32 + 1e-5).sqrt();
        let map: Vec<f32> = (0..2)
            .map(|p| {
                let (a, b) = (scaled[p], scaled[2 + p]);
                sig(((a + b) / 2.0 - 0.5 * a.max(b)) / s)
            })
            .collect();
        let expected = [
            scaled[0] * map[0],
            scaled[1] * map[1],
            scaled[2] * map[0],
            scaled[3] * map[1],
        ];
        assert_close(cbam.forward(two_channels()), &expected);
    }

    /// timm 1.0.31: `EcaModule(channels=C)` and `CbamModule(C)` parameter counts,
    /// `sum(p.numel() for p in module.parameters())`.
    #[test]
    fn eca_and_cbam_parameter_counts_equal_timms() {
        let device = Default::default();
        let timm = [
            (64, 3, 612),
            (128, 5, 2_148),
            (256, 5, 8_292),
            (512, 5, 32_868),
            (1024, 5, 131_172),
            (2048, 7, 524_388),
        ];
        for (channels, eca, cbam) in timm {
            let eca_module = AttentionConfig::Eca(EcaConfig::new());
            let cbam_module = AttentionConfig::Cbam(CbamConfig::new());
            assert_eq!(
                crate::trainable_params(&eca_module.init::<B>(channels, &device)),
                eca
            );
            assert_eq!(
                crate::trainable_params(&cbam_module.init::<B>(channels, &device)),
                cbam
            );
            assert_eq!(eca_module.complexity(channels, [7, 7]).params, eca);
            assert_eq!(cbam_module.complexity(channels, [7, 7]).params, cbam);
        }
    }

    #[test]
    fn every_attention_keeps_the_shape_and_counts_its_parameters() {
        let device = Default::default();
        let x: Tensor<B, 4> =
            Tensor::random([2, 32, 5, 5], burn::tensor::Distribution::Default, &device);
        for config in [
            AttentionConfig::Se(SqueezeExcitationConfig::new()),
            AttentionConfig::Eca(EcaConfig::new()),
            AttentionConfig::Sse,
            AttentionConfig::Scse(ScseConfig::new()),
            AttentionConfig::Cbam(CbamConfig::new()),
        ] {
            let module = config.init::<B>(32, &device);
            assert_eq!(
                module.forward(x.clone()).dims(),
                [2, 32, 5, 5],
                "{config:?}"
            );
            assert_eq!(
                crate::trainable_params(&module),
                config.complexity(32, [5, 5]).params,
                "{config:?}"
            );
        }
    }
}
