//! Squeeze-and-Excitation building blocks for Burn, generic over the backend.
//!
//! - [`SqueezeExcitation`]: the SE module (squeeze, excitation, scale).
//! - [`BasicBlock`] and [`Bottleneck`]: residual blocks with an optional SE module placed as in the
//!   paper's integration study ([`SePlacement`]).
//! - [`KernelBackend`]: the backend extension their convolutions run through (Burn's kernels by
//!   default, faster CPU kernels on flex).

pub mod attention;
pub mod block;
pub mod complexity;
pub mod kernels;
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
pub use kernels::{AutodiffKernelBackend, KernelBackend};
pub use norm::{BatchNorm2d, BatchNorm2dConfig};
pub use params::trainable_params;
pub use squeeze_excitation::{
    Gate, Squeeze, SqueezeExcitation, SqueezeExcitationConfig, make_divisible,
};
