//! Residual blocks with an optional attention module: one block type serves both plain ResNets
//! and SE-ResNets, the SE is an `Option` of the block.
//!
//! - `basic` and `bottleneck`: the two block kinds, [`BasicBlock`] and [`Bottleneck`] (ResNeXt
//!   is a grouped bottleneck).
//! - [`conv`](mod@conv): the convolution helpers every block and stem uses, and the projection shortcut.
//! - `fused`: the end of a block (BatchNorm, SE, addition, ReLU) as one pass.
//! - here: where the attention goes ([`SePlacement`]) and the wiring the blocks share.

mod basic;
mod bottleneck;
pub mod conv;
mod fused;
#[cfg(test)]
mod tests;

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::attention::{Attention, AttentionConfig};
use crate::complexity::{Complexity, Size, conv_bn};
use crate::norm::BatchNorm2d as BatchNorm;
use crate::squeeze_excitation::Hook;

pub use basic::{BasicBlock, BasicBlockConfig};
pub use bottleneck::{Bottleneck, BottleneckConfig};
pub use conv::{Downsample, conv, conv_forward, conv_initializer, conv_norm};
use fused::{norm_attention_add_relu, takes_input_means};

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

impl BlockAttentionConfig {
    /// `module` at the standard placement.
    pub fn of(module: AttentionConfig) -> Self {
        Self::new().with_module(Some(module))
    }
}

/// The attention module of a block over `in_channels → out_channels`, if the config has one.
pub(super) fn build_attention<B: Backend>(
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
pub(super) fn shared_complexity(
    attention: &BlockAttentionConfig,
    in_channels: usize,
    out_channels: usize,
    stride: usize,
    down_kernel: usize,
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
        cost += conv_bn(in_channels, out_channels, down_kernel, stride, 1, input).0;
    }
    cost
}

/// The wiring every residual block shares: `relu(norm(conv(branch(x))) + shortcut(x))`, with
/// the SE module wherever its placement says. `branch` is the block's own residual function up
/// to its last convolution `conv`: it returns that convolution's input and, if its second
/// argument asks and it can, that input's plane means. `norm` is the BatchNorm after `conv`;
/// `hook` sees the SE's weights.
pub(super) fn residual_forward<B: Backend>(
    x: Tensor<B, 4>,
    se: &Option<Attention<B>>,
    placement: SePlacement,
    downsample: &Option<Downsample<B>>,
    branch: impl FnOnce(Tensor<B, 4>, bool) -> (Tensor<B, 4>, Option<Tensor<B, 2>>),
    (conv, norm): (&Conv2d<B>, &BatchNorm<B>),
    hook: Hook<'_, B>,
) -> Tensor<B, 4> {
    let shortcut = match downsample {
        Some(downsample) => downsample.forward(x.clone()),
        None => x.clone(),
    };
    let end = |attention, x, shortcut, hook: Hook<'_, B>| {
        let means = takes_input_means(conv, norm, attention, hook.is_some());
        norm_attention_add_relu(conv, norm, attention, branch(x, means), shortcut, hook)
    };
    let Some(module) = se else {
        return end(None, x, shortcut, None);
    };
    match placement {
        SePlacement::Standard => end(Some(module), x, shortcut, hook),
        SePlacement::Pre => {
            let x = module.forward_hooked(x, hook);
            end(None, x, shortcut, None)
        }
        SePlacement::Identity => {
            let shortcut = module.forward_hooked(shortcut, hook);
            end(None, x, shortcut, None)
        }
        SePlacement::Post => {
            let out = end(None, x, shortcut, None);
            module.forward_hooked(out, hook)
        }
    }
}

/// Either block kind, so a network stage is one `Vec<ResidualBlock<B>>`.
// Built once per network; boxing a variant would only add an indirection to every forward pass.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum ResidualBlock<B: Backend> {
    /// A [`BasicBlock`].
    Basic(BasicBlock<B>),
    /// A [`Bottleneck`].
    Bottleneck(Bottleneck<B>),
}

impl<B: Backend> ResidualBlock<B> {
    /// Runs the block.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.forward_hooked(x, None)
    }

    /// Runs the block, showing its SE module's weights to `hook`.
    pub fn forward_hooked(&self, x: Tensor<B, 4>, hook: Hook<'_, B>) -> Tensor<B, 4> {
        match self {
            ResidualBlock::Basic(block) => block.forward_hooked(x, hook),
            ResidualBlock::Bottleneck(block) => block.forward_hooked(x, hook),
        }
    }

    /// The block's SE (or other attention) module, if any.
    pub fn attention(&self) -> Option<&Attention<B>> {
        match self {
            ResidualBlock::Basic(block) => block.se.as_ref(),
            ResidualBlock::Bottleneck(block) => block.se.as_ref(),
        }
    }

    /// Folds every BatchNorm that follows a convolution into it: the block's inference form
    /// (see [`BatchNorm::fold_into`]). The attention module's own BatchNorm, if any, stays.
    pub fn fold_batch_norms(&mut self) {
        match self {
            ResidualBlock::Basic(block) => block.fold_batch_norms(),
            ResidualBlock::Bottleneck(block) => block.fold_batch_norms(),
        }
    }

    /// Every BatchNorm of the block (see [`BasicBlock::batch_norms_mut`]).
    pub fn batch_norms_mut(&mut self) -> Vec<&mut BatchNorm<B>> {
        match self {
            ResidualBlock::Basic(block) => block.batch_norms_mut(),
            ResidualBlock::Bottleneck(block) => block.batch_norms_mut(),
        }
    }
}
