//! The Squeeze-and-Excitation module (Hu, Shen, Sun, CVPR 2018, Fig. 1).
//!
//! `x → squeeze (global pool, [N, C]) → excitation (FC C→C/r, ReLU, FC C/r→C, gate) → scale x`.
//!
//! The paper's ablations are options of the one module: the squeeze operator (avg, max, or none:
//! §6.3's NoSqueeze), the gate (sigmoid, ReLU, tanh) and the reduction ratio. An
//! [`ExcitationHook`] sees (and may replace) the channel weights as a network runs, for the
//! analysis of §6.4.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;
use se_kernels::Excitation;

use crate::complexity::{Complexity, Size, linear};
use crate::norm::scale_planes;

/// The gating function that turns the excitation logits into channel weights (defined beside
/// the kernels, which apply it in a convolution's epilogue).
pub use se_kernels::Gate;

/// How the squeeze step summarises each channel's spatial map into one number.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Squeeze {
    /// Global average pooling, the paper's choice.
    Avg,
    /// Global max pooling (the paper's Table 11 ablation).
    Max,
    /// No pooling (the paper's NoSqueeze, §6.3): the two FC layers act on every position as
    /// 1x1 convolutions with the same channel counts, so the excitation keeps the input's
    /// spatial size and each position gets its own channel weights.
    None,
}

/// Rounds `value` to a multiple of `divisor`, never below `min_value` (default: `divisor`), and
/// never more than `1 - round_limit` below `value`. Same rule as timm's `make_divisible`, so that
/// reduced widths (and therefore checkpoint shapes) agree with timm's.
pub fn make_divisible(
    value: f64,
    divisor: usize,
    min_value: Option<usize>,
    round_limit: f64,
) -> usize {
    let divisor = divisor.max(1);
    let min_value = min_value.unwrap_or(divisor);
    let rounded = ((value + divisor as f64 / 2.0) as usize) / divisor * divisor;
    let mut new_value = min_value.max(rounded);
    if (new_value as f64) < round_limit * value {
        new_value += divisor;
    }
    new_value
}

/// Hyper-parameters of a [`SqueezeExcitation`] module.
///
/// The channel count is not part of the config: a network builds one SE per block from the same
/// config, each with its own width (see [`SqueezeExcitationConfig::init`]).
#[derive(Config, Debug)]
pub struct SqueezeExcitationConfig {
    /// Reduction ratio `r`: the hidden width is `channels / r` before rounding.
    #[config(default = 16.0)]
    pub reduction: f64,
    /// The hidden width is rounded to a multiple of this (timm uses 8; 1 gives the paper's `C/r`).
    #[config(default = 8)]
    pub divisor: usize,
    /// Smallest hidden width; `None` means `divisor`.
    #[config(default = "None")]
    pub min_channels: Option<usize>,
    /// Rounding may not go below `round_limit * C/r` (timm's SE uses 0, i.e. no limit).
    #[config(default = 0.0)]
    pub round_limit: f64,
    /// Whether the two fully connected layers have a bias.
    #[config(default = true)]
    pub bias: bool,
    /// The squeeze operator.
    #[config(default = "Squeeze::Avg")]
    pub squeeze: Squeeze,
    /// The gate applied to the excitation output.
    #[config(default = "Gate::Sigmoid")]
    pub gate: Gate,
}

impl SqueezeExcitationConfig {
    /// The paper's module: hidden width exactly `C / r` (at least 1), sigmoid gate, bias.
    pub fn paper(reduction: usize) -> Self {
        Self::new()
            .with_reduction(reduction as f64)
            .with_divisor(1)
            .with_min_channels(Some(1))
    }

    /// Hidden width for a module over `channels` channels.
    pub fn hidden_channels(&self, channels: usize) -> usize {
        make_divisible(
            channels as f64 / self.reduction,
            self.divisor,
            self.min_channels,
            self.round_limit,
        )
    }

    /// Cost of a module over a `channels x size` feature map: the two FC layers (once, or at every
    /// position without a squeeze), plus one operation per element for the pooling and one for
    /// the scaling.
    pub fn complexity(&self, channels: usize, size: Size) -> Complexity {
        let hidden = self.hidden_channels(channels);
        let positions = size[0] * size[1];
        let elementwise = Complexity {
            params: 0,
            macs: (2 * channels * positions) as u64,
        };
        let mut fcs = linear(channels, hidden, self.bias) + linear(hidden, channels, self.bias);
        if self.squeeze == Squeeze::None {
            fcs.macs *= positions as u64;
        }
        fcs + elementwise
    }

    /// Builds the module for `channels` input (and output) channels.
    pub fn init<B: Backend>(&self, channels: usize, device: &B::Device) -> SqueezeExcitation<B> {
        let hidden = self.hidden_channels(channels);
        SqueezeExcitation {
            fc1: LinearConfig::new(channels, hidden)
                .with_bias(self.bias)
                .init(device),
            fc2: LinearConfig::new(hidden, channels)
                .with_bias(self.bias)
                .init(device),
            squeeze: self.squeeze,
            gate: self.gate,
        }
    }
}

/// Squeeze-and-Excitation: re-weights the channels of a feature map by a gate computed from the
/// map's global statistics.
///
/// The field names `fc1`/`fc2` are timm's (`se.fc1`, `se.fc2`); timm stores them as 1x1 convs, which
/// the checkpoint import reshapes.
#[derive(Module, Debug)]
pub struct SqueezeExcitation<B: Backend> {
    /// Reduction layer, `C → C/r`.
    pub fc1: Linear<B>,
    /// Expansion layer, `C/r → C`.
    pub fc2: Linear<B>,
    /// The squeeze operator.
    pub squeeze: Squeeze,
    /// The gate.
    pub gate: Gate,
}

impl<B: Backend> SqueezeExcitation<B> {
    /// Squeeze: one descriptor per channel (for [`Squeeze::None`], the plane means, which
    /// is what [`excitation`](Self::excitation) reports for that variant).
    ///
    /// # Shapes
    /// - `x`: `[N, C, H, W]`
    /// - output: `[N, C]`
    pub fn squeeze(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let [n, c, h, w] = x.dims();
        let flat = x.reshape([n, c, h * w]);
        let pooled = match self.squeeze {
            Squeeze::Avg | Squeeze::None => flat.mean_dim(2),
            Squeeze::Max => flat.max_dim(2),
        };
        pooled.reshape([n, c])
    }

    /// The channel weights alone (squeeze then excitation), for analysis and tests. Without a
    /// squeeze the weights differ per position; this is their mean over the positions.
    ///
    /// # Shapes
    /// - `x`: `[N, C, H, W]`
    /// - output: `[N, C]`
    pub fn excitation(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        match self.squeeze {
            Squeeze::None => {
                let [n, c, _, _] = x.dims();
                let map = self.excitation_map(x);
                let [_, _, h, w] = map.dims();
                map.reshape([n, c, h * w]).mean_dim(2).reshape([n, c])
            }
            _ => self.excite(self.squeeze(x)),
        }
    }

    /// Excitation alone, from squeezed descriptors `[N, C]` to channel weights `[N, C]`.
    pub fn excite(&self, squeezed: Tensor<B, 2>) -> Tensor<B, 2> {
        self.kernel_excitation().weights(squeezed)
    }

    /// The excitation's weights for a convolution's epilogue
    /// ([`se_kernels::conv2d_fused`]), which applies it to each image while it is in cache.
    pub fn kernel_excitation(&self) -> Excitation<B> {
        Excitation {
            reduce: self.fc1.weight.val(),
            reduce_bias: self.fc1.bias.as_ref().map(|b| b.val()),
            expand: self.fc2.weight.val(),
            expand_bias: self.fc2.bias.as_ref().map(|b| b.val()),
            gate: self.gate,
        }
    }

    /// [`excite`](Self::excite), shown to `hook` (which may replace the weights) when there is one.
    pub fn excite_hooked(&self, squeezed: Tensor<B, 2>, hook: Hook<'_, B>) -> Tensor<B, 2> {
        let weights = self.excite(squeezed);
        match hook {
            Some(hook) => hook.excitation(weights),
            None => weights,
        }
    }

    /// The NoSqueeze excitation: the FC layers applied at every position (as 1x1 convolutions).
    ///
    /// # Shapes
    /// - `x`: `[N, C, H, W]`
    /// - output: `[N, C, H, W]`
    fn excitation_map(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let channels_last = x.permute([0, 2, 3, 1]);
        let hidden = relu(self.fc1.forward(channels_last));
        self.gate
            .apply(self.fc2.forward(hidden))
            .permute([0, 3, 1, 2])
    }

    /// Scales each channel of `x` by its excitation weight (each element by its own weight
    /// without a squeeze).
    ///
    /// # Shapes
    /// - `x`: `[N, C, H, W]`
    /// - output: `[N, C, H, W]`
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.forward_hooked(x, None)
    }

    /// [`forward`](Self::forward) with the channel weights shown to `hook` (not for
    /// [`Squeeze::None`], whose weights are per position).
    pub fn forward_hooked(&self, x: Tensor<B, 4>, hook: Hook<'_, B>) -> Tensor<B, 4> {
        if self.squeeze == Squeeze::None {
            let map = self.excitation_map(x.clone());
            return x * map;
        }
        let weights = self.excite_hooked(self.squeeze(x.clone()), hook);
        scale_planes(x, weights, None)
    }
}

/// Sees, and may replace, the channel weights `[N, C]` of each SE module a forward pass runs
/// through, in the order they run: the excitation analysis (§6.4) records them, its ablation
/// replaces a stage's weights by constants. See `ResNet::forward_hooked` in `se-models`.
pub trait ExcitationHook<B: Backend> {
    /// Called once per SE module and forward pass with that module's weights; returns the
    /// weights the module applies.
    fn excitation(&mut self, weights: Tensor<B, 2>) -> Tensor<B, 2>;
}

/// An optional [`ExcitationHook`], as the blocks pass it down.
pub type Hook<'a, B> = Option<&'a mut dyn ExcitationHook<B>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{TestBackend, assert_close, tensor, values};
    use burn::module::Param;
    use burn::tensor::TensorData;

    /// One image, four channels of 2x2:
    /// averages `[2.5, 0.5, 1.0, 2.0]`, maxima `[4, 2, 4, 2]`.
    fn input() -> Tensor<TestBackend, 4> {
        tensor(
            [
                [[1.0, 2.0], [3.0, 4.0]],
                [[-1.0, 0.0], [1.0, 2.0]],
                [[0.0, 0.0], [0.0, 4.0]],
                [[2.0, 2.0], [2.0, 2.0]],
            ],
            [1, 4, 2, 2],
        )
    }

    /// A 4 → 2 → 4 module with fixed weights.
    fn module(squeeze: Squeeze, gate: Gate) -> SqueezeExcitation<TestBackend> {
        let device = Default::default();
        let config = SqueezeExcitationConfig::paper(2)
            .with_squeeze(squeeze)
            .with_gate(gate);
        let mut se = config.init::<TestBackend>(4, &device);
        se.fc1.weight = Param::from_data(
            TensorData::from([[0.1f32, -0.2], [0.3, 0.4], [-0.5, 0.6], [0.7, -0.8]]),
            &device,
        );
        se.fc1.bias = Some(Param::from_data([0.1f32, -0.1], &device));
        se.fc2.weight = Param::from_data(
            TensorData::from([[0.5f32, -0.5, 1.0, 0.0], [0.25, 0.75, -1.0, 2.0]]),
            &device,
        );
        se.fc2.bias = Some(Param::from_data([0.0f32, 0.1, -0.1, 0.2], &device));
        se
    }

    // Average squeeze: hidden = relu([2.5, .5, 1, 2]·fc1 + b1) = relu([1.4, -1.4]) = [1.4, 0];
    // logits = 1.4 * fc2[0] + b2 = [0.7, -0.6, 1.3, 0.2].
    // Max squeeze: hidden = relu([4, 2, 4, 2]·fc1 + b1) = [0.85, 0]; logits = [0.425, 0.375, -0.3, 1.6].
    const AVG_LOGITS: [f32; 4] = [0.7, -0.6, 1.3, 0.2];
    const MAX_LOGITS: [f32; 4] = [0.425, 0.375, -0.3, 1.6];

    #[test]
    fn squeeze_pools_each_channel() {
        let avg = module(Squeeze::Avg, Gate::Sigmoid).squeeze(input());
        assert_close(avg, &[2.5, 0.5, 1.0, 2.0]);
        let max = module(Squeeze::Max, Gate::Sigmoid).squeeze(input());
        assert_close(max, &[4.0, 2.0, 4.0, 2.0]);
    }

    #[test]
    fn excitation_matches_hand_computed_weights_for_every_squeeze_and_gate() {
        let sigmoid = |v: f32| 1.0 / (1.0 + (-v).exp());
        let hard_sigmoid = |v: f32| (v + 3.0).clamp(0.0, 6.0) / 6.0;
        for (squeeze, logits) in [(Squeeze::Avg, AVG_LOGITS), (Squeeze::Max, MAX_LOGITS)] {
            for (gate, f) in [
                (Gate::Sigmoid, &sigmoid as &dyn Fn(f32) -> f32),
                (Gate::HardSigmoid, &hard_sigmoid),
                (Gate::Tanh, &f32::tanh),
            ] {
                let expected = logits.map(f);
                let weights = module(squeeze, gate).excitation(input());
                assert_close(weights, &expected);
            }
        }
        // Spot values written out: sigmoid(0.7) = 0.6681878, hard_sigmoid(-0.6) = 0.4,
        // tanh(1.6) = 0.9216686.
        assert_close(
            module(Squeeze::Avg, Gate::Sigmoid).excitation(input()),
            &[0.6681878, 0.3543437, 0.785835, 0.549834],
        );
        assert_close(
            module(Squeeze::Avg, Gate::HardSigmoid).excitation(input()),
            &[0.6166667, 0.4, 0.7166667, 0.5333333],
        );
        assert_close(
            module(Squeeze::Max, Gate::Tanh).excitation(input()),
            &[0.4011343, 0.3583574, -0.2913126, 0.9216686],
        );
    }

    #[test]
    fn the_relu_gate_passes_positive_logits_and_blocks_negative_ones() {
        // Average squeeze logits [0.7, -0.6, 1.3, 0.2] (above).
        let weights = module(Squeeze::Avg, Gate::Relu).excitation(input());
        assert_close(weights, &[0.7, 0.0, 1.3, 0.2]);
    }

    /// NoSqueeze (§6.3): the FCs run at every position as 1x1 convolutions, so each element is
    /// scaled by a weight from its own position's channel vector.
    #[test]
    fn no_squeeze_excites_every_position_on_its_own() {
        let se = module(Squeeze::None, Gate::Relu);
        // Position (0, 0) has the channel vector [1, -1, 0, 2]:
        // hidden = relu([1, -1, 0, 2]·fc1 + b1) = relu([1.3, -2.3]) = [1.3, 0];
        // logits = 1.3 * [0.5, -0.5, 1, 0] + b2 = [0.65, -0.55, 1.2, 0.2]; relu → [0.65, 0, 1.2, 0.2].
        let out = se.forward(input());
        assert_eq!(out.dims(), [1, 4, 2, 2]);
        let out = values(out);
        let at_origin = [out[0], out[4], out[8], out[12]];
        assert_close(
            Tensor::<TestBackend, 1>::from_floats(at_origin, &Default::default()),
            &[0.65 * 1.0, 0.0, 1.2 * 0.0, 0.2 * 2.0],
        );
        // Each position on its own: the 1x1-conv reading equals the SE of a 1x1 map there.
        let device = Default::default();
        for (position, [a, b, c, d]) in [
            (0usize, [1.0f32, -1.0, 0.0, 2.0]),
            (3, [4.0, 2.0, 4.0, 2.0]),
        ] {
            let pixel =
                Tensor::<TestBackend, 1>::from_floats([a, b, c, d], &device).reshape([1, 4, 1, 1]);
            let expected = values(module(Squeeze::Avg, Gate::Relu).forward(pixel));
            let got: Vec<f32> = (0..4).map(|ch| out[ch * 4 + position]).collect();
            assert_close(
                Tensor::<TestBackend, 1>::from_floats(got.as_slice(), &device),
                &expected,
            );
        }
        // Same parameters as the squeezed module; the FC cost is paid at every position.
        let config = SqueezeExcitationConfig::paper(2).with_squeeze(Squeeze::None);
        let squeezed = SqueezeExcitationConfig::paper(2).complexity(4, [2, 2]);
        let cost = config.complexity(4, [2, 2]);
        assert_eq!(cost.params, squeezed.params);
        assert_eq!(cost.macs, 4 * (4 * 2 + 2 * 4) + 2 * 4 * 4);
    }

    #[test]
    fn forward_scales_each_channel_by_its_weight() {
        let out = module(Squeeze::Avg, Gate::Sigmoid).forward(input());
        let w = [0.6681878f32, 0.3543437, 0.785835, 0.549834];
        #[rustfmt::skip]
        let expected = [
            w[0], 2.0 * w[0], 3.0 * w[0], 4.0 * w[0],
            -w[1], 0.0, w[1], 2.0 * w[1],
            0.0, 0.0, 0.0, 4.0 * w[2],
            2.0 * w[3], 2.0 * w[3], 2.0 * w[3], 2.0 * w[3],
        ];
        assert_eq!(out.dims(), [1, 4, 2, 2]);
        assert_close(out, &expected);
    }

    #[test]
    fn hidden_width_follows_the_paper_or_timm_rounding() {
        let timm = SqueezeExcitationConfig::new();
        assert_eq!(timm.hidden_channels(64), 8); // 64 / 16 = 4, rounded up to the divisor 8
        assert_eq!(timm.hidden_channels(256), 16);
        assert_eq!(timm.hidden_channels(2048), 128);
        let paper = SqueezeExcitationConfig::paper(16);
        assert_eq!(paper.hidden_channels(64), 4);
        assert_eq!(paper.hidden_channels(16), 1);
        assert_eq!(paper.hidden_channels(8), 1); // never below one unit
        // timm's make_divisible with its default round limit 0.9: 10 → 8 would lose over 10%.
        assert_eq!(make_divisible(10.0, 8, None, 0.9), 16);
        assert_eq!(make_divisible(37.0, 8, None, 0.0), 40);
    }

    #[test]
    fn complexity_counts_the_module_parameters() {
        let device = Default::default();
        for config in [
            SqueezeExcitationConfig::new(),
            SqueezeExcitationConfig::paper(4).with_bias(false),
        ] {
            for channels in [16, 64, 256] {
                let module = config.init::<TestBackend>(channels, &device);
                let cost = config.complexity(channels, [7, 7]);
                assert_eq!(cost.params, module.num_params());
            }
        }
        // 256 channels, hidden 16: two FCs (2 * 256 * 16 MACs) plus pool and scale (2 * 256 * 49).
        let cost = SqueezeExcitationConfig::new().complexity(256, [7, 7]);
        assert_eq!(cost.macs, 2 * 256 * 16 + 2 * 256 * 49);
        assert_eq!(cost.params, 2 * 256 * 16 + 16 + 256);
    }
}
