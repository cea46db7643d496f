//! Times the three CPU convolution kernels (forward, input gradient, weight gradient) alone.
//!
//!     cargo run --release -p se-core --features flex --example conv_parts
use se_core::conv::cpu::{self, ConvGeometry};
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
    gemm_probe();
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

#[allow(dead_code)]
pub fn gemm_probe() {
    // dst[m, n] (+)= a[m, k] b[k, n], timed for a few layouts of the weight-gradient shape.
    let (m, n, k) = (16usize, 144usize, 1024usize);
    let a: Vec<f32> = vec![0.5; m * k];
    let b: Vec<f32> = vec![0.25; k * n];
    let mut dst = vec![0.0f32; m * n];
    let reps = 128;
    for (name, dst_cs, dst_rs, a_cs, a_rs, b_cs, b_rs) in [
        // dw[co, K] row-major = dy[co, P] × colᵀ (col row-major [K, P]: colᵀ(p, kk) at kk*P + p)
        (
            "dst row-major, colT strided",
            1isize,
            n as isize,
            1isize,
            k as isize,
            k as isize,
            1isize,
        ),
        // same, dst column-major view
        ("dst col-major", m as isize, 1, 1, k as isize, k as isize, 1),
    ] {
        let t = median_ms(|| {
            for _ in 0..reps {
                unsafe {
                    gemm::gemm(
                        m,
                        n,
                        k,
                        dst.as_mut_ptr(),
                        dst_cs,
                        dst_rs,
                        true,
                        a.as_ptr(),
                        a_cs,
                        a_rs,
                        b.as_ptr(),
                        b_cs,
                        b_rs,
                        1.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
            }
        });
        println!(
            "{name}: {:.3} ms per gemm, {:.1} GFLOP/s",
            t / reps as f64,
            (2 * m * n * k * reps) as f64 / t / 1e6
        );
    }
}
