//! An SE module's excitation as a convolution's epilogue applies it: from the plane means of
//! one image to that image's channel weights, `gate(fc2(relu(fc1(means))))`, on tensors (any
//! backend) and on one image's `f32` values (the CPU kernel, while the image is in cache).

use burn::config::Config;
use burn::prelude::*;
use burn::tensor::activation::{relu, sigmoid, tanh};

/// The gating function that turns the excitation logits into channel weights.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Gate {
    /// `1 / (1 + e^-x)`, the paper's choice; weights in (0, 1).
    Sigmoid,
    /// timm's `hard_sigmoid`: `relu6(x + 3) / 6`; weights in [0, 1].
    HardSigmoid,
    /// `tanh(x)`; weights in (-1, 1) (the paper's Table 12 ablation).
    Tanh,
    /// `max(x, 0)`; unbounded weights (the paper's Table 12 ablation).
    Relu,
}

impl Gate {
    /// Applies the gate element-wise.
    pub fn apply<B: Backend, const D: usize>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Gate::Sigmoid => sigmoid(x),
            Gate::HardSigmoid => x.add_scalar(3.0).clamp(0.0, 6.0).div_scalar(6.0),
            Gate::Tanh => tanh(x),
            Gate::Relu => relu(x),
        }
    }

    /// The gate of one value.
    pub fn value(self, x: f32) -> f32 {
        match self {
            Gate::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Gate::HardSigmoid => (x + 3.0).clamp(0.0, 6.0) / 6.0,
            Gate::Tanh => x.tanh(),
            Gate::Relu => x.max(0.0),
        }
    }
}

/// An SE module's excitation, `[N, C]` plane means to `[N, C]` channel weights:
/// `gate(relu(means · reduce + reduce_bias) · expand + expand_bias)`. The weights are laid out
/// as Burn's `Linear` keeps them (`[in, out]`).
#[derive(Debug, Clone)]
pub struct Excitation<B: Backend> {
    /// The reduction layer's weight, `[C, hidden]`.
    pub reduce: Tensor<B, 2>,
    /// Its bias, `[hidden]`.
    pub reduce_bias: Option<Tensor<B, 1>>,
    /// The expansion layer's weight, `[hidden, C]`.
    pub expand: Tensor<B, 2>,
    /// Its bias, `[C]`.
    pub expand_bias: Option<Tensor<B, 1>>,
    /// The gate on the expansion's output.
    pub gate: Gate,
}

impl<B: Backend> Excitation<B> {
    /// The channel weights, `[N, C]`, of the plane means `[N, C]`, as tensor ops.
    pub fn weights(&self, means: Tensor<B, 2>) -> Tensor<B, 2> {
        let linear = |x: Tensor<B, 2>, weight: &Tensor<B, 2>, bias: &Option<Tensor<B, 1>>| {
            let y = x.matmul(weight.clone());
            match bias {
                Some(bias) => y + bias.clone().unsqueeze_dim(0),
                None => y,
            }
        };
        let hidden = relu(linear(means, &self.reduce, &self.reduce_bias));
        self.gate
            .apply(linear(hidden, &self.expand, &self.expand_bias))
    }
}

/// [`Excitation`] on `f32` values, for one image at a time.
#[cfg(feature = "flex")]
#[derive(Debug, Clone, Copy)]
pub struct CpuExcitation<'a> {
    /// `[C, hidden]`, row-major.
    pub reduce: &'a [f32],
    /// `[hidden]`.
    pub reduce_bias: Option<&'a [f32]>,
    /// `[hidden, C]`, row-major.
    pub expand: &'a [f32],
    /// `[C]`.
    pub expand_bias: Option<&'a [f32]>,
    /// The gate.
    pub gate: Gate,
}

#[cfg(feature = "flex")]
impl CpuExcitation<'_> {
    /// Panics unless the weights and biases fit `channels` channels; returns the hidden width.
    pub fn check(&self, channels: usize) -> usize {
        let hidden = self.reduce.len() / channels.max(1);
        assert_eq!(self.reduce.len(), channels * hidden, "reduce weight size");
        assert_eq!(self.expand.len(), hidden * channels, "expand weight size");
        assert!(
            self.reduce_bias.is_none_or(|b| b.len() == hidden),
            "reduce bias size"
        );
        assert!(
            self.expand_bias.is_none_or(|b| b.len() == channels),
            "expand bias size"
        );
        hidden
    }

    /// One image's channel weights, `[C]`, from its plane means `[C]`. Each layer is a sum of
    /// rows scaled by one input each (a loop that vectorises), in the order of Burn's matmul's
    /// inner dimension.
    pub fn weights(&self, means: &[f32]) -> Vec<f32> {
        let channels = means.len();
        let hidden = self.check(channels);
        let layer = |input: &[f32], weight: &[f32], bias: Option<&[f32]>, out: usize| {
            let mut y = bias.map_or_else(|| vec![0.0; out], <[f32]>::to_vec);
            for (&x, row) in input.iter().zip(weight.chunks_exact(out)) {
                y.iter_mut().zip(row).for_each(|(y, w)| *y += x * w);
            }
            y
        };
        let mut h = layer(means, self.reduce, self.reduce_bias, hidden);
        h.iter_mut().for_each(|v| *v = v.max(0.0));
        let mut w = layer(&h, self.expand, self.expand_bias, channels);
        w.iter_mut().for_each(|v| *v = self.gate.value(*v));
        w
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use burn::backend::Flex;

    /// A 2 → 1 → 2 excitation by hand: `h = relu(1·m0 - 2·m1 + 0.5)`, logits `[2h, -h + 1]`.
    #[test]
    fn one_image_by_hand() {
        let e = CpuExcitation {
            reduce: &[1.0, -2.0],
            reduce_bias: Some(&[0.5]),
            expand: &[2.0, -1.0],
            expand_bias: Some(&[0.0, 1.0]),
            gate: Gate::Relu,
        };
        // h = relu(3 - 2 + 0.5) = 1.5: logits [3, -0.5], clipped to [3, 0].
        assert_eq!(e.weights(&[3.0, 1.0]), [3.0, 0.0]);
        // h = relu(1 - 4 + 0.5) = 0: logits [0, 1].
        assert_eq!(e.weights(&[1.0, 2.0]), [0.0, 1.0]);
        let tanh = CpuExcitation {
            gate: Gate::Tanh,
            reduce_bias: None,
            expand_bias: None,
            ..e
        };
        // h = 1, logits [2, -1].
        assert_eq!(tanh.weights(&[3.0, 1.0]), [2.0f32.tanh(), (-1.0f32).tanh()]);
    }

    #[test]
    fn each_gate_of_one_value_equals_its_tensor_form() {
        let inputs = [-7.0, -3.0, -0.5, 0.0, 0.25, 2.0, 3.5, 40.0];
        for gate in [Gate::Sigmoid, Gate::HardSigmoid, Gate::Tanh, Gate::Relu] {
            let tensor = Tensor::<Flex, 1>::from_floats(inputs, &Default::default());
            let expected = gate.apply(tensor).into_data().to_vec::<f32>().unwrap();
            for (x, e) in inputs.iter().zip(expected) {
                assert!((gate.value(*x) - e).abs() < 1e-6, "{gate:?}({x})");
            }
        }
        assert_eq!(Gate::HardSigmoid.value(0.0), 0.5);
        assert_eq!(Gate::HardSigmoid.value(-3.0), 0.0);
        assert_eq!(Gate::Sigmoid.value(0.0), 0.5);
    }

    #[test]
    #[should_panic(expected = "reduce bias size")]
    fn a_bias_of_the_wrong_size_is_refused() {
        let e = CpuExcitation {
            reduce: &[1.0, -2.0],
            reduce_bias: Some(&[0.5, 1.0]),
            expand: &[2.0, -1.0],
            expand_bias: None,
            gate: Gate::Relu,
        };
        e.weights(&[1.0, 1.0]);
    }
}
