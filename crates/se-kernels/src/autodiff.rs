//! `Autodiff<B>` over a backend with [`Kernels`]: each kernel is one recorded op whose backward calls
//! `B`'s gradient kernels.

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::ops::{ConvOptions, FloatTensor};

use crate::kernels::Kernels;

impl<B: Kernels, C: CheckpointStrategy> Kernels for Autodiff<B, C> {
    fn convolution(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct ConvolutionBackward;

        impl<B: Kernels> Backward<B, 2> for ConvolutionBackward {
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

    fn plane_affine(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        residual: Option<FloatTensor<Self>>,
        relu: bool,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct PlaneAffineBackward {
            relu: bool,
        }

        // N = 3 parents (x, scale, shift) or 4 (and the residual).
        impl<B: Kernels, const N: usize> Backward<B, N> for PlaneAffineBackward {
            /// The forward's input, scale and output.
            type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

            fn backward(
                self,
                ops: Ops<Self::State, N>,
                grads: &mut Gradients,
                _checkpointer: &mut Checkpointer,
            ) {
                let grad = grads.consume::<B>(&ops.node);
                let (x, scale, output) = ops.state;
                let input_grads = B::plane_affine_grad(x, scale, output, grad, self.relu);
                for (node, grad) in ops.parents.into_iter().zip(input_grads) {
                    if let Some(node) = node {
                        grads.register::<B>(node.id, grad);
                    }
                }
            }
        }

        let backward = PlaneAffineBackward { relu };
        macro_rules! record {
            ($parents:expr, $residual:expr) => {
                match backward.prepare::<C>($parents).compute_bound().stateful() {
                    OpsKind::Tracked(prep) => {
                        let (x, scale) = (x.primitive, scale.primitive);
                        let y = B::plane_affine(
                            x.clone(),
                            scale.clone(),
                            shift.primitive,
                            $residual,
                            relu,
                        );
                        prep.finish((x, scale, y.clone()), y)
                    }
                    OpsKind::UnTracked(prep) => prep.finish(B::plane_affine(
                        x.primitive,
                        scale.primitive,
                        shift.primitive,
                        $residual,
                        relu,
                    )),
                }
            };
        }
        let parents = [x.node.clone(), scale.node.clone(), shift.node.clone()];
        match residual {
            None => record!(parents, None),
            Some(residual) => {
                let [x_node, scale_node, shift_node] = parents;
                let parents = [x_node, scale_node, shift_node, residual.node.clone()];
                record!(parents, Some(residual.primitive))
            }
        }
    }

    fn plane_moments(x: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct PlaneMomentsBackward;

        impl<B: Kernels> Backward<B, 1> for PlaneMomentsBackward {
            /// The forward's input and output.
            type State = (FloatTensor<B>, FloatTensor<B>);

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _checkpointer: &mut Checkpointer,
            ) {
                let [node_x] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (x, moments) = ops.state;
                if let Some(node) = node_x {
                    grads.register::<B>(node.id, B::plane_moments_grad(x, moments, grad));
                }
            }
        }

        match PlaneMomentsBackward
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let moments = B::plane_moments(x.primitive.clone());
                prep.finish((x.primitive, moments.clone()), moments)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::plane_moments(x.primitive)),
        }
    }
}
