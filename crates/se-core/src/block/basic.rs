//! The basic block: two 3x3 convolutions (ResNet-18/34, the CIFAR ResNets).

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::conv::{Downsample, batch_norm, conv, conv_norm_means};
use super::{
    BlockAttentionConfig, SePlacement, build_attention, residual_forward, shared_complexity,
};
use crate::attention::Attention;
use crate::complexity::{Complexity, Size, conv_bn};
use crate::norm::BatchNorm2d as BatchNorm;
use crate::squeeze_excitation::Hook;

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
            downsample: Downsample::if_needed(self.in_channels, out, self.stride, 1, device),
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
            1,
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

impl<B: Backend> BasicBlock<B> {
    /// Folds each convolution's BatchNorm into it, the shortcut's too: the inference form (see
    /// [`BatchNorm::fold_into`]).
    pub fn fold_batch_norms(&mut self) {
        self.bn1.fold_into(&mut self.conv1);
        self.bn2.fold_into(&mut self.conv2);
        if let Some(downsample) = &mut self.downsample {
            downsample.fold_batch_norm();
        }
    }

    /// Every BatchNorm of the block: its own, the shortcut's and the attention module's.
    pub fn batch_norms_mut(&mut self) -> Vec<&mut BatchNorm<B>> {
        let mut norms = vec![&mut self.bn1, &mut self.bn2];
        norms.extend(self.downsample.as_mut().map(|d| &mut d.bn));
        norms.extend(self.se.as_mut().and_then(|se| se.batch_norm_mut()));
        norms
    }

    /// # Shapes
    /// - `x`: `[N, C_in, H, W]`
    /// - output: `[N, planes, H / stride, W / stride]`
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.forward_hooked(x, None)
    }

    /// [`forward`](Self::forward), showing the SE module's channel weights to `hook`.
    pub fn forward_hooked(&self, x: Tensor<B, 4>, hook: Hook<'_, B>) -> Tensor<B, 4> {
        let branch = |x, means| conv_norm_means(&self.conv1, &self.bn1, x, None, true, means);
        let (se, placement, last) = (&self.se, self.placement, (&self.conv2, &self.bn2));
        residual_forward(x, se, placement, &self.downsample, branch, last, hook)
    }
}
