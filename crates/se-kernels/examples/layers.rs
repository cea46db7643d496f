//! SE-ResNet-50's convolutions one by one at a batch size (default 1), as the inference form
//! runs them (`forward_fused` with a bias and a ReLU): median milliseconds and GFLOP/s of each
//! distinct layer shape, times how often it occurs, and the share of the total, grouped by kind.
//!
//!     cargo run --release -p se-kernels --example layers [batch] [cold]
//!
//! `cold`: each call reads weights and input that are out of every cache (a new copy each
//! call, 64 MiB of copies), as in the network, where a layer's input often comes from memory
//! and its weights always do (100 MB of them). Layers that pack their whole input per thread
//! ran up to 2x slower that way than with everything in cache.

use std::time::Instant;

use se_kernels::cpu_conv::{self as cpu, ConvGeometry, Epilogue};

fn median_ms(mut f: impl FnMut()) -> f64 {
    f();
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 9 || (start.elapsed().as_secs_f64() < 0.3 && times.len() < 200) {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(1, |b| b.parse().expect("batch"));
    let cold = std::env::args().any(|a| a == "cold");
    // (c_in, size, c_out, kernel, stride, how many in the network)
    let mut layers = vec![(3, 224, 64, 7, 2, 1)];
    let mut c_in = 64;
    for (stage, (planes, blocks)) in [(64, 3), (128, 4), (256, 6), (512, 3)]
        .into_iter()
        .enumerate()
    {
        let size = 56 >> stage;
        let (stride, in_size) = if stage == 0 { (1, 56) } else { (2, size * 2) };
        layers.push((c_in, in_size, planes, 1, 1, 1));
        layers.push((planes, in_size, planes, 3, stride, 1));
        layers.push((planes, size, planes * 4, 1, 1, blocks));
        layers.push((c_in, in_size, planes * 4, 1, stride, 1));
        layers.push((planes * 4, size, planes, 1, 1, blocks - 1));
        layers.push((planes, size, planes, 3, 1, blocks - 1));
        c_in = planes * 4;
    }
    println!("| layer (batch {n}) | count | ms each | GFLOP/s | share |");
    println!("|---|---|---|---|---|");
    let mut rows = Vec::new();
    // `SE_LAYERS_KERNEL=7`: only the layers with that kernel size (to profile one kind).
    let only: Option<usize> = std::env::var("SE_LAYERS_KERNEL")
        .ok()
        .map(|k| k.parse().expect("kernel"));
    for (c_in, size, c_out, k, s, count) in layers {
        if only.is_some_and(|only| only != k) {
            continue;
        }
        let g = ConvGeometry::same([n, c_in, size, size], c_out, k, s);
        let [oh, ow] = g.output_size();
        let x: Vec<f32> = (0..n * c_in * size * size)
            .map(|i| (i % 7) as f32 * 0.1)
            .collect();
        let w: Vec<f32> = (0..c_out * c_in * k * k)
            .map(|i| (i % 5) as f32 * 0.01)
            .collect();
        // With `cold`, a new copy of the weights and of the input each call (see the top).
        let copies = |len: usize| if cold { (16 << 20) / len + 1 } else { 1 };
        let ws: Vec<Vec<f32>> = (0..copies(w.len())).map(|_| w.clone()).collect();
        let xs: Vec<Vec<f32>> = (0..copies(x.len())).map(|_| x.clone()).collect();
        let mut call = 0;
        let bias = vec![0.1; c_out];
        let epilogue = Epilogue {
            bias: &bias,
            excitation: None,
            residual: None,
            relu: true,
            plane_means: false,
            input_means: None,
        };
        let ms = median_ms(|| {
            call += 1;
            let (x, w) = (&xs[call % xs.len()], &ws[call % ws.len()]);
            std::hint::black_box(cpu::forward_fused(&g, x, w, epilogue));
        });
        let flop = 2.0 * (n * c_out * oh * ow * c_in * k * k) as f64;
        let name = format!("{c_in}x{size}² → {c_out}, {k}x{k}/{s}");
        rows.push((name, count, ms, flop / ms / 1e6));
    }
    let total: f64 = rows.iter().map(|r| r.1 as f64 * r.2).sum();
    for (name, count, ms, gflops) in &rows {
        let share = 100.0 * *count as f64 * ms / total;
        println!("| {name} | {count} | {ms:.3} | {gflops:.0} | {share:.1}% |");
    }
    println!("| total | | {total:.2} | | |");
}
