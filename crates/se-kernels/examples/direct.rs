//! The 3x3 stride-1 layers of SE-ResNet-20 and SE-ResNet-50 through `cpu_conv::forward`, timed
//! (median milliseconds and GFLOP/s). Run it twice to see what the direct kernel buys over
//! im2col + GEMM:
//!
//!     cargo run --release -p se-kernels --example direct
//!     SE_KERNELS_DIRECT=0 cargo run --release -p se-kernels --example direct

use std::time::Instant;

use se_kernels::cpu_conv::{self as cpu, ConvGeometry};
use se_kernels::cpu_direct::{self, Isa};

fn main() {
    println!(
        "direct kernel: {}, ISA {:?}, {} threads",
        cpu_direct::enabled(),
        Isa::selected(),
        rayon::current_num_threads()
    );
    println!("| input [n, c, h, w] → c_out | ms | GFLOP/s |\n|---|---|---|");
    for [n, c, h] in [
        [1, 16, 32],
        [1, 32, 16],
        [1, 64, 8],
        [32, 16, 32],
        [32, 32, 16],
        [32, 64, 8],
        [1, 64, 56],
        [1, 128, 28],
        [1, 256, 14],
        [1, 512, 7],
        [8, 64, 56],
        [8, 128, 28],
        [8, 256, 14],
    ] {
        let g = ConvGeometry {
            n,
            c_in: c,
            h,
            w: h,
            c_out: c,
            kernel: [3, 3],
            stride: [1, 1],
            padding: [1, 1],
            dilation: [1, 1],
            groups: 1,
        };
        let x: Vec<f32> = (0..n * c * h * h).map(|i| (i % 13) as f32 * 0.1).collect();
        let w: Vec<f32> = (0..c * c * 9).map(|i| (i % 7) as f32 * 0.01).collect();
        // Run on a pool worker, as the models do (`on_cpu_threads`).
        let ms = rayon::scope(|_| {
            let _ = cpu::forward(&g, &x, &w);
            let repeat = (2e9 / (2.0 * (n * c * c * 9 * h * h) as f64)).clamp(5.0, 2000.0) as usize;
            let mut times: Vec<f64> = (0..repeat)
                .map(|_| {
                    let start = Instant::now();
                    std::hint::black_box(cpu::forward(&g, &x, &w));
                    start.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            times.sort_by(f64::total_cmp);
            times[times.len() / 2]
        });
        let gflop = 2.0 * (n * c * c * 9 * h * h) as f64 / 1e9;
        println!(
            "| [{n}, {c}, {h}, {h}] → {c} | {ms:.3} | {:.0} |",
            gflop / ms * 1e3
        );
    }
}
