//! The ops a backend with kernels of its own provides, and their defaults (Burn's ops).

use burn::prelude::*;
use burn::tensor::ops::{ConvOptions, FloatTensor};

use crate::{ConvEpilogue, burn_ops};

/// A backend with kernels of its own: flex, and `Autodiff` over such a backend. The public
/// functions reach it through [`route`]; its defaults are Burn's ops.
///
/// Convolution shapes: `x` `[N, C_in, H, W]`, `weight` `[C_out, C_in / groups, kH, kW]`, output
/// and its gradient `[N, C_out, H', W']`; no bias (`conv2d` adds it as a tensor op). Plane
/// shapes: `x` `[N, C, H, W]`, per-plane values `[N, C]`.
pub(crate) trait Kernels: Backend {
    /// The convolution `x ⋆ weight`.
    fn convolution(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d(x, weight, None, options)
    }

    /// The gradient of `x` given the output's gradient.
    fn convolution_input_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d_x_backward(x, weight, output_grad, options)
    }

    /// The gradient of `weight` given the output's gradient (summed over the batch).
    fn convolution_weight_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d_weight_backward(x, weight, output_grad, options)
    }

    /// The convolution and its [`ConvEpilogue`] (see [`conv2d_fused`](crate::conv2d_fused)):
    /// a convolution with its BatchNorm folded in, an SE module, its block's addition and
    /// activation, in the pass that writes the output; and, if the epilogue asks, the plane
    /// means `[N, C_out]`. Inference only (no gradient).
    fn convolution_fused(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
        epilogue: ConvEpilogue<Self>,
    ) -> (FloatTensor<Self>, Option<FloatTensor<Self>>) {
        burn_ops::convolution_fused::<Self>(x, weight, options, epilogue)
    }

    /// `x · scale + shift`, each `[H, W]` plane with its own `scale` and `shift` (`[N, C]`),
    /// plus `residual` (`[N, C, H, W]`) if given, then a ReLU if `relu`: a BatchNorm, an SE
    /// scaling, and a residual block's addition and activation in one pass (the original SENet
    /// release fused SE's scaling into the addition the same way, its Caffe "Axpy" layer).
    fn plane_affine(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        residual: Option<FloatTensor<Self>>,
        relu: bool,
    ) -> FloatTensor<Self> {
        burn_ops::plane_affine::<Self>(x, scale, shift, residual, relu)
    }

    /// The gradients of [`plane_affine`](Kernels::plane_affine) given its `output` and the
    /// output's gradient: `(x, scale, shift, pre-activation)`, the last being the residual's
    /// gradient (`output_grad` itself without the ReLU).
    fn plane_affine_grad(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        output: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        relu: bool,
    ) -> [FloatTensor<Self>; 4] {
        burn_ops::plane_affine_grad::<Self>(x, scale, output, output_grad, relu)
    }

    /// Max pooling of every `[H, W]` plane, `[N, C, H', W']`, as Burn's `max_pool2d` (its output
    /// size; padding never wins). Each array is (height, width).
    fn max_pool(
        x: FloatTensor<Self>,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        ceil_mode: bool,
    ) -> FloatTensor<Self> {
        Self::max_pool2d(x, kernel, stride, padding, dilation, ceil_mode)
    }

    /// The mean and the (biased) variance of every `[H, W]` plane, `[2, N, C]`.
    fn plane_moments(x: FloatTensor<Self>) -> FloatTensor<Self> {
        burn_ops::plane_moments::<Self>(x)
    }

    /// The gradient of `x` given the gradient of its [`plane_moments`](Kernels::plane_moments)
    /// (`moments` are their values): `(d_mean + 2 (x - mean) d_var) / (H W)`.
    fn plane_moments_grad(
        x: FloatTensor<Self>,
        moments: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        burn_ops::plane_moments_grad::<Self>(x, moments, output_grad)
    }
}
