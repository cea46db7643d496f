//! The CPU kernels of `se-kernels` on flex, timed (median milliseconds, markdown tables for
//! docs/benchmarks.md): one convolution layer forward and forward + backward (autodiff), Burn
//! 0.21's own convolution against the `Backend` one, checked to give the same output and
//! gradients; then the three convolution kernels alone, and the per-plane kernels on one
//! SE-ResNet-20 map. A whole training step is measured by `cargo xtask bench`.
//!
//!     cargo run --release -p se-kernels --example kernels
//!
//! The first three shapes are issue #6's (PyTorch figures there, same machine); the others are
//! SE-ResNet-50's 3x3 and 1x1 layers at batch 1 and 8.

use std::time::Instant;

use burn::backend::{Autodiff, Flex};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Distribution, Tensor};
use se_kernels::cpu_conv::{self as cpu, ConvGeometry};

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
    fn run<Bk: burn::tensor::backend::Backend>(
        self,
        x: Tensor<Bk, 4>,
        w: Tensor<Bk, 4>,
        options: ConvOptions<2>,
    ) -> Tensor<Bk, 4> {
        match self {
            Conv::Burn => burn::tensor::module::conv2d(x, w, None, options),
            Conv::Ours => se_kernels::conv2d(x, w, None, options),
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
    kernel_parts();
    plane_kernels();
}

/// The three convolution kernels alone.
fn kernel_parts() {
    println!();
    println!("| input → out, kernel/stride | forward | input grad | weight grad |");
    println!("|---|---|---|---|");
    for ([n, c, h, w], co, k, s) in [
        ([128, 16, 32, 32], 16, 3, 1),
        ([128, 64, 8, 8], 64, 3, 1),
        ([8, 64, 56, 56], 64, 3, 1),
        ([8, 128, 28, 28], 128, 3, 1),
        ([8, 256, 28, 28], 1024, 1, 1),
    ] {
        let g = ConvGeometry::same([n, c, h, w], co, k, s);
        let [oh, ow] = g.output_size();
        let x: Vec<f32> = (0..n * c * h * w).map(|i| (i % 7) as f32 * 0.1).collect();
        let wt: Vec<f32> = (0..co * c * k * k).map(|i| (i % 5) as f32 * 0.1).collect();
        let dy: Vec<f32> = (0..n * co * oh * ow)
            .map(|i| (i % 3) as f32 * 0.1)
            .collect();
        let f = median_ms(7, || {
            std::hint::black_box(cpu::forward(&g, &x, &wt));
        });
        let dx = median_ms(7, || {
            std::hint::black_box(cpu::input_grad(&g, &wt, &dy));
        });
        let dw = median_ms(7, || {
            std::hint::black_box(cpu::weight_grad(&g, &x, &dy));
        });
        println!("| [{n},{c},{h},{w}] → {co}, {k}x{k}/{s} | {f:.1} | {dx:.1} | {dw:.1} |");
    }
}

/// The per-plane kernels on one SE-ResNet-20 map, `[128, 16, 32, 32]`.
fn plane_kernels() {
    use se_kernels::cpu_planes;
    let (planes, plane_len) = (128 * 16, 32 * 32);
    let x: Vec<f32> = (0..planes * plane_len)
        .map(|i| (i % 7) as f32 * 0.1 - 0.3)
        .collect();
    let scale: Vec<f32> = (0..planes).map(|i| (i % 5) as f32 * 0.1).collect();
    let y = cpu_planes::affine(&x, &scale, &scale, Some(&x), true, plane_len);
    let moments = cpu_planes::moments(&x, plane_len);
    let grad = vec![0.5; 2 * planes];
    let times = [
        median_ms(7, || {
            std::hint::black_box(cpu_planes::affine(
                &x, &scale, &scale, None, false, plane_len,
            ));
        }),
        median_ms(7, || {
            std::hint::black_box(cpu_planes::affine(
                &x,
                &scale,
                &scale,
                Some(&x),
                true,
                plane_len,
            ));
        }),
        median_ms(7, || {
            std::hint::black_box(cpu_planes::affine_grad(
                &x, &scale, &y, &x, false, plane_len,
            ));
        }),
        median_ms(7, || {
            std::hint::black_box(cpu_planes::affine_grad(&x, &scale, &y, &x, true, plane_len));
        }),
        median_ms(7, || {
            std::hint::black_box(cpu_planes::moments(&x, plane_len));
        }),
        median_ms(7, || {
            std::hint::black_box(cpu_planes::moments_grad(&x, &moments, &grad, plane_len));
        }),
    ];
    println!(
        "\n| [128,16,32,32] | affine | affine+residual+relu | affine grad | affine+relu grad | moments | moments grad |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!("| ms | {} |", times.map(|t| format!("{t:.2}")).join(" | "));
}
