//! The convolutions of blocks and stems: torchvision's initialisation, the kernels' forward, and
//! the projection shortcut.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, PaddingConfig2d};
use burn::tensor::backend::Backend;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Tensor, s};
use se_kernels::{ConvEpilogue, conv_epilogue, conv2d, conv2d_fused};

use crate::norm::{BatchNorm2d as BatchNorm, BatchNorm2dConfig};
use crate::squeeze_excitation::SqueezeExcitation;

/// Weight initialisation of convolutions as in torchvision/timm ResNets: Kaiming normal, fan-out,
/// ReLU gain.
pub fn conv_initializer() -> Initializer {
    Initializer::KaimingNormal {
        gain: core::f64::consts::SQRT_2,
        fan_out_only: true,
    }
}

/// A bias-free `k x k` convolution with "same"-style padding `k / 2`, initialised like torchvision's.
pub fn conv(
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    groups: usize,
) -> Conv2dConfig {
    let pad = kernel / 2;
    Conv2dConfig::new([in_channels, out_channels], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_groups(groups)
        .with_bias(false)
        .with_initializer(conv_initializer())
}

/// Runs `conv` on `x` (`[N, C, H, W]` to `[N, C', H', W']`) through [`Backend`], so that a
/// backend's own convolution kernels are used. A strided 1x1 convolution without padding runs as
/// subsampling followed by a stride-1 convolution with the same weights: the same result, but
/// Burn 0.21's cubecl backends (wgpu, and CUDA with the same kernels) compute a wrong input
/// gradient for strided 1x1 convolutions, which the wgpu/flex parity test found in every
/// downsampling shortcut. Asymmetric or "same" padding (never used by the models) goes to Burn's
/// `Conv2d::forward`.
pub fn conv_forward<B: Backend>(conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let bias = conv.bias.as_ref().map(|b| b.val());
    match kernel_input(conv, x) {
        Ok((x, options)) => conv2d(x, conv.weight.val(), bias, options),
        Err(x) => conv.forward(x),
    }
}

/// The input and options `conv` runs with through the kernels, or the input back if its
/// padding is one they do not take (asymmetric or "same"). See [`conv_forward`] for why a
/// strided 1x1 convolution runs on a subsampled input.
fn kernel_input<B: Backend>(
    conv: &Conv2d<B>,
    x: Tensor<B, 4>,
) -> Result<(Tensor<B, 4>, ConvOptions<2>), Tensor<B, 4>> {
    let padding = match conv.padding {
        PaddingConfig2d::Valid => [0, 0],
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => {
            [top, left]
        }
        _ => return Err(x),
    };
    let [sh, sw] = conv.stride;
    let strided_pointwise = conv.kernel_size == [1, 1] && [sh, sw] != [1, 1] && padding == [0, 0];
    let (x, stride) = if strided_pointwise {
        (x.slice(s![.., .., ..;sh as isize, ..;sw as isize]), [1, 1])
    } else {
        (x, conv.stride)
    };
    Ok((
        x,
        ConvOptions::new(stride, padding, conv.dilation, conv.groups),
    ))
}

/// `relu(norm(conv(x)) + residual)`, the residual and the ReLU if asked: a convolution and
/// its BatchNorm as every block and stem runs them. With `norm` folded into `conv` (the
/// inference form, [`BatchNorm::fold_into`]) it is one convolution whose epilogue adds the bias
/// and the residual and clips while the output is in cache; otherwise the convolution and one
/// [`plane_affine`](se_kernels::plane_affine) pass.
pub fn conv_norm<B: Backend>(
    conv: &Conv2d<B>,
    norm: &BatchNorm<B>,
    x: Tensor<B, 4>,
    residual: Option<Tensor<B, 4>>,
    relu: bool,
) -> Tensor<B, 4> {
    conv_norm_means(conv, norm, x, residual, relu, false).0
}

/// [`conv_norm`], and with `means` and `norm` folded, the mean of every output plane `[N, C]`
/// from the same pass: an SE module's squeeze, or what the next layer, a bottleneck's 1x1,
/// takes its SE weights from (see [`conv_excite_add_relu`]). `None` otherwise.
pub(crate) fn conv_norm_means<B: Backend>(
    conv: &Conv2d<B>,
    norm: &BatchNorm<B>,
    x: Tensor<B, 4>,
    residual: Option<Tensor<B, 4>>,
    relu: bool,
    means: bool,
) -> (Tensor<B, 4>, Option<Tensor<B, 2>>) {
    if norm.folded {
        let epilogue = ConvEpilogue {
            residual,
            relu,
            plane_means: means,
            ..folded_epilogue(conv)
        };
        return conv_fused(conv, x, epilogue);
    }
    let y = conv_forward(conv, x);
    (norm.affine(y.clone()).apply_then(y, residual, relu), None)
}

/// `relu(se(conv(x)) + shortcut)` for `conv` with its BatchNorm folded in: the end of an SE
/// block in one [`conv2d_fused`] call, whose kernel scales each image as soon as its
/// convolution is done, or with `x`'s plane means `[N, C_in]` and a 1x1 `conv`, as it writes
/// each band (the output's means follow from the input's; see `ConvEpilogue::input_means`).
pub(crate) fn conv_excite_add_relu<B: Backend>(
    conv: &Conv2d<B>,
    se: &SqueezeExcitation<B>,
    x: Tensor<B, 4>,
    input_means: Option<Tensor<B, 2>>,
    shortcut: Tensor<B, 4>,
) -> Tensor<B, 4> {
    let epilogue = ConvEpilogue {
        excitation: Some(se.kernel_excitation()),
        residual: Some(shortcut),
        relu: true,
        input_means,
        ..folded_epilogue(conv)
    };
    conv_fused(conv, x, epilogue).0
}

/// The epilogue of a convolution with a BatchNorm folded in: its bias, nothing else.
fn folded_epilogue<B: Backend>(conv: &Conv2d<B>) -> ConvEpilogue<B> {
    let bias = match &conv.bias {
        Some(bias) => bias.val(),
        None => Tensor::zeros([conv.weight.dims()[0]], &conv.weight.device()),
    };
    ConvEpilogue::bias(bias)
}

/// `conv(x)` and `epilogue` in one [`conv2d_fused`] call.
fn conv_fused<B: Backend>(
    conv: &Conv2d<B>,
    x: Tensor<B, 4>,
    epilogue: ConvEpilogue<B>,
) -> (Tensor<B, 4>, Option<Tensor<B, 2>>) {
    match kernel_input(conv, x) {
        Ok((x, options)) => conv2d_fused(x, conv.weight.val(), options, epilogue),
        Err(x) => {
            // Padding the kernels do not take: Burn's convolution, which adds `conv.bias` (the
            // epilogue's bias), then the rest of the epilogue.
            let y = conv.forward(x);
            let bias = epilogue.bias.zeros_like();
            conv_epilogue(y, ConvEpilogue { bias, ..epilogue })
        }
    }
}

/// Builds a BatchNorm over `channels`, its scale initialised to zero when `zero_gamma` (the
/// "zero-init last BN" trick that starts each block as an identity).
pub(crate) fn batch_norm<B: Backend>(
    channels: usize,
    zero_gamma: bool,
    device: &B::Device,
) -> BatchNorm<B> {
    let bn = BatchNorm2dConfig::new(channels).init(device);
    if zero_gamma {
        let gamma = bn.gamma.map(|g| g.zeros_like());
        BatchNorm { gamma, ..bn }
    } else {
        bn
    }
}

/// The projection shortcut: 1x1 conv (with the block's stride) and its own BatchNorm.
/// Named like torchvision's `downsample.0` / `downsample.1` as `downsample.conv` / `downsample.bn`.
#[derive(Module, Debug)]
pub struct Downsample<B: Backend> {
    /// 1x1 projection.
    pub conv: Conv2d<B>,
    /// Its BatchNorm.
    pub bn: BatchNorm<B>,
}

impl<B: Backend> Downsample<B> {
    /// Builds the projection (a `kernel x kernel` conv: 1, or 3 in SENet-154) if the block
    /// changes shape, `None` for an identity shortcut.
    pub fn if_needed(
        in_channels: usize,
        out_channels: usize,
        stride: usize,
        kernel: usize,
        device: &B::Device,
    ) -> Option<Self> {
        (stride != 1 || in_channels != out_channels).then(|| Self {
            conv: conv(in_channels, out_channels, kernel, stride, 1).init(device),
            bn: batch_norm(out_channels, false, device),
        })
    }
}

impl<B: Backend> Downsample<B> {
    /// `[N, C_in, H, W] → [N, C_out, H / stride, W / stride]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        conv_norm(&self.conv, &self.bn, x, None, false)
    }

    /// Folds the BatchNorm into the convolution (see [`BatchNorm::fold_into`]).
    pub fn fold_batch_norm(&mut self) {
        self.bn.fold_into(&mut self.conv);
    }
}
