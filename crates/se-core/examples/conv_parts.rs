//! Times the three CPU convolution kernels (forward, input gradient, weight gradient) alone.
//!
//!     cargo run --release -p se-core --features flex --example conv_parts
use se_core::kernels::cpu_conv::{self as cpu, ConvGeometry};
use std::time::Instant;

fn median_ms(mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..7)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[3]
}

fn main() {
    plane_kernels();
    println!("| input → out, kernel/stride | forward | input grad | weight grad |");
    println!("|---|---|---|---|");
    for ([n, c, h, w], co, k, s) in [
        ([128, 16, 32, 32], 16, 3, 1),
        ([128, 64, 8, 8], 64, 3, 1),
        ([8, 64, 56, 56], 64, 3, 1),
        ([8, 128, 28, 28], 128, 3, 1),
        ([8, 256, 28, 28], 1024, 1, 1),
    ] {
        let g = ConvGeometry {
            n,
            c_in: c,
            h,
            w,
            c_out: co,
            kernel: [k, k],
            stride: [s, s],
            padding: [k / 2, k / 2],
            dilation: [1, 1],
            groups: 1,
        };
        let [oh, ow] = g.output_size();
        let x: Vec<f32> = (0..n * c * h * w).map(|i| (i % 7) as f32 * 0.1).collect();
        let wt: Vec<f32> = (0..co * c * k * k).map(|i| (i % 5) as f32 * 0.1).collect();
        let dy: Vec<f32> = (0..n * co * oh * ow)
            .map(|i| (i % 3) as f32 * 0.1)
            .collect();
        let f = median_ms(|| {
            std::hint::black_box(cpu::forward(&g, &x, &wt));
        });
        let dx = median_ms(|| {
            std::hint::black_box(cpu::input_grad(&g, &wt, &dy));
        });
        let dw = median_ms(|| {
            std::hint::black_box(cpu::weight_grad(&g, &x, &dy));
        });
        println!("| [{n},{c},{h},{w}] → {co}, {k}x{k}/{s} | {f:.1} | {dx:.1} | {dw:.1} |");
    }
}

/// The per-plane kernels on one SE-ResNet-20 map, `[128, 16, 32, 32]`.
fn plane_kernels() {
    use se_core::kernels::cpu_planes;
    let (planes, plane_len) = (128 * 16, 32 * 32);
    let x: Vec<f32> = (0..planes * plane_len)
        .map(|i| (i % 7) as f32 * 0.1 - 0.3)
        .collect();
    let scale: Vec<f32> = (0..planes).map(|i| (i % 5) as f32 * 0.1).collect();
    let y = cpu_planes::affine(&x, &scale, &scale, Some(&x), true, plane_len);
    let moments = cpu_planes::moments(&x, plane_len);
    let grad = vec![0.5; 2 * planes];
    let times = [
        median_ms(|| {
            std::hint::black_box(cpu_planes::affine(
                &x, &scale, &scale, None, false, plane_len,
            ));
        }),
        median_ms(|| {
            std::hint::black_box(cpu_planes::affine(
                &x,
                &scale,
                &scale,
                Some(&x),
                true,
                plane_len,
            ));
        }),
        median_ms(|| {
            std::hint::black_box(cpu_planes::affine_grad(
                &x, &scale, &y, &x, false, plane_len,
            ));
        }),
        median_ms(|| {
            std::hint::black_box(cpu_planes::affine_grad(&x, &scale, &y, &x, true, plane_len));
        }),
        median_ms(|| {
            std::hint::black_box(cpu_planes::moments(&x, plane_len));
        }),
        median_ms(|| {
            std::hint::black_box(cpu_planes::moments_grad(&x, &moments, &grad, plane_len));
        }),
    ];
    println!(
        "\n| [128,16,32,32] | affine | affine+residual+relu | affine grad | affine+relu grad | moments | moments grad |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!("| ms | {} |", times.map(|t| format!("{t:.2}")).join(" | "));
}
