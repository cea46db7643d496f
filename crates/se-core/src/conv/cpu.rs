//! 2-D convolution on the CPU, forward and both gradients, as im2col + one GEMM per image and
//! group on NCHW `f32` data (Caffe's and PyTorch's `slow_conv2d` scheme).
//!
//! Why not Burn's own (flex) kernels: flex converts every input to NHWC, runs one small GEMM per
//! 512-pixel tile and scatters the result back, and has no backward of its own, so the input
//! gradient runs as a scalar transposed convolution and the weight gradient as a convolution over
//! permuted copies (docs/benchmarks.md has the profile). Here each image's output `[C_out, H'W']`
//! is one GEMM `W [C_out, C_in·k·k] × cols [C_in·k·k, H'W']` written straight into the NCHW
//! output; the input gradient is `Wᵀ × dy` folded back (col2im); the weight gradient
//! `dy × colsᵀ` summed over images. A 1x1 stride-1 convolution needs no im2col at all: the image
//! is its own column matrix.
//!
//! Threads: with at least two images per thread the images run in parallel (one GEMM each, no
//! synchronisation); with fewer (batch-1 inference), the images run in turn and each GEMM and
//! im2col is split across the threads instead.

use rayon::prelude::*;

/// Geometry of one 2-D convolution, NCHW input `[n, c_in, h, w]`, weight
/// `[c_out, c_in / groups, kh, kw]`, output `[n, c_out, oh, ow]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Batch size.
    pub n: usize,
    /// Input channels.
    pub c_in: usize,
    /// Input height and width.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride (height, width).
    pub stride: [usize; 2],
    /// Zero padding on each side (height, width).
    pub padding: [usize; 2],
    /// Dilation (height, width).
    pub dilation: [usize; 2],
    /// Channel groups.
    pub groups: usize,
}

impl ConvGeometry {
    /// Output height and width.
    pub fn output_size(&self) -> [usize; 2] {
        let size = |input: usize, axis: usize| {
            let span = self.dilation[axis] * (self.kernel[axis] - 1) + 1;
            (input + 2 * self.padding[axis] - span) / self.stride[axis] + 1
        };
        [size(self.h, 0), size(self.w, 1)]
    }

    /// Input channels per group.
    fn group_in(&self) -> usize {
        self.c_in / self.groups
    }

    /// Output channels per group.
    fn group_out(&self) -> usize {
        self.c_out / self.groups
    }

    /// Rows of a group's column matrix: `c_in / groups · kh · kw`.
    fn col_rows(&self) -> usize {
        self.group_in() * self.kernel[0] * self.kernel[1]
    }

    /// Output pixels per image, the columns of the column matrix.
    fn out_pixels(&self) -> usize {
        let [oh, ow] = self.output_size();
        oh * ow
    }

    /// A 1x1, stride-1, unpadded convolution: the input planes are the column matrix.
    fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.stride == [1, 1] && self.padding == [0, 0]
    }

    fn check(&self, x: Option<&[f32]>, weight: Option<&[f32]>, grad: Option<&[f32]>) {
        assert!(self.groups > 0 && self.c_in % self.groups == 0 && self.c_out % self.groups == 0);
        if let Some(x) = x {
            assert_eq!(x.len(), self.n * self.c_in * self.h * self.w, "input size");
        }
        if let Some(weight) = weight {
            assert_eq!(weight.len(), self.c_out * self.col_rows(), "weight size");
        }
        if let Some(grad) = grad {
            assert_eq!(
                grad.len(),
                self.n * self.c_out * self.out_pixels(),
                "output size"
            );
        }
    }
}

/// How the work is split across threads.
#[derive(Clone, Copy)]
enum Split {
    /// Images in parallel, each GEMM on one thread.
    Images,
    /// Images in turn, each GEMM and im2col on all threads.
    Within(usize),
}

fn split(images: usize) -> Split {
    let threads = rayon::current_num_threads();
    if threads > 1 && images < 2 * threads {
        Split::Within(threads)
    } else {
        Split::Images
    }
}

/// `y = conv(x, weight)` without bias, `[n, c_out, oh, ow]` row-major.
pub fn forward(geometry: &ConvGeometry, x: &[f32], weight: &[f32]) -> Vec<f32> {
    geometry.check(Some(x), Some(weight), None);
    let g = geometry;
    let (in_image, out_image) = (g.c_in * g.h * g.w, g.c_out * g.out_pixels());
    let mut y = vec![0.0; g.n * out_image];
    let image = |col: &mut Vec<f32>, x: &[f32], y: &mut [f32], split: Split| {
        for group in 0..g.groups {
            let cols = columns(g, x, group, col, split);
            let w = &weight[group * g.group_out() * g.col_rows()..][..g.group_out() * g.col_rows()];
            let y =
                &mut y[group * g.group_out() * g.out_pixels()..][..g.group_out() * g.out_pixels()];
            let w = Mat::row_major(w, g.group_out(), g.col_rows());
            let cols = Mat::row_major(cols, g.col_rows(), g.out_pixels());
            gemm(y, w, cols, false, split);
        }
    };
    match split(g.n) {
        Split::Images => y
            .par_chunks_mut(out_image)
            .zip(x.par_chunks(in_image))
            .for_each_init(Vec::new, |col, (y, x)| image(col, x, y, Split::Images)),
        within => {
            let mut col = Vec::new();
            for (y, x) in y.chunks_mut(out_image).zip(x.chunks(in_image)) {
                image(&mut col, x, y, within);
            }
        }
    }
    y
}

/// The gradient of the input, `[n, c_in, h, w]`, given the output's gradient `dy`.
pub fn input_grad(geometry: &ConvGeometry, weight: &[f32], dy: &[f32]) -> Vec<f32> {
    geometry.check(None, Some(weight), Some(dy));
    let g = geometry;
    let (in_image, out_image) = (g.c_in * g.h * g.w, g.c_out * g.out_pixels());
    let group_in_len = g.group_in() * g.h * g.w;
    let mut dx = vec![0.0; g.n * in_image];
    let image = |col: &mut Vec<f32>, dy: &[f32], dx: &mut [f32], split: Split| {
        for group in 0..g.groups {
            let w = &weight[group * g.group_out() * g.col_rows()..][..g.group_out() * g.col_rows()];
            let dy =
                &dy[group * g.group_out() * g.out_pixels()..][..g.group_out() * g.out_pixels()];
            let dx = &mut dx[group * group_in_len..][..group_in_len];
            // Wᵀ: [col_rows, group_out], read through strides.
            let wt = Mat::row_major(w, g.group_out(), g.col_rows()).transposed();
            let dy = Mat::row_major(dy, g.group_out(), g.out_pixels());
            if g.is_pointwise() {
                gemm(dx, wt, dy, false, split);
            } else {
                col.resize(g.col_rows() * g.out_pixels(), 0.0);
                gemm(col, wt, dy, false, split);
                col_to_image(g, col, dx, split);
            }
        }
    };
    match split(g.n) {
        Split::Images => dx
            .par_chunks_mut(in_image)
            .zip(dy.par_chunks(out_image))
            .for_each_init(Vec::new, |col, (dx, dy)| image(col, dy, dx, Split::Images)),
        within => {
            let mut col = Vec::new();
            for (dx, dy) in dx.chunks_mut(in_image).zip(dy.chunks(out_image)) {
                image(&mut col, dy, dx, within);
            }
        }
    }
    dx
}

/// The gradient of the weight, `[c_out, c_in / groups, kh, kw]`, summed over the batch.
pub fn weight_grad(geometry: &ConvGeometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
    geometry.check(Some(x), None, Some(dy));
    let g = geometry;
    let (in_image, out_image) = (g.c_in * g.h * g.w, g.c_out * g.out_pixels());
    let weight_len = g.c_out * g.col_rows();
    // dw_g += dy_g [group_out, pixels] × cols_gᵀ [pixels, col_rows], accumulated into `dw`.
    let image = |col: &mut Vec<f32>, dw: &mut [f32], x: &[f32], dy: &[f32], split: Split| {
        for group in 0..g.groups {
            let cols = columns(g, x, group, col, split);
            let dy =
                &dy[group * g.group_out() * g.out_pixels()..][..g.group_out() * g.out_pixels()];
            let dw =
                &mut dw[group * g.group_out() * g.col_rows()..][..g.group_out() * g.col_rows()];
            let dy = Mat::row_major(dy, g.group_out(), g.out_pixels());
            let cols_t = Mat::row_major(cols, g.col_rows(), g.out_pixels()).transposed();
            gemm(dw, dy, cols_t, true, split);
        }
    };
    match split(g.n) {
        Split::Images => x
            .par_chunks(in_image)
            .zip(dy.par_chunks(out_image))
            .fold(
                || (vec![0.0; weight_len], Vec::new()),
                |(mut dw, mut col), (x, dy)| {
                    image(&mut col, &mut dw, x, dy, Split::Images);
                    (dw, col)
                },
            )
            .map(|(dw, _)| dw)
            .reduce_with(|mut a, b| {
                a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                a
            })
            .unwrap_or_else(|| vec![0.0; weight_len]),
        within => {
            let (mut dw, mut col) = (vec![0.0; weight_len], Vec::new());
            for (x, dy) in x.chunks(in_image).zip(dy.chunks(out_image)) {
                image(&mut col, &mut dw, x, dy, within);
            }
            dw
        }
    }
}

/// The column matrix `[col_rows, out_pixels]` of one group of one image: row `(c, i, j)` holds
/// input channel `c` sampled at kernel tap `(i, j)` for every output pixel, zero where the tap
/// falls in the padding. A pointwise convolution returns the image's planes themselves.
fn columns<'a>(
    g: &ConvGeometry,
    image: &'a [f32],
    group: usize,
    col: &'a mut Vec<f32>,
    split: Split,
) -> &'a [f32] {
    let planes = &image[group * g.group_in() * g.h * g.w..][..g.group_in() * g.h * g.w];
    if g.is_pointwise() {
        return planes;
    }
    let pixels = g.out_pixels();
    col.resize(g.col_rows() * pixels, 0.0);
    let taps = g.kernel[0] * g.kernel[1];
    let ow = g.output_size()[1];
    let fill = |(row, dst): (usize, &mut [f32])| {
        let (channel, tap) = (row / taps, row % taps);
        let plane = &planes[channel * g.h * g.w..][..g.h * g.w];
        for_each_tap_row(g, tap, |oy, iy, valid, offset| {
            let dst = &mut dst[oy * ow..][..ow];
            let Some(iy) = iy else {
                dst.fill(0.0);
                return;
            };
            let src = &plane[iy * g.w..][..g.w];
            dst[..valid.start].fill(0.0);
            dst[valid.end..].fill(0.0);
            if g.stride[1] == 1 {
                let start = (valid.start as isize + offset) as usize;
                dst[valid.clone()].copy_from_slice(&src[start..start + valid.len()]);
            } else {
                for ox in valid {
                    dst[ox] = src[(ox as isize * g.stride[1] as isize + offset) as usize];
                }
            }
        });
    };
    match split {
        Split::Images => col.chunks_mut(pixels).enumerate().for_each(fill),
        Split::Within(_) => col.par_chunks_mut(pixels).enumerate().for_each(fill),
    }
    col
}

/// The inverse of [`columns`] for gradients: adds each column-matrix row back onto the input
/// plane positions it was sampled from.
fn col_to_image(g: &ConvGeometry, col: &[f32], dx: &mut [f32], split: Split) {
    let pixels = g.out_pixels();
    let taps = g.kernel[0] * g.kernel[1];
    let ow = g.output_size()[1];
    let plane_len = g.h * g.w;
    let fold = |(channel, plane): (usize, &mut [f32])| {
        for tap in 0..taps {
            let row = &col[(channel * taps + tap) * pixels..][..pixels];
            for_each_tap_row(g, tap, |oy, iy, valid, offset| {
                let Some(iy) = iy else { return };
                let src = &row[oy * ow..][..ow];
                let dst = &mut plane[iy * g.w..][..g.w];
                if g.stride[1] == 1 {
                    let start = (valid.start as isize + offset) as usize;
                    let dst = &mut dst[start..start + valid.len()];
                    dst.iter_mut().zip(&src[valid]).for_each(|(d, s)| *d += s);
                } else {
                    for ox in valid {
                        dst[(ox as isize * g.stride[1] as isize + offset) as usize] += src[ox];
                    }
                }
            });
        }
    };
    match split {
        Split::Images => dx.chunks_mut(plane_len).enumerate().for_each(fold),
        Split::Within(_) => dx.par_chunks_mut(plane_len).enumerate().for_each(fold),
    }
}

/// Calls `f(oy, iy, valid, offset)` for every output row of kernel tap `tap` (`i · kw + j`):
/// `iy` is the input row it reads (`None` in the padding), `valid` the output columns whose input
/// column `ox · stride + offset` lies inside the image.
fn for_each_tap_row(
    g: &ConvGeometry,
    tap: usize,
    mut f: impl FnMut(usize, Option<usize>, std::ops::Range<usize>, isize),
) {
    let [oh, ow] = g.output_size();
    let (i, j) = (tap / g.kernel[1], tap % g.kernel[1]);
    let offset = (j * g.dilation[1]) as isize - g.padding[1] as isize;
    let stride = g.stride[1] as isize;
    // First and one-past-last ox with 0 <= ox * stride + offset < w.
    let start = if offset >= 0 {
        0
    } else {
        ((-offset + stride - 1) / stride) as usize
    };
    let end = ((g.w as isize - offset + stride - 1) / stride).clamp(0, ow as isize) as usize;
    let valid = start.min(end)..end;
    for oy in 0..oh {
        let iy = (oy * g.stride[0] + i * g.dilation[0]) as isize - g.padding[0] as isize;
        let iy = (0..g.h as isize).contains(&iy).then_some(iy as usize);
        f(oy, iy, valid.clone(), offset);
    }
}

/// A read-only matrix `rows x cols` stored at `data[r * row_stride + c * col_stride]`.
#[derive(Clone, Copy)]
struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Mat<'a> {
    fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert_eq!(data.len(), rows * cols);
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    fn transposed(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }
}

/// `dst = a × b` (or `dst += a × b` when `accumulate`), `dst` row-major `a.rows x b.cols`.
fn gemm(dst: &mut [f32], a: Mat, b: Mat, accumulate: bool, split: Split) {
    assert_eq!(a.cols, b.rows);
    assert_eq!(dst.len(), a.rows * b.cols);
    for m in [a, b] {
        if m.rows > 0 && m.cols > 0 {
            assert!((m.rows - 1) * m.row_stride + (m.cols - 1) * m.col_stride < m.data.len());
        }
    }
    let parallelism = match split {
        Split::Images => gemm::Parallelism::None,
        Split::Within(threads) => gemm::Parallelism::Rayon(threads),
    };
    // SAFETY: the asserts above keep every index the GEMM reads or writes inside the slices;
    // `dst` is borrowed mutably, so it aliases neither input.
    unsafe {
        gemm::gemm(
            a.rows,
            b.cols,
            a.cols,
            dst.as_mut_ptr(),
            1,
            b.cols as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}
