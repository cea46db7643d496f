//! One model definition on several backends: the same weights and input give the same logits,
//! loss and gradients on ndarray and flex (always), on wgpu (with `--features wgpu`, run by
//! `cargo xtask test` when a Vulkan driver is installed) and on CUDA (`--features cuda`, on a
//! machine with an NVIDIA GPU: `scripts/gpu-check.sh`).
//!
//! Tolerance (`common`): |a - b| <= 1e-4 * max(1, max |a|) for logits and loss, and, for every
//! gradient tensor, an L2 error within 5e-2 of its size, on every pair of backends (why not
//! element by element: `common::assert_same_step`). A wrong kernel shows as errors the size of
//! the gradient itself (see docs/backends.md).

mod common;

use burn::backend::{Autodiff, Flex, NdArray};
use burn::module::AutodiffModule;
use burn::tensor::Tensor;
use common::*;
use se_models::MODELS;

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

/// The gradient comparison catches one wrong channel: the sign of one output channel's weight
/// gradient flipped in the last 3x3 convolution of SE-ResNet-20 (1/64 of that tensor).
#[test]
fn one_wrong_channel_of_one_gradient_fails_the_step_comparison() {
    let config = se_models::zoo::se_resnet20();
    let state = weights(&config, 3);
    let x = input([4, 3, 32, 32], 5);
    let step = training_step::<Autodiff<Flex>>(&config, &state, &x, &Default::default());
    let mut wrong = step.clone();
    let per_channel = 64 * 3 * 3; // one output channel's weights: [64 in, 3, 3]
    let conv = wrong
        .1
        .iter()
        .rposition(|g| g.len() == 64 * per_channel)
        .expect("SE-ResNet-20 has 64-channel 3x3 convolutions");
    let channel = 45;
    wrong.1[conv][channel * per_channel..][..per_channel]
        .iter_mut()
        .for_each(|g| *g = -*g);
    assert_same_step("se_resnet20", &step, &step, GRADIENT_TOLERANCE);
    let caught = std::panic::catch_unwind(|| {
        assert_same_step("se_resnet20", &step, &wrong, GRADIENT_TOLERANCE)
    });
    assert!(caught.is_err(), "a channel of the wrong sign passed");
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
            assert_same_step(name, &flex, &wgpu, GRADIENT_TOLERANCE);
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
