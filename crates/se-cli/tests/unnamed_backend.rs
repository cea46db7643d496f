//! The models on a backend no crate of this project names, in a process of its own: Burn 0.21
//! fixes a device's float type at its first tensor, and `NdArray<f64>` shares its device with the
//! `NdArray<f32>` of `backends.rs`, so the two cannot run in one test binary (the later one would
//! silently compute in the other's type; `common::assert_own_float` checks).

mod common;

use burn::backend::{Autodiff, Flex, NdArray};
use common::*;

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
