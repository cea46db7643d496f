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
//! synchronisation); with fewer (batch-1 inference), the images run in turn and each im2col and
//! GEMM is split across the threads instead (the GEMM in bands of output rows).
//!
//! Column matrices live in a per-thread buffer kept between calls; output buffers are allocated
//! uninitialised and zeroed (or, by the GEMM and the direct kernel, stored) chunk by chunk
//! inside the parallel loops that compute them, never in a pass of their own (see
//! `cpu_planes::uninit`).

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::LocalKey;

use rayon::prelude::*;

use super::cpu_channels_last::{self as channels_last, Plan};
use super::cpu_direct::{self as direct, Isa};
use super::cpu_planes::{assume_init, assume_init_mut, uninit, zeroed};
use super::simd::widest;
use crate::CpuExcitation;

/// Geometry of one 2-D convolution, NCHW input `[n, c_in, h, w]`, weight
/// `[c_out, c_in / groups, kh, kw]`, output `[n, c_out, oh, ow]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Batch size.
    pub n: usize,
    /// Input channels.
    pub c_in: usize,
    /// Input height.
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
    /// An ungrouped, undilated `kernel x kernel` convolution with stride `stride` and padding
    /// `kernel / 2` (ResNets' "same" padding) on `[n, c_in, h, w]`.
    pub fn same([n, c_in, h, w]: [usize; 4], c_out: usize, kernel: usize, stride: usize) -> Self {
        Self {
            n,
            c_in,
            h,
            w,
            c_out,
            kernel: [kernel, kernel],
            stride: [stride, stride],
            padding: [kernel / 2, kernel / 2],
            dilation: [1, 1],
            groups: 1,
        }
    }

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
        assert!(
            self.groups > 0
                && self.c_in.is_multiple_of(self.groups)
                && self.c_out.is_multiple_of(self.groups)
        );
        for (axis, input) in [self.h, self.w].into_iter().enumerate() {
            let span = self.dilation[axis] * (self.kernel[axis] - 1) + 1;
            assert!(
                input + 2 * self.padding[axis] >= span && self.stride[axis] > 0,
                "a {:?} kernel does not fit a {}x{} input padded by {:?}",
                self.kernel,
                self.h,
                self.w,
                self.padding
            );
        }
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
    if splits_within(images) {
        Split::Within(threads)
    } else {
        Split::Images
    }
}

/// Whether a batch of `images` runs its images in turn, each split across the threads (too few
/// images to give every thread two), rather than the images in parallel.
pub(crate) fn splits_within(images: usize) -> bool {
    let threads = rayon::current_num_threads();
    threads > 1 && images < 2 * threads
}

/// Largest input image (values) whose direct-kernel layer, where the work within an image is
/// split over the threads (batch 1), has every thread border the whole input for itself and go
/// on to its blocks: the one join between a shared border and the blocks cost ResNet-20 and
/// SE-ResNet-20 at batch 1 ~12% of their inference (with the copies: ×0.87–0.90, 1,373–1,471 of
/// 1,500 passes faster, measured pass by pass with a toggle), where a second copy of 64 KB is
/// a few microseconds. 32K values hold each of their layers (16 x 32², 32 x 16², 64 x 8²);
/// SE-ResNet-50's (from 256 x 14²) gained nothing from it at batch 1 (×0.999, ×0.998).
const OWN_BORDER_MAX: usize = 32 * 1024;

/// `y = conv(x, weight)` without bias, `[n, c_out, oh, ow]` row-major.
pub fn forward(geometry: &ConvGeometry, x: &[f32], weight: &[f32]) -> Vec<f32> {
    convolve(geometry, x, weight, None)
}

/// What a convolution does to each band of its output while the GEMM has just written it (in
/// cache), instead of in passes of its own: `relu(y + bias[c] + residual)`; with an SE
/// module's excitation, `relu(e[c] · (y + bias[c]) + residual)`, where `e` is each image's
/// channel weights from its plane means, applied as soon as that image is done (while it is
/// still in cache, where a pass over the whole batch would read it back from memory). The
/// inference form of a network runs every BatchNorm folded into its convolution this way (see
/// se-core's `BatchNorm2d::fold_into`).
#[derive(Clone, Copy, Debug)]
pub struct Epilogue<'a> {
    /// Added to every plane of output channel `c`, `[c_out]`.
    pub bias: &'a [f32],
    /// Scales each image's planes by the channel weights of their means (after the bias).
    pub excitation: Option<CpuExcitation<'a>>,
    /// Added after the bias and the scaling, `[n, c_out, oh, ow]`.
    pub residual: Option<&'a [f32]>,
    /// Ends with a ReLU.
    pub relu: bool,
    /// Takes the mean of every finished plane (an SE module's squeeze; with an excitation,
    /// before its scaling).
    pub plane_means: bool,
    /// The mean of every input plane, `[n, c_in]`, if known (the layer before took them in
    /// its epilogue). A pointwise layer is linear per pixel, so its output means are
    /// `weight · input_means + bias` before it runs: with an excitation, each image's channel
    /// weights come first and the scaling, residual and ReLU ride on the epilogue of each
    /// band, not on a pass over the image of their own (where [`excites_first`]). Other
    /// layers ignore them.
    pub input_means: Option<&'a [f32]>,
}

/// `relu(e · (conv(x, weight) + bias) + residual)` as [`Epilogue`] says, `[n, c_out, oh, ow]`,
/// and the mean of every output plane, `[n, c_out]`, if it asks for them (zeros otherwise).
pub fn forward_fused(
    geometry: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    epilogue: Epilogue,
) -> (Vec<f32>, Vec<f32>) {
    let g = geometry;
    assert_eq!(epilogue.bias.len(), g.c_out, "bias size");
    if let Some(residual) = epilogue.residual {
        assert_eq!(
            residual.len(),
            g.n * g.c_out * g.out_pixels(),
            "residual size"
        );
    }
    if let Some(excitation) = epilogue.excitation {
        excitation.check(g.c_out);
    }
    if let Some(means) = epilogue.input_means {
        assert_eq!(means.len(), g.n * g.c_in, "input means size");
    }
    // Each output plane is finished by exactly one band of one GEMM, so each mean is stored
    // once; atomics only make that visible to safe code across the threads.
    let means: Vec<AtomicU32> = (0..g.n * g.c_out).map(|_| AtomicU32::new(0)).collect();
    let y = convolve(g, x, weight, Some((epilogue, &means)));
    let means = means
        .into_iter()
        .map(|m| f32::from_bits(m.into_inner()))
        .collect();
    (y, means)
}

/// The forward pass, with the epilogue (and where to put the plane means) if given: the 3x3
/// layers `cpu_direct::applies` takes (stride 1, narrow stride 2) by the direct kernel, other
/// ungrouped layers with a spatial kernel and enough output pixels by the channels-last kernel
/// (`cpu_channels_last::applies`), the rest (1x1 layers among them) as im2col + GEMM.
fn convolve(
    g: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    epilogue: Option<(Epilogue, &[AtomicU32])>,
) -> Vec<f32> {
    g.check(Some(x), Some(weight), None);
    let (in_image, out_image) = (g.c_in * g.h * g.w, g.c_out * g.out_pixels());
    let pixels = g.out_pixels();
    let direct = direct::applies(g).then(Isa::selected);
    let plan = channels_last::applies(g).then(|| Plan::new(g, Isa::selected(), weight));
    // An SE layer whose channel weights come before its convolution (`Epilogue::input_means`).
    let excite_first = epilogue
        .and_then(|(e, _)| Some((e.excitation?, e.input_means?, e.bias)))
        .filter(|_| excites_first(g));
    // Each path initialises the whole output: the direct and channels-last kernels zero each
    // band inside their parallel loop, saving a pass over the threads (a fork-join) per layer.
    let convolve_image = image_fn(|col, image, x, y, split| {
        // The image's channel weights, where they come first: from its output means, which
        // are also the plane means asked for.
        let weights = excite_first.map(|(excitation, input_means, bias)| {
            let input_means = block(input_means, image, g.c_in);
            let output_means = pointwise_means(weight, bias, input_means);
            if let Some((_, means)) = epilogue {
                let means = &means[image * g.c_out..][..g.c_out];
                for (slot, m) in means.iter().zip(&output_means) {
                    slot.store(m.to_bits(), Ordering::Relaxed);
                }
            }
            excitation.weights(&output_means)
        });
        // Channels `first..` of `group`'s output, just computed (`band`: their planes): the
        // epilogue, plane by plane, while they are in cache.
        let finish = |group: usize, first: usize, band: &mut [f32]| {
            let Some((epilogue, means)) = epilogue else {
                return;
            };
            let first = image * g.c_out + group * g.group_out() + first;
            // With an excitation the residual and the ReLU wait for the image's scaling,
            // unless its weights came first.
            let (residual, relu) = match (epilogue.excitation, &weights) {
                (Some(_), None) => (None, false),
                _ => (epilogue.residual, epilogue.relu),
            };
            let take_means =
                weights.is_none() && (epilogue.plane_means || epilogue.excitation.is_some());
            for (row, plane) in band.chunks_mut(pixels).enumerate() {
                let index = first + row; // image · c_out + channel
                let bias = epilogue.bias[index % g.c_out];
                let residual = residual.map(|r| block(r, index, pixels));
                // `e · (y + bias)` as `y · e + e · bias`.
                let (scale, bias) = match &weights {
                    Some(weights) => {
                        let e = weights[index % g.c_out];
                        (e, e * bias)
                    }
                    None => (1.0, bias),
                };
                finish_plane(plane, scale, bias, residual, relu);
                if take_means {
                    means[index].store(mean(plane).to_bits(), Ordering::Relaxed);
                }
            }
        };
        if let Some(isa) = direct {
            // Each block of output channels of each group is one task: grouped layers at
            // batch 1 spread over the threads too.
            let bands: Vec<(usize, usize, &mut [MaybeUninit<f32>])> = y
                .chunks_mut(g.group_out() * pixels)
                .enumerate()
                .flat_map(|(group, y)| {
                    let bands = y.chunks_mut(direct::OUT_BLOCK * pixels).enumerate();
                    bands.map(move |(b, band)| (group, b, band))
                })
                .collect();
            // One block: the image's layer on this thread.
            let split = match split {
                Split::Within(_) if bands.len() < direct::MIN_PARALLEL_BLOCKS => Split::Images,
                split => split,
            };
            // No zeroing first: `direct::block` stores every value of its band.
            let channels =
                |padded: &[f32], (group, b, band): (usize, usize, &mut [MaybeUninit<f32>])| {
                    let input = block(padded, group, padded.len() / g.groups);
                    let filters = band.len() / pixels;
                    let first = group * g.group_out() + b * direct::OUT_BLOCK;
                    let weights = &weight[first * g.col_rows()..][..filters * g.col_rows()];
                    let band = with_buffer(&TILES, |tiles| {
                        direct::block(isa, g, input, weights, band, tiles)
                    });
                    finish(group, b * direct::OUT_BLOCK, band);
                };
            match split {
                Split::Images => {
                    direct::border(isa, g, x, col, false);
                    bands.into_iter().for_each(|band| channels(col, band));
                }
                // A small input: each thread borders all of it into its own buffer and goes
                // on to its share of the blocks, one parallel region per layer rather than two
                // (see `OWN_BORDER_MAX`).
                Split::Within(threads) if x.len() <= OWN_BORDER_MAX => {
                    let per_thread = bands.len().div_ceil(threads);
                    bands.into_par_iter().chunks(per_thread).for_each(|bands| {
                        with_buffer(&PADDED, |padded| {
                            direct::border(isa, g, x, padded, false);
                            bands.into_iter().for_each(|band| channels(padded, band));
                        })
                    });
                }
                // Every group's input bordered at once, across the threads.
                Split::Within(_) => {
                    direct::border(isa, g, x, col, true);
                    let padded = col.as_slice();
                    bands
                        .into_par_iter()
                        .for_each(|band| channels(padded, band));
                }
            }
            // SAFETY: every band of `y` went through `direct::block`, which stores every value.
            return unsafe { assume_init_mut(y) };
        }
        if let Some(plan) = &plan {
            let parallel = matches!(split, Split::Within(_));
            channels_last::channels_last(plan.isa, g, x, col, parallel);
            let input = col.as_slice();
            with_buffer(&BLOCKED, |out| {
                // Grown, never cleared: `compute` stores every value before it is read.
                if out.len() < plan.output_len() {
                    out.resize(plan.output_len(), 0.0);
                }
                let out = &mut out[..plan.output_len()];
                match split {
                    Split::Images => plan.compute(input, 0..plan.units(), out),
                    Split::Within(threads) => {
                        // Two parts of the units per thread, in order: a part reads the
                        // weights of the channel blocks it covers once each.
                        let per_part = plan.units().div_ceil(2 * threads);
                        out.par_chunks_mut(per_part * plan.unit_len())
                            .enumerate()
                            .for_each(|(part, out)| {
                                let first = part * per_part;
                                let units = first..first + out.len() / plan.unit_len();
                                plan.compute(input, units, out)
                            });
                    }
                }
                // Back to NCHW, 16 channels at a time, each band finished while in cache.
                let out = &*out;
                let band = |(b, band): (usize, &mut [MaybeUninit<f32>])| {
                    let band = zeroed(band);
                    plan.planes(out, b * 16, band);
                    finish(0, b * 16, band);
                };
                match split {
                    Split::Images => y.chunks_mut(16 * pixels).enumerate().for_each(band),
                    Split::Within(_) => y.par_chunks_mut(16 * pixels).enumerate().for_each(band),
                }
            });
            // SAFETY: every band of `y` went through `zeroed`.
            return unsafe { assume_init_mut(y) };
        }
        for group in 0..g.groups {
            let y = block_mut(y, group, g.group_out() * pixels);
            let cols = columns(g, x, group, col, split);
            let w = block(weight, group, g.group_out() * g.col_rows());
            let w = Mat::row_major(w, g.group_out(), g.col_rows());
            let cols = Mat::row_major(cols, g.col_rows(), pixels);
            let finish = |first: usize, band: &mut [f32]| finish(group, first, band);
            // Plane means need each plane whole in one band (see `gemm_then`).
            let later = !epilogue.is_some_and(|(e, _)| e.plane_means || e.excitation.is_some());
            gemm_then(y, w, cols, split, &finish, later);
        }
        // SAFETY: `gemm_then` stored every value of every group's block of `y`.
        unsafe { assume_init_mut(y) }
    });
    each_image(x, in_image, out_image, |col, image, x, y, split| {
        let y = convolve_image(col, image, x, y, split);
        if let Some((
            Epilogue {
                excitation: Some(excitation),
                residual,
                relu,
                ..
            },
            means,
        )) = epilogue
            && excite_first.is_none()
        {
            let means: Vec<f32> = means[image * g.c_out..][..g.c_out]
                .iter()
                .map(|m| f32::from_bits(m.load(Ordering::Relaxed)))
                .collect();
            let weights = excitation.weights(&means);
            let residual = residual.map(|r| block(r, image, out_image));
            scale_planes(y, &weights, residual, relu, split);
        }
        y
    })
}

/// `plane = relu(plane · weight + residual)` for every plane of one image in place, one weight
/// per plane: the excitation's scaling, the residual addition and the ReLU of an SE block.
fn scale_planes(
    y: &mut [f32],
    weights: &[f32],
    residual: Option<&[f32]>,
    relu: bool,
    split: Split,
) {
    let pixels = y.len() / weights.len();
    let plane = |(c, plane): (usize, &mut [f32])| {
        finish_plane(
            plane,
            weights[c],
            0.0,
            residual.map(|r| block(r, c, pixels)),
            relu,
        )
    };
    match split {
        Split::Images => y.chunks_mut(pixels).enumerate().for_each(plane),
        // One run of planes per thread: under `cpu_planes::min_planes`' grain, SE-ResNet-20's
        // maps at batch 1 (16K values) ran on one thread. Split, ×0.974–0.983 of its inference
        // (pass by pass with a toggle, once its layers ran in one parallel region each);
        // SE-ResNet-50 ×1.002.
        Split::Within(threads) => {
            let per_thread = weights.len().div_ceil(threads);
            let parts = y.par_chunks_mut(per_thread * pixels).enumerate();
            parts.for_each(|(part, planes)| {
                let first = part * per_thread;
                let planes = planes.chunks_mut(pixels).enumerate();
                planes.for_each(|(c, values)| plane((first + c, values)))
            })
        }
    }
}

/// `plane = relu(plane · scale + bias + residual)` in place: a convolution's epilogue (a scale
/// of 1) or an SE block's scaling (a bias of 0), as `v · scale + (bias + residual)`, so that
/// either rounds as its own form would (`· 1` and `0 +` are exact). One loop for each case, the
/// ReLU in the same pass (in a loop of its own it cost SE-ResNet-20 and ResNet-20 ~1.5% of
/// their inference time), compiled for the widest ISA (the baseline's 4 lanes cost them ~2%;
/// docs/benchmarks.md, session 20).
fn finish_plane(plane: &mut [f32], scale: f32, bias: f32, residual: Option<&[f32]>, relu: bool) {
    widest(|| {
        let values = plane.iter_mut();
        match (residual, relu) {
            (Some(residual), true) => values
                .zip(residual)
                .for_each(|(v, r)| *v = (*v * scale + (bias + r)).max(0.0)),
            (Some(residual), false) => values
                .zip(residual)
                .for_each(|(v, r)| *v = *v * scale + (bias + r)),
            (None, true) => values.for_each(|v| *v = (*v * scale + bias).max(0.0)),
            (None, false) => values.for_each(|v| *v = *v * scale + bias),
        }
    })
}

/// Whether an SE layer given its input's plane means (`Epilogue::input_means`) takes its
/// channel weights from them before it runs: a pointwise layer (a bottleneck's last), whose
/// output means are `weight · input_means + bias`, where those `c_in` multiply-adds per
/// output plane cost less than the plane's pass they save (`c_in ≤ pixels`: SE-ResNet-50's
/// first two stages). SE-ResNet-50, pass by pass against the scaling pass (AMD EPYC, AVX-512):
/// ×0.992–0.997 at batch 1, ×0.995–1.005 at 8; with its last two stages too, ×1.003 at 1.
fn excites_first(g: &ConvGeometry) -> bool {
    g.is_pointwise() && g.groups == 1 && g.c_in <= g.out_pixels()
}

/// The plane means of a pointwise layer's output, `weight · input_means + bias` (`weight`
/// `[c_out, c_in]`), each a dot product in eight lanes (on the widest ISA).
fn pointwise_means(weight: &[f32], bias: &[f32], input_means: &[f32]) -> Vec<f32> {
    widest(|| {
        let rows = weight.chunks_exact(input_means.len());
        let dot = |row: &[f32]| {
            let mut lanes = [0.0f32; 8];
            let (chunks, means) = (row.chunks_exact(8), input_means.chunks_exact(8));
            let tail: f32 = (chunks.remainder().iter())
                .zip(means.remainder())
                .map(|(w, m)| w * m)
                .sum();
            for (w, m) in chunks.zip(means) {
                (lanes.iter_mut().zip(w).zip(m)).for_each(|((l, w), m)| *l += w * m);
            }
            lanes.iter().sum::<f32>() + tail
        };
        rows.zip(bias).map(|(row, b)| dot(row) + b).collect()
    })
}

/// The mean of `values`, summed in eight lanes so that the loop vectorises (on the widest ISA).
fn mean(values: &[f32]) -> f32 {
    widest(|| {
        let mut lanes = [0.0f32; 8];
        let chunks = values.chunks_exact(8);
        let tail: f32 = chunks.remainder().iter().sum();
        for chunk in chunks {
            lanes.iter_mut().zip(chunk).for_each(|(l, v)| *l += v);
        }
        (lanes.iter().sum::<f32>() + tail) / values.len() as f32
    })
}

/// The gradient of the input, `[n, c_in, h, w]`, given the output's gradient `dy`.
pub fn input_grad(geometry: &ConvGeometry, weight: &[f32], dy: &[f32]) -> Vec<f32> {
    geometry.check(None, Some(weight), Some(dy));
    let g = geometry;
    // A 3x3 stride-1 "same" convolution's input gradient is the same kind of convolution of
    // `dy`, with the kernel flipped and its channel axes swapped: the direct kernel runs it,
    // on planes at least 8 wide. On narrower ones flipping the weights on every call costs
    // what the kernel saves (ResNet-50's 512x7² layer: 2x slower than im2col + GEMM at batch
    // 1, 1.1x at 8, even at 16).
    let transposed = ConvGeometry {
        c_in: g.c_out,
        c_out: g.c_in,
        ..g.clone()
    };
    let flip_pays = g.w >= 8;
    if g.stride == [1, 1] && flip_pays && direct::applies(g) && direct::applies(&transposed) {
        return convolve(&transposed, dy, &flipped_transpose(g, weight), None);
    }
    let (in_image, out_image) = (g.c_in * g.h * g.w, g.c_out * g.out_pixels());
    each_image(dy, out_image, in_image, |col, _, dy, dx, split| {
        let dx = zero_image(dx, split);
        for group in 0..g.groups {
            let w = block(weight, group, g.group_out() * g.col_rows());
            let dy = block(dy, group, g.group_out() * g.out_pixels());
            let dx = block_mut(dx, group, g.group_in() * g.h * g.w);
            // Wᵀ: [col_rows, group_out], read through strides.
            let wt = Mat::row_major(w, g.group_out(), g.col_rows()).transposed();
            let dy = Mat::row_major(dy, g.group_out(), g.out_pixels());
            if g.is_pointwise() {
                gemm(dx, wt, dy, false, split);
            } else {
                col.resize(g.col_rows() * g.out_pixels(), 0.0);
                gemm(col, wt, dy, false, split);
                col_to_image(g, col.as_mut_slice(), dx, split);
            }
        }
        dx
    })
}

/// A 3x3 kernel `[c_out, c_in / groups, 3, 3]` as `[c_in, c_out / groups, 3, 3]`, each group's
/// input and output channels swapped and every 3x3 filter turned by 180°.
fn flipped_transpose(g: &ConvGeometry, weight: &[f32]) -> Vec<f32> {
    let (group_in, group_out) = (g.group_in(), g.group_out());
    let mut flipped = vec![0.0; weight.len()];
    for (co, filters) in weight.chunks(group_in * 9).enumerate() {
        let (group, co_local) = (co / group_out, co % group_out);
        for (ci_local, filter) in filters.chunks(9).enumerate() {
            let ci = group * group_in + ci_local;
            let dst = &mut flipped[(ci * group_out + co_local) * 9..][..9];
            dst.iter_mut()
                .zip(filter.iter().rev())
                .for_each(|(d, s)| *d = *s);
        }
    }
    flipped
}

/// A new buffer of one `output_image` per image of `input` (`input_image` values each), filled
/// by `image(scratch, index, input, output, split)` on each image's input and uninitialised
/// output, which it returns initialised (zeroed with [`zero_image`] or band by band inside its
/// own parallel loops): the images in parallel, or in turn with the work inside each split
/// across the threads (see [`split`]).
fn each_image(
    input: &[f32],
    input_image: usize,
    output_image: usize,
    image: impl for<'y> Fn(
        &mut Vec<f32>,
        usize,
        &[f32],
        &'y mut [MaybeUninit<f32>],
        Split,
    ) -> &'y mut [f32]
    + Sync,
) -> Vec<f32> {
    let images = input.len() / input_image;
    let mut output = uninit(images * output_image);
    let run = |col: &mut Vec<f32>, index, input, out: &mut [MaybeUninit<f32>], split| {
        let (start, len) = (out.as_ptr() as usize, out.len());
        let out = image(col, index, input, out, split);
        // The same values as initialised `f32`s: all of them were written.
        assert!(out.as_ptr() as usize == start && out.len() == len);
    };
    match split(images) {
        Split::Images => output
            .par_chunks_mut(output_image)
            .zip(input.par_chunks(input_image))
            .enumerate()
            .for_each(|(index, (out, input))| {
                with_scratch(|col| run(col, index, input, out, Split::Images))
            }),
        within => with_scratch(|col| {
            let images = output
                .chunks_mut(output_image)
                .zip(input.chunks(input_image));
            for (index, (out, input)) in images.enumerate() {
                run(col, index, input, out, within);
            }
        }),
    }
    // SAFETY: `run` checked that `image` returned each image's output as `&mut [f32]`, whose
    // values are initialised.
    unsafe { assume_init(output) }
}

/// `f` as [`each_image`]'s image function: the signature a closure cannot spell (its output
/// borrows from its uninitialised output argument).
fn image_fn<F>(f: F) -> F
where
    F: for<'y> Fn(&mut Vec<f32>, usize, &[f32], &'y mut [MaybeUninit<f32>], Split) -> &'y mut [f32],
{
    f
}

/// One image's output zeroed, across the threads when the work within an image is split: on
/// the calling thread alone, the zeroing of every layer's output was ~4% of SE-ResNet-50's
/// batch-1 forward pass.
fn zero_image(out: &mut [MaybeUninit<f32>], split: Split) -> &mut [f32] {
    match split {
        Split::Images => zeroed(out),
        Split::Within(_) => {
            out.par_chunks_mut(1 << 16).for_each(|chunk| {
                zeroed(chunk);
            });
            // SAFETY: every chunk of `out` was just zeroed.
            unsafe { assume_init_mut(out) }
        }
    }
}

/// Block `index` of `slice` cut into blocks of `len` (a group's weights or channels).
fn block(slice: &[f32], index: usize, len: usize) -> &[f32] {
    &slice[index * len..][..len]
}

/// [`block`], mutable.
fn block_mut<T>(slice: &mut [T], index: usize, len: usize) -> &mut [T] {
    &mut slice[index * len..][..len]
}

/// The gradient of the weight, `[c_out, c_in / groups, kh, kw]`, summed over the batch.
pub fn weight_grad(geometry: &ConvGeometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
    geometry.check(Some(x), None, Some(dy));
    let g = geometry;
    let (in_image, out_image) = (g.c_in * g.h * g.w, g.c_out * g.out_pixels());
    let weight_len = g.c_out * g.col_rows();
    let group_len = g.group_out() * g.col_rows();
    // dw_g += dy_g [group_out, pixels] × cols_gᵀ [pixels, col_rows], accumulated column-major
    // (each group's block stored as [col_rows, group_out]) and transposed once at the end: the
    // GEMM is ~8x faster into this layout than into a row-major one (gemm 0.19 then has to
    // pack the column matrix transposed).
    let image = |col: &mut Vec<f32>, dw: &mut [f32], x: &[f32], dy: &[f32], split: Split| {
        for group in 0..g.groups {
            let cols = columns(g, x, group, col, split);
            let dy = block(dy, group, g.group_out() * g.out_pixels());
            let dw = block_mut(dw, group, group_len);
            let dy = Mat::row_major(dy, g.group_out(), g.out_pixels());
            let cols_t = Mat::row_major(cols, g.col_rows(), g.out_pixels()).transposed();
            gemm_into(dw, Order::ColMajor, dy, cols_t, true, split);
        }
    };
    let dw_col_major = match split(g.n) {
        // A fixed split of the batch (one run of images per thread) summed in order, so that the
        // gradient is the same bits on every run: rayon's fold would group the images as work
        // stealing happens to, and float sums in another order differ in the last bits.
        Split::Images => {
            let per_part = g.n.div_ceil(rayon::current_num_threads()).max(1);
            let parts: Vec<Vec<f32>> = x
                .par_chunks(per_part * in_image)
                .zip(dy.par_chunks(per_part * out_image))
                .map(|(x, dy)| {
                    let mut dw = vec![0.0; weight_len];
                    with_scratch(|col| {
                        for (x, dy) in x.chunks(in_image).zip(dy.chunks(out_image)) {
                            image(col, &mut dw, x, dy, Split::Images);
                        }
                    });
                    dw
                })
                .collect();
            parts
                .into_iter()
                .reduce(|mut a, b| {
                    a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                    a
                })
                .unwrap_or_else(|| vec![0.0; weight_len])
        }
        within => with_scratch(|col| {
            let mut dw = vec![0.0; weight_len];
            for (x, dy) in x.chunks(in_image).zip(dy.chunks(out_image)) {
                image(col, &mut dw, x, dy, within);
            }
            dw
        }),
    };
    let mut dw = vec![0.0; weight_len];
    for (dst, src) in dw.chunks_mut(group_len).zip(dw_col_major.chunks(group_len)) {
        for (k, column) in src.chunks(g.group_out()).enumerate() {
            for (c, value) in column.iter().enumerate() {
                dst[c * g.col_rows() + k] = *value;
            }
        }
    }
    dw
}

thread_local! {
    /// Each thread's column-matrix buffer, kept between calls: a fresh one per call costs its
    /// page faults every time (a 7 MB buffer for ResNet-50's stem, more than its GEMM).
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// Each thread's buffer for the direct kernel's output tiles, likewise.
    static TILES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// Each thread's own bordered copy of a small layer's input, likewise.
    static PADDED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// Each thread's blocked output buffer of the channels-last kernel, likewise.
    static BLOCKED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's scratch buffer, or a fresh one if the thread's is in use (a
/// rayon worker that steals another convolution's job while it waits).
fn with_scratch<R>(f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
    with_buffer(&SCRATCH, f)
}

/// [`with_scratch`] with another of the thread's buffers.
fn with_buffer<R>(
    buffer: &'static LocalKey<RefCell<Vec<f32>>>,
    f: impl FnOnce(&mut Vec<f32>) -> R,
) -> R {
    buffer.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buffer) => f(&mut buffer),
        Err(_) => f(&mut Vec::new()),
    })
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
    let planes = block(image, group, g.group_in() * g.h * g.w);
    if g.is_pointwise() {
        return planes;
    }
    let pixels = g.out_pixels();
    col.resize(g.col_rows() * pixels, 0.0);
    let taps = Tap::all(g);
    let fill = |(row, dst): (usize, &mut [f32])| {
        let (channel, tap) = (row / taps.len(), &taps[row % taps.len()]);
        let plane = &planes[channel * g.h * g.w..][..g.h * g.w];
        let ow = tap.width;
        dst[..tap.rows.start * ow].fill(0.0);
        dst[tap.rows.end * ow..].fill(0.0);
        if tap.rows.is_empty() || tap.cols.is_empty() {
            return dst.fill(0.0);
        }
        if tap.contiguous {
            // One copy for all rows (it carries neighbouring pixels into the padding columns),
            // then the padding columns zeroed.
            let (first, last) = (
                tap.rows.start * ow + tap.cols.start,
                (tap.rows.end - 1) * ow + tap.cols.end,
            );
            let src = tap.input_index(g, tap.rows.start, tap.cols.start);
            dst[first..last].copy_from_slice(&plane[src..src + (last - first)]);
            tap.zero_padding_columns(dst);
            return;
        }
        tap.zero_padding_columns(dst);
        for oy in tap.rows.clone() {
            let dst = &mut dst[oy * ow..][..ow];
            let src = &plane[tap.input_index(g, oy, tap.cols.start)..];
            let src = src.iter().step_by(g.stride[1]);
            dst[tap.cols.clone()]
                .iter_mut()
                .zip(src)
                .for_each(|(d, s)| *d = *s);
        }
    };
    match split {
        Split::Images => col.chunks_mut(pixels).enumerate().for_each(fill),
        Split::Within(_) => col.par_chunks_mut(pixels).enumerate().for_each(fill),
    }
    col
}

/// The inverse of [`columns`] for gradients: adds each column-matrix row back onto the input
/// plane positions it was sampled from. Zeroes `col`'s padding entries on the way.
fn col_to_image(g: &ConvGeometry, col: &mut [f32], dx: &mut [f32], split: Split) {
    let pixels = g.out_pixels();
    let taps = Tap::all(g);
    let fold = |(rows, plane): (&mut [f32], &mut [f32])| {
        for (tap, row) in taps.iter().zip(rows.chunks_mut(pixels)) {
            if tap.rows.is_empty() || tap.cols.is_empty() {
                continue;
            }
            let ow = tap.width;
            if tap.contiguous {
                // The mirror of `columns`' single copy: clear the padding columns, then one add.
                tap.zero_padding_columns(row);
                let (first, last) = (
                    tap.rows.start * ow + tap.cols.start,
                    (tap.rows.end - 1) * ow + tap.cols.end,
                );
                let dst = tap.input_index(g, tap.rows.start, tap.cols.start);
                let dst = &mut plane[dst..dst + (last - first)];
                dst.iter_mut()
                    .zip(&row[first..last])
                    .for_each(|(d, s)| *d += s);
                continue;
            }
            for oy in tap.rows.clone() {
                for ox in tap.cols.clone() {
                    plane[tap.input_index(g, oy, ox)] += row[oy * ow + ox];
                }
            }
        }
    };
    let (channel_rows, plane) = (taps.len() * pixels, g.h * g.w);
    match split {
        Split::Images => col
            .chunks_mut(channel_rows)
            .zip(dx.chunks_mut(plane))
            .for_each(fold),
        Split::Within(_) => col
            .par_chunks_mut(channel_rows)
            .zip(dx.par_chunks_mut(plane))
            .for_each(fold),
    }
}

/// Where one kernel tap `(i, j)` reads the input: output pixel `(oy, ox)` reads input pixel
/// `(oy · stride + row_offset, ox · stride + col_offset)`, inside the image for `oy` in `rows`
/// and `ox` in `cols` (elsewhere it reads the zero padding).
struct Tap {
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    row_offset: isize,
    col_offset: isize,
    /// Output width.
    width: usize,
    /// Stride 1 and output as wide as the input: consecutive output rows read consecutive input
    /// rows at the same distance in memory, so a run of rows is one contiguous block.
    contiguous: bool,
}

impl Tap {
    /// Every tap of the kernel, row by row.
    fn all(g: &ConvGeometry) -> Vec<Self> {
        (0..g.kernel[0] * g.kernel[1])
            .map(|tap| Self::new(g, tap))
            .collect()
    }

    fn new(g: &ConvGeometry, tap: usize) -> Self {
        let [oh, ow] = g.output_size();
        let (i, j) = (tap / g.kernel[1], tap % g.kernel[1]);
        let row_offset = (i * g.dilation[0]) as isize - g.padding[0] as isize;
        let col_offset = (j * g.dilation[1]) as isize - g.padding[1] as isize;
        Self {
            rows: inside(row_offset, g.stride[0], g.h, oh),
            cols: inside(col_offset, g.stride[1], g.w, ow),
            row_offset,
            col_offset,
            width: ow,
            contiguous: g.stride == [1, 1] && ow == g.w,
        }
    }

    /// The input plane index output pixel `(oy, ox)` reads; only for `oy` in `rows`, `ox` in
    /// `cols`.
    fn input_index(&self, g: &ConvGeometry, oy: usize, ox: usize) -> usize {
        let iy = (oy * g.stride[0]) as isize + self.row_offset;
        let ix = (ox * g.stride[1]) as isize + self.col_offset;
        iy as usize * g.w + ix as usize
    }

    /// Zeroes the entries outside `cols` of the rows in `rows` of a column-matrix row (`[oh,
    /// ow]`). Column by column: 3x3 kernels pad one column or none, and a loop along a row
    /// compiles to a `memset` call per output row, which cost more than the copy itself.
    fn zero_padding_columns(&self, row: &mut [f32]) {
        for col in (0..self.cols.start).chain(self.cols.end..self.width) {
            for oy in self.rows.clone() {
                row[oy * self.width + col] = 0.0;
            }
        }
    }
}

/// The output positions `o < outputs` whose input position `o · stride + offset` lies in
/// `0..size`.
fn inside(offset: isize, stride: usize, size: usize, outputs: usize) -> std::ops::Range<usize> {
    let stride = stride as isize;
    let start = if offset >= 0 {
        0
    } else {
        ((-offset + stride - 1) / stride) as usize
    };
    let end = ((size as isize - offset + stride - 1) / stride).clamp(0, outputs as isize) as usize;
    start.min(end)..end
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

    /// Rows `first..first + rows`.
    fn rows_from(self, first: usize, rows: usize) -> Self {
        assert!(first + rows <= self.rows, "rows");
        Self {
            data: &self.data[first * self.row_stride..],
            rows,
            ..self
        }
    }
}

/// How a GEMM's destination is stored.
#[derive(Clone, Copy)]
enum Order {
    RowMajor,
    ColMajor,
}

/// `dst = a × b` (or `dst += a × b` when `accumulate`), `dst` row-major `a.rows x b.cols`.
fn gemm(dst: &mut [f32], a: Mat, b: Mat, accumulate: bool, split: Split) {
    gemm_into(dst, Order::RowMajor, a, b, accumulate, split)
}

/// [`gemm`] with the destination stored in either order.
fn gemm_into(dst: &mut [f32], order: Order, a: Mat, b: Mat, accumulate: bool, split: Split) {
    assert_eq!(a.cols, b.rows);
    assert_eq!(dst.len(), a.rows * b.cols);
    if let (Some(band), Order::RowMajor) = (row_band(a.rows, split), order) {
        return dst
            .par_chunks_mut(band * b.cols)
            .enumerate()
            .for_each(|(i, dst)| {
                gemm_into(
                    dst,
                    order,
                    a.rows_from(i * band, dst.len() / b.cols),
                    b,
                    accumulate,
                    Split::Images,
                )
            });
    }
    // SAFETY: `dst`'s values are initialised, as `accumulate` needs, and the GEMM stores only
    // initialised values into them.
    unsafe { gemm_one(as_uninit(dst), order, a, b, accumulate) };
}

/// `dst = a × b` into an uninitialised row-major `dst`, returned initialised, with
/// `finish(first_row, rows)` run on each band of rows right after the band is computed, while
/// it is in cache.
///
/// If `finish_later`, a product with fewer rows than columns (a layer with fewer output
/// channels than output pixels) instead splits its columns over the threads and finishes in a
/// second pass: split by rows, every thread's GEMM packs all of `b` (the input, 3 MB on 56x56
/// planes, out of cache in a network), split by columns all of `a` (the weights). ResNet-50's
/// 1x1 layer from 256 to 64 channels on 56x56 planes took 1.5 ms with its input out of cache
/// split by rows, 0.85 split by columns; 64 to 256 channels 0.78 and 0.72 (`examples/layers.rs`).
fn gemm_then<'d>(
    dst: &'d mut [MaybeUninit<f32>],
    a: Mat,
    b: Mat,
    split: Split,
    finish: &(dyn Fn(usize, &mut [f32]) + Sync),
    finish_later: bool,
) -> &'d mut [f32] {
    assert_eq!(a.cols, b.rows);
    assert_eq!(dst.len(), a.rows * b.cols);
    if let Split::Within(threads) = split
        && finish_later
        && a.rows < b.cols
        && b.cols >= 64 * threads
    {
        let dst = gemm_columns(dst, a, b, threads);
        let rows = a.rows.div_ceil(threads);
        dst.par_chunks_mut(rows * b.cols)
            .enumerate()
            .for_each(|(i, band)| finish(i * rows, band));
        return dst;
    }
    let band = |first: usize, dst: &mut [MaybeUninit<f32>]| {
        let a = a.rows_from(first, dst.len() / b.cols);
        // SAFETY: without `accumulate` the GEMM does not read `dst`, and stores every value.
        let dst = unsafe {
            gemm_one(dst, Order::RowMajor, a, b, false);
            assume_init_mut(dst)
        };
        finish(first, dst);
    };
    match row_band(a.rows, split) {
        Some(rows) => dst
            .par_chunks_mut(rows * b.cols)
            .enumerate()
            .for_each(|(i, dst)| band(i * rows, dst)),
        None => band(0, dst),
    }
    // SAFETY: every band went through `gemm_one` without `accumulate`, which stores every value.
    unsafe { assume_init_mut(dst) }
}

/// `dst = a × b` into an uninitialised row-major `dst`, returned initialised: one sequential
/// GEMM per thread, each on a band of `b`'s columns (a multiple of 16 wide).
fn gemm_columns<'d>(
    dst: &'d mut [MaybeUninit<f32>],
    a: Mat,
    b: Mat,
    threads: usize,
) -> &'d mut [f32] {
    assert_eq!(dst.len(), a.rows * b.cols);
    let cols = b.cols;
    let band = cols.div_ceil(threads).next_multiple_of(16);
    /// `dst`'s start, shared by the threads, each writing its own columns of every row.
    struct Dst(*mut MaybeUninit<f32>);
    // SAFETY: the threads write disjoint columns through it, and `dst` stays borrowed
    // mutably until they are all done.
    unsafe impl Sync for Dst {}
    let start = Dst(dst.as_mut_ptr());
    let start = &start;
    (0..cols.div_ceil(band)).into_par_iter().for_each(|i| {
        let first = i * band;
        let width = band.min(cols - first);
        let b = Mat {
            data: &b.data[first * b.col_stride..],
            cols: width,
            ..b
        };
        // SAFETY: rows `0..rows` of columns `first..first + width` lie inside `dst` (row stride
        // `cols`); no other thread writes them, and nothing reads them until the join.
        unsafe { gemm_raw(start.0.add(first), [1, cols], a, b, false) }
    });
    // SAFETY: the bands cover every column of every row, each stored by a GEMM without
    // `accumulate`.
    unsafe { assume_init_mut(dst) }
}

/// On all threads, a row-major product runs as one sequential GEMM per band of rows (the band's
/// height, a multiple of 16, if there is more than one): one fork-join per product instead of
/// gemm's own finer-grained split (SE-ResNet-50 at batch 1 kept the two cores 157% busy with
/// gemm's split).
fn row_band(rows: usize, split: Split) -> Option<usize> {
    let Split::Within(threads) = split else {
        return None;
    };
    let band = rows.div_ceil(threads).next_multiple_of(16);
    (band < rows).then_some(band)
}

/// `values` as a destination that only initialised values will be stored into.
fn as_uninit(values: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: same layout; the callers store only initialised values (so the slice stays
    // initialised for `values`' owner).
    unsafe { &mut *(values as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

/// One sequential GEMM: `dst = a × b`, or `dst += a × b` when `accumulate`.
///
/// # Safety
/// With `accumulate`, every value of `dst` must be initialised.
unsafe fn gemm_one(dst: &mut [MaybeUninit<f32>], order: Order, a: Mat, b: Mat, accumulate: bool) {
    assert_eq!(dst.len(), a.rows * b.cols);
    let strides = match order {
        Order::RowMajor => [1, b.cols],
        Order::ColMajor => [a.rows, 1],
    };
    // SAFETY: `dst` holds the whole product in either order; the caller vouches for
    // `accumulate`.
    unsafe { gemm_raw(dst.as_mut_ptr(), strides, a, b, accumulate) }
}

/// One sequential GEMM into the `a.rows x b.cols` matrix at `dst`, element `(r, c)` at
/// `dst[c · col_stride + r · row_stride]` (`[col_stride, row_stride]`): `= a × b`, or
/// `+= a × b` when `accumulate`.
///
/// # Safety
/// Those elements must be writable and written by no other thread meanwhile; with
/// `accumulate`, initialised.
unsafe fn gemm_raw(
    dst: *mut MaybeUninit<f32>,
    [col_stride, row_stride]: [usize; 2],
    a: Mat,
    b: Mat,
    accumulate: bool,
) {
    assert_eq!(a.cols, b.rows);
    for m in [a, b] {
        if m.rows > 0 && m.cols > 0 {
            assert!((m.rows - 1) * m.row_stride + (m.cols - 1) * m.col_stride < m.data.len());
        }
    }
    // SAFETY: the asserts above keep every index the GEMM reads inside `a` and `b`, the caller
    // vouches for every index it writes; `dst` aliases neither input (borrowed mutably by the
    // callers); it is read only with `accumulate` (gemm's `read_dst`), when the caller vouches
    // that it is initialised.
    unsafe {
        gemm::gemm(
            a.rows,
            b.cols,
            a.cols,
            dst.cast::<f32>(),
            col_stride as isize,
            row_stride as isize,
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
            // Never gemm's own rayon split: under concurrent callers (the test harness runs
            // tests in parallel) it gave wrong, run-to-run different products, seen as a
            // flaky ndarray/flex gradient test; the band splits above are the parallelism.
            gemm::Parallelism::None,
        )
    }
}
