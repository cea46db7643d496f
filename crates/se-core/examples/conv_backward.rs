//! One convolution layer, forward and forward + backward (autodiff), on flex: Burn 0.21's own
//! convolution against `se_core::conv` (the `KernelBackend` extension with its im2col + GEMM CPU
//! kernels). Checks that both give the same output and gradients; prints median milliseconds as
//! a markdown table (docs/benchmarks.md). A whole training step is measured by `cargo xtask bench`.
//!
//!     cargo run --release -p se-core --features flex --example conv_backward
//!
//! The first three shapes are issue #6's (PyTorch figures there, same machine); the others are
//! SE-ResNet-50's 3x3 and 1x1 layers at batch 1 and 8.

use std::time::Instant;

use burn::backend::{Autodiff, Flex};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Distribution, Tensor};

type B = Flex;
type AB = Autodiff<Flex>;

fn median_ms(repeat: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..repeat)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[repeat / 2]
}

/// Which convolution to run.
#[derive(Clone, Copy)]
enum Conv {
    Burn,
    Ours,
}

impl Conv {
    fn run<Bk: se_core::KernelBackend>(
        self,
        x: Tensor<Bk, 4>,
        w: Tensor<Bk, 4>,
        options: ConvOptions<2>,
    ) -> Tensor<Bk, 4> {
        match self {
            Conv::Burn => burn::tensor::module::conv2d(x, w, None, options),
            Conv::Ours => se_core::kernels::conv2d(x, w, None, options),
        }
    }
}

fn main() {
    let device = Default::default();
    println!(
        "| input → out, kernel/stride | Burn fwd | ours fwd | Burn fwd+bwd | ours fwd+bwd | max rel. diff (y, dx, dw) |"
    );
    println!("|---|---|---|---|---|---|");
    for ([n, c, h, w], co, k, s) in [
        ([128, 16, 32, 32], 16, 3, 1),
        ([128, 64, 8, 8], 64, 3, 1),
        ([8, 64, 56, 56], 64, 3, 1),
        ([1, 64, 56, 56], 64, 3, 1),
        ([1, 256, 56, 56], 64, 1, 1),
        ([8, 128, 28, 28], 128, 3, 1),
        ([8, 256, 28, 28], 1024, 1, 1),
    ] {
        let options = ConvOptions::new([s, s], [k / 2, k / 2], [1, 1], 1);
        let x = Tensor::<B, 4>::random([n, c, h, w], Distribution::Normal(0.0, 1.0), &device);
        let weight = Tensor::<B, 4>::random([co, c, k, k], Distribution::Normal(0.0, 0.1), &device);
        let dy = Conv::Burn
            .run(x.clone(), weight.clone(), options.clone())
            .random_like(Distribution::Normal(0.0, 1.0));
        let forward = |conv: Conv| conv.run(x.clone(), weight.clone(), options.clone());
        let backward = |conv: Conv| {
            let xa = Tensor::<AB, 4>::from_inner(x.clone()).require_grad();
            let wa = Tensor::<AB, 4>::from_inner(weight.clone()).require_grad();
            let y = conv.run(xa.clone(), wa.clone(), options.clone());
            let grads = (y * Tensor::from_inner(dy.clone())).sum().backward();
            (xa.grad(&grads).unwrap(), wa.grad(&grads).unwrap())
        };
        let [fwd_burn, fwd_ours] = [Conv::Burn, Conv::Ours].map(|conv| {
            median_ms(5, || {
                let _ = forward(conv).into_data();
            })
        });
        let [bwd_burn, bwd_ours] = [Conv::Burn, Conv::Ours].map(|conv| {
            median_ms(5, || {
                let (dx, dw) = backward(conv);
                let _ = (dx.into_data(), dw.into_data());
            })
        });
        let diff = |a: Tensor<B, 4>, b: Tensor<B, 4>| {
            let scale = a.clone().abs().max().into_scalar();
            (a - b).abs().max().into_scalar() / scale
        };
        let ((dx, dw), (dx2, dw2)) = (backward(Conv::Burn), backward(Conv::Ours));
        println!(
            "| [{n},{c},{h},{w}] → {co}, {k}x{k}/{s} | {fwd_burn:.1} | {fwd_ours:.1} | {bwd_burn:.1} | {bwd_ours:.1} | {:.0e}, {:.0e}, {:.0e} |",
            diff(forward(Conv::Burn), forward(Conv::Ours)),
            diff(dx, dx2),
            diff(dw, dw2)
        );
    }
}
