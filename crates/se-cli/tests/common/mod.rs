//! What the backend parity tests share: deterministic weights and inputs, one forward pass, one
//! training step, and the comparisons with their tolerances.
#![allow(dead_code)] // each test binary uses a part

use burn::backend::Flex;
use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, Element, Int, Tensor, TensorData};
use se_models::interop::{Layout, StateDict, export_state_dict, import_state_dict};
use se_models::{ResNet, ResNetConfig};

/// Logits and loss: |a - b| <= 1e-4 * max(1, max |a|).
pub const LOGIT_TOLERANCE: f32 = 1e-4;
/// Each gradient tensor, between any two backends in f32: 5e-2 of its size (L2; see
/// [`assert_same_step`] for why not element by element). A ReLU kink taken on opposite sides
/// was measured at 1.6e-2; one channel in 64 wrong by its own size gives 1.2e-1, with its sign
/// flipped 2.5e-1.
pub const GRADIENT_TOLERANCE: f32 = 5e-2;

/// Deterministic numbers in [0, 1) (a 64-bit LCG), the same on every platform.
pub struct Numbers(pub u64);

impl Numbers {
    pub fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Weights for `config`, the same on every run and platform: convolution and linear weights
/// uniform in ±1/sqrt(fan-in) (Burn's and PyTorch's default scale), other vectors in ±0.1, and
/// random BatchNorm scales, shifts and statistics so that every residual branch and every
/// normalisation matters. Scales stay below 1 so that activations do not grow without bound
/// through 50 to 164 layers (as in a trained net).
///
/// Not the model's own initialisation: that draws from the backend's generator, a different
/// network in every process, which made a failure impossible to reproduce.
pub fn weights(config: &ResNetConfig, seed: u64) -> StateDict {
    let model = config.init::<Flex>(&Default::default());
    let mut state = export_state_dict(&model, Layout::native(config));
    let mut numbers = Numbers(seed);
    let mut uniform = |len: usize, low: f32, high: f32| -> Vec<f32> {
        (0..len)
            .map(|_| low + (high - low) * numbers.next())
            .collect()
    };
    let norms: Vec<String> = state
        .keys()
        .filter_map(|k| k.strip_suffix("running_mean").map(str::to_string))
        .collect();
    // PyTorch's layout: [out, in / groups, kh, kw] and [out, in].
    let others: Vec<String> = state
        .keys()
        .filter(|k| !norms.iter().any(|prefix| k.starts_with(prefix.as_str())))
        .cloned()
        .collect();
    for key in others {
        let shape = state[&key].shape.clone();
        let len: usize = shape.iter().product();
        let bound = if shape.len() >= 2 {
            1.0 / ((len / shape[0]) as f32).sqrt()
        } else {
            0.1
        };
        let values = uniform(len, -bound, bound);
        state.insert(key, TensorData::new(values, shape));
    }
    for prefix in norms {
        for (name, low, high) in [
            ("weight", 0.2, 0.8),
            ("bias", -0.1, 0.1),
            ("running_mean", -0.1, 0.1),
            ("running_var", 0.8, 1.5),
        ] {
            let key = format!("{prefix}{name}");
            let len = state[&key].num_elements();
            state.insert(key, TensorData::new(uniform(len, low, high), [len]));
        }
    }
    state
}

pub fn load<B: Backend>(config: &ResNetConfig, state: &StateDict, device: &B::Device) -> ResNet<B> {
    import_state_dict(
        config.init::<B>(device),
        state,
        Layout::native(config),
        false,
    )
    .expect("weights fit")
    .0
}

pub fn input(shape: [usize; 4], seed: u64) -> TensorData {
    let mut numbers = Numbers(seed);
    let len = shape.iter().product();
    TensorData::new(
        (0..len)
            .map(|_| 2.0 * numbers.next() - 1.0)
            .collect::<Vec<f32>>(),
        shape,
    )
}

pub fn logits<B: Backend>(
    config: &ResNetConfig,
    state: &StateDict,
    x: &TensorData,
    device: &B::Device,
) -> Vec<f32> {
    let model = load::<B>(config, state, device);
    let x = Tensor::<B, 4>::from_data(x.clone(), device);
    let logits = model.forward(x);
    assert_own_float::<B>(logits.dtype());
    logits.into_data().convert::<f32>().into_vec().unwrap()
}

pub fn assert_close(name: &str, what: &str, expected: &[f32], actual: &[f32], tolerance: f32) {
    assert_eq!(expected.len(), actual.len(), "{name}: {what} sizes");
    let scale = expected.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let diff = expected
        .iter()
        .zip(actual)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        diff <= tolerance * scale,
        "{name}: {what} differ by {diff} (scale {scale}, tolerance {})",
        tolerance * scale
    );
}

/// Fails unless the backend computed in its own float type. Burn 0.21 keys a device's default
/// float type by the device type, fixed by the first tensor made on it: `NdArray<f64>` and
/// `NdArray<f32>` share `NdArrayDevice`, so in one process whichever ran first decides the type of
/// both. This test binary therefore never runs `NdArray<f64>` (see `unnamed_backend.rs`).
pub fn assert_own_float<B: Backend>(dtype: DType) {
    assert_eq!(
        dtype,
        <B::FloatElem as Element>::dtype(),
        "{} computed in another float type than its own",
        std::any::type_name::<B>()
    );
}

/// Every parameter's gradient, in module order.
pub struct Gradients<'a, B: AutodiffBackend> {
    grads: &'a B::Gradients,
    values: Vec<Vec<f32>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Gradients<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = param.val().grad(self.grads) {
            self.values
                .push(grad.into_data().convert::<f32>().into_vec().unwrap());
        }
    }
}

/// One training step's loss and gradients (train mode: BatchNorm uses the batch statistics).
pub fn training_step<B: AutodiffBackend>(
    config: &ResNetConfig,
    state: &StateDict,
    x: &TensorData,
    device: &B::Device,
) -> (f32, Vec<Vec<f32>>) {
    let model = load::<B>(config, state, device);
    let batch = x.shape[0];
    let targets: Vec<i64> = (0..batch as i64)
        .map(|i| i % config.num_classes as i64)
        .collect();
    let targets = Tensor::<B, 1, Int>::from_data(TensorData::new(targets, [batch]), device);
    let logits = model.forward(Tensor::from_data(x.clone(), device));
    let loss = CrossEntropyLossConfig::new()
        .init(device)
        .forward(logits, targets);
    assert_own_float::<B>(loss.dtype());
    let grads = loss.backward();
    let mut visitor = Gradients::<B> {
        grads: &grads,
        values: Vec::new(),
    };
    model.visit(&mut visitor);
    let loss = loss.into_data().convert::<f32>().into_vec::<f32>().unwrap()[0];
    (loss, visitor.values)
}

/// The error of each gradient tensor relative to its size, `‖a - e‖₂ / ‖e‖₂`.
pub fn relative_errors(expected: &[Vec<f32>], actual: &[Vec<f32>]) -> Vec<f32> {
    let norm = |v: &mut dyn Iterator<Item = f32>| v.map(|x| x * x).sum::<f32>().sqrt();
    expected
        .iter()
        .zip(actual)
        .map(|(e, a)| {
            let error = norm(&mut e.iter().zip(a).map(|(x, y)| x - y));
            error / norm(&mut e.iter().copied()).max(f32::MIN_POSITIVE)
        })
        .collect()
}

/// The same loss (to [`LOGIT_TOLERANCE`]) and every parameter's gradient within `tolerance` of
/// its size (`‖a - e‖₂ <= tolerance · ‖e‖₂`).
///
/// Not element by element: where a ReLU's input lies within rounding of 0, two correct f32
/// backends can take opposite sides of the kink. That changes one position's gradient by its
/// whole size, one row of the convolution below by a few percent, and every earlier layer by
/// ~1% (seen: SE-ResNet-20, batch 4, 8x8 maps: 1.6e-2 of a 16-value BatchNorm gradient).
/// How likely it is depends on the CPU's vector width, so an element-wise bound fails on some
/// machines and not others. A wiring or kernel error is wrong in whole channels or tensors:
/// one channel in 64 wrong by its own size is already 0.12. The kernels' own element-wise
/// bounds, on inputs without kinks, are in se-kernels' tests.
pub fn assert_same_step(
    name: &str,
    expected: &(f32, Vec<Vec<f32>>),
    actual: &(f32, Vec<Vec<f32>>),
    tolerance: f32,
) {
    assert_close(name, "loss", &[expected.0], &[actual.0], LOGIT_TOLERANCE);
    assert_eq!(expected.1.len(), actual.1.len(), "{name}: gradient count");
    assert!(!expected.1.is_empty());
    assert!(
        expected.1.iter().flatten().any(|g| *g != 0.0),
        "{name}: no gradient signal"
    );
    for (i, error) in relative_errors(&expected.1, &actual.1)
        .into_iter()
        .enumerate()
    {
        assert!(
            error <= tolerance,
            "{name}: gradient {i} ({} values) differs by {error:.2e} of its size (tolerance \
             {tolerance:.0e})",
            expected.1[i].len()
        );
    }
}

/// Small shapes for the step tests: a basic-block, a bottleneck and a grouped (ResNeXt) model.
pub fn step_models() -> Vec<(&'static str, ResNetConfig)> {
    let shallow = |config: ResNetConfig| ResNetConfig {
        layers: vec![1; config.layers.len()],
        ..config
    };
    vec![
        ("se_resnet20", se_models::zoo::se_resnet20()),
        (
            "se_resnet50 (1 block per stage)",
            shallow(se_models::zoo::se_resnet50()).with_num_classes(10),
        ),
        (
            "se_resnext50_32x4d (1 block per stage)",
            shallow(se_models::zoo::se_resnext50_32x4d()).with_num_classes(10),
        ),
    ]
}
