//! The bottleneck block: 1x1 → 3x3 (grouped for ResNeXt) → 1x1 (ResNet-50 and deeper).

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::conv::{Downsample, batch_norm, conv, conv_norm, conv_norm_means};
use super::{
    BlockAttentionConfig, SePlacement, build_attention, residual_forward, shared_complexity,
};
use crate::attention::Attention;
use crate::complexity::{Complexity, Size, conv_bn};
use crate::norm::BatchNorm2d as BatchNorm;
use crate::squeeze_excitation::Hook;

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
    /// The first 1x1 conv outputs `width / reduce_first` channels (2 in SENet-154, whose
    /// bottleneck goes `2 * planes → 4 * planes` in its 3x3 conv; timm's `reduce_first`).
    #[config(default = 1)]
    pub reduce_first: usize,
    /// Kernel of the projection shortcut's conv (1; 3 with padding 1 in SENet-154).
    #[config(default = 1)]
    pub down_kernel_size: usize,
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
        let first = width / self.reduce_first;
        let out = self.planes * Self::EXPANSION;
        let (stride1, stride3) = self.strides();
        let down = self.down_kernel_size;
        Bottleneck {
            conv1: conv(self.in_channels, first, 1, stride1, 1).init(device),
            bn1: batch_norm(first, false, device),
            conv2: conv(first, width, 3, stride3, self.groups).init(device),
            bn2: batch_norm(width, false, device),
            conv3: conv(width, out, 1, 1, 1).init(device),
            bn3: batch_norm(out, self.zero_init_last, device),
            se: build_attention(&self.attention, self.in_channels, out, device),
            downsample: Downsample::if_needed(self.in_channels, out, self.stride, down, device),
            placement: self.attention.placement,
        }
    }

    /// Parameters and multiply-adds of the block on an `input`-sized map, and its output size.
    pub fn complexity(&self, input: Size) -> (Complexity, Size) {
        let width = self.width();
        let out = self.planes * Self::EXPANSION;
        let (stride1, stride3) = self.strides();
        let first = width / self.reduce_first;
        let (conv1, size) = conv_bn(self.in_channels, first, 1, stride1, 1, input);
        let (conv2, size) = conv_bn(first, width, 3, stride3, self.groups, size);
        let (conv3, size) = conv_bn(width, out, 1, 1, 1, size);
        let shared = shared_complexity(
            &self.attention,
            self.in_channels,
            out,
            self.stride,
            self.down_kernel_size,
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

impl<B: Backend> Bottleneck<B> {
    /// Folds each convolution's BatchNorm into it, the shortcut's too: the inference form (see
    /// [`BatchNorm::fold_into`]).
    pub fn fold_batch_norms(&mut self) {
        self.bn1.fold_into(&mut self.conv1);
        self.bn2.fold_into(&mut self.conv2);
        self.bn3.fold_into(&mut self.conv3);
        if let Some(downsample) = &mut self.downsample {
            downsample.fold_batch_norm();
        }
    }

    /// Every BatchNorm of the block: its own, the shortcut's and the attention module's.
    pub fn batch_norms_mut(&mut self) -> Vec<&mut BatchNorm<B>> {
        let mut norms = vec![&mut self.bn1, &mut self.bn2, &mut self.bn3];
        norms.extend(self.downsample.as_mut().map(|d| &mut d.bn));
        norms.extend(self.se.as_mut().and_then(|se| se.batch_norm_mut()));
        norms
    }

    /// # Shapes
    /// - `x`: `[N, C_in, H, W]`
    /// - output: `[N, 4 * planes, H / stride, W / stride]`
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.forward_hooked(x, None)
    }

    /// [`forward`](Self::forward), showing the SE module's channel weights to `hook`.
    pub fn forward_hooked(&self, x: Tensor<B, 4>, hook: Hook<'_, B>) -> Tensor<B, 4> {
        let branch = |x, means| {
            let x = conv_norm(&self.conv1, &self.bn1, x, None, true);
            conv_norm_means(&self.conv2, &self.bn2, x, None, true, means)
        };
        let (se, placement, last) = (&self.se, self.placement, (&self.conv3, &self.bn3));
        residual_forward(x, se, placement, &self.downsample, branch, last, hook)
    }
}
