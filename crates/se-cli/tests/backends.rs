//! One model definition on several backends: the same weights and input give the same logits,
//! loss and gradients on ndarray and flex (always), on wgpu (with `--features wgpu`, run by
//! `cargo xtask test` when a Vulkan driver is installed) and on CUDA (`--features cuda`, on a
//! machine with an NVIDIA GPU: `scripts/gpu-check.sh`).
//!
//! Tolerance: |a - b| <= 1e-4 * max(1, max |a|) for logits and loss, and, for gradients, 1e-3 of
//! the largest gradient entry between CPU backends and 1e-2 against wgpu on Mesa's lavapipe (its
//! reductions differ run to run; up to 2.8e-3 was seen on the first conv's weight gradient). A
//! wrong kernel shows as errors the size of the gradient itself (see docs/backends.md).

use burn::backend::{Autodiff, Flex, NdArray};
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use se_models::interop::{Layout, StateDict, export_state_dict, import_state_dict};
use se_models::{MODELS, ResNet, ResNetConfig};

const LOGIT_TOLERANCE: f32 = 1e-4;
const GRADIENT_TOLERANCE: f32 = 1e-3;
#[cfg(feature = "wgpu")]
const WGPU_GRADIENT_TOLERANCE: f32 = 1e-2;

/// Deterministic numbers in [0, 1) (a 64-bit LCG), the same on every platform.
struct Numbers(u64);

impl Numbers {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Weights for `config`: its own initialisation, with random BatchNorm scales, shifts and
/// statistics so that every residual branch and every normalisation matters. Scales stay below 1
/// so that activations do not grow without bound through 50 to 164 layers (as in a trained net).
fn weights(config: &ResNetConfig, seed: u64) -> StateDict {
    let model = config.init::<Flex>(&Default::default());
    let mut state = export_state_dict(&model, Layout::native(config));
    let norms: Vec<String> = state
        .keys()
        .filter_map(|k| k.strip_suffix("running_mean").map(str::to_string))
        .collect();
    let mut numbers = Numbers(seed);
    for prefix in norms {
        for (name, low, high) in [
            ("weight", 0.2, 0.8),
            ("bias", -0.1, 0.1),
            ("running_mean", -0.1, 0.1),
            ("running_var", 0.8, 1.5),
        ] {
            let key = format!("{prefix}{name}");
            let len = state[&key].num_elements();
            let values: Vec<f32> = (0..len)
                .map(|_| low + (high - low) * numbers.next())
                .collect();
            state.insert(key, TensorData::new(values, [len]));
        }
    }
    state
}

fn load<B: Backend>(config: &ResNetConfig, state: &StateDict, device: &B::Device) -> ResNet<B> {
    import_state_dict(
        config.init::<B>(device),
        state,
        Layout::native(config),
        false,
    )
    .expect("weights fit")
    .0
}

fn input(shape: [usize; 4], seed: u64) -> TensorData {
    let mut numbers = Numbers(seed);
    let len = shape.iter().product();
    TensorData::new(
        (0..len)
            .map(|_| 2.0 * numbers.next() - 1.0)
            .collect::<Vec<f32>>(),
        shape,
    )
}

fn logits<B: Backend>(
    config: &ResNetConfig,
    state: &StateDict,
    x: &TensorData,
    device: &B::Device,
) -> Vec<f32> {
    let model = load::<B>(config, state, device);
    let x = Tensor::<B, 4>::from_data(x.clone(), device);
    model
        .forward(x)
        .into_data()
        .convert::<f32>()
        .into_vec()
        .unwrap()
}

fn assert_close(name: &str, what: &str, expected: &[f32], actual: &[f32], tolerance: f32) {
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

/// Every parameter's gradient, in module order.
struct Gradients<'a, B: AutodiffBackend> {
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
fn training_step<B: AutodiffBackend>(
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
    let grads = loss.backward();
    let mut visitor = Gradients::<B> {
        grads: &grads,
        values: Vec::new(),
    };
    model.visit(&mut visitor);
    let loss = loss.into_data().convert::<f32>().into_vec::<f32>().unwrap()[0];
    (loss, visitor.values)
}

fn assert_same_step(
    name: &str,
    expected: &(f32, Vec<Vec<f32>>),
    actual: &(f32, Vec<Vec<f32>>),
    tolerance: f32,
) {
    assert_close(name, "loss", &[expected.0], &[actual.0], LOGIT_TOLERANCE);
    assert_eq!(expected.1.len(), actual.1.len(), "{name}: gradient count");
    assert!(!expected.1.is_empty());
    let all: Vec<f32> = expected.1.iter().flatten().copied().collect();
    let scale = all.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(scale > 0.0, "{name}: no gradient signal");
    for (i, (e, a)) in expected.1.iter().zip(&actual.1).enumerate() {
        let diff = e
            .iter()
            .zip(a)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(
            diff <= tolerance * scale,
            "{name}: gradient {i} differs by {diff} (largest gradient {scale})"
        );
    }
}

/// Small shapes for the step tests: a basic-block, a bottleneck and a grouped (ResNeXt) model.
fn step_models() -> Vec<(&'static str, ResNetConfig)> {
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

#[test]
fn ndarray_and_flex_give_the_same_logits_for_every_registered_model() {
    let x = input([2, 3, 32, 32], 7);
    for entry in MODELS {
        let config = (entry.config)();
        let state = weights(&config, 11);
        let flex = logits::<Flex>(&config, &state, &x, &Default::default());
        let ndarray = logits::<NdArray>(&config, &state, &x, &Default::default());
        assert_close(entry.name, "logits", &flex, &ndarray, LOGIT_TOLERANCE);
    }
}

#[test]
fn ndarray_and_flex_take_the_same_training_step() {
    let x = input([4, 3, 32, 32], 5);
    for (name, config) in step_models() {
        let state = weights(&config, 3);
        let flex = training_step::<Autodiff<Flex>>(&config, &state, &x, &Default::default());
        let ndarray = training_step::<Autodiff<NdArray>>(&config, &state, &x, &Default::default());
        assert_same_step(name, &flex, &ndarray, GRADIENT_TOLERANCE);
    }
}

/// A backend that no crate of this project names (ndarray computing in f64 stands in for
/// LibTorch, Candle, a router or a user's own): the models run on it unchanged, with Burn's ops
/// where flex has the project's kernels, and agree with flex in inference and in a training step.
#[test]
fn a_backend_the_project_never_names_runs_the_models() {
    type Unnamed = NdArray<f64>;
    assert!(!se_kernels::has_cpu_kernels::<Unnamed>());
    assert!(se_kernels::has_cpu_kernels::<Flex>());
    let config = se_models::zoo::se_resnet20();
    let state = weights(&config, 13);
    let x = input([2, 3, 32, 32], 9);
    let flex = logits::<Flex>(&config, &state, &x, &Default::default());
    let unnamed = logits::<Unnamed>(&config, &state, &x, &Default::default());
    assert_close(
        "se_resnet20 on NdArray<f64>",
        "logits",
        &flex,
        &unnamed,
        LOGIT_TOLERANCE,
    );
    let flex = training_step::<Autodiff<Flex>>(&config, &state, &x, &Default::default());
    let unnamed = training_step::<Autodiff<Unnamed>>(&config, &state, &x, &Default::default());
    assert_same_step(
        "se_resnet20 on NdArray<f64>",
        &flex,
        &unnamed,
        GRADIENT_TOLERANCE,
    );
}

/// The eval-mode model (`valid()`) of an autodiff model gives the inference backend's logits.
#[test]
fn the_autodiff_model_in_eval_mode_matches_inference() {
    let config = se_models::zoo::se_resnet20();
    let state = weights(&config, 9);
    let x = input([2, 3, 32, 32], 1);
    let device = Default::default();
    let trained = load::<Autodiff<Flex>>(&config, &state, &device).valid();
    let from_valid: Vec<f32> = trained
        .forward(Tensor::from_data(x.clone(), &device))
        .into_data()
        .into_vec()
        .unwrap();
    assert_close(
        "se_resnet20",
        "logits",
        &logits::<Flex>(&config, &state, &x, &device),
        &from_valid,
        0.0,
    );
}

#[cfg(feature = "wgpu")]
mod wgpu {
    use super::*;
    use burn::backend::Wgpu;
    use burn::backend::wgpu::WgpuDevice;

    /// lavapipe on a machine without a GPU; a real adapter if `SE_DEVICE=default`.
    fn device() -> WgpuDevice {
        match std::env::var("SE_DEVICE").as_deref() {
            Ok("default") => WgpuDevice::DefaultDevice,
            _ => WgpuDevice::Cpu,
        }
    }

    #[test]
    fn wgpu_gives_flexs_logits() {
        let x = input([2, 3, 32, 32], 7);
        let models = [
            ("se_resnet20", se_models::zoo::se_resnet20()),
            ("se_resnet50", se_models::zoo::se_resnet50()),
            ("se_resnext50_32x4d", se_models::zoo::se_resnext50_32x4d()),
        ];
        for (name, config) in models {
            let state = weights(&config, 11);
            let flex = logits::<Flex>(&config, &state, &x, &Default::default());
            let wgpu = logits::<Wgpu>(&config, &state, &x, &device());
            assert_close(name, "logits", &flex, &wgpu, LOGIT_TOLERANCE);
        }
    }

    #[test]
    fn wgpu_takes_flexs_training_step() {
        let x = input([4, 3, 32, 32], 5);
        for (name, config) in step_models() {
            let state = weights(&config, 3);
            let flex = training_step::<Autodiff<Flex>>(&config, &state, &x, &Default::default());
            let wgpu = training_step::<Autodiff<Wgpu>>(&config, &state, &x, &device());
            assert_same_step(name, &flex, &wgpu, WGPU_GRADIENT_TOLERANCE);
        }
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::*;
    use burn::backend::Cuda;

    #[test]
    fn cuda_gives_flexs_logits_and_training_step() {
        let device = Default::default();
        let x = input([2, 3, 32, 32], 7);
        for entry in MODELS {
            let config = (entry.config)();
            let state = weights(&config, 11);
            let flex = logits::<Flex>(&config, &state, &x, &Default::default());
            let cuda = logits::<Cuda>(&config, &state, &x, &device);
            assert_close(entry.name, "logits", &flex, &cuda, LOGIT_TOLERANCE);
        }
        let x = input([4, 3, 32, 32], 5);
        for (name, config) in step_models() {
            let state = weights(&config, 3);
            let flex = training_step::<Autodiff<Flex>>(&config, &state, &x, &Default::default());
            let cuda = training_step::<Autodiff<Cuda>>(&config, &state, &x, &device);
            assert_same_step(name, &flex, &cuda, GRADIENT_TOLERANCE);
        }
    }
}
