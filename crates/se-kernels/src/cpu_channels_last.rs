//! Direct convolution through a channels-last copy of the input, for layers with a spatial
//! kernel that the bordered-plane kernel (`cpu_direct`) does not take: kernels other than 3x3
//! (the 7x7 stem; 5x5), 3x3 ones at stride 3 or more, with padding other than 1 or dilated,
//! and, except on AVX-512, stride-2 3x3 ones with more than 64 input channels per group —
//! where the weights are reused over at least 784 output pixels (see [`applies`]). Of the
//! models, that is the stem, and off AVX-512 ResNet-50's wider downsampling 3x3 layers; until
//! session 26 it was those everywhere and, from batch 16, ResNet-50's 7x7 layers, which
//! `cpu_direct` now runs faster.
//!
//! Each image is copied once into a zero-padded channels-last buffer `[H + 2p, W + 2p, C_in]`.
//! The register tile is `P` output pixels by `CV` vectors of output channels: for each kernel tap
//! and input channel, `CV` loads of packed weights and `P · CV` fused multiply-adds, each with
//! one input value broadcast (a memory operand of the FMA). Each pixel's input address is worked
//! out once per tile, so a tile may be any `P` consecutive output pixels, across rows, at any
//! stride: no border or rounding waste beyond the last tile of the image (unlike `cpu_direct`,
//! whose tile is a run of flat bordered positions). The reduction runs in chunks of taps and
//! input channels whose packed weights fit in L1, each chunk over every tile of the block
//! (partial sums go back to the output between chunks).
//!
//! The output is blocked (`[c_out / channels][pixels][channels]`, ONNX Runtime's `NCHWc`; one
//! vector store per accumulator), so that every (channel block, tile) is a contiguous share of
//! it to hand to a thread, and is then transposed into the NCHW output a band of channels at a
//! time, where the caller's epilogue runs. MLAS keeps the blocked layout between layers; here
//! NCHW stays the layout between layers, which every other op reads.

use std::ops::Range;
use std::sync::OnceLock;

use rayon::prelude::*;

use super::cpu_conv::ConvGeometry;
use super::cpu_direct::Isa;
use crate::simd::{Scalar, Simd};

/// Whether this kernel computes this convolution: ungrouped, undilated, at least 16 output
/// channels (a tile's channel vectors are 16 or 32 wide), a kernel larger than 1x1 (1x1 layers
/// measured faster as im2col + one GEMM, ~2x at stride 2), a layer `cpu_direct` does not take,
/// and at least 784 output pixels over the batch (a 28x28 plane): the weights are repacked on
/// every call, which costs more than it saves where they are reused less (ResNet-50's 7x7 and
/// 14x14 layers at batch 1 ran 1.2–3x slower than im2col + GEMM, its 3x3 layer on 7x7 planes
/// at batch 8 1.14x slower; `examples/layers.rs`). On AVX2 at batch 1 ResNet-50's 7x7 stem runs
/// 2.1x faster than im2col + GEMM (1.8 against 3.9 ms) and the first stride-2 3x3 layer 1.6x;
/// at batch 8, the images in parallel, the stem 1.2–1.4x and the stride-2 3x3 layers 1.05–1.25x.
pub(crate) fn applies(g: &ConvGeometry) -> bool {
    let [oh, ow] = g.output_size();
    enabled()
        && g.groups == 1
        && g.dilation == [1, 1]
        && g.c_out >= 16
        && g.kernel != [1, 1]
        && g.n * oh * ow >= 784
        && !super::cpu_direct::takes(g)
}

/// Whether the kernel runs at all: `SE_KERNELS_CHANNELS_LAST=0` sends its layers to im2col +
/// GEMM instead (to measure what it buys; `SE_KERNELS_DIRECT=0` does not route `cpu_direct`'s
/// layers here); decided once per process.
pub fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("SE_KERNELS_CHANNELS_LAST").map_or(true, |v| v != "0"))
}

/// The register tile for an ISA: output channels per tile (`CV` vectors) and pixels per tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tile {
    /// Output channels per tile and per block of packed weights.
    pub channels: usize,
    /// Output pixels per tile.
    pub pixels: usize,
}

impl Tile {
    pub(crate) fn of(isa: Isa) -> Self {
        match isa {
            // 2 x 8 = 16 accumulators of 32 registers, 2 for the weights.
            Isa::Avx512 => Tile {
                channels: 32,
                pixels: 8,
            },
            // 2 x 6 = 12 of 16.
            Isa::Avx2 => Tile {
                channels: 16,
                pixels: 6,
            },
            Isa::Scalar => Tile {
                channels: 4,
                pixels: 2,
            },
        }
    }
}

/// One convolution's plan: the ISA, its tile, the packed weights and where each output pixel
/// reads its input.
pub(crate) struct Plan {
    /// The ISA of the kernel and of the layout changes around it.
    pub(crate) isa: Isa,
    tile: Tile,
    /// `[c_out / channels][kh · kw][c_in][channels]`, zero past the last output channel.
    packed: Vec<f32>,
    /// For each output pixel (rounded up to whole tiles, the extra ones repeating the last
    /// pixel), the index in the channels-last input of its top-left tap.
    pixel_offsets: Vec<usize>,
    /// The reduction (taps by input channels) as runs of steps whose inputs are consecutive
    /// in the channels-last buffer: a kernel row's taps at stride 1 in x, all its channels.
    runs: Vec<Run>,
    /// Output channels.
    c_out: usize,
    /// Output pixels per image.
    pixels: usize,
    /// Values of one image's channels-last input.
    input_len: usize,
    /// One past the furthest input value any tile reads (its furthest tap, all channels).
    furthest: usize,
}

/// Values of packed weights per reduction chunk: 24 KiB, half of a typical L1 data cache.
const CHUNK: usize = 6 * 1024;

impl Plan {
    pub(crate) fn new(g: &ConvGeometry, isa: Isa, weight: &[f32]) -> Self {
        let tile = Tile::of(isa);
        let [oh, ow] = g.output_size();
        let [kh, kw] = g.kernel;
        let padded_w = g.w + 2 * g.padding[1];
        let pixels = oh * ow;
        let pixel_offsets: Vec<usize> = (0..pixels.next_multiple_of(tile.pixels))
            .map(|q| {
                let q = q.min(pixels - 1);
                let (y, x) = (q / ow * g.stride[0], q % ow * g.stride[1]);
                (y * padded_w + x) * g.c_in
            })
            .collect();
        let tap_offsets = (0..kh * kw).map(|t| ((t / kw) * padded_w + t % kw) * g.c_in);
        let runs = Run::merge(tap_offsets, g.c_in);
        let furthest = pixel_offsets.iter().max().unwrap_or(&0)
            + runs.iter().map(|r| r.offset + r.len).max().unwrap_or(0);
        Self {
            isa,
            tile,
            packed: pack(g, weight, tile.channels),
            pixel_offsets,
            runs,
            c_out: g.c_out,
            pixels,
            input_len: (g.h + 2 * g.padding[0]) * padded_w * g.c_in,
            furthest,
        }
    }

    /// Blocks of output channels.
    fn blocks(&self) -> usize {
        self.c_out.div_ceil(self.tile.channels)
    }

    /// Tiles of output pixels per block.
    fn tiles(&self) -> usize {
        self.pixel_offsets.len() / self.tile.pixels
    }

    /// Units of work per image: each (channel block, tile), block by block.
    pub(crate) fn units(&self) -> usize {
        self.blocks() * self.tiles()
    }

    /// Values of one unit's output.
    pub(crate) fn unit_len(&self) -> usize {
        self.tile.pixels * self.tile.channels
    }

    /// Values of one image's blocked output, `[blocks][pixels rounded up to tiles][channels]`.
    pub(crate) fn output_len(&self) -> usize {
        self.units() * self.unit_len()
    }

    /// Units `units` of one image's blocked output into `out` (those units' share of it), from
    /// the image's [`channels_last`] input.
    pub(crate) fn compute(&self, input: &[f32], units: Range<usize>, out: &mut [f32]) {
        assert_eq!(input.len(), self.input_len, "channels-last input size");
        assert_eq!(out.len(), units.len() * self.unit_len(), "output size");
        assert!(units.end <= self.units(), "units");
        assert!(self.furthest <= input.len(), "a tap reads past the input");
        assert!(
            Isa::available().contains(&self.isa),
            "{:?} on this CPU",
            self.isa
        );
        let tiles = self.tiles();
        let k = self.runs.iter().map(|r| r.len).sum::<usize>();
        let mut out = out;
        // Runs of units within one channel block: one block of weights each.
        let mut unit = units.start;
        while unit < units.end {
            let (block, first_tile) = (unit / tiles, unit % tiles);
            let last_tile = (units.end - block * tiles).min(tiles);
            let (tiles_out, rest) = out.split_at_mut((last_tile - first_tile) * self.unit_len());
            let args = Args {
                input: input.as_ptr(),
                weights: &self.packed[block * k * self.tile.channels..][..k * self.tile.channels],
                pixel_offsets: &self.pixel_offsets[first_tile * self.tile.pixels..]
                    [..(last_tile - first_tile) * self.tile.pixels],
                runs: &self.runs,
                out: tiles_out.as_mut_ptr(),
            };
            // SAFETY: the asserts above bound every load (`self.furthest`) and store (`tiles_out` holds
            // whole tiles of one block); the ISA is one this CPU runs.
            unsafe {
                match self.isa {
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512 => x86::avx512(args),
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2 => x86::avx2(args),
                    _ => run::<Scalar, 4, 2>(args, |acc, x, w, len| {
                        span::<Scalar, 4, 2>(acc, x, w, len)
                    }),
                }
            }
            out = rest;
            unit = (block + 1) * tiles;
        }
    }

    /// The planes of output channels `first..` (as many as `band` holds) from one image's
    /// blocked output `out`.
    pub(crate) fn planes(&self, out: &[f32], first: usize, band: &mut [f32]) {
        assert_eq!(out.len(), self.output_len(), "blocked output size");
        assert_eq!(band.len() % self.pixels, 0, "whole planes");
        assert!(
            first + band.len() / self.pixels <= self.c_out,
            "output channels"
        );
        let channels = self.tile.channels;
        // The band's channels a run within one block at a time: the block's `[pixels][channels]`
        // transposed into the run's `[run][pixels]`.
        let (mut rest, mut channel) = (band, first);
        while !rest.is_empty() {
            let (block, lane) = (channel / channels, channel % channels);
            let run = (channels - lane).min(rest.len() / self.pixels);
            let (planes, tail) = rest.split_at_mut(run * self.pixels);
            let block = &out[block * self.tiles() * self.unit_len()..][..self.pixels * channels];
            transpose(
                self.isa,
                &block[lane..],
                channels,
                planes,
                self.pixels,
                self.pixels,
                run,
            );
            (rest, channel) = (tail, channel + run);
        }
    }
}

/// Weights `[c_out, c_in, kh, kw]` repacked `[c_out / channels][kh · kw][c_in][channels]` (zero
/// for the channels past `c_out` of the last block), block by block in parallel.
fn pack(g: &ConvGeometry, weight: &[f32], channels: usize) -> Vec<f32> {
    let taps = g.kernel[0] * g.kernel[1];
    let filter_len = g.c_in * taps;
    let mut packed = vec![0.0; g.c_out.div_ceil(channels) * filter_len * channels];
    packed
        .par_chunks_mut(filter_len * channels)
        .zip(weight.par_chunks(filter_len * channels))
        .for_each(|(block, filters)| {
            // 16 input channels of every filter of the block at a time: the writes of one
            // round (16 · taps rows of `channels` values) stay in L1.
            for first in (0..g.c_in).step_by(16) {
                let last = (first + 16).min(g.c_in);
                for (lane, filter) in filters.chunks(filter_len).enumerate() {
                    let taps_of = filter[first * taps..last * taps].chunks(taps);
                    for (ci, values) in (first..last).zip(taps_of) {
                        for (tap, value) in values.iter().enumerate() {
                            block[(tap * g.c_in + ci) * channels + lane] = *value;
                        }
                    }
                }
            }
        });
    packed
}

/// One image's planes `[c_in, H, W]` as a zero-padded channels-last buffer `[H + 2p_h, W + 2p_w,
/// c_in]`, written into `padded`, its rows in parallel if `parallel`; `isa` as for [`transpose`].
pub(crate) fn channels_last(
    isa: Isa,
    g: &ConvGeometry,
    planes: &[f32],
    padded: &mut Vec<f32>,
    parallel: bool,
) {
    assert_eq!(planes.len(), g.c_in * g.h * g.w, "input size");
    let [ph, pw] = g.padding;
    let padded_w = g.w + 2 * pw;
    padded.clear();
    padded.resize((g.h + 2 * ph) * padded_w * g.c_in, 0.0);
    let row_len = padded_w * g.c_in;
    let rows = &mut padded[ph * row_len..][..g.h * row_len];
    let row = |(y, row): (usize, &mut [f32])| {
        // Row `y` of every plane, `[c_in][W]` at a plane's distance apart, as `[W][c_in]`.
        let dst = &mut row[pw * g.c_in..][..g.w * g.c_in];
        transpose(isa, &planes[y * g.w..], g.h * g.w, dst, g.c_in, g.c_in, g.w);
    };
    if parallel {
        rows.par_chunks_mut(row_len).enumerate().for_each(row);
    } else {
        rows.chunks_mut(row_len).enumerate().for_each(row);
    }
}

/// `dst[c · dst_row + r] = src[r · src_row + c]` for every `r < rows`, `c < cols`: the two
/// layout changes around the kernel, in 8x8 AVX tiles unless `isa` is scalar (a scalar loop
/// cost as much as the kernel on ResNet-50's 56x56 planes).
pub(crate) fn transpose(
    isa: Isa,
    src: &[f32],
    src_row: usize,
    dst: &mut [f32],
    dst_row: usize,
    rows: usize,
    cols: usize,
) {
    if rows == 0 || cols == 0 {
        return;
    }
    // Checked: a wrapped bound would let the tiles below read or write anywhere.
    let end = |rows: usize, row: usize, cols: usize| {
        (rows - 1)
            .checked_mul(row)
            .and_then(|v| v.checked_add(cols))
    };
    assert!(
        end(rows, src_row, cols).is_some_and(|e| e <= src.len()),
        "transpose source"
    );
    assert!(
        end(cols, dst_row, rows).is_some_and(|e| e <= dst.len()),
        "transpose destination"
    );
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut tiled = [0, 0];
    #[cfg(target_arch = "x86_64")]
    if isa != Isa::Scalar && Isa::available().contains(&Isa::Avx2) {
        tiled = [rows / 8 * 8, cols / 8 * 8];
        for r in (0..tiled[0]).step_by(8) {
            for c in (0..tiled[1]).step_by(8) {
                // SAFETY: the tile's rows `r..r + 8 <= rows` and columns `c..c + 8 <= cols`
                // lie inside the bounds asserted above; the CPU has AVX2.
                unsafe {
                    x86::transpose8x8(
                        src.as_ptr().add(r * src_row + c),
                        src_row,
                        dst.as_mut_ptr().add(c * dst_row + r),
                        dst_row,
                    )
                }
            }
        }
    }
    // What the tiles left: the last rows for every column, the last columns for the tiled rows.
    for r in 0..rows {
        let first = if r < tiled[0] { tiled[1] } else { 0 };
        for c in first..cols {
            dst[c * dst_row + r] = src[r * src_row + c];
        }
    }
}

/// Reduction steps `k..k + len` (the packed weights' rows), whose inputs lie at `offset..offset
/// + len` from a pixel's top-left tap in the channels-last buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run {
    offset: usize,
    k: usize,
    len: usize,
}

impl Run {
    /// Taps (their offsets, in reduction order) of `c_in` channels each as runs: a tap that
    /// starts where the last one ended extends it. The 7x7 stem's 49 taps of 3 channels become
    /// 7 runs of 21 steps, so the kernel's inner loop no longer restarts every 3 steps.
    fn merge(tap_offsets: impl Iterator<Item = usize>, c_in: usize) -> Vec<Run> {
        let mut runs: Vec<Run> = Vec::new();
        for (tap, offset) in tap_offsets.enumerate() {
            match runs.last_mut() {
                Some(last) if last.offset + last.len == offset => last.len += c_in,
                _ => runs.push(Run {
                    offset,
                    k: tap * c_in,
                    len: c_in,
                }),
            }
        }
        runs
    }
}

/// What [`Plan::compute`] checked, for one run of tiles of one channel block.
struct Args<'a> {
    input: *const f32,
    /// The block's packed weights, `[kh · kw · c_in][CV · LANES]`.
    weights: &'a [f32],
    /// The offsets of the pixels of the tiles to compute, whole tiles.
    pixel_offsets: &'a [usize],
    runs: &'a [Run],
    /// The tiles' output, `[pixels][CV · LANES]`.
    out: *mut f32,
}

/// Every tile of `args.pixel_offsets` of one channel block: `CV` vectors of channels by `P`
/// pixels in registers, the reduction in chunks whose weights fit in L1, each chunk's share of
/// each [`Run`] by `span`: `span(acc, x, w, len)` adds `w[i][v] · x[p][i]` to `acc[p][v]` for
/// `i < len` (`w` rows of `CV · LANES`, `x` one pointer per pixel; `len > 0`).
///
/// # Safety
/// `args` must be as [`Plan::compute`] checks; `S`'s instructions must run on this CPU, and
/// `span` must read no more than it says.
#[inline(always)]
unsafe fn run<S: Simd, const CV: usize, const P: usize>(
    args: Args,
    span: impl Fn(&mut [[S::V; CV]; P], [*const f32; P], *const f32, usize),
) {
    let block = CV * S::LANES;
    assert_eq!(args.pixel_offsets.len() % P, 0, "whole tiles");
    let k = args.runs.iter().map(|r| r.len).sum::<usize>();
    assert_eq!(args.weights.len(), k * block, "packed weights");
    let chunk = (CHUNK / block).max(1);
    for k_start in (0..k).step_by(chunk) {
        let k_end = (k_start + chunk).min(k);
        for (t, offsets) in args.pixel_offsets.chunks_exact(P).enumerate() {
            // SAFETY (all pointer arithmetic below): `Plan::compute` bounds every pixel's taps
            // and channels by the input's length, and the stores by `out`'s.
            unsafe {
                let out = args.out.add(t * P * block);
                let mut acc = [[S::zero(); CV]; P];
                if k_start > 0 {
                    for (p, acc) in acc.iter_mut().enumerate() {
                        for (v, acc) in acc.iter_mut().enumerate() {
                            *acc = S::load(out.add(p * block + v * S::LANES));
                        }
                    }
                }
                // The chunk's share of each run.
                for run in args.runs {
                    let first = k_start.max(run.k);
                    let last = k_end.min(run.k + run.len);
                    if first >= last {
                        continue;
                    }
                    let w = args.weights.as_ptr().add(first * block);
                    let offset = run.offset + first - run.k;
                    let x = std::array::from_fn(|p| args.input.add(offsets[p] + offset));
                    span(&mut acc, x, w, last - first);
                }
                for (p, acc) in acc.iter().enumerate() {
                    for (v, acc) in acc.iter().enumerate() {
                        S::store(out.add(p * block + v * S::LANES), *acc);
                    }
                }
            }
        }
    }
}

/// [`run`]'s `span` in `S`'s intrinsics.
///
/// # Safety
/// As [`run`]'s `span`: `len` rows of weights at `w` and `len` values at each `x[p]`.
#[inline(always)]
unsafe fn span<S: Simd, const CV: usize, const P: usize>(
    acc: &mut [[S::V; CV]; P],
    x: [*const f32; P],
    w: *const f32,
    len: usize,
) {
    let block = CV * S::LANES;
    for i in 0..len {
        // SAFETY: inside the `len` rows and values the caller vouches for.
        unsafe {
            let w: [S::V; CV] = std::array::from_fn(|v| S::load(w.add(i * block + v * S::LANES)));
            for (acc, x) in acc.iter_mut().zip(x) {
                let x = S::splat(*x.add(i));
                for (acc, w) in acc.iter_mut().zip(w) {
                    *acc = S::fma(w, x, *acc);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The `target_feature` entry points that compile [`run`] for each x86 vector width.

    use std::arch::x86_64::*;

    use super::{Args, run, span};
    use crate::simd::x86::{Avx2, Avx512};

    /// An 8x8 block at `src` (rows `src_row` apart) transposed to `dst` (rows `dst_row` apart).
    ///
    /// # Safety
    /// Eight rows of eight values must be readable at `src` and writable at `dst`; the CPU
    /// must have AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn transpose8x8(
        src: *const f32,
        src_row: usize,
        dst: *mut f32,
        dst_row: usize,
    ) {
        unsafe {
            let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(src.add(i * src_row)));
            // Pairs of rows interleaved, then pairs of pairs, then the 128-bit halves swapped.
            let t = [
                _mm256_unpacklo_ps(r[0], r[1]),
                _mm256_unpackhi_ps(r[0], r[1]),
                _mm256_unpacklo_ps(r[2], r[3]),
                _mm256_unpackhi_ps(r[2], r[3]),
                _mm256_unpacklo_ps(r[4], r[5]),
                _mm256_unpackhi_ps(r[4], r[5]),
                _mm256_unpacklo_ps(r[6], r[7]),
                _mm256_unpackhi_ps(r[6], r[7]),
            ];
            let s = [
                _mm256_shuffle_ps::<0x44>(t[0], t[2]),
                _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
                _mm256_shuffle_ps::<0x44>(t[1], t[3]),
                _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
                _mm256_shuffle_ps::<0x44>(t[4], t[6]),
                _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
                _mm256_shuffle_ps::<0x44>(t[5], t[7]),
                _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
            ];
            for i in 0..4 {
                _mm256_storeu_ps(
                    dst.add(i * dst_row),
                    _mm256_permute2f128_ps::<0x20>(s[i], s[i + 4]),
                );
                _mm256_storeu_ps(
                    dst.add((i + 4) * dst_row),
                    _mm256_permute2f128_ps::<0x31>(s[i], s[i + 4]),
                );
            }
        }
    }

    /// # Safety
    /// As [`run`]'s, on a CPU with AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn avx512(args: Args) {
        unsafe { run::<Avx512, 2, 8>(args, |acc, x, w, len| span::<Avx512, 2, 8>(acc, x, w, len)) }
    }

    /// # Safety
    /// As [`run`]'s, on a CPU with AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn avx2(args: Args) {
        unsafe { run::<Avx2, 2, 6>(args, |acc, x, w, len| span_avx2(acc, x, w, len)) }
    }

    /// [`span`] for the AVX2 tile (6 pixels by 16 channels) in assembly: compiled from the
    /// intrinsics, the twelve accumulators went through the stack on every step (the stem ran
    /// at a quarter of the FMA peak).
    ///
    /// # Safety
    /// As [`span`]'s, on a CPU with AVX2 and FMA; `len > 0`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn span_avx2(acc: &mut [[__m256; 2]; 6], x: [*const f32; 6], w: *const f32, len: usize) {
        /// Pixel `$x`'s value broadcast into `$b`, times both weight vectors into `$a0`, `$a1`.
        macro_rules! pixel {
            ($x:literal, $b:literal, $a0:literal, $a1:literal) => {
                concat!(
                    "vbroadcastss ymm",
                    $b,
                    ", dword ptr [{x",
                    $x,
                    "} + {i} * 4]\n",
                    "vfmadd231ps ymm",
                    $a0,
                    ", ymm12, ymm",
                    $b,
                    "\n",
                    "vfmadd231ps ymm",
                    $a1,
                    ", ymm13, ymm",
                    $b,
                    "\n",
                )
            };
        }
        let [[a0, a1], [a2, a3], [a4, a5], [a6, a7], [a8, a9], [a10, a11]] = acc;
        // SAFETY: `len` rows of 16 weights at `w` and `len` values at each `x[p]`, as the
        // caller vouches; nothing is written but the accumulators.
        unsafe {
            std::arch::asm!(
                "2:",
                "vmovups ymm12, ymmword ptr [{w}]",
                "vmovups ymm13, ymmword ptr [{w} + 32]",
                pixel!("0", "14", "0", "1"),
                pixel!("1", "15", "2", "3"),
                pixel!("2", "14", "4", "5"),
                pixel!("3", "15", "6", "7"),
                pixel!("4", "14", "8", "9"),
                pixel!("5", "15", "10", "11"),
                "add {w}, 64",
                "inc {i}",
                "cmp {i}, {len}",
                "jb 2b",
                x0 = in(reg) x[0],
                x1 = in(reg) x[1],
                x2 = in(reg) x[2],
                x3 = in(reg) x[3],
                x4 = in(reg) x[4],
                x5 = in(reg) x[5],
                w = inout(reg) w => _,
                i = inout(reg) 0usize => _,
                len = in(reg) len,
                inout("ymm0") *a0, inout("ymm1") *a1, inout("ymm2") *a2,
                inout("ymm3") *a3, inout("ymm4") *a4, inout("ymm5") *a5,
                inout("ymm6") *a6, inout("ymm7") *a7, inout("ymm8") *a8,
                inout("ymm9") *a9, inout("ymm10") *a10, inout("ymm11") *a11,
                out("ymm12") _, out("ymm13") _, out("ymm14") _, out("ymm15") _,
                options(nostack, readonly),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain six-loop convolution (no groups, no dilation).
    fn reference(g: &ConvGeometry, x: &[f32], w: &[f32]) -> Vec<f32> {
        let [oh, ow] = g.output_size();
        let [kh, kw] = g.kernel;
        let mut y = vec![0.0; g.c_out * oh * ow];
        for co in 0..g.c_out {
            for ci in 0..g.c_in {
                for oy in 0..oh {
                    for ox in 0..ow {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * g.stride[0] + ky) as isize - g.padding[0] as isize;
                                let ix = (ox * g.stride[1] + kx) as isize - g.padding[1] as isize;
                                if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                    continue;
                                }
                                let (iy, ix) = (iy as usize, ix as usize);
                                y[(co * oh + oy) * ow + ox] += w
                                    [((co * g.c_in + ci) * kh + ky) * kw + kx]
                                    * x[(ci * g.h + iy) * g.w + ix];
                            }
                        }
                    }
                }
            }
        }
        y
    }

    fn geometry(
        [c_in, h, w, c_out]: [usize; 4],
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> ConvGeometry {
        ConvGeometry {
            n: 1,
            c_in,
            h,
            w,
            c_out,
            kernel,
            stride,
            padding,
            dilation: [1, 1],
            groups: 1,
        }
    }

    /// Small integers: every product and sum is exact in `f32`, so every ISA must give the
    /// reference's bits.
    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7 + seed * 3) % 11) as f32 - 5.0)
            .collect()
    }

    #[test]
    fn every_isa_gives_the_reference_convolution_exactly() {
        for g in [
            // Stride 2 on odd planes: tails of pixel tiles and of channel blocks.
            geometry([5, 9, 7, 20], [3, 3], [2, 2], [1, 1]),
            // A 7x7 stem.
            geometry([3, 12, 12, 16], [7, 7], [2, 2], [3, 3]),
            // 900 and 1800 reduction steps: chunks end inside a tap on every ISA.
            geometry([100, 8, 8, 33], [3, 3], [1, 1], [1, 1]),
            geometry([200, 4, 5, 17], [3, 3], [1, 1], [1, 1]),
            // Non-square kernel, stride and padding.
            geometry([4, 7, 9, 18], [5, 3], [1, 2], [2, 1]),
        ] {
            let x = values(g.c_in * g.h * g.w, 1);
            let w = values(g.c_out * g.c_in * g.kernel[0] * g.kernel[1], 2);
            let expected = reference(&g, &x, &w);
            let pixels = expected.len() / g.c_out;
            for &isa in Isa::available() {
                let plan = Plan::new(&g, isa, &w);
                let mut input = Vec::new();
                channels_last(isa, &g, &x, &mut input, isa == Isa::Scalar);
                // The units in two uneven parts, as threads get them, into a stale buffer.
                let mut out = vec![f32::NAN; plan.output_len()];
                let split = plan.units() / 3;
                let (first, second) = out.split_at_mut(split * plan.unit_len());
                plan.compute(&input, 0..split, first);
                plan.compute(&input, split..plan.units(), second);
                let mut y = vec![f32::NAN; expected.len()];
                for (b, band) in y.chunks_mut(7 * pixels).enumerate() {
                    plan.planes(&out, b * 7, band);
                }
                assert_eq!(y, expected, "{isa:?} on {g:?}");
            }
        }
    }

    #[test]
    fn a_kernel_rows_taps_merge_into_one_run() {
        // A 3x3 kernel over 3 channels on a 10-wide padded row: each kernel row's taps are
        // 9 consecutive values; the rows are a padded row (30 values) apart.
        let g = geometry([3, 8, 8, 16], [3, 3], [1, 1], [1, 1]);
        let plan = Plan::new(&g, Isa::Scalar, &[0.0; 16 * 3 * 9]);
        let run = |offset, k| Run { offset, k, len: 9 };
        assert_eq!(plan.runs, [run(0, 0), run(30, 9), run(60, 18)]);
        // Taps that do not touch stay apart.
        let runs = Run::merge([0, 3, 10].into_iter(), 3);
        let expected = [
            Run {
                offset: 0,
                k: 0,
                len: 6,
            },
            Run {
                offset: 10,
                k: 6,
                len: 3,
            },
        ];
        assert_eq!(runs, expected);
    }

    #[test]
    fn transposes_equal_the_plain_loop_at_every_size() {
        // Tiled and untiled parts (a 2x3 grid of tiles), strides wider than the rows.
        for (rows, cols) in [
            (1, 1),
            (8, 8),
            (9, 17),
            (16, 3),
            (3, 24),
            (21, 13),
            (16, 24),
        ] {
            let (src_row, dst_row) = (cols + 5, rows + 3);
            let src: Vec<f32> = (0..rows * src_row).map(|i| i as f32).collect();
            for &isa in Isa::available() {
                let mut dst = vec![f32::NAN; cols * dst_row];
                transpose(isa, &src, src_row, &mut dst, dst_row, rows, cols);
                for r in 0..rows {
                    for c in 0..cols {
                        let at = format!("{isa:?} {rows}x{cols} ({r}, {c})");
                        assert_eq!(dst[c * dst_row + r], src[r * src_row + c], "{at}");
                    }
                }
                // Nothing outside the matrix written.
                let untouched = (0..cols * dst_row).filter(|i| i % dst_row >= rows);
                assert!(untouched.into_iter().all(|i| dst[i].is_nan()), "{isa:?}");
            }
        }
    }

    #[test]
    fn a_stride_two_box_filter_sums_every_other_neighbourhood() {
        // All-ones 3x3 weights, stride 2, padding 1, on a 4x4 plane of 1..=16: each output
        // sums the 3x3 window centred on input (2y, 2x), clipped at the top and left.
        let g = geometry([1, 4, 4, 16], [3, 3], [2, 2], [1, 1]);
        let x: Vec<f32> = (1..=16).map(|v| v as f32).collect();
        let plan = Plan::new(&g, Isa::Scalar, &[1.0; 16 * 9]);
        let mut input = Vec::new();
        channels_last(Isa::Scalar, &g, &x, &mut input, false);
        let mut out = vec![0.0; plan.output_len()];
        plan.compute(&input, 0..plan.units(), &mut out);
        let mut y = vec![0.0; 16 * 4];
        plan.planes(&out, 0, &mut y);
        // (0,0): 1+2+5+6; (0,1): 2+3+4+6+7+8; (1,0): 5+6+9+10+13+14; (1,1): 6+7+8+10+11+12+14+15+16.
        assert_eq!(&y[..4], &[14.0, 30.0, 57.0, 99.0]);
        assert_eq!(&y[60..], &[14.0, 30.0, 57.0, 99.0]);
    }
}
