//! The layer kernels every SE-ResNet runs, for any Burn backend.
//!
//! Three ops carry most of a ResNet's time, each here with its gradients: the 2-D convolution
//! ([`conv2d`]), a per-plane affine map `x · a + b` with an optional residual and ReLU
//! ([`plane_affine`]: BatchNorm's normalisation, SE's scaling, the residual addition and the
//! activation in one pass) and per-plane moments ([`plane_moments`]: BatchNorm's statistics).
//!
//! The functions take any [`Backend`]. On flex (`Flex`, and `Autodiff<Flex>` for training) they
//! run this crate's CPU kernels ([`cpu_conv`]: im2col + GEMM with its own backward;
//! [`cpu_planes`]: one parallel pass each), recorded under autodiff as one op each whose backward
//! calls the CPU gradient kernels. Every other backend — ndarray, wgpu, CUDA, ROCm, LibTorch,
//! Candle, Burn's router and fusion wrappers, or one of your own — runs the same maths as Burn
//! tensor ops, with Burn's autodiff. The choice is made per call by comparing the backend's type
//! with the ones that have kernels ([`has_cpu_kernels`]), so no trait needs implementing: the
//! orphan rule never stops a user from bringing a backend.
//!
//! Inference also gets [`max_pool2d`] (the stem's pool; flex's computes indices it never needs).
//!
//! Why own kernels at all: Burn 0.21's flex runs a convolution's backward as a scalar transposed
//! convolution and convolutions over permuted copies (4–7× slower than PyTorch), and a
//! BatchNorm built from tensor ops makes a dozen single-threaded passes over the map
//! (docs/benchmarks.md has the profile).
//!
//! ```
//! use burn::backend::Flex;
//! use burn::tensor::Tensor;
//! use burn::tensor::ops::ConvOptions;
//!
//! let device = Default::default();
//! let x = Tensor::<Flex, 4>::ones([1, 1, 3, 3], &device);
//! let box_filter = Tensor::<Flex, 4>::ones([1, 1, 3, 3], &device);
//! let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
//! let y = se_kernels::conv2d(x, box_filter, None, options);
//! assert_eq!(y.dims(), [1, 1, 3, 3]);
//! assert_eq!(y.into_data().to_vec::<f32>().unwrap()[4], 9.0); // the centre sees all nine
//! ```

#![warn(missing_docs)]

mod allocator;
mod autodiff;
mod burn_ops;
#[cfg(feature = "flex")]
pub mod cpu_channels_last;
#[cfg(feature = "flex")]
pub mod cpu_conv;
#[cfg(feature = "flex")]
pub mod cpu_direct;
#[cfg(feature = "flex")]
pub mod cpu_planes;
#[cfg(feature = "flex")]
pub mod cpu_pool;
mod excitation;
#[cfg(feature = "flex")]
mod flex;
mod kernels;
mod route;
#[cfg(feature = "flex")]
mod simd;

use burn::prelude::*;
use burn::tensor::TensorPrimitive;
use burn::tensor::ops::ConvOptions;

use burn_ops::float;

pub use allocator::keep_freed_buffers;
#[cfg(feature = "flex")]
pub use excitation::CpuExcitation;
pub use excitation::{Excitation, Gate};
pub use route::has_cpu_kernels;
pub use route::on_cpu_threads;

/// `x · scale + shift` plane by plane, then `+ residual` if given, then a ReLU if `relu`: `x`
/// and `residual` `[N, C, H, W]`, `scale` and `shift` `[N, C]`. The original SENet release fused
/// SE's scaling into the residual addition the same way (its Caffe "Axpy" layer).
pub fn plane_affine<B: Backend>(
    x: Tensor<B, 4>,
    scale: Tensor<B, 2>,
    shift: Tensor<B, 2>,
    residual: Option<Tensor<B, 4>>,
    relu: bool,
) -> Tensor<B, 4> {
    let [x, scale, shift] = [
        x.into_primitive(),
        scale.into_primitive(),
        shift.into_primitive(),
    ]
    .map(TensorPrimitive::tensor);
    let residual = residual.map(|r| r.into_primitive().tensor());
    float(route::plane_affine::<B>(x, scale, shift, residual, relu))
}

/// The mean and the biased variance of every `[H, W]` plane of `x` (`[N, C, H, W]`), each
/// `[N, C]`.
pub fn plane_moments<B: Backend>(x: Tensor<B, 4>) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let [n, c, _, _] = x.dims();
    let moments: Tensor<B, 3> = float(route::plane_moments::<B>(x.into_primitive().tensor()));
    let at = |i: usize| moments.clone().slice(s![i..i + 1]).reshape([n, c]);
    (at(0), at(1))
}

/// 2-D max pooling, `[N, C, H, W]` to `[N, C, H', W']`: the same result and output size as
/// `burn::tensor::module::max_pool2d` (a window's padding never wins), except that a NaN in a
/// window gives NaN, as PyTorch's does. Each array is (height, width). On plain flex it runs
/// [`cpu_pool`]'s kernel; under autodiff and on other backends, Burn's op.
pub fn max_pool2d<B: Backend>(
    x: Tensor<B, 4>,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    ceil_mode: bool,
) -> Tensor<B, 4> {
    let x = x.into_primitive().tensor();
    float(route::max_pool::<B>(
        x, kernel, stride, padding, dilation, ceil_mode,
    ))
}

/// A 2-D convolution: `[N, C_in, H, W]` to `[N, C_out, H', W']`, with an optional bias
/// `[C_out]`. The same result as `burn::tensor::module::conv2d`.
pub fn conv2d<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    options: ConvOptions<2>,
) -> Tensor<B, 4> {
    let [x, weight] = [x, weight].map(|t| t.into_primitive().tensor());
    let y: Tensor<B, 4> = float(route::convolution::<B>(x, weight, options));
    match bias {
        Some(bias) => {
            let channels = bias.dims()[0];
            y + bias.reshape([1, channels, 1, 1])
        }
        None => y,
    }
}

/// What [`conv2d_fused`] does to the convolution's output before it returns it:
/// `relu(e · (y + bias) + residual)`, where `e` is 1 or, with an [`Excitation`], each image's
/// channel weights from the plane means of `y + bias`.
#[derive(Debug, Clone)]
pub struct ConvEpilogue<B: Backend> {
    /// Added to every plane of each output channel, `[C_out]` (a folded BatchNorm's shift).
    pub bias: Tensor<B, 1>,
    /// An SE module whose channel weights scale each image's planes, taken from the mean of
    /// those planes (after the bias, before the residual).
    pub excitation: Option<Excitation<B>>,
    /// Added after the bias and the scaling, shaped as the output (a residual block's
    /// shortcut).
    pub residual: Option<Tensor<B, 4>>,
    /// Ends with a ReLU.
    pub relu: bool,
    /// Also return the mean of every output plane, `[N, C_out]` (an SE module's squeeze); with
    /// an excitation, of the planes it scaled.
    pub plane_means: bool,
    /// The mean of every input plane, `[N, C_in]`, if the layer before took them (its
    /// `plane_means`). For a 1x1 convolution with an excitation (a bottleneck's last layer)
    /// and no more input channels than output pixels, flex's kernel takes the output's means
    /// from them, `W · m + bias`, and so the channel weights, before it convolves: the
    /// scaling, residual and ReLU ride on the epilogue instead of a pass over each image
    /// afterwards. Elsewhere they are not read.
    pub input_means: Option<Tensor<B, 2>>,
}

impl<B: Backend> ConvEpilogue<B> {
    /// Adds `bias` and nothing else.
    pub fn bias(bias: Tensor<B, 1>) -> Self {
        Self {
            bias,
            excitation: None,
            residual: None,
            relu: false,
            plane_means: false,
            input_means: None,
        }
    }
}

/// A convolution and what follows it in an inference network, in one pass over the output:
/// `relu(e · (conv(x, weight) + bias) + residual)` as `epilogue` says, `[N, C_in, H, W]` to
/// `[N, C_out, H', W']`, and the mean of every output plane `[N, C_out]` if asked. On flex the
/// CPU kernel applies the bias, the residual and the ReLU to each band of the output as its
/// GEMM writes it, while it is in cache, and an SE module's excitation to each image as soon as
/// that image is done; elsewhere it runs as a convolution, [`plane_affine`] passes and tensor
/// ops. Inference only: under autodiff it is correct but records the convolution and the plane
/// passes as separate ops.
pub fn conv2d_fused<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    options: ConvOptions<2>,
    epilogue: ConvEpilogue<B>,
) -> (Tensor<B, 4>, Option<Tensor<B, 2>>) {
    let [x, weight] = [x, weight].map(|t| t.into_primitive().tensor());
    let (y, means) = route::convolution_fused::<B>(x, weight, options, epilogue);
    (float(y), means.map(float))
}

/// The [`ConvEpilogue`] of [`conv2d_fused`] on a convolution's output `y` computed elsewhere
/// (`[N, C, H, W]`; a convolution with padding the kernels do not take), as plane passes and
/// tensor ops.
pub fn conv_epilogue<B: Backend>(
    y: Tensor<B, 4>,
    epilogue: ConvEpilogue<B>,
) -> (Tensor<B, 4>, Option<Tensor<B, 2>>) {
    burn_ops::conv_epilogue(y, epilogue)
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::activation::relu;
    use burn::tensor::{Distribution, Tolerance};

    /// `actual` against `expected` up to the rounding of sums taken in another order. That
    /// rounding scales with a sum's terms, not with its result: an entry that cancels to near
    /// zero keeps its terms' error (a gradient entry of -0.42, 1.1e-4 off, failed the old
    /// per-entry bound of 1e-4 in CI). Summing n products of unit size, the error grows as
    /// ~eps·n and the largest entry as ~4·sqrt(n): 2e-6 of it at this test's n = 4096, the
    /// worst seen here too. So the bound is 1e-4 of the entry (absolute below 1) plus 5e-5 of
    /// the tensor's largest entry; a missing or misplaced term, of the terms' size, is far
    /// above it.
    fn assert_close<B: Backend, const D: usize>(
        actual: Tensor<B, D>,
        expected: Tensor<B, D>,
        what: &str,
    ) {
        assert_eq!(actual.dims(), expected.dims(), "{what}: shape");
        let actual = actual.into_data().to_vec::<f32>().unwrap();
        let expected = expected.into_data().to_vec::<f32>().unwrap();
        let scale = expected.iter().fold(0.0f32, |m, e| m.max(e.abs()));
        for (i, (a, e)) in actual.iter().zip(&expected).enumerate() {
            let bound = 1e-4 * e.abs().max(1.0) + 5e-5 * scale;
            assert!(
                (a - e).abs() <= bound,
                "{what}: entry {i} is {a}, expected {e} (bound {bound:e}, largest entry {scale})"
            );
        }
    }

    type AB = Autodiff<Flex>;

    /// Our kernels (forward and both gradients, through autodiff) against Burn's own conv2d, on
    /// the shapes SE-ResNets use: 3x3 with and without stride, 1x1 strided and not, grouped
    /// (ResNeXt), the 7x7/2 stem, a dilated one, the 3x3 ones of the direct kernel, and batches
    /// on either side of the thread split.
    #[test]
    fn convolution_and_its_gradients_equal_burns() {
        let device = Default::default();
        // Enough images for the images-in-parallel split on this machine's threads.
        let many = 2 * rayon::current_num_threads() + 1;
        let cases = [
            // (x dims, out channels, kernel, stride, padding, dilation, groups)
            ([6, 4, 9, 7], 5, 3, 1, 1, 1, 1),
            ([6, 4, 9, 7], 6, 3, 2, 1, 1, 1),
            ([1, 4, 8, 8], 6, 3, 2, 1, 1, 1),
            ([5, 6, 5, 5], 4, 1, 1, 0, 1, 1),
            ([1, 6, 5, 5], 4, 1, 1, 0, 1, 1),
            ([5, 6, 6, 6], 8, 1, 2, 0, 1, 1),
            ([4, 8, 6, 6], 8, 3, 1, 1, 1, 4),
            ([2, 3, 15, 15], 4, 7, 2, 3, 1, 1),
            ([4, 2, 9, 9], 3, 3, 1, 2, 2, 1),
            // The direct 3x3 kernel (forward and input gradient): batch 1 split over channel
            // blocks with a block tail (26 channels; each thread borders the small input for
            // itself), the same past `OWN_BORDER_MAX` (one border shared by the threads),
            // batch 1 in two blocks, the second of two channels, batch 1 on one thread (one
            // block), grouped with images in parallel, grouped at batch 1 with more outputs
            // than inputs per group, a 15-wide plane (a tile of fewer vectors at its end) with
            // images in parallel and a channel tail, planes narrower than a vector (7x7 at
            // batch 1 with a channel tail, 2x3 with images in parallel; their input gradient
            // by im2col + GEMM), groups of fewer channels than a block (4 at batch 1, 2 with
            // images in parallel).
            ([1, 8, 9, 17], 26, 3, 1, 1, 1, 1),
            ([1, 9, 64, 64], 26, 3, 1, 1, 1, 1),
            ([1, 8, 9, 17], 10, 3, 1, 1, 1, 1),
            ([1, 8, 9, 17], 8, 3, 1, 1, 1, 1),
            ([many, 16, 6, 16], 16, 3, 1, 1, 1, 2),
            ([1, 16, 5, 16], 32, 3, 1, 1, 1, 2),
            ([many.max(5), 4, 15, 15], 18, 3, 1, 1, 1, 1),
            ([1, 8, 7, 7], 18, 3, 1, 1, 1, 1),
            ([many, 4, 2, 3], 8, 3, 1, 1, 1, 1),
            ([1, 16, 9, 9], 16, 3, 1, 1, 1, 4),
            ([many, 6, 8, 8], 6, 3, 1, 1, 1, 3),
            // Its stride-2 form (the input gradient stays im2col): batch 1, odd sizes with
            // images in parallel, a 4x4 output, groups of 4, more than 64 input channels (on AVX-512).
            ([1, 6, 64, 64], 20, 3, 2, 1, 1, 1),
            ([many, 5, 17, 19], 9, 3, 2, 1, 1, 1),
            ([1, 6, 7, 7], 16, 3, 2, 1, 1, 1),
            ([1, 8, 9, 9], 8, 3, 2, 1, 1, 2),
            ([1, 72, 9, 9], 16, 3, 2, 1, 1, 1),
            // The channels-last kernel (forward; at least 784 output pixels): stride 2 at
            // batch 1 split over units, a 7-wide plane with images in parallel and a channel
            // tail, a 7x7 stem, 16 input channels (the tiled transposes).
            ([1, 6, 64, 64], 20, 5, 2, 2, 1, 1),
            ([many.max(21), 4, 7, 7], 18, 5, 1, 2, 1, 1),
            ([1, 3, 64, 64], 16, 7, 2, 3, 1, 1),
            ([1, 16, 64, 64], 32, 5, 2, 2, 1, 1),
        ];
        for ([n, c, h, w], co, k, s, p, d, groups) in cases {
            let options = ConvOptions::new([s, s], [p, p], [d, d], groups);
            let x = Tensor::<AB, 4>::random([n, c, h, w], Distribution::Normal(0.0, 1.0), &device)
                .require_grad();
            let weight = Tensor::<AB, 4>::random(
                [co, c / groups, k, k],
                Distribution::Normal(0.0, 1.0),
                &device,
            )
            .require_grad();
            let bias = Tensor::<AB, 1>::random([co], Distribution::Normal(0.0, 1.0), &device)
                .require_grad();
            let ours = conv2d(
                x.clone(),
                weight.clone(),
                Some(bias.clone()),
                options.clone(),
            );
            let burns = burn::tensor::module::conv2d(
                x.clone(),
                weight.clone(),
                Some(bias.clone()),
                options,
            );
            let case = format!("{:?}", ([n, c, h, w], co, k, s, p, d, groups));
            assert_close(
                ours.clone().inner(),
                burns.clone().inner(),
                &format!("{case} output"),
            );
            // A loss that weights each output differently, so every gradient entry is checked.
            let probe =
                Tensor::<AB, 4>::random(ours.dims(), Distribution::Normal(0.0, 1.0), &device);
            let grads_ours = (ours * probe.clone()).sum().backward();
            let grads_burns = (burns * probe).sum().backward();
            for (what, a, b) in [
                ("input gradient", x.grad(&grads_ours), x.grad(&grads_burns)),
                (
                    "weight gradient",
                    weight.grad(&grads_ours),
                    weight.grad(&grads_burns),
                ),
            ] {
                assert_close(a.unwrap(), b.unwrap(), &format!("{case} {what}"));
            }
            let (a, b) = (bias.grad(&grads_ours), bias.grad(&grads_burns));
            assert_close(a.unwrap(), b.unwrap(), &format!("{case} bias gradient"));
        }
    }

    /// The max pool against Burn's on flex: the ResNet stem's 3x3/2 (padded, and Cadene's
    /// unpadded with `ceil_mode`), a 2x2/2, a dilated one, on planes with odd sides, at batch 1
    /// and more; under autodiff it is Burn's own op, gradient included.
    #[test]
    fn max_pool_equals_burns() {
        let device = Default::default();
        let cases = [
            // (x dims, kernel, stride, padding, dilation, ceil_mode)
            ([2, 3, 17, 12], 3, 2, 1, 1, false),
            ([1, 5, 16, 16], 3, 2, 0, 1, true),
            ([3, 2, 9, 11], 2, 2, 0, 1, false),
            ([1, 4, 9, 10], 3, 1, 1, 2, false),
            ([2, 70, 15, 15], 3, 2, 1, 1, false),
        ];
        for (dims, k, s, p, d, ceil) in cases {
            let x = Tensor::<Flex, 4>::random(dims, Distribution::Normal(0.0, 1.0), &device);
            let args = ([k, k], [s, s], [p, p], [d, d], ceil);
            let ours = max_pool2d(x.clone(), args.0, args.1, args.2, args.3, args.4);
            let burns =
                burn::tensor::module::max_pool2d(x.clone(), args.0, args.1, args.2, args.3, args.4);
            assert_eq!(ours.dims(), burns.dims(), "{dims:?}");
            ours.into_data().assert_eq(&burns.into_data(), true);

            let x = Tensor::<AB, 4>::from_inner(x).require_grad();
            let ours = max_pool2d(x.clone(), args.0, args.1, args.2, args.3, args.4);
            let burns =
                burn::tensor::module::max_pool2d(x.clone(), args.0, args.1, args.2, args.3, args.4);
            let probe = Tensor::<AB, 4>::random(ours.dims(), Distribution::Default, &device);
            let grad_ours = x.grad(&(ours * probe.clone()).sum().backward()).unwrap();
            let grad_burns = x.grad(&(burns * probe).sum().backward()).unwrap();
            grad_ours
                .into_data()
                .assert_eq(&grad_burns.into_data(), true);
        }
    }

    /// The per-plane kernels (through autodiff) against the same maths in Burn's tensor ops:
    /// values and every gradient, the affine map alone and with a residual and a ReLU, for plane
    /// sizes from 1 to 289 values.
    #[test]
    fn plane_kernels_and_their_gradients_equal_burns() {
        let device = Default::default();
        for [n, c, h, w] in [[2, 3, 1, 1], [4, 5, 2, 3], [3, 70, 17, 17]] {
            let normal = |dims: Vec<usize>| {
                Tensor::<AB, 1>::random(
                    [dims.iter().product::<usize>()],
                    Distribution::Normal(0.5, 2.0),
                    &device,
                )
            };
            let x = normal(vec![n, c, h, w])
                .reshape([n, c, h, w])
                .require_grad();
            let scale = normal(vec![n, c]).reshape([n, c]).require_grad();
            let shift = normal(vec![n, c]).reshape([n, c]).require_grad();
            let residual = normal(vec![n, c, h, w])
                .reshape([n, c, h, w])
                .require_grad();
            let probe = normal(vec![n, c, h, w]).reshape([n, c, h, w]);
            let (p_mean, p_var) = (
                normal(vec![n, c]).reshape([n, c]),
                normal(vec![n, c]).reshape([n, c]),
            );

            let planes = || x.clone().reshape([n * c, h * w]);
            let column = |t: &Tensor<AB, 2>| t.clone().reshape([n * c, 1]);
            let affine_ours = plane_affine(x.clone(), scale.clone(), shift.clone(), None, false);
            let affine_burns = (planes() * column(&scale) + column(&shift)).reshape([n, c, h, w]);
            assert_close(
                affine_ours.clone().inner(),
                affine_burns.clone().inner(),
                "affine",
            );
            let fused_ours = plane_affine(
                x.clone(),
                scale.clone(),
                shift.clone(),
                Some(residual.clone()),
                true,
            );
            let fused_burns = relu(affine_burns.clone() + residual.clone());
            assert_close(
                fused_ours.clone().inner(),
                fused_burns.clone().inner(),
                "fused",
            );
            let (mean_ours, var_ours) = plane_moments(x.clone());
            let mean_burns = planes().mean_dim(1);
            let var_burns = (planes() - mean_burns.clone())
                .square()
                .mean_dim(1)
                .reshape([n, c]);
            let mean_burns = mean_burns.reshape([n, c]);
            assert_close(
                mean_ours.clone().inner(),
                mean_burns.clone().inner(),
                "mean",
            );
            assert_close(
                var_ours.clone().inner(),
                var_burns.clone().inner(),
                "variance",
            );

            let loss = |affine: Tensor<AB, 4>,
                        fused: Tensor<AB, 4>,
                        mean: Tensor<AB, 2>,
                        var: Tensor<AB, 2>| {
                (affine * probe.clone()).sum()
                    + (fused * probe.clone().flip([3])).sum()
                    + (mean * p_mean.clone()).sum()
                    + (var * p_var.clone()).sum()
            };
            let ours = loss(affine_ours, fused_ours, mean_ours, var_ours).backward();
            let burns = loss(affine_burns, fused_burns, mean_burns, var_burns).backward();
            let (a, b) = (residual.grad(&ours), residual.grad(&burns));
            assert_close(a.unwrap(), b.unwrap(), "residual gradient");
            assert_close(
                x.grad(&ours).unwrap(),
                x.grad(&burns).unwrap(),
                "input gradient",
            );
            assert_close(
                scale.grad(&ours).unwrap(),
                scale.grad(&burns).unwrap(),
                "scale gradient",
            );
            assert_close(
                shift.grad(&ours).unwrap(),
                shift.grad(&burns).unwrap(),
                "shift gradient",
            );
        }
    }

    /// The fused convolution (CPU kernel on flex) against a convolution followed by Burn's ops
    /// for its bias, SE excitation (each gate, with and without biases), residual, ReLU and
    /// plane means: with and without each part, at batch 1
    /// (the GEMM split into bands of channels across threads, each band finished on its own,
    /// within each group too) and a batch large enough for images in parallel, grouped and
    /// strided, through the GEMM and the direct 3x3 kernel.
    #[test]
    fn a_fused_convolution_equals_the_ops_it_replaces() {
        let device = Default::default();
        let normal = |dims: [usize; 4]| {
            Tensor::<Flex, 4>::random(dims, Distribution::Normal(0.0, 1.0), &device)
        };
        // Enough images for the images-in-parallel split on this machine's threads.
        let many = 2 * rayon::current_num_threads() + 1;
        let cases = [
            // (x dims, out channels, kernel, stride, padding, groups)
            ([1, 8, 9, 9], 40, 3, 1, 1, 1),
            ([1, 8, 9, 9], 80, 3, 1, 1, 2),
            ([many, 8, 9, 7], 12, 3, 2, 1, 4),
            ([1, 16, 6, 6], 48, 1, 1, 0, 1),
            ([many, 6, 5, 5], 8, 1, 1, 0, 2),
            // The direct 3x3 kernel: a tail block of 4 channels, grouped.
            ([1, 8, 9, 17], 20, 3, 1, 1, 1),
            ([many, 16, 5, 16], 24, 3, 1, 1, 2),
            // Its stride-2 form, in parallel.
            ([many, 8, 17, 17], 16, 3, 2, 1, 1),
            // The channels-last kernel: stride 2 at batch 1, 7-wide planes in parallel.
            ([1, 6, 64, 64], 20, 5, 2, 2, 1),
            ([many.max(21), 4, 7, 7], 40, 3, 1, 1, 1),
            // Fewer output channels than pixels at batch 1: without plane means, the GEMM
            // split into bands of pixels (uneven here), 1x1 and im2col.
            ([1, 24, 16, 16], 16, 1, 1, 0, 1),
            ([1, 72, 24, 24], 16, 3, 2, 1, 1),
            // 1x1 layers given their input's means: the excitation first in parallel (the
            // 1x1 case at batch 1 above takes it too), and more inputs than pixels, where it
            // stays after.
            ([many, 8, 6, 6], 24, 1, 1, 0, 1),
            ([1, 40, 5, 5], 24, 1, 1, 0, 1),
        ];
        let gates = [Gate::Sigmoid, Gate::HardSigmoid, Gate::Tanh, Gate::Relu];
        for (case, ([n, c, h, w], co, k, s, p, groups)) in cases.into_iter().enumerate() {
            let options = ConvOptions::new([s, s], [p, p], [1, 1], groups);
            let x = normal([n, c, h, w]);
            // He-style scale (unit-variance outputs, as in a trained network): with unit-normal
            // weights the outputs reach ~30 and an excitation's gate, exact to f32 rounding
            // (~1e-5), multiplied them past the absolute tolerance in ~1 run in 60.
            let fan_in = (c / groups * k * k) as f64;
            let weight = normal([co, c / groups, k, k]) / fan_in.sqrt();
            let bias = Tensor::<Flex, 1>::random([co], Distribution::Normal(0.0, 1.0), &device);
            let y = burn::tensor::module::conv2d(x.clone(), weight.clone(), None, options.clone());
            let residual = normal(y.dims());
            let excitation = random_excitation(co, gates[case % 4], case % 2 == 0, &device);
            // (residual, ReLU, plane means)
            let parts = [
                (false, false, true),
                (true, true, false),
                (false, true, false),
            ];
            let plane_means = |y: Tensor<Flex, 4>| {
                let [n, c, h, w] = y.dims();
                y.reshape([n, c, h * w]).mean_dim(2).reshape([n, c])
            };
            // Without an excitation, with one, and with one and the input's means (which a 1x1
            // layer's kernel takes its output's means from; others do not read them).
            let excitations = [(false, false), (true, false), (true, true)];
            for ((with_excitation, with_input_means), (with_residual, with_relu, with_means)) in
                excitations.into_iter().flat_map(|e| parts.map(|p| (e, p)))
            {
                let epilogue = ConvEpilogue {
                    bias: bias.clone(),
                    excitation: with_excitation.then(|| excitation.clone()),
                    residual: with_residual.then(|| residual.clone()),
                    relu: with_relu,
                    plane_means: with_means,
                    input_means: with_input_means.then(|| plane_means(x.clone())),
                };
                let (ours, means) =
                    conv2d_fused(x.clone(), weight.clone(), options.clone(), epilogue);
                let mut expected = y.clone() + bias.clone().reshape([1, co, 1, 1]);
                let mut expected_means = plane_means(expected.clone());
                if with_excitation {
                    let weights = excitation.weights(expected_means.clone());
                    expected = expected * weights.reshape([n, co, 1, 1]);
                }
                if with_residual {
                    expected = expected + residual.clone();
                }
                if with_relu {
                    expected = relu(expected);
                }
                if !with_excitation {
                    expected_means = plane_means(expected.clone());
                }
                assert_close(ours, expected, &format!("case {case} output"));
                assert_eq!(means.is_some(), with_means);
                if let Some(means) = means {
                    assert_close(means, expected_means, &format!("case {case} means"));
                }
            }
        }
    }

    /// An SE excitation over `channels` channels (hidden width 4) with random weights, scaled
    /// by their fan-in so that the gates' inputs are of unit size, not saturated.
    fn random_excitation<B: Backend>(
        channels: usize,
        gate: Gate,
        biases: bool,
        device: &B::Device,
    ) -> Excitation<B> {
        let normal = |std: f64| Distribution::Normal(0.0, std);
        let bias = |len: usize| biases.then(|| Tensor::random([len], normal(1.0), device));
        Excitation {
            reduce: Tensor::random(
                [channels, 4],
                normal(1.0 / (channels as f64).sqrt()),
                device,
            ),
            reduce_bias: bias(4),
            expand: Tensor::random([4, channels], normal(0.5), device),
            expand_bias: bias(channels),
            gate,
        }
    }

    /// Every other backend runs the fused convolution as Burn's ops (`burn_ops`): the same
    /// result as flex's kernel, with an excitation, a residual and a ReLU, at batch 1 and 3.
    #[test]
    fn a_fused_convolution_with_excitation_is_the_same_on_ndarray() {
        use burn::backend::NdArray;
        fn run<B: Backend>(data: [&TensorData; 4], excitation: &[TensorData; 4]) -> TensorData {
            let device = Default::default();
            let [x, weight, bias, residual] = data;
            let epilogue = ConvEpilogue {
                bias: Tensor::<B, 1>::from_data(bias.clone(), &device),
                excitation: Some(Excitation {
                    reduce: Tensor::from_data(excitation[0].clone(), &device),
                    reduce_bias: Some(Tensor::from_data(excitation[1].clone(), &device)),
                    expand: Tensor::from_data(excitation[2].clone(), &device),
                    expand_bias: Some(Tensor::from_data(excitation[3].clone(), &device)),
                    gate: Gate::Sigmoid,
                }),
                residual: Some(Tensor::from_data(residual.clone(), &device)),
                relu: true,
                plane_means: false,
                input_means: None,
            };
            let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
            let x = Tensor::<B, 4>::from_data(x.clone(), &device);
            let weight = Tensor::<B, 4>::from_data(weight.clone(), &device);
            let (y, means) = conv2d_fused(x, weight, options, epilogue);
            assert!(means.is_none(), "means only when asked");
            y.into_data()
        }
        let device = Default::default();
        for n in [1, 3] {
            let normal = |dims: [usize; 4]| {
                Tensor::<Flex, 4>::random(dims, Distribution::Normal(0.0, 1.0), &device).into_data()
            };
            let bias = Tensor::<Flex, 1>::random([16], Distribution::Normal(0.0, 1.0), &device);
            let e = random_excitation::<Flex>(16, Gate::Sigmoid, true, &device);
            let excitation = [
                e.reduce.into_data(),
                e.reduce_bias.unwrap().into_data(),
                e.expand.into_data(),
                e.expand_bias.unwrap().into_data(),
            ];
            let data = [
                &normal([n, 8, 18, 18]),
                &normal([16, 8, 3, 3]),
                &bias.into_data(),
                &normal([n, 16, 18, 18]),
            ];
            let tolerance = Tolerance::<f32>::rel_abs(1e-4, 1e-4);
            run::<Flex>(data, &excitation)
                .assert_approx_eq(&run::<NdArray>(data, &excitation), tolerance);
        }
    }

    /// Exact values: the box filter below, then bias -20 and a ReLU, and the plane's mean.
    #[test]
    fn a_fused_box_filter_adds_its_bias_and_clips() {
        let device = Default::default();
        let x = Tensor::<Flex, 4>::from_floats(
            [[[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]]],
            &device,
        );
        let epilogue = ConvEpilogue {
            relu: true,
            plane_means: true,
            ..ConvEpilogue::bias(Tensor::from_floats([-20.0], &device))
        };
        let box_filter = Tensor::<Flex, 4>::ones([1, 1, 3, 3], &device);
        let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        let (y, means) = conv2d_fused(x, box_filter, options, epilogue);
        // Neighbourhood sums 12 21 16 | 27 45 33 | 24 39 28, less 20, clipped at zero.
        let expected = [0.0, 1.0, 0.0, 7.0, 25.0, 13.0, 4.0, 19.0, 8.0];
        assert_eq!(y.into_data().to_vec::<f32>().unwrap(), expected);
        assert_eq!(
            means.unwrap().into_data().to_vec::<f32>().unwrap(),
            [77.0 / 9.0]
        );
    }

    /// A kernel larger than the padded input is refused with a message, not an arithmetic
    /// overflow.
    #[test]
    #[should_panic(expected = "does not fit")]
    fn a_kernel_larger_than_the_input_is_refused() {
        let g = cpu_conv::ConvGeometry {
            n: 1,
            c_in: 1,
            h: 2,
            w: 2,
            c_out: 1,
            kernel: [5, 5],
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
        };
        cpu_conv::forward(&g, &[0.0; 4], &[0.0; 25]);
    }

    /// Exact values on a tiny case, worked by hand: a 3x3 all-ones kernel with padding 1 sums
    /// each pixel's neighbourhood; with the loss `sum(y)`, each input pixel's gradient counts
    /// the windows it falls in, and each kernel tap's gradient sums the pixels it ever reads.
    #[test]
    fn a_box_filter_sums_neighbourhoods() {
        let device = Default::default();
        let x = Tensor::<AB, 4>::from_floats(
            [[[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]]],
            &device,
        )
        .require_grad();
        let weight = Tensor::<AB, 4>::ones([1, 1, 3, 3], &device).require_grad();
        let y = conv2d(
            x.clone(),
            weight.clone(),
            None,
            ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
        );
        let sums = [[[
            [12.0f32, 21.0, 16.0],
            [27.0, 45.0, 33.0],
            [24.0, 39.0, 28.0],
        ]]];
        y.to_data().assert_eq(&TensorData::from(sums), false);
        let grads = y.sum().backward();
        let windows = [[[[4.0f32, 6.0, 4.0], [6.0, 9.0, 6.0], [4.0, 6.0, 4.0]]]];
        let dx = x.grad(&grads).unwrap().into_data();
        dx.assert_eq(&TensorData::from(windows), false);
        let dw = weight.grad(&grads).unwrap().into_data();
        dw.assert_eq(&TensorData::from(sums), false);
    }
}
