//! The kernels written with Burn's tensor ops: the defaults of `Kernels`, and what every
//! backend without kernels of its own runs.

use burn::prelude::*;
use burn::tensor::ops::{ConvOptions, FloatTensor};

use burn::tensor::TensorPrimitive;

use crate::ConvEpilogue;

/// `relu(x · scale + shift + residual)` plane by plane (see
/// [`Kernels::plane_affine`](crate::kernels::Kernels::plane_affine)).
pub fn plane_affine<B: Backend>(
    x: FloatTensor<B>,
    scale: FloatTensor<B>,
    shift: FloatTensor<B>,
    residual: Option<FloatTensor<B>>,
    relu: bool,
) -> FloatTensor<B> {
    let x = float::<B, 4>(x);
    let [n, c, h, w] = x.dims();
    let planes = x.reshape([n * c, h * w]);
    let y = (planes * column(scale, n * c) + column(shift, n * c)).reshape([n, c, h, w]);
    let y = match residual {
        Some(residual) => y + float::<B, 4>(residual),
        None => y,
    };
    let y = if relu {
        burn::tensor::activation::relu(y)
    } else {
        y
    };
    y.into_primitive().tensor()
}

/// The gradients of [`plane_affine`]: `(x, scale, shift, pre-activation)` (see
/// [`Kernels::plane_affine_grad`](crate::kernels::Kernels::plane_affine_grad)).
pub fn plane_affine_grad<B: Backend>(
    x: FloatTensor<B>,
    scale: FloatTensor<B>,
    output: FloatTensor<B>,
    output_grad: FloatTensor<B>,
    relu: bool,
) -> [FloatTensor<B>; 4] {
    let x = float::<B, 4>(x);
    let [n, c, h, w] = x.dims();
    let dy = float::<B, 4>(output_grad);
    let dz = if relu {
        let active = float::<B, 4>(output).greater_elem(0.0).float();
        dy * active
    } else {
        dy
    };
    let dz_planes = dz.clone().reshape([n * c, h * w]);
    let dx = dz_planes.clone() * column(scale, n * c);
    let d_scale = (dz_planes.clone() * x.reshape([n * c, h * w])).sum_dim(1);
    let d_shift = dz_planes.sum_dim(1);
    [
        dx.reshape([n, c, h, w]).into_primitive().tensor(),
        d_scale.reshape([n, c]).into_primitive().tensor(),
        d_shift.reshape([n, c]).into_primitive().tensor(),
        dz.into_primitive().tensor(),
    ]
}

/// The mean and the (biased) variance of every `[H, W]` plane, `[2, N, C]`.
pub fn plane_moments<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let x = float::<B, 4>(x);
    let [n, c, h, w] = x.dims();
    let planes = x.reshape([n * c, h * w]);
    let mean = planes.clone().mean_dim(1);
    let var = (planes - mean.clone()).square().mean_dim(1);
    let moments = Tensor::cat(vec![mean.reshape([1, n, c]), var.reshape([1, n, c])], 0);
    moments.into_primitive().tensor()
}

/// The gradient of `x` given the gradient of its [`plane_moments`](crate::kernels::Kernels::plane_moments)
/// (`moments` are their values): `(d_mean + 2 (x - mean) d_var) / (H W)`.
pub fn plane_moments_grad<B: Backend>(
    x: FloatTensor<B>,
    moments: FloatTensor<B>,
    output_grad: FloatTensor<B>,
) -> FloatTensor<B> {
    let x = float::<B, 4>(x);
    let [n, c, h, w] = x.dims();
    let moments = float::<B, 3>(moments);
    let grad = float::<B, 3>(output_grad);
    let at = |t: Tensor<B, 3>, i: usize| t.slice(s![i..i + 1]).reshape([n * c, 1]);
    let centred = x.reshape([n * c, h * w]) - at(moments, 0);
    let dx =
        (centred * at(grad.clone(), 1).mul_scalar(2.0) + at(grad, 0)).div_scalar((h * w) as f64);
    dx.reshape([n, c, h, w]).into_primitive().tensor()
}

/// The convolution and its epilogue (see [`conv2d_fused`](crate::conv2d_fused)) as a
/// convolution, [`plane_affine`](crate::plane_affine) passes and tensor ops, each through
/// [`route`](crate::route), so a backend with kernels of its own still runs them.
pub fn convolution_fused<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    options: ConvOptions<2>,
    epilogue: ConvEpilogue<B>,
) -> (FloatTensor<B>, Option<FloatTensor<B>>) {
    let y = float::<B, 4>(crate::route::convolution::<B>(x, weight, options));
    let (y, means) = conv_epilogue(y, epilogue);
    (
        y.into_primitive().tensor(),
        means.map(|m| m.into_primitive().tensor()),
    )
}

/// [`ConvEpilogue`] applied to a convolution's output `y` (see
/// [`conv_epilogue`](crate::conv_epilogue)).
pub fn conv_epilogue<B: Backend>(
    y: Tensor<B, 4>,
    epilogue: ConvEpilogue<B>,
) -> (Tensor<B, 4>, Option<Tensor<B, 2>>) {
    let [n, c, h, w] = y.dims();
    let plane_means = |y: &Tensor<B, 4>| {
        y.clone()
            .reshape([n * c, h * w])
            .mean_dim(1)
            .reshape([n, c])
    };
    let shift = epilogue.bias.reshape([1, c]).repeat_dim(0, n);
    let ones = Tensor::<B, 2>::ones([n, c], &y.device());
    match epilogue.excitation {
        None => {
            let y = crate::plane_affine(y, ones, shift, epilogue.residual, epilogue.relu);
            let means = epilogue.plane_means.then(|| plane_means(&y));
            (y, means)
        }
        Some(excitation) => {
            let y = crate::plane_affine(y, ones, shift, None, false);
            let means = plane_means(&y);
            let weights = excitation.weights(means.clone());
            let zeros = weights.zeros_like();
            let y = crate::plane_affine(y, weights, zeros, epilogue.residual, epilogue.relu);
            (y, epilogue.plane_means.then_some(means))
        }
    }
}

/// A float primitive as a tensor.
pub(crate) fn float<B: Backend, const D: usize>(t: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

/// `[N, C]` per-plane values as an `[N * C, 1]` column (`rows = N * C`).
fn column<B: Backend>(values: FloatTensor<B>, rows: usize) -> Tensor<B, 2> {
    float::<B, 2>(values).reshape([rows, 1])
}
