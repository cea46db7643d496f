//! Convolution layers of SE-ResNet-20 and SE-ResNet-50 through `cpu_conv::forward`, timed
//! (median milliseconds and GFLOP/s): the 3x3 stride-1 ones, the stride-2 ones, a 1x1 stride-2
//! shortcut and the 7x7 stem. Run it again with a kernel switched off to see what it buys over
//! im2col + GEMM:
//!
//!     cargo run --release -p se-kernels --example direct
//!     SE_KERNELS_DIRECT=0 cargo run --release -p se-kernels --example direct
//!     SE_KERNELS_CHANNELS_LAST=0 cargo run --release -p se-kernels --example direct
//!     cargo run --release -p se-kernels --example direct -- 1x1/1   # only the rows that match

use std::time::Instant;

use se_kernels::cpu_channels_last;
use se_kernels::cpu_conv::{self as cpu, ConvGeometry};
use se_kernels::cpu_direct::{self, Isa};

fn main() {
    println!(
        "direct 3x3 kernel: {}, channels-last kernel: {}, ISA {:?}, {} threads",
        cpu_direct::enabled(),
        cpu_channels_last::enabled(),
        Isa::selected(),
        rayon::current_num_threads()
    );
    // An argument keeps the rows whose label contains it, e.g. `1x1/1`.
    let filter = std::env::args().nth(1).unwrap_or_default();
    println!("| input [n, c, h, w] → c_out | ms | GFLOP/s |\n|---|---|---|");
    // [n, c_in, h, c_out, kernel, stride]
    for [n, c, h, c_out, k, stride] in [
        [1, 16, 32, 16, 3, 1],
        [1, 32, 16, 32, 3, 1],
        [1, 64, 8, 64, 3, 1],
        [1, 16, 32, 32, 3, 2],
        [1, 32, 16, 64, 3, 2],
        [32, 16, 32, 16, 3, 1],
        [32, 32, 16, 32, 3, 1],
        [32, 64, 8, 64, 3, 1],
        [32, 16, 32, 32, 3, 2],
        [32, 32, 16, 64, 3, 2],
        [32, 32, 16, 64, 1, 2],
        [1, 64, 56, 64, 3, 1],
        [1, 128, 28, 128, 3, 1],
        [1, 256, 14, 256, 3, 1],
        [1, 512, 7, 512, 3, 1],
        [1, 128, 56, 128, 3, 2],
        [1, 256, 28, 256, 3, 2],
        [1, 512, 14, 512, 3, 2],
        // ResNet-50's downsampling shortcuts (1x1 stride 2), batch 1 and 8.
        [1, 256, 56, 512, 1, 2],
        [1, 512, 28, 1024, 1, 2],
        [1, 1024, 14, 2048, 1, 2],
        [8, 256, 56, 512, 1, 2],
        [8, 512, 28, 1024, 1, 2],
        [8, 1024, 14, 2048, 1, 2],
        [1, 3, 224, 64, 7, 2],
        [8, 3, 224, 64, 7, 2],
        [8, 64, 56, 64, 3, 1],
        [8, 128, 28, 128, 3, 1],
        [8, 256, 14, 256, 3, 1],
        [8, 512, 7, 512, 3, 1],
        [8, 128, 56, 128, 3, 2],
        [8, 256, 28, 256, 3, 2],
        [8, 512, 14, 512, 3, 2],
        // ResNet-50's 1x1 layers (im2col-free GEMMs), batch 1 and 8.
        [1, 256, 56, 64, 1, 1],
        [1, 1024, 14, 256, 1, 1],
        [1, 2048, 7, 512, 1, 1],
        [1, 512, 7, 2048, 1, 1],
        [8, 256, 56, 64, 1, 1],
        [8, 64, 56, 256, 1, 1],
        [8, 1024, 14, 256, 1, 1],
        [8, 256, 14, 1024, 1, 1],
        [8, 2048, 7, 512, 1, 1],
        [8, 512, 7, 2048, 1, 1],
    ] {
        let label = format!("[{n}, {c}, {h}, {h}] → {c_out}, {k}x{k}/{stride}");
        if !label.contains(&filter) {
            continue;
        }
        let g = ConvGeometry::same([n, c, h, h], c_out, k, stride);
        let [oh, ow] = g.output_size();
        let macs = n * c * c_out * k * k * oh * ow;
        let x: Vec<f32> = (0..n * c * h * h).map(|i| (i % 13) as f32 * 0.1).collect();
        let w: Vec<f32> = (0..c_out * c * k * k)
            .map(|i| (i % 7) as f32 * 0.01)
            .collect();
        // Run on a pool worker, as the models do (`on_cpu_threads`).
        let ms = rayon::scope(|_| {
            let _ = cpu::forward(&g, &x, &w);
            let repeat = (2e9 / (2.0 * macs as f64)).clamp(5.0, 2000.0) as usize;
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
        let gflop = 2.0 * macs as f64 / 1e9;
        println!("| {label} | {ms:.3} | {:.0} |", gflop / ms * 1e3);
    }
}
