//! Parameter and multiply-add counts computed from configurations, without building a module.
//!
//! Convention (as the SENet paper and most ResNet tables): a convolution or linear layer costs one
//! multiply-add per weight per output position; BatchNorm, ReLU and the residual addition cost
//! nothing (they fold into the convolution at inference); the SE module's pooling and scaling cost one
//! operation per element each, on top of its two fully connected layers.

use core::ops::{Add, AddAssign};

/// Learnable parameters and multiply-adds of a layer or a network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Complexity {
    /// Learnable parameters (BatchNorm scale and shift included, running statistics excluded).
    pub params: usize,
    /// Multiply-adds for one input image.
    pub macs: u64,
}

impl Add for Complexity {
    type Output = Self;
    fn add(self, other: Self) -> Self {
        Self {
            params: self.params + other.params,
            macs: self.macs + other.macs,
        }
    }
}

impl AddAssign for Complexity {
    fn add_assign(&mut self, other: Self) {
        *self = *self + other;
    }
}

/// Spatial size `[height, width]` of a feature map.
pub type Size = [usize; 2];

/// Output size of a `kernel`-wide window with `stride` and symmetric `padding`, floor or ceil.
pub fn window_output(size: Size, kernel: usize, stride: usize, padding: usize, ceil: bool) -> Size {
    size.map(|s| {
        let span = s + 2 * padding - kernel;
        let steps = if ceil {
            span.div_ceil(stride)
        } else {
            span / stride
        };
        steps + 1
    })
}

/// A bias-free `kernel x kernel` convolution with padding `kernel / 2`, followed by BatchNorm.
/// Returns its cost and output size.
pub fn conv_bn(
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    groups: usize,
    size: Size,
) -> (Complexity, Size) {
    let out = window_output(size, kernel, stride, kernel / 2, false);
    let weights = out_channels * (in_channels / groups) * kernel * kernel;
    let cost = Complexity {
        params: weights + 2 * out_channels,
        macs: (weights * out[0] * out[1]) as u64,
    };
    (cost, out)
}

/// A fully connected layer.
pub fn linear(inputs: usize, outputs: usize, bias: bool) -> Complexity {
    Complexity {
        params: inputs * outputs + if bias { outputs } else { 0 },
        macs: (inputs * outputs) as u64,
    }
}
