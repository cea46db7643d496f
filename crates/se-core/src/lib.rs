//! Squeeze-and-Excitation building blocks for Burn, generic over the backend.
//!
//! - [`SqueezeExcitation`]: the SE module (squeeze, excitation, scale).
//! - [`BasicBlock`] and [`Bottleneck`]: residual blocks with an optional SE module placed as in the
//!   paper's integration study ([`SePlacement`]).
//! - Beyond SE, as options of the same blocks ([`AttentionConfig`]): ECA, spatial SE (sSE),
//!   concurrent spatial and channel SE (scSE) and CBAM.
//!
//! Every type is generic over Burn's `Backend` and runs on any of them; the convolutions and
//! the BatchNorm/SE/residual passes go through `se-kernels`, which uses its CPU kernels on flex.
//!
//! ```
//! use burn::backend::Flex;
//! use burn::tensor::{Distribution, Tensor};
//! use se_core::{BasicBlockConfig, BlockAttentionConfig, SePlacement, SqueezeExcitationConfig};
//!
//! let device = Default::default();
//! let x = Tensor::<Flex, 4>::random([2, 32, 8, 8], Distribution::Default, &device);
//!
//! // The SE module alone: channel weights in (0, 1), and the input scaled by them.
//! let se = SqueezeExcitationConfig::paper(16).init::<Flex>(32, &device);
//! assert_eq!(se.excitation(x.clone()).dims(), [2, 32]);
//! assert_eq!(se.forward(x.clone()).dims(), [2, 32, 8, 8]);
//!
//! // A residual block with SE at the paper's standard placement, halving the map.
//! let attention = BlockAttentionConfig::of(se_core::AttentionConfig::Se(
//!     SqueezeExcitationConfig::paper(16),
//! ))
//! .with_placement(SePlacement::Standard);
//! let block = BasicBlockConfig::new(32, 64)
//!     .with_stride(2)
//!     .with_attention(attention)
//!     .init::<Flex>(&device);
//! assert_eq!(block.forward(x).dims(), [2, 64, 4, 4]);
//! ```

#![warn(missing_docs)]

pub mod attention;
pub mod block;
pub mod complexity;
pub mod norm;
pub mod params;
pub mod squeeze_excitation;
#[cfg(test)]
pub(crate) mod test_util;

pub use attention::{
    Attention, AttentionConfig, Cbam, CbamConfig, Eca, EcaConfig, Scse, ScseConfig, ScseMerge,
    SpatialSe,
};
pub use block::{
    BasicBlock, BasicBlockConfig, BlockAttentionConfig, Bottleneck, BottleneckConfig, Downsample,
    ResidualBlock, SePlacement,
};
pub use complexity::Complexity;
pub use norm::{BatchNorm2d, BatchNorm2dConfig};
pub use params::trainable_params;
pub use squeeze_excitation::{
    ExcitationHook, Gate, Hook, Squeeze, SqueezeExcitation, SqueezeExcitationConfig, make_divisible,
};
