//! The end of every residual block, convolution → BatchNorm → attention → addition → ReLU, in as
//! few kernel passes as the attention allows.

use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;
use se_kernels::plane_affine;

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;

use super::conv::{conv_excite_add_relu, conv_forward, conv_norm, conv_norm_means};
use crate::attention::Attention;
use crate::norm::BatchNorm2d as BatchNorm;
use crate::squeeze_excitation::Hook;

/// `relu(attention(norm(conv(x))) + shortcut)`, the end of every residual block, in one pass
/// over the map after the convolution where the attention allows it. A BatchNorm is a per-channel affine map `y = a·x + b`, so
/// the mean of each plane of `y` is `a·mean(x) + b`, and an SE module's output `w·y` (weights
/// `w` from those means) is `(a·w)·x + b·w`: the SE's squeeze reads means the BatchNorm already
/// has (in training) or a `[N, C]` product (in inference), its scaling rides on the
/// BatchNorm's, and the addition and ReLU ride on both (one [`plane_affine`] kernel, as the
/// original SENet release fused SE into the addition with its Caffe "Axpy" layer). Exact, not
/// an approximation; other attention modules run between the BatchNorm and the addition. In the
/// inference form (BatchNorm folded into `conv`) the convolution's kernel does it all: the
/// addition and ReLU in its epilogue when there is no attention, and for an SE module the
/// plane means in its epilogue, then each image's excitation, scaling, addition and ReLU as
/// soon as that image is done (in cache; a pass over the batch afterwards read it back from
/// memory, 5-8% of SE-ResNet-50 at batch 8). `hook` sees the SE's channel weights (with a hook
/// the scaling is a pass of its own, so that the hook sees a tensor).
///
/// `x` comes with its plane means where [`takes_input_means`] asked the layer before for them.
pub(super) fn norm_attention_add_relu<B: Backend>(
    conv: &Conv2d<B>,
    norm: &BatchNorm<B>,
    attention: Option<&Attention<B>>,
    (x, input_means): (Tensor<B, 4>, Option<Tensor<B, 2>>),
    shortcut: Tensor<B, 4>,
    hook: Hook<'_, B>,
) -> Tensor<B, 4> {
    let se = match attention {
        None => return conv_norm(conv, norm, x, Some(shortcut), true),
        Some(attention) => match attention.as_mean_excitation() {
            None => {
                let y = conv_norm(conv, norm, x, None, false);
                return relu(attention.forward_hooked(y, hook) + shortcut);
            }
            Some(se) => se,
        },
    };
    if norm.folded {
        let Some(hook) = hook else {
            // One kernel call: the convolution, then each image's SE scaling, addition and
            // ReLU while that image is in cache.
            return conv_excite_add_relu(conv, se, x, input_means, shortcut);
        };
        // The convolution's output is already normalised; its epilogue took the plane means.
        let hook = Some(hook);
        let (x, means) = conv_norm_means(conv, norm, x, None, false, true);
        let means = means.expect("a folded convolution returns the plane means it is asked for");
        let weights = se.excite_hooked(means, hook);
        let zeros = weights.zeros_like();
        return plane_affine(x, weights, zeros, Some(shortcut), true);
    }
    let x = conv_forward(conv, x);
    let affine = norm.affine(x.clone());
    let [n, c, h, w] = x.dims();
    let plane_means = affine.plane_means.clone().unwrap_or_else(|| {
        x.clone()
            .reshape([n * c, h * w])
            .mean_dim(1)
            .reshape([n, c])
    });
    let (scale, shift) = affine.per_plane(n);
    let means = plane_means * scale.clone() + shift.clone();
    let weights = se.excite_hooked(means, hook);
    plane_affine(
        x,
        scale * weights.clone(),
        shift * weights,
        Some(shortcut),
        true,
    )
}

/// Whether [`norm_attention_add_relu`] takes the plane means of `conv`'s input: with an SE
/// module (average squeeze, no hook) after an ungrouped 1x1 convolution with its BatchNorm
/// folded in (a bottleneck's last), whose output's means, and so the SE's weights, follow
/// from them before it runs (`se_kernels::ConvEpilogue::input_means`). The layer before
/// takes them in its epilogue. Not after a basic block's 3x3: what its taps leave out at the
/// edges would need a serial pass over its input, which cost more than the scaling pass it
/// saves (SE-ResNet-20 ×1.05 at batch 1, ×1.04 at 32).
pub(super) fn takes_input_means<B: Backend>(
    conv: &Conv2d<B>,
    norm: &BatchNorm<B>,
    attention: Option<&Attention<B>>,
    hooked: bool,
) -> bool {
    let unpadded = match conv.padding {
        PaddingConfig2d::Valid => true,
        PaddingConfig2d::Explicit(top, left, bottom, right) => [top, left, bottom, right] == [0; 4],
        _ => false,
    };
    let pointwise = conv.kernel_size == [1, 1] && conv.stride == [1, 1] && conv.groups == 1;
    let se = attention.is_some_and(|a| a.as_mean_excitation().is_some());
    pointwise && unpadded && norm.folded && !hooked && se
}
