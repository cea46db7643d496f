//! flex (Burn's CPU backend) with the CPU kernels of [`cpu_conv`](super::cpu_conv) and
//! [`cpu_planes`](super::cpu_planes) for `f32`; other dtypes keep the default (Burn's ops).

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::ops::{ConvOptions, ModuleOps};
use burn::tensor::{DType, Tensor, TensorData};

use crate::cpu_conv::{self as cpu, ConvGeometry};
use crate::cpu_pool::{self, PoolWindow};
use crate::kernels::Kernels;
use crate::{ConvEpilogue, CpuExcitation, burn_ops, cpu_planes};

impl Kernels for Flex {
    fn convolution(x: FlexTensor, weight: FlexTensor, options: ConvOptions<2>) -> FlexTensor {
        if !all_f32(&[&x, &weight]) {
            return Flex::conv2d(x, weight, None, options);
        }
        let (x, weight) = (contiguous(x), contiguous(weight));
        let g = geometry(&x, &weight, &options);
        let y = cpu::forward(&g, x.storage(), weight.storage());
        let [oh, ow] = g.output_size();
        tensor(y, [g.n, g.c_out, oh, ow])
    }

    fn convolution_fused(
        x: FlexTensor,
        weight: FlexTensor,
        options: ConvOptions<2>,
        epilogue: ConvEpilogue<Flex>,
    ) -> (FlexTensor, Option<FlexTensor>) {
        // Any tensor not `f32`: Burn's ops, with the epilogue as it came. Otherwise each
        // tensor is moved out of it, not cloned: the clones of their layouts, and the copies
        // `to_contiguous` made of those, took ~1 µs of every SE layer's call at batch 1.
        let e = epilogue.excitation.as_ref();
        let optional = [
            epilogue.residual.as_ref().map(|r| r.dtype()),
            epilogue.input_means.as_ref().map(|m| m.dtype()),
            e.map(|e| e.reduce.dtype()),
            e.map(|e| e.expand.dtype()),
            e.and_then(|e| e.reduce_bias.as_ref()).map(|b| b.dtype()),
            e.and_then(|e| e.expand_bias.as_ref()).map(|b| b.dtype()),
        ];
        let all_f32 = [x.dtype(), weight.dtype(), epilogue.bias.dtype()]
            .into_iter()
            .chain(optional.into_iter().flatten())
            .all(|dtype| dtype == DType::F32);
        if !all_f32 {
            return burn_ops::convolution_fused::<Flex>(x, weight, options, epilogue);
        }
        let ConvEpilogue {
            bias,
            excitation,
            residual,
            relu,
            plane_means: take_means,
            input_means,
        } = epilogue;
        let bias = primitive(bias);
        let residual = residual.map(primitive);
        let input_means = input_means.map(primitive);
        let excitation = excitation.map(|e| {
            let [reduce, expand] = [e.reduce, e.expand].map(primitive);
            let biases = [e.reduce_bias, e.expand_bias].map(|b| b.map(primitive));
            (reduce, expand, biases, e.gate)
        });
        let (x, weight) = (contiguous(x), contiguous(weight));
        let g = geometry(&x, &weight, &options);
        let epilogue = cpu::Epilogue {
            bias: bias.storage(),
            excitation: excitation.as_ref().map(
                |(reduce, expand, [reduce_bias, expand_bias], gate)| CpuExcitation {
                    reduce: reduce.storage(),
                    reduce_bias: reduce_bias.as_ref().map(|b| b.storage()),
                    expand: expand.storage(),
                    expand_bias: expand_bias.as_ref().map(|b| b.storage()),
                    gate: *gate,
                },
            ),
            residual: residual.as_ref().map(|r| r.storage()),
            relu,
            plane_means: take_means,
            input_means: input_means.as_ref().map(|m| m.storage()),
        };
        let (y, plane_means) = cpu::forward_fused(&g, x.storage(), weight.storage(), epilogue);
        let [oh, ow] = g.output_size();
        let plane_means = epilogue
            .plane_means
            .then(|| FlexTensor::from_data(TensorData::new(plane_means, [g.n, g.c_out])));
        (tensor(y, [g.n, g.c_out, oh, ow]), plane_means)
    }

    fn convolution_input_grad(
        x: FlexTensor,
        weight: FlexTensor,
        output_grad: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        if !all_f32(&[&x, &weight, &output_grad]) {
            return Flex::conv2d_x_backward(x, weight, output_grad, options);
        }
        let (weight, dy) = (contiguous(weight), contiguous(output_grad));
        let g = geometry(&x, &weight, &options);
        let dx = cpu::input_grad(&g, weight.storage(), dy.storage());
        tensor(dx, [g.n, g.c_in, g.h, g.w])
    }

    fn convolution_weight_grad(
        x: FlexTensor,
        weight: FlexTensor,
        output_grad: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        if !all_f32(&[&x, &weight, &output_grad]) {
            return Flex::conv2d_weight_backward(x, weight, output_grad, options);
        }
        let (x, dy) = (contiguous(x), contiguous(output_grad));
        let g = geometry(&x, &weight, &options);
        let dw = cpu::weight_grad(&g, x.storage(), dy.storage());
        let [kh, kw] = g.kernel;
        tensor(dw, [g.c_out, g.c_in / g.groups, kh, kw])
    }

    fn plane_affine(
        x: FlexTensor,
        scale: FlexTensor,
        shift: FlexTensor,
        residual: Option<FlexTensor>,
        relu: bool,
    ) -> FlexTensor {
        if !all_f32(&[&x, &scale, &shift]) || residual.as_ref().is_some_and(|r| !all_f32(&[r])) {
            return burn_ops::plane_affine::<Flex>(x, scale, shift, residual, relu);
        }
        let [x, scale, shift] = [x, scale, shift].map(contiguous);
        let residual = residual.map(contiguous);
        let shape = dims4(&x);
        let y = cpu_planes::affine(
            x.storage(),
            scale.storage(),
            shift.storage(),
            residual.as_ref().map(|r| r.storage()),
            relu,
            plane_len(shape),
        );
        tensor(y, shape)
    }

    fn plane_affine_grad(
        x: FlexTensor,
        scale: FlexTensor,
        output: FlexTensor,
        output_grad: FlexTensor,
        relu: bool,
    ) -> [FlexTensor; 4] {
        if !all_f32(&[&x, &scale, &output, &output_grad]) {
            return burn_ops::plane_affine_grad::<Flex>(x, scale, output, output_grad, relu);
        }
        let [x, scale, y, dy] = [x, scale, output, output_grad].map(contiguous);
        let shape @ [n, c, _, _] = dims4(&x);
        let (dx, d_scale, d_shift, dz) = cpu_planes::affine_grad(
            x.storage(),
            scale.storage(),
            y.storage(),
            dy.storage(),
            relu,
            plane_len(shape),
        );
        let per_plane = |values| FlexTensor::from_data(TensorData::new(values, [n, c]));
        let dz = dz.map_or(dy, |dz| tensor(dz, shape));
        [
            tensor(dx, shape),
            per_plane(d_scale),
            per_plane(d_shift),
            dz,
        ]
    }

    fn max_pool(
        x: FlexTensor,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        ceil_mode: bool,
    ) -> FlexTensor {
        if !all_f32(&[&x]) {
            return Flex::max_pool2d(x, kernel, stride, padding, dilation, ceil_mode);
        }
        let x = contiguous(x);
        let [n, c, h, w] = dims4(&x);
        let window = PoolWindow {
            kernel,
            stride,
            padding,
            dilation,
            ceil_mode,
        };
        let y = cpu_pool::max_pool2d(x.storage(), n * c, [h, w], &window);
        let [oh, ow] = window.output_size([h, w]);
        tensor(y, [n, c, oh, ow])
    }

    fn plane_moments(x: FlexTensor) -> FlexTensor {
        if !all_f32(&[&x]) {
            return burn_ops::plane_moments::<Flex>(x);
        }
        let x = contiguous(x);
        let shape @ [n, c, _, _] = dims4(&x);
        let moments = cpu_planes::moments(x.storage(), plane_len(shape));
        FlexTensor::from_data(TensorData::new(moments, [2, n, c]))
    }

    fn plane_moments_grad(
        x: FlexTensor,
        moments: FlexTensor,
        output_grad: FlexTensor,
    ) -> FlexTensor {
        if !all_f32(&[&x, &moments, &output_grad]) {
            return burn_ops::plane_moments_grad::<Flex>(x, moments, output_grad);
        }
        let [x, moments, grad] = [x, moments, output_grad].map(contiguous);
        let shape = dims4(&x);
        let dx = cpu_planes::moments_grad(
            x.storage(),
            moments.storage(),
            grad.storage(),
            plane_len(shape),
        );
        tensor(dx, shape)
    }
}

fn dims4(x: &FlexTensor) -> [usize; 4] {
    let shape = x.layout().shape();
    [shape[0], shape[1], shape[2], shape[3]]
}

fn plane_len([_, _, h, w]: [usize; 4]) -> usize {
    h * w
}

/// `t` with its values in order from the start of its buffer: itself if they already are, else
/// a copy. `FlexTensor::to_contiguous` clones even a tensor that is (its layout included).
fn contiguous(t: FlexTensor) -> FlexTensor {
    let layout = t.layout();
    let whole = layout.is_contiguous()
        && layout.start_offset() == 0
        && t.bytes().len() == layout.num_elements() * t.dtype().size();
    if whole { t } else { t.to_contiguous() }
}

/// `t`'s flex tensor, [`contiguous`].
fn primitive<const D: usize>(t: Tensor<Flex, D>) -> FlexTensor {
    contiguous(t.into_primitive().tensor())
}

fn all_f32(tensors: &[&FlexTensor]) -> bool {
    tensors.iter().all(|t| t.dtype() == DType::F32)
}

fn geometry(x: &FlexTensor, weight: &FlexTensor, options: &ConvOptions<2>) -> ConvGeometry {
    let (x, w) = (x.layout().shape(), weight.layout().shape());
    ConvGeometry {
        n: x[0],
        c_in: x[1],
        h: x[2],
        w: x[3],
        c_out: w[0],
        kernel: [w[2], w[3]],
        stride: options.stride,
        padding: options.padding,
        dilation: options.dilation,
        groups: options.groups,
    }
}

fn tensor(values: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn contiguous_keeps_an_ordered_tensor_and_copies_a_view() {
        let values = TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3]);
        let ordered = FlexTensor::from_data(values.clone());
        let kept = contiguous(ordered.clone());
        assert!(
            Arc::ptr_eq(&kept.data_arc(), &ordered.data_arc()),
            "no copy"
        );
        // A transposed view (strides out of order) and a slice (an offset into a longer
        // buffer) come back as their own values, in order.
        let device = Default::default();
        let tensor = Tensor::<Flex, 2>::from_data(values, &device);
        let transposed = contiguous(tensor.clone().transpose().into_primitive().tensor());
        assert_eq!(transposed.storage::<f32>(), &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        let row = contiguous(tensor.slice([1..2, 0..3]).into_primitive().tensor());
        assert_eq!(row.storage::<f32>(), &[4.0, 5.0, 6.0]);
    }
}
