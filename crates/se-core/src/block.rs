//! Residual blocks with an optional SE module: one block type serves both plain ResNets and
//! SE-ResNets, the SE is an `Option` of the block.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Tensor, s};

use crate::attention::{Attention, AttentionConfig};
use crate::complexity::{Complexity, Size, conv_bn};
use crate::kernels::{KernelBackend, conv2d, plane_affine};
use crate::norm::{BatchNorm2d as BatchNorm, BatchNorm2dConfig};

/// Where the SE module sits in a residual block (the paper's integration study, Fig. 5).
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum SePlacement {
    /// On the residual branch, after its last BatchNorm and before the addition (Fig. 5b).
    Standard,
    /// Before the residual branch; the shortcut sees the unscaled input (SE-PRE, Fig. 5c).
    Pre,
    /// After the addition and its ReLU (SE-POST, Fig. 5d).
    Post,
    /// On the identity (shortcut) branch, in parallel with the residual branch (SE-Identity, Fig. 5e).
    Identity,
}

impl SePlacement {
    /// The number of channels the SE module sees in a block going `in_channels → out_channels`.
    pub fn channels(self, in_channels: usize, out_channels: usize) -> usize {
        match self {
            SePlacement::Pre => in_channels,
            SePlacement::Standard | SePlacement::Post | SePlacement::Identity => out_channels,
        }
    }
}

/// The attention a block is built with: SE (or another module) and where it goes.
#[derive(Config, Debug)]
pub struct BlockAttentionConfig {
    /// The attention module, if any (none: a plain ResNet block).
    pub module: Option<AttentionConfig>,
    /// Where the module goes.
    #[config(default = "SePlacement::Standard")]
    pub placement: SePlacement,
}

/// Weight initialisation of convolutions as in torchvision/timm ResNets: Kaiming normal, fan-out,
/// ReLU gain.
pub fn conv_initializer() -> Initializer {
    Initializer::KaimingNormal {
        gain: core::f64::consts::SQRT_2,
        fan_out_only: true,
    }
}

/// A bias-free `k x k` convolution with "same"-style padding `k / 2`, initialised like torchvision's.
pub fn conv(
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    groups: usize,
) -> Conv2dConfig {
    let pad = kernel / 2;
    Conv2dConfig::new([in_channels, out_channels], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_groups(groups)
        .with_bias(false)
        .with_initializer(conv_initializer())
}

/// Runs `conv` on `x` (`[N, C, H, W]` to `[N, C', H', W']`) through [`KernelBackend`], so that a
/// backend's own convolution kernels are used. A strided 1x1 convolution without padding runs as
/// subsampling followed by a stride-1 convolution with the same weights: the same result, but
/// Burn 0.21's cubecl backends (wgpu, and CUDA with the same kernels) compute a wrong input
/// gradient for strided 1x1 convolutions, which the wgpu/flex parity test found in every
/// downsampling shortcut. Asymmetric or "same" padding (never used by the models) goes to Burn's
/// `Conv2d::forward`.
pub fn conv_forward<B: KernelBackend>(conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let padding = match conv.padding {
        PaddingConfig2d::Valid => [0, 0],
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => {
            [top, left]
        }
        _ => return conv.forward(x),
    };
    let [sh, sw] = conv.stride;
    let strided_pointwise = conv.kernel_size == [1, 1] && [sh, sw] != [1, 1] && padding == [0, 0];
    let (x, stride) = if strided_pointwise {
        (x.slice(s![.., .., ..;sh as isize, ..;sw as isize]), [1, 1])
    } else {
        (x, conv.stride)
    };
    let options = ConvOptions::new(stride, padding, conv.dilation, conv.groups);
    conv2d(
        x,
        conv.weight.val(),
        conv.bias.as_ref().map(|b| b.val()),
        options,
    )
}

/// Builds a BatchNorm over `channels`, its scale initialised to zero when `zero_gamma` (the
/// "zero-init last BN" trick that starts each block as an identity).
fn batch_norm<B: Backend>(channels: usize, zero_gamma: bool, device: &B::Device) -> BatchNorm<B> {
    let bn = BatchNorm2dConfig::new(channels).init(device);
    if zero_gamma {
        let gamma = bn.gamma.map(|g| g.zeros_like());
        BatchNorm { gamma, ..bn }
    } else {
        bn
    }
}

/// The projection shortcut: 1x1 conv (with the block's stride) and its own BatchNorm.
/// Named like torchvision's `downsample.0` / `downsample.1` as `downsample.conv` / `downsample.bn`.
#[derive(Module, Debug)]
pub struct Downsample<B: Backend> {
    /// 1x1 projection.
    pub conv: Conv2d<B>,
    /// Its BatchNorm.
    pub bn: BatchNorm<B>,
}

impl<B: Backend> Downsample<B> {
    /// Builds the projection if the block changes shape, `None` for an identity shortcut.
    pub fn if_needed(
        in_channels: usize,
        out_channels: usize,
        stride: usize,
        device: &B::Device,
    ) -> Option<Self> {
        (stride != 1 || in_channels != out_channels).then(|| Self {
            conv: conv(in_channels, out_channels, 1, stride, 1).init(device),
            bn: batch_norm(out_channels, false, device),
        })
    }
}

impl<B: KernelBackend> Downsample<B> {
    /// `[N, C_in, H, W] → [N, C_out, H / stride, W / stride]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.bn.forward(conv_forward(&self.conv, x))
    }
}

impl BlockAttentionConfig {
    /// `module` at the standard placement.
    pub fn of(module: AttentionConfig) -> Self {
        Self::new().with_module(Some(module))
    }
}

/// The attention module of a block over `in_channels → out_channels`, if the config has one.
fn build_attention<B: Backend>(
    attention: &BlockAttentionConfig,
    in_channels: usize,
    out_channels: usize,
    device: &B::Device,
) -> Option<Attention<B>> {
    let channels = attention.placement.channels(in_channels, out_channels);
    attention
        .module
        .as_ref()
        .map(|module| module.init(channels, device))
}

/// Cost of the parts every block shares (SE and projection shortcut), for a block mapping
/// `in_channels x input` to `out_channels x output`.
fn shared_complexity(
    attention: &BlockAttentionConfig,
    in_channels: usize,
    out_channels: usize,
    stride: usize,
    input: Size,
    output: Size,
) -> Complexity {
    let mut cost = Complexity::default();
    if let Some(module) = &attention.module {
        let (channels, size) = match attention.placement {
            SePlacement::Pre => (in_channels, input),
            _ => (out_channels, output),
        };
        cost += module.complexity(channels, size);
    }
    if stride != 1 || in_channels != out_channels {
        cost += conv_bn(in_channels, out_channels, 1, stride, 1, input).0;
    }
    cost
}

/// The wiring every residual block shares: `relu(norm(branch(x)) + shortcut(x))`, with the SE
/// module wherever its placement says. `branch` is the block's own residual function up to its
/// last convolution, `norm` the BatchNorm after that convolution.
fn residual_forward<B: KernelBackend>(
    x: Tensor<B, 4>,
    se: &Option<Attention<B>>,
    placement: SePlacement,
    downsample: &Option<Downsample<B>>,
    branch: impl FnOnce(Tensor<B, 4>) -> Tensor<B, 4>,
    norm: &BatchNorm<B>,
) -> Tensor<B, 4> {
    let se_at = |at: SePlacement, x: Tensor<B, 4>| match se {
        Some(se) if placement == at => se.forward(x),
        _ => x,
    };
    let shortcut = match downsample {
        Some(downsample) => downsample.forward(x.clone()),
        None => x.clone(),
    };
    let shortcut = se_at(SePlacement::Identity, shortcut);
    let standard_se = se.as_ref().filter(|_| placement == SePlacement::Standard);
    let branch = branch(se_at(SePlacement::Pre, x));
    se_at(
        SePlacement::Post,
        norm_attention_add_relu(norm, standard_se, branch, shortcut),
    )
}

/// `relu(attention(norm(x)) + shortcut)`, the end of every residual block, in one pass over the
/// map where the attention allows it. A BatchNorm is a per-channel affine map `y = a·x + b`, so
/// the mean of each plane of `y` is `a·mean(x) + b`, and an SE module's output `w·y` (weights
/// `w` from those means) is `(a·w)·x + b·w`: the SE's squeeze reads means the BatchNorm already
/// has (in training) or a `[N, C]` product (in inference), its scaling rides on the
/// BatchNorm's, and the addition and ReLU ride on both (one [`plane_affine`] kernel, as the
/// original SENet release fused SE into the addition with its Caffe "Axpy" layer). Exact, not
/// an approximation; other attention modules run between the BatchNorm and the addition.
fn norm_attention_add_relu<B: KernelBackend>(
    norm: &BatchNorm<B>,
    attention: Option<&Attention<B>>,
    x: Tensor<B, 4>,
    shortcut: Tensor<B, 4>,
) -> Tensor<B, 4> {
    let se = match attention {
        None => return norm.affine(x.clone()).apply_then(x, Some(shortcut), true),
        Some(attention) => match attention.as_mean_excitation() {
            None => return relu(attention.forward(norm.forward(x)) + shortcut),
            Some(se) => se,
        },
    };
    let [n, c, h, w] = x.dims();
    let affine = norm.affine(x.clone());
    let plane_means = affine.plane_means.clone().unwrap_or_else(|| {
        x.clone()
            .reshape([n * c, h * w])
            .mean_dim(1)
            .reshape([n, c])
    });
    let (scale, shift) = affine.per_plane(n);
    let means = plane_means * scale.clone() + shift.clone();
    let weights = se.excite(means);
    plane_affine(
        x,
        scale * weights.clone(),
        shift * weights,
        Some(shortcut),
        true,
    )
}

/// Configuration of a [`BasicBlock`]: two 3x3 convs, expansion 1 (ResNet-18/34, CIFAR ResNets).
#[derive(Config, Debug)]
pub struct BasicBlockConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels (`planes`; expansion is 1).
    pub planes: usize,
    /// Stride of the first 3x3 conv and of the shortcut.
    #[config(default = 1)]
    pub stride: usize,
    /// SE module and placement.
    #[config(default = "BlockAttentionConfig::new()")]
    pub attention: BlockAttentionConfig,
    /// Initialise the last BatchNorm's scale to zero.
    #[config(default = false)]
    pub zero_init_last: bool,
}

impl BasicBlockConfig {
    /// Output channels per input `planes`.
    pub const EXPANSION: usize = 1;

    /// Builds the block.
    pub fn init<B: Backend>(&self, device: &B::Device) -> BasicBlock<B> {
        let out = self.planes * Self::EXPANSION;
        BasicBlock {
            conv1: conv(self.in_channels, self.planes, 3, self.stride, 1).init(device),
            bn1: batch_norm(self.planes, false, device),
            conv2: conv(self.planes, out, 3, 1, 1).init(device),
            bn2: batch_norm(out, self.zero_init_last, device),
            se: build_attention(&self.attention, self.in_channels, out, device),
            downsample: Downsample::if_needed(self.in_channels, out, self.stride, device),
            placement: self.attention.placement,
        }
    }

    /// Parameters and multiply-adds of the block on an `input`-sized map, and its output size.
    pub fn complexity(&self, input: Size) -> (Complexity, Size) {
        let out = self.planes * Self::EXPANSION;
        let (conv1, size) = conv_bn(self.in_channels, self.planes, 3, self.stride, 1, input);
        let (conv2, size) = conv_bn(self.planes, out, 3, 1, 1, size);
        let shared = shared_complexity(
            &self.attention,
            self.in_channels,
            out,
            self.stride,
            input,
            size,
        );
        (conv1 + conv2 + shared, size)
    }
}

/// Basic residual block: `conv3x3 → BN → ReLU → conv3x3 → BN`, plus the shortcut.
#[derive(Module, Debug)]
pub struct BasicBlock<B: Backend> {
    /// First 3x3 conv (carries the stride).
    pub conv1: Conv2d<B>,
    /// BatchNorm of `conv1`.
    pub bn1: BatchNorm<B>,
    /// Second 3x3 conv.
    pub conv2: Conv2d<B>,
    /// BatchNorm of `conv2`.
    pub bn2: BatchNorm<B>,
    /// The SE (or other attention) module, named `se` as in timm (`se.fc1`, `se.fc2`), if any.
    pub se: Option<Attention<B>>,
    /// Projection shortcut; `None` for identity.
    pub downsample: Option<Downsample<B>>,
    /// Where `se` is applied.
    pub placement: SePlacement,
}

impl<B: KernelBackend> BasicBlock<B> {
    /// # Shapes
    /// - `x`: `[N, C_in, H, W]`
    /// - output: `[N, planes, H / stride, W / stride]`
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let branch = |x| {
            let x = self.bn1.forward_relu(conv_forward(&self.conv1, x));
            conv_forward(&self.conv2, x)
        };
        let (se, placement) = (&self.se, self.placement);
        residual_forward(x, se, placement, &self.downsample, branch, &self.bn2)
    }
}

/// Configuration of a [`Bottleneck`]: 1x1 → 3x3 → 1x1, expansion 4 (ResNet-50+, ResNeXt, CIFAR
/// ResNet-164).
#[derive(Config, Debug)]
pub struct BottleneckConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Base width; the block outputs `planes * 4` channels.
    pub planes: usize,
    /// Stride of the block.
    #[config(default = 1)]
    pub stride: usize,
    /// Groups of the 3x3 conv (ResNeXt cardinality).
    #[config(default = 1)]
    pub groups: usize,
    /// Width per group at `planes = 64` (ResNeXt's `d`; 64 for ResNet).
    #[config(default = 64)]
    pub base_width: usize,
    /// Put the stride on the first 1x1 conv instead of the 3x3 (the Caffe/Cadene SE-ResNet layout).
    #[config(default = false)]
    pub stride_on_1x1: bool,
    /// SE module and placement.
    #[config(default = "BlockAttentionConfig::new()")]
    pub attention: BlockAttentionConfig,
    /// Initialise the last BatchNorm's scale to zero.
    #[config(default = false)]
    pub zero_init_last: bool,
}

impl BottleneckConfig {
    /// Output channels per input `planes`.
    pub const EXPANSION: usize = 4;

    /// Width of the grouped 3x3 conv: `floor(planes * base_width / 64) * groups`, as torchvision.
    pub fn width(&self) -> usize {
        self.planes * self.base_width / 64 * self.groups
    }

    /// Strides of the first 1x1 and of the 3x3 conv.
    fn strides(&self) -> (usize, usize) {
        if self.stride_on_1x1 {
            (self.stride, 1)
        } else {
            (1, self.stride)
        }
    }

    /// Builds the block.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Bottleneck<B> {
        let width = self.width();
        let out = self.planes * Self::EXPANSION;
        let (stride1, stride3) = self.strides();
        Bottleneck {
            conv1: conv(self.in_channels, width, 1, stride1, 1).init(device),
            bn1: batch_norm(width, false, device),
            conv2: conv(width, width, 3, stride3, self.groups).init(device),
            bn2: batch_norm(width, false, device),
            conv3: conv(width, out, 1, 1, 1).init(device),
            bn3: batch_norm(out, self.zero_init_last, device),
            se: build_attention(&self.attention, self.in_channels, out, device),
            downsample: Downsample::if_needed(self.in_channels, out, self.stride, device),
            placement: self.attention.placement,
        }
    }

    /// Parameters and multiply-adds of the block on an `input`-sized map, and its output size.
    pub fn complexity(&self, input: Size) -> (Complexity, Size) {
        let width = self.width();
        let out = self.planes * Self::EXPANSION;
        let (stride1, stride3) = self.strides();
        let (conv1, size) = conv_bn(self.in_channels, width, 1, stride1, 1, input);
        let (conv2, size) = conv_bn(width, width, 3, stride3, self.groups, size);
        let (conv3, size) = conv_bn(width, out, 1, 1, 1, size);
        let shared = shared_complexity(
            &self.attention,
            self.in_channels,
            out,
            self.stride,
            input,
            size,
        );
        (conv1 + conv2 + conv3 + shared, size)
    }
}

/// Bottleneck residual block: `1x1 → BN → ReLU → 3x3 (grouped) → BN → ReLU → 1x1 → BN`, plus the
/// shortcut.
#[derive(Module, Debug)]
pub struct Bottleneck<B: Backend> {
    /// 1x1 reduction.
    pub conv1: Conv2d<B>,
    /// BatchNorm of `conv1`.
    pub bn1: BatchNorm<B>,
    /// 3x3 (grouped for ResNeXt).
    pub conv2: Conv2d<B>,
    /// BatchNorm of `conv2`.
    pub bn2: BatchNorm<B>,
    /// 1x1 expansion.
    pub conv3: Conv2d<B>,
    /// BatchNorm of `conv3`.
    pub bn3: BatchNorm<B>,
    /// The SE (or other attention) module, named `se` as in timm (`se.fc1`, `se.fc2`), if any.
    pub se: Option<Attention<B>>,
    /// Projection shortcut; `None` for identity.
    pub downsample: Option<Downsample<B>>,
    /// Where `se` is applied.
    pub placement: SePlacement,
}

impl<B: KernelBackend> Bottleneck<B> {
    /// # Shapes
    /// - `x`: `[N, C_in, H, W]`
    /// - output: `[N, 4 * planes, H / stride, W / stride]`
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let branch = |x| {
            let x = self.bn1.forward_relu(conv_forward(&self.conv1, x));
            let x = self.bn2.forward_relu(conv_forward(&self.conv2, x));
            conv_forward(&self.conv3, x)
        };
        let (se, placement) = (&self.se, self.placement);
        residual_forward(x, se, placement, &self.downsample, branch, &self.bn3)
    }
}

/// Either block kind, so a network stage is one `Vec<ResidualBlock<B>>`.
#[derive(Module, Debug)]
pub enum ResidualBlock<B: Backend> {
    /// A [`BasicBlock`].
    Basic(BasicBlock<B>),
    /// A [`Bottleneck`].
    Bottleneck(Bottleneck<B>),
}

impl<B: KernelBackend> ResidualBlock<B> {
    /// Runs the block.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        match self {
            ResidualBlock::Basic(block) => block.forward(x),
            ResidualBlock::Bottleneck(block) => block.forward(x),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqueezeExcitationConfig;
    use crate::test_util::{TestBackend, assert_close, tensor, values};
    use burn::module::{AutodiffModule, Param, RunningState};
    use burn::tensor::Distribution;

    type B = TestBackend;

    fn random_input(shape: [usize; 4]) -> Tensor<B, 4> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
    }

    #[test]
    fn strided_pointwise_conv_is_subsampling_then_conv() {
        let device = Default::default();
        let conv = conv(6, 4, 1, 2, 1).with_bias(true).init::<B>(&device);
        let x = random_input([2, 6, 7, 7]);
        let direct = values(conv.forward(x.clone()));
        assert_eq!(conv_forward(&conv, x.clone()).dims(), [2, 4, 4, 4]);
        assert_close(conv_forward(&conv, x), &direct);
    }

    fn basic(
        in_channels: usize,
        planes: usize,
        stride: usize,
        placement: SePlacement,
    ) -> BasicBlock<B> {
        let se = AttentionConfig::Se(SqueezeExcitationConfig::paper(2));
        BasicBlockConfig::new(in_channels, planes)
            .with_stride(stride)
            .with_attention(BlockAttentionConfig::of(se).with_placement(placement))
            .init(&Default::default())
    }

    fn se_of(block: &BasicBlock<B>) -> &crate::SqueezeExcitation<B> {
        match block.se.as_ref().unwrap() {
            Attention::Se(se) => se,
            other => panic!("expected SE, got {other:?}"),
        }
    }

    /// Each placement wires the SE where the paper's Fig. 5 puts it: the block output equals the
    /// same sub-modules composed by hand.
    #[test]
    fn every_placement_matches_its_hand_written_wiring() {
        for (in_channels, stride) in [(4, 1), (2, 2)] {
            let x = random_input([2, in_channels, 6, 6]);
            for placement in [
                SePlacement::Standard,
                SePlacement::Pre,
                SePlacement::Post,
                SePlacement::Identity,
            ] {
                let block = basic(in_channels, 4, stride, placement);
                let se = block.se.as_ref().unwrap();
                let branch = |x: Tensor<B, 4>| {
                    let x = relu(block.bn1.forward(block.conv1.forward(x)));
                    block.bn2.forward(block.conv2.forward(x))
                };
                let shortcut = match &block.downsample {
                    Some(d) => d.bn.forward(d.conv.forward(x.clone())),
                    None => x.clone(),
                };
                let expected = match placement {
                    SePlacement::Standard => relu(se.forward(branch(x.clone())) + shortcut),
                    SePlacement::Pre => relu(branch(se.forward(x.clone())) + shortcut),
                    SePlacement::Post => se.forward(relu(branch(x.clone()) + shortcut)),
                    SePlacement::Identity => relu(branch(x.clone()) + se.forward(shortcut)),
                };
                let out = block.forward(x.clone());
                assert_eq!(out.dims(), [2, 4, 6 / stride, 6 / stride]);
                assert_close(out, &values(expected));
            }
        }
    }

    /// The block applies BatchNorm and SE in one pass (`norm_attention_add_relu`); it must equal the
    /// two steps, in training (batch statistics, gradients) and in inference (running statistics).
    #[test]
    fn fused_norm_and_se_equal_the_two_steps_in_training_and_inference() {
        type AD = burn::backend::Autodiff<B>;
        let device = Default::default();
        let se = AttentionConfig::Se(SqueezeExcitationConfig::paper(2));
        let mut block = BasicBlockConfig::new(4, 4)
            .with_attention(BlockAttentionConfig::of(se))
            .init::<AD>(&device);
        // A BatchNorm that is not the identity, in both modes.
        let random = |len| Tensor::<AD, 1>::random([len], Distribution::Uniform(0.5, 1.5), &device);
        block.bn2.gamma = Param::from_tensor(random(4));
        block.bn2.beta = Param::from_tensor(random(4) - 1.0);
        block.bn2.running_mean = RunningState::new(random(4) - 1.0);
        block.bn2.running_var = RunningState::new(random(4));

        let two_steps = |block: &BasicBlock<AD>, x: Tensor<AD, 4>| {
            let hidden = relu(block.bn1.forward(block.conv1.forward(x.clone())));
            let normed = block.bn2.forward(block.conv2.forward(hidden));
            relu(block.se.as_ref().unwrap().forward(normed) + x)
        };
        let x = Tensor::<AD, 4>::random([2, 4, 5, 5], Distribution::Normal(0.0, 1.0), &device)
            .require_grad();
        let gradients = |out: Tensor<AD, 4>| {
            let grads = (out.clone() * out).sum().backward();
            let fc1 = match block.se.as_ref().unwrap() {
                Attention::Se(se) => se.fc1.weight.grad(&grads).unwrap(),
                _ => unreachable!(),
            };
            (
                x.grad(&grads).unwrap(),
                fc1,
                block.bn2.gamma.grad(&grads).unwrap(),
            )
        };
        let fused = block.forward(x.clone());
        let expected = two_steps(&block, x.clone());
        assert_close(fused.clone().inner(), &values(expected.clone().inner()));
        let (dx, dfc1, dgamma) = gradients(fused);
        let (dx_expected, dfc1_expected, dgamma_expected) = gradients(expected);
        assert_close(dx, &values(dx_expected));
        assert_close(dfc1, &values(dfc1_expected));
        assert_close(dgamma, &values(dgamma_expected));

        let block = block.valid();
        let x = x.inner();
        let hidden = relu(block.bn1.forward(block.conv1.forward(x.clone())));
        let normed = block.bn2.forward(block.conv2.forward(hidden));
        let expected = relu(block.se.as_ref().unwrap().forward(normed) + x.clone());
        assert_close(block.forward(x), &values(expected));
    }

    #[test]
    fn placements_give_different_outputs() {
        let x = random_input([1, 4, 5, 5]);
        let block = basic(4, 4, 1, SePlacement::Standard);
        let mut outputs: Vec<Vec<f32>> = Vec::new();
        for placement in [
            SePlacement::Standard,
            SePlacement::Pre,
            SePlacement::Post,
            SePlacement::Identity,
        ] {
            let moved = BasicBlock {
                placement,
                ..block.clone()
            };
            let out = values(moved.forward(x.clone()));
            for other in &outputs {
                let diff: f32 = out.iter().zip(other).map(|(a, b)| (a - b).abs()).sum();
                assert!(
                    diff > 1e-3,
                    "{placement:?} gives the same output as another placement"
                );
            }
            outputs.push(out);
        }
    }

    #[test]
    fn se_pre_sees_the_block_input_channels() {
        let block = basic(2, 4, 2, SePlacement::Pre);
        assert_eq!(se_of(&block).fc1.weight.dims(), [2, 1]);
        let block = basic(2, 4, 2, SePlacement::Identity);
        assert_eq!(se_of(&block).fc1.weight.dims(), [4, 2]);
    }

    /// A basic block with every conv weight 1/9 (a 3x3 mean), fresh BatchNorms (identity in eval:
    /// `x / sqrt(1 + eps)`) and no SE, on a constant input: every value is computed by hand.
    #[test]
    fn basic_block_on_a_constant_input_matches_hand_computation() {
        let device = Default::default();
        let mut block = BasicBlockConfig::new(1, 1).init::<B>(&device);
        let ninth = burn::module::Param::from_tensor(Tensor::<B, 4>::full(
            [1, 1, 3, 3],
            1.0 / 9.0,
            &device,
        ));
        block.conv1.weight = ninth.clone();
        block.conv2.weight = ninth;
        // Input: 3x3 of ones. conv1 (zero padding): corner 4/9, edge 6/9, centre 1.
        // bn1 divides by s = sqrt(1 + 1e-5); relu keeps it. conv2 of that map at the centre:
        // (4 * 4/9 + 4 * 6/9 + 1) / 9 / s = (49/9) / 9 / s; then bn2 (/ s) and + 1 (identity), relu.
        let x = tensor([1.0f32; 9], [1, 1, 3, 3]);
        let out = values(block.forward(x));
        let s = (1.0f32 + 1e-5).sqrt();
        let centre = (49.0 / 81.0) / (s * s) + 1.0;
        // corner of conv2: (4/9 + 2 * 6/9 + 1) / 9 = (25/9) / 9
        let corner = (25.0 / 81.0) / (s * s) + 1.0;
        assert!(
            (out[4] - centre).abs() < 1e-5,
            "centre {} vs {centre}",
            out[4]
        );
        assert!(
            (out[0] - corner).abs() < 1e-5,
            "corner {} vs {corner}",
            out[0]
        );
    }

    #[test]
    fn bottleneck_width_and_strides_follow_torchvision_and_caffe_layouts() {
        let resnext = BottleneckConfig::new(256, 128)
            .with_groups(32)
            .with_base_width(4)
            .with_stride(2);
        assert_eq!(resnext.width(), 256);
        let block = resnext.init::<B>(&Default::default());
        assert_eq!(block.conv2.groups, 32);
        assert_eq!(block.conv2.stride, [2, 2]);
        assert_eq!(block.conv1.stride, [1, 1]);
        assert_eq!(block.conv2.weight.dims(), [256, 8, 3, 3]);
        let out = block.forward(random_input([1, 256, 8, 8]));
        assert_eq!(out.dims(), [1, 512, 4, 4]);

        let caffe = BottleneckConfig::new(64, 64)
            .with_stride(2)
            .with_stride_on_1x1(true);
        let block = caffe.init::<B>(&Default::default());
        assert_eq!(block.conv1.stride, [2, 2]);
        assert_eq!(block.conv2.stride, [1, 1]);
        assert_eq!(
            block.forward(random_input([1, 64, 8, 8])).dims(),
            [1, 256, 4, 4]
        );
    }

    #[test]
    fn every_conv_has_its_own_batch_norm_and_shortcut_projects_when_shape_changes() {
        let block = BottleneckConfig::new(64, 64).init::<B>(&Default::default());
        assert_eq!(block.bn1.gamma.dims(), [64]);
        assert_eq!(block.bn2.gamma.dims(), [64]);
        assert_eq!(block.bn3.gamma.dims(), [256]);
        assert!(block.downsample.is_some());
        let block = BasicBlockConfig::new(64, 64).init::<B>(&Default::default());
        assert!(block.downsample.is_none());
        assert!(block.se.is_none());
    }

    #[test]
    fn block_complexity_counts_the_built_parameters() {
        let device = Default::default();
        let se = BlockAttentionConfig::of(AttentionConfig::Se(SqueezeExcitationConfig::new()));
        for placement in [SePlacement::Standard, SePlacement::Pre] {
            let attention = se.clone().with_placement(placement);
            let basic = BasicBlockConfig::new(32, 64)
                .with_stride(2)
                .with_attention(attention.clone());
            let (cost, size) = basic.complexity([8, 8]);
            assert_eq!(size, [4, 4]);
            assert_eq!(
                cost.params,
                crate::trainable_params(&basic.init::<B>(&device))
            );
            let bottleneck = BottleneckConfig::new(64, 32)
                .with_groups(4)
                .with_base_width(16)
                .with_attention(attention);
            let (cost, _) = bottleneck.complexity([8, 8]);
            assert_eq!(
                cost.params,
                crate::trainable_params(&bottleneck.init::<B>(&device))
            );
        }
        // conv 3x3 64→64 on 8x8, stride 1: 64 * 64 * 9 weights, each used at 64 positions.
        let (cost, _) = BasicBlockConfig::new(64, 64).complexity([8, 8]);
        assert_eq!(cost.macs, 2 * 64 * 64 * 9 * 64);
        assert_eq!(cost.params, 2 * (64 * 64 * 9 + 2 * 64));
    }
}
