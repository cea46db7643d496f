//! flex (Burn's CPU backend) with [`cpu`](super::cpu)'s convolution kernels for `f32`; other
//! dtypes keep Burn's.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::ops::{ConvOptions, ModuleOps};
use burn::tensor::{DType, TensorData};

use super::ConvBackend;
use super::cpu::{self, ConvGeometry};

impl ConvBackend for Flex {
    fn convolution(x: FlexTensor, weight: FlexTensor, options: ConvOptions<2>) -> FlexTensor {
        if !all_f32(&[&x, &weight]) {
            return Flex::conv2d(x, weight, None, options);
        }
        let (x, weight) = (x.to_contiguous(), weight.to_contiguous());
        let g = geometry(&x, &weight, &options);
        let y = cpu::forward(&g, x.storage(), weight.storage());
        let [oh, ow] = g.output_size();
        tensor(y, [g.n, g.c_out, oh, ow])
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
        let (weight, dy) = (weight.to_contiguous(), output_grad.to_contiguous());
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
        let (x, dy) = (x.to_contiguous(), output_grad.to_contiguous());
        let g = geometry(&x, &weight, &options);
        let dw = cpu::weight_grad(&g, x.storage(), dy.storage());
        let [kh, kw] = g.kernel;
        tensor(dw, [g.c_out, g.c_in / g.groups, kh, kw])
    }
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
