//! 2-D max pooling on NCHW `f32` data, plane by plane: the ImageNet stem's 3x3 stride-2 pool.
//!
//! Why not flex's own: it runs every pool as a 3-D pool with indices (for a backward that
//! inference never takes), one scalar window at a time; on SE-ResNet-50 at batch 8 that was
//! ~5% of the forward pass. Here each output row is two passes: the maximum of the window's
//! input rows, element-wise over a whole row (it vectorises), then the maximum of each window
//! of that row.
//!
//! The output size is Burn's (`(H + 2p - span) / s + 1`, rounded up with `ceil_mode`); a
//! window entirely in the padding gives `-inf`, as Burn's does. A NaN in a window gives NaN,
//! as PyTorch's pool does (Burn's flex keeps it only when it is the window's first value).

use rayon::prelude::*;

use crate::cpu_planes::{assume_init, uninit, zeroed};

/// The window of a 2-D max pool; each array is (height, width).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolWindow {
    /// Kernel size.
    pub kernel: [usize; 2],
    /// Stride.
    pub stride: [usize; 2],
    /// Padding on each side (treated as `-inf`).
    pub padding: [usize; 2],
    /// Dilation.
    pub dilation: [usize; 2],
    /// Round the output size up instead of down.
    pub ceil_mode: bool,
}

impl PoolWindow {
    /// The output size of an `h` x `w` plane.
    pub fn output_size(&self, [h, w]: [usize; 2]) -> [usize; 2] {
        let size = |input: usize, axis: usize| {
            assert!(
                self.kernel[axis] > 0 && self.stride[axis] > 0,
                "pool window"
            );
            let span = self.dilation[axis] * (self.kernel[axis] - 1) + 1;
            let padded = input + 2 * self.padding[axis];
            match padded.checked_sub(span) {
                None => usize::from(self.ceil_mode),
                Some(room) if self.ceil_mode => room.div_ceil(self.stride[axis]) + 1,
                Some(room) => room / self.stride[axis] + 1,
            }
        };
        [size(h, 0), size(w, 1)]
    }

    /// The input indices along `axis` that output index `out` reads (those inside the input).
    fn taps(&self, axis: usize, out: usize, input: usize) -> impl Iterator<Item = usize> + '_ {
        let start = (out * self.stride[axis]) as isize - self.padding[axis] as isize;
        (0..self.kernel[axis])
            .map(move |k| start + (k * self.dilation[axis]) as isize)
            .filter(move |&i| i >= 0 && (i as usize) < input)
            .map(|i| i as usize)
    }
}

/// The larger of `a` and `b`, NaN if `b` is (`a` is the running maximum, NaN already if it was).
#[inline(always)]
fn max_nan(a: f32, b: f32) -> f32 {
    if b > a || b.is_nan() { b } else { a }
}

/// The max pool of every `[h, w]` plane of `x` (`planes · h · w` values), `[planes, oh, ow]`.
pub fn max_pool2d(x: &[f32], planes: usize, [h, w]: [usize; 2], window: &PoolWindow) -> Vec<f32> {
    assert_eq!(x.len(), planes * h * w, "input size");
    let [oh, ow] = window.output_size([h, w]);
    let mut y = uninit(planes * oh * ow);
    if y.is_empty() {
        return Vec::new();
    }
    if h * w == 0 {
        // Windows over nothing but padding (a ceil-mode pool of an empty plane).
        return vec![f32::NEG_INFINITY; y.len()];
    }
    // Output columns' input taps, worked out once for every row.
    let columns: Vec<Vec<usize>> = (0..ow).map(|o| window.taps(1, o, w).collect()).collect();
    let min_planes = (64 * 1024 / (h * w).max(1)).max(1);
    y.par_chunks_mut(oh * ow)
        .zip(x.par_chunks(h * w))
        .with_min_len(min_planes)
        .for_each_init(
            || vec![0.0f32; w],
            |rows_max, (y, x)| {
                let y = zeroed(y);
                for (out_row, y) in y.chunks_mut(ow).enumerate() {
                    rows_max.fill(f32::NEG_INFINITY);
                    for row in window.taps(0, out_row, h) {
                        let x = &x[row * w..(row + 1) * w];
                        rows_max
                            .iter_mut()
                            .zip(x)
                            .for_each(|(m, &v)| *m = max_nan(*m, v));
                    }
                    for (y, taps) in y.iter_mut().zip(&columns) {
                        *y = taps
                            .iter()
                            .fold(f32::NEG_INFINITY, |m, &i| max_nan(m, rows_max[i]));
                    }
                }
            },
        );
    // SAFETY: every chunk went through `zeroed`, then was written.
    unsafe { assume_init(y) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEM: PoolWindow = PoolWindow {
        kernel: [3, 3],
        stride: [2, 2],
        padding: [1, 1],
        dilation: [1, 1],
        ceil_mode: false,
    };

    #[test]
    fn the_stem_pool_of_a_small_plane() {
        // 4x5 plane 0..20: windows centred on (0,0), (0,2), (0,4), (2,0), (2,2), (2,4).
        let x: Vec<f32> = (0..20).map(|v| v as f32).collect();
        assert_eq!(STEM.output_size([4, 5]), [2, 3]);
        let y = max_pool2d(&x, 1, [4, 5], &STEM);
        assert_eq!(y, vec![6.0, 8.0, 9.0, 16.0, 18.0, 19.0]);
    }

    #[test]
    fn padding_counts_as_minus_infinity_and_nan_propagates() {
        // Two 2x2 planes, one window each covering the whole plane (and the padding).
        let x = [1.0, f32::NAN, 3.0, 4.0, -1.0, -2.0, -3.0, -4.0];
        let y = max_pool2d(&x, 2, [2, 2], &STEM);
        assert!(y[0].is_nan(), "a NaN anywhere in the window: {y:?}");
        assert_eq!(y[1], -1.0, "padding never wins over a negative value");
        // 1x1 windows at stride 2 from (-1, -1): three of the four lie in the padding.
        let sparse = PoolWindow {
            kernel: [1, 1],
            ..STEM
        };
        let y = max_pool2d(&x[4..], 1, [2, 2], &sparse);
        let inf = f32::NEG_INFINITY;
        assert_eq!(y, vec![inf, inf, inf, -4.0]);
        // Empty planes: no output, or one all-padding window each in ceil mode.
        assert_eq!(max_pool2d(&[], 2, [0, 0], &STEM), Vec::<f32>::new());
        let ceil = PoolWindow {
            ceil_mode: true,
            ..STEM
        };
        assert_eq!(max_pool2d(&[], 2, [0, 0], &ceil), vec![inf, inf]);
    }

    #[test]
    fn ceil_mode_and_dilation_set_the_output_size_as_burn_does() {
        let ceil = PoolWindow {
            padding: [0, 0],
            ceil_mode: true,
            ..STEM
        };
        assert_eq!(ceil.output_size([112, 112]), [56, 56]);
        assert_eq!(ceil.output_size([6, 7]), [3, 3]);
        assert_eq!(STEM.output_size([112, 112]), [56, 56]);
        let dilated = PoolWindow {
            dilation: [2, 2],
            padding: [0, 0],
            stride: [1, 1],
            ..STEM
        };
        assert_eq!(dilated.output_size([5, 6]), [1, 2]);
        let x: Vec<f32> = (0..30).map(|v| ((v * 7) % 11) as f32).collect();
        // Windows: rows {0, 2, 4}, columns {0, 2, 4} and {1, 3, 5}.
        let at = |r: usize, c: usize| x[r * 6 + c];
        let expect = |c0: usize| {
            let mut m = f32::NEG_INFINITY;
            for r in [0, 2, 4] {
                for c in [c0, c0 + 2, c0 + 4] {
                    m = m.max(at(r, c));
                }
            }
            m
        };
        assert_eq!(
            max_pool2d(&x, 1, [5, 6], &dilated),
            vec![expect(0), expect(1)]
        );
    }
}
