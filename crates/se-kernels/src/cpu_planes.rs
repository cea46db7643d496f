//! Per-plane kernels on the CPU: the affine map `x · a + b` of every `[H, W]` plane and its
//! gradients, and every plane's mean and variance and their gradient, each one parallel pass
//! over NCHW `f32` data (`planes` = N · C planes of `plane_len` = H · W values).
//!
//! Written with Burn's tensor ops, BatchNorm in training and its backward make about fifteen
//! passes over the map, each single-threaded on flex; here the forward makes two (moments, then
//! the affine map) and the backward two (the affine map's gradients, then the moments').

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// An output buffer of `len` values, not yet initialised: each parallel task zeroes its own
/// chunk with [`zeroed`] (in cache, just before writing it) instead of `vec![0.0; len]`'s serial
/// pass over the whole buffer, which cost 13% of a training step.
pub(crate) fn uninit(len: usize) -> Vec<MaybeUninit<f32>> {
    let mut buffer = Vec::with_capacity(len);
    // SAFETY: `MaybeUninit` values need no initialisation.
    unsafe { buffer.set_len(len) };
    buffer
}

/// Zeroes a chunk of an [`uninit`] buffer and returns it as initialised values.
pub(crate) fn zeroed(chunk: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    chunk.fill(MaybeUninit::new(0.0));
    // SAFETY: every value was just written.
    unsafe { assume_init_mut(chunk) }
}

/// A chunk of an [`uninit`] buffer as the values it holds.
///
/// # Safety
/// Every value of `chunk` must have been initialised.
pub(crate) unsafe fn assume_init_mut(chunk: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: `MaybeUninit<f32>` has `f32`'s layout; the caller vouches for initialisation.
    unsafe { &mut *(chunk as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// An [`uninit`] buffer whose every chunk went through [`zeroed`], as plain values.
///
/// # Safety
/// Every value of `buffer` must have been initialised.
pub(crate) unsafe fn assume_init(buffer: Vec<MaybeUninit<f32>>) -> Vec<f32> {
    let mut buffer = std::mem::ManuallyDrop::new(buffer);
    let (ptr, len, capacity) = (buffer.as_mut_ptr(), buffer.len(), buffer.capacity());
    // SAFETY: same allocation, layout and length; the caller vouches for initialisation.
    unsafe { Vec::from_raw_parts(ptr.cast::<f32>(), len, capacity) }
}

/// Planes per parallel task: enough values that a task is worth scheduling.
pub(crate) fn min_planes(plane_len: usize) -> usize {
    (16 * 1024 / plane_len.max(1)).max(1)
}

/// `y = x · scale + shift (+ residual)`, plane by plane, then `max(y, 0)` if `relu`.
pub fn affine(
    x: &[f32],
    scale: &[f32],
    shift: &[f32],
    residual: Option<&[f32]>,
    relu: bool,
    plane_len: usize,
) -> Vec<f32> {
    check(x, &[scale, shift], plane_len);
    let mut y = uninit(x.len());
    let planes = y
        .par_chunks_mut(plane_len)
        .map(zeroed)
        .zip(x.par_chunks(plane_len))
        .zip(scale.par_iter().zip(shift))
        .with_min_len(min_planes(plane_len));
    // Separate loops rather than branches inside one, so that each vectorises.
    match residual {
        None => planes.for_each(|((y, x), (&a, &b))| {
            if relu {
                y.iter_mut()
                    .zip(x)
                    .for_each(|(y, x)| *y = (x * a + b).max(0.0));
            } else {
                y.iter_mut().zip(x).for_each(|(y, x)| *y = x * a + b);
            }
        }),
        Some(residual) => {
            assert_eq!(residual.len(), x.len(), "residual size");
            planes
                .zip(residual.par_chunks(plane_len))
                .for_each(|(((y, x), (&a, &b)), r)| {
                    let values = y.iter_mut().zip(x).zip(r);
                    if relu {
                        values.for_each(|((y, x), r)| *y = (x * a + b + r).max(0.0));
                    } else {
                        values.for_each(|((y, x), r)| *y = x * a + b + r);
                    }
                })
        }
    }
    // SAFETY: every plane of `y` went through `zeroed`.
    unsafe { assume_init(y) }
}

/// The gradients of [`affine`] given its output `y` (read only with `relu`) and the output's
/// gradient `dy`: `(dx, d_scale, d_shift, dz)`. `dz` is the gradient before the ReLU (`dy`
/// where `y > 0`, the residual's gradient), `None` without the ReLU (it is `dy`); `dx = dz ·
/// scale`; `d_scale` and `d_shift` are the per-plane sums of `dz · x` and `dz`.
pub fn affine_grad(
    x: &[f32],
    scale: &[f32],
    y: &[f32],
    dy: &[f32],
    relu: bool,
    plane_len: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Option<Vec<f32>>) {
    check(x, &[scale], plane_len);
    assert_eq!(dy.len(), x.len());
    let mut dx = uninit(x.len());
    let mut dz = uninit(if relu { x.len() } else { 0 });
    let min_len = min_planes(plane_len);
    // Per plane: dx = dz · a, and the sums of dz · x and dz.
    let plane = |dx: &mut [f32], dz: &[f32], x: &[f32], a: f32| {
        dx.iter_mut().zip(dz).for_each(|(dx, dz)| *dx = dz * a);
        (dot(dz, x), sum(dz))
    };
    let sums: Vec<(f32, f32)> = if relu {
        assert_eq!(y.len(), x.len());
        dx.par_chunks_mut(plane_len)
            .map(zeroed)
            .zip(dz.par_chunks_mut(plane_len).map(zeroed))
            .zip(x.par_chunks(plane_len).zip(scale.par_iter()))
            .zip(dy.par_chunks(plane_len).zip(y.par_chunks(plane_len)))
            .with_min_len(min_len)
            .map(|(((dx, dz), (x, &a)), (dy, y))| {
                for ((dz, dy), y) in dz.iter_mut().zip(dy).zip(y) {
                    // `dy` where `y > 0`, else 0, as a bit mask: a branch here compiles to a
                    // scalar loop that mispredicts on every other sign (16x slower).
                    let keep = ((*y > 0.0) as u32).wrapping_neg();
                    *dz = f32::from_bits(dy.to_bits() & keep);
                }
                plane(dx, dz, x, a)
            })
            .collect()
    } else {
        dx.par_chunks_mut(plane_len)
            .map(zeroed)
            .zip(dy.par_chunks(plane_len))
            .zip(x.par_chunks(plane_len).zip(scale.par_iter()))
            .with_min_len(min_len)
            .map(|((dx, dy), (x, &a))| plane(dx, dy, x, a))
            .collect()
    };
    let (d_scale, d_shift) = sums.into_iter().unzip();
    // SAFETY: every plane of `dx` and `dz` went through `zeroed`.
    let (dx, dz) = unsafe { (assume_init(dx), assume_init(dz)) };
    (dx, d_scale, d_shift, relu.then_some(dz))
}

/// Every plane's mean and biased variance, `[2, planes]` (all means, then all variances). The
/// variance is taken around the plane's own mean (two passes over a plane that is in cache),
/// not as `E[x²] - E[x]²`, which loses precision in `f32` when the mean is large.
pub fn moments(x: &[f32], plane_len: usize) -> Vec<f32> {
    check(x, &[], plane_len);
    let stats: Vec<(f32, f32)> = x
        .par_chunks(plane_len)
        .with_min_len(min_planes(plane_len))
        .map(|x| {
            let mean = sum(x) / plane_len as f32;
            (mean, squares_around(x, mean) / plane_len as f32)
        })
        .collect();
    let (means, vars): (Vec<f32>, Vec<f32>) = stats.into_iter().unzip();
    [means, vars].concat()
}

/// The gradient of `x` given the gradient `grad` (`[2, planes]`) of its [`moments`] (`moments`
/// their values): `(d_mean + 2 (x - mean) d_var) / plane_len`.
pub fn moments_grad(x: &[f32], moments: &[f32], grad: &[f32], plane_len: usize) -> Vec<f32> {
    check(x, &[], plane_len);
    let planes = x.len() / plane_len;
    assert_eq!(moments.len(), 2 * planes);
    assert_eq!(grad.len(), 2 * planes);
    let (means, (d_means, d_vars)) = (&moments[..planes], grad.split_at(planes));
    let mut dx = uninit(x.len());
    let n = plane_len as f32;
    dx.par_chunks_mut(plane_len)
        .map(zeroed)
        .zip(x.par_chunks(plane_len))
        .zip(means.par_iter().zip(d_means.par_iter().zip(d_vars)))
        .with_min_len(min_planes(plane_len))
        .for_each(|((dx, x), (&mean, (&d_mean, &d_var)))| {
            let (a, b) = (2.0 * d_var / n, d_mean / n);
            dx.iter_mut()
                .zip(x)
                .for_each(|(dx, x)| *dx = (x - mean) * a + b);
        });
    // SAFETY: every plane of `dx` went through `zeroed`.
    unsafe { assume_init(dx) }
}

fn check(x: &[f32], per_plane: &[&[f32]], plane_len: usize) {
    assert!(
        plane_len > 0 && x.len().is_multiple_of(plane_len),
        "x is not whole planes"
    );
    for values in per_plane {
        assert_eq!(values.len(), x.len() / plane_len, "one value per plane");
    }
}

/// `Σ f(v)` over `x` in 16 independent lanes, so that it vectorises (a single running `f32` sum
/// has a fixed order the compiler must keep).
fn sum_of(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0.0f32; 16];
    let chunks = x.chunks_exact(16);
    let rest: f32 = chunks.remainder().iter().map(|v| f(*v)).sum();
    for chunk in chunks {
        lanes.iter_mut().zip(chunk).for_each(|(l, v)| *l += f(*v));
    }
    lanes.iter().sum::<f32>() + rest
}

fn sum(x: &[f32]) -> f32 {
    sum_of(x, |v| v)
}

/// `Σ (x - mean)²`.
fn squares_around(x: &[f32], mean: f32) -> f32 {
    sum_of(x, |v| (v - mean) * (v - mean))
}

/// `Σ a·b` in 16 independent lanes (see [`sum_of`]).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let rest: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (a, b) in ca.zip(cb) {
        for i in 0..16 {
            lanes[i] += a[i] * b[i];
        }
    }
    lanes.iter().sum::<f32>() + rest
}
