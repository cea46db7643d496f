//! The convolution every SE-ResNet layer runs, as a Burn backend extension.
//!
//! [`ConvBackend`] is a [`Backend`] with three convolution ops: forward, input gradient and
//! weight gradient. Their defaults are Burn's own ops, so a backend opts in with an empty `impl`;
//! a backend with faster kernels overrides them (flex, with [`cpu`]'s im2col + GEMM), and
//! `Autodiff<B>` records the forward with a backward that calls `B`'s two gradient ops (Burn's
//! own autodiff convolution calls Burn's, which flex computes as a transposed convolution and a
//! convolution over permuted copies, 4–7× slower than PyTorch). The models are generic over
//! `ConvBackend`, so one model definition runs everywhere and is fast where a kernel exists.

#[cfg(feature = "flex")]
pub mod cpu;
#[cfg(feature = "flex")]
mod flex;

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::prelude::*;
use burn::tensor::TensorPrimitive;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ops::{ConvOptions, FloatTensor};

/// A backend whose 2-D convolutions may come from kernels of its own (see the module docs).
///
/// Shapes: `x` `[N, C_in, H, W]`, `weight` `[C_out, C_in / groups, kH, kW]`, output and its
/// gradient `[N, C_out, H', W']`. No bias: [`conv2d`] adds it as a tensor op.
pub trait ConvBackend: Backend {
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
}

/// An autodiff backend over a [`ConvBackend`], itself one: what training needs (the training
/// model runs on the autodiff backend, the validation model on its inner backend).
pub trait AutodiffConvBackend: AutodiffBackend<InnerBackend: ConvBackend> + ConvBackend {}

impl<B> AutodiffConvBackend for B
where
    B: AutodiffBackend + ConvBackend,
    B::InnerBackend: ConvBackend,
{
}

/// A 2-D convolution through [`ConvBackend`]: `[N, C_in, H, W]` to `[N, C_out, H', W']`, with an
/// optional bias `[C_out]`. The same result as `burn::tensor::module::conv2d`.
pub fn conv2d<B: ConvBackend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    options: ConvOptions<2>,
) -> Tensor<B, 4> {
    let x = x.into_primitive().tensor();
    let weight = weight.into_primitive().tensor();
    let y =
        Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(B::convolution(x, weight, options)));
    match bias {
        Some(bias) => {
            let channels = bias.dims()[0];
            y + bias.reshape([1, channels, 1, 1])
        }
        None => y,
    }
}

impl<B: ConvBackend, C: CheckpointStrategy> ConvBackend for Autodiff<B, C> {
    fn convolution(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct ConvolutionBackward;

        impl<B: ConvBackend> Backward<B, 2> for ConvolutionBackward {
            /// The forward's input and weight, kept for the gradients.
            type State = (FloatTensor<B>, FloatTensor<B>, ConvOptions<2>);

            fn backward(
                self,
                ops: Ops<Self::State, 2>,
                grads: &mut Gradients,
                _checkpointer: &mut Checkpointer,
            ) {
                let [node_x, node_weight] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (x, weight, options) = ops.state;
                if let Some(node) = node_weight {
                    let dw = B::convolution_weight_grad(
                        x.clone(),
                        weight.clone(),
                        grad.clone(),
                        options.clone(),
                    );
                    grads.register::<B>(node.id, dw);
                }
                if let Some(node) = node_x {
                    let dx = B::convolution_input_grad(x, weight, grad, options);
                    grads.register::<B>(node.id, dx);
                }
            }
        }

        match ConvolutionBackward
            .prepare::<C>([x.node.clone(), weight.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = (
                    x.primitive.clone(),
                    weight.primitive.clone(),
                    options.clone(),
                );
                prep.finish(
                    state,
                    B::convolution(x.primitive, weight.primitive, options),
                )
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::convolution(x.primitive, weight.primitive, options))
            }
        }
    }
}

// Backends without kernels of their own: Burn's convolutions.
#[cfg(feature = "ndarray")]
impl ConvBackend for burn::backend::NdArray {}
#[cfg(feature = "wgpu")]
impl<F, I, BT> ConvBackend for burn::backend::Wgpu<F, I, BT> where Self: Backend {}
#[cfg(feature = "cuda")]
impl<F, I> ConvBackend for burn::backend::Cuda<F, I> where Self: Backend {}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::{Distribution, Tolerance};

    fn assert_close<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) {
        let tolerance = Tolerance::<f32>::rel_abs(1e-4, 1e-4);
        a.into_data().assert_approx_eq(&b.into_data(), tolerance);
    }

    type AB = Autodiff<Flex>;

    /// Our kernels (forward and both gradients, through autodiff) against Burn's own conv2d, on
    /// the shapes SE-ResNets use: 3x3 with and without stride, 1x1 strided and not, grouped
    /// (ResNeXt), the 7x7/2 stem, a dilated one, and batches on either side of the thread split.
    #[test]
    fn convolution_and_its_gradients_equal_burns() {
        let device = Default::default();
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
            assert_eq!(ours.dims(), burns.dims());
            assert_close(ours.clone().inner(), burns.clone().inner());
            // A loss that weights each output differently, so every gradient entry is checked.
            let probe =
                Tensor::<AB, 4>::random(ours.dims(), Distribution::Normal(0.0, 1.0), &device);
            let grads_ours = (ours * probe.clone()).sum().backward();
            let grads_burns = (burns * probe).sum().backward();
            for (a, b) in [
                (x.grad(&grads_ours), x.grad(&grads_burns)),
                (weight.grad(&grads_ours), weight.grad(&grads_burns)),
            ] {
                assert_close(a.unwrap(), b.unwrap());
            }
            let (a, b) = (bias.grad(&grads_ours), bias.grad(&grads_burns));
            assert_close(a.unwrap(), b.unwrap());
        }
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
