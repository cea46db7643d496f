//! Direct 3x3 convolution on the CPU (padding 1, the 3x3 layers of every ResNet block; stride
//! 2 through four phase planes, see [`Layout`]): no column matrix, each input value is read
//! from cache by the nine taps that use it.
//!
//! The trick that keeps it short: each input plane is copied once into a plane with a zero
//! row above and below, laid out flat, and the output is computed over the same flat
//! positions `p = y · W + x`. Tap `(ky, kx)` of output position `p` then reads position
//! `p + ky · W + kx`, so every tap of a whole run of outputs is one contiguous vector load.
//! The one edge case is a row's ends: there kernel column 0 would read the row before's last
//! value and column 2 the next row's first, so those taps' loads mask those lanes to zero.
//! A plane of whole vectors is then the output plane itself, stored with no copy.
//!
//! Until session 24 each row had a zero column instead of masks (rows of `W + 1`, one junk
//! output column copied out afterwards). Against that, pass by pass on AVX-512, stride 1:
//! SE-ResNet-20 ×0.889 at batch 32 and ×0.907 at batch 1, ResNet-20 ×0.891 at 32,
//! SE-ResNet-50 ×0.987 at 1 and ×0.986 at 8 (an 8x8 plane is 64 positions, not 80); then
//! stride 2's phase planes too: SE-ResNet-20 ×0.990 at 32 and ×0.992 at 1, ResNet-20 ×0.984.
//!
//! The register tile is `O` output channels by `V` vectors of positions: for each input
//! channel and tap, `V` loads, then `O · V` fused multiply-adds with the weight broadcast. The
//! plane's positions are rounded up to whole vectors, not whole tiles: the last tile of a plane
//! is as many vectors as are left (a 14x14 plane is 196 positions, 208 computed rather than
//! 240).
//! The weights are read where they lie, `[c_out, c_in / groups, 3, 3]`: each tile broadcasts
//! from one row per output channel, `O` sequential streams (repacking them per call took 14%
//! of an 8x8 64-channel layer at batch 1). The vector width and the tile are
//! chosen at run time ([`Isa`]): AVX-512 (16 lanes, 8 channels by 3 vectors: 24 accumulators of
//! 32 registers), AVX2 + FMA (8 lanes, 4 channels by 3 vectors: 12 of 16, the other 4 for the
//! loads and the broadcast; 8 channels by 1 vector ran 27% slower, two loads per FMA) or scalar
//! code for every other CPU; `SE_KERNELS_ISA=avx2|scalar` forces a
//! narrower one (the tests run each against the im2col path).
//!
//! Why not the blocked `NCHWc` layout of ONNX Runtime's MLAS: it needs every other op of the
//! network (BatchNorm, SE, residual adds, pools) to read and write that layout too; the flat
//! bordered copy costs one pass over the input per layer (1/9 of im2col's), keeps NCHW
//! between layers and shares the epilogue with the GEMM path.

use std::mem::MaybeUninit;
use std::sync::OnceLock;

use rayon::prelude::*;

use super::cpu_conv::ConvGeometry;
use super::cpu_planes::assume_init_mut;
use crate::simd::{Scalar, Simd};

/// Output channels per block: one task, one output band.
pub(crate) const OUT_BLOCK: usize = 8;

/// Fewest blocks of output channels an image's layer is split over the threads with (where
/// images run in turn, as at batch 1); a layer of one block runs on one thread. Sessions 19–20
/// measured 3 best (a block of SE-ResNet-20's first stage, 16 channels of 32x32, is ~25 µs of
/// work, about what a parked worker took to wake, and the layer had two joins: the border,
/// then the blocks). Since each thread borders a small input for itself (one join per layer,
/// `cpu_conv::OWN_BORDER_MAX`), splitting those two-block layers pays: 2 against 3, pass by
/// pass with a toggle, SE-ResNet-20 at batch 1 ×0.920, ×0.893, ResNet-20 ×0.856, ×0.858
/// (1,262–1,478 of 1,500 passes faster).
pub(crate) const MIN_PARALLEL_BLOCKS: usize = 2;

/// The vector instructions the direct kernel runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// 16-lane AVX-512F.
    Avx512,
    /// 8-lane AVX2 with FMA.
    Avx2,
    /// Plain scalar code, for every CPU.
    Scalar,
}

impl Isa {
    /// Every ISA this CPU runs, widest first; detected once per process (every kernel call
    /// checks its ISA against it).
    pub fn available() -> &'static [Isa] {
        static AVAILABLE: OnceLock<Vec<Isa>> = OnceLock::new();
        AVAILABLE.get_or_init(|| {
            let mut isas = Vec::new();
            #[cfg(target_arch = "x86_64")]
            {
                if is_x86_feature_detected!("avx512f") {
                    isas.push(Isa::Avx512);
                }
                if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                    isas.push(Isa::Avx2);
                }
            }
            isas.push(Isa::Scalar);
            isas
        })
    }

    /// The widest ISA this CPU runs, or the one `SE_KERNELS_ISA` (`avx512`, `avx2`, `scalar`)
    /// names if the CPU runs it; decided once per process.
    pub fn selected() -> Isa {
        static SELECTED: OnceLock<Isa> = OnceLock::new();
        *SELECTED.get_or_init(|| {
            let available = Self::available();
            let Ok(name) = std::env::var("SE_KERNELS_ISA") else {
                return available[0];
            };
            let forced = available
                .iter()
                .copied()
                .find(|isa| format!("{isa:?}").eq_ignore_ascii_case(&name));
            forced.unwrap_or_else(|| {
                eprintln!(
                    "warning: SE_KERNELS_ISA={name} is not one of this CPU's {available:?}; \
                     using {:?}",
                    available[0]
                );
                available[0]
            })
        })
    }

    /// Positions per vector.
    fn lanes(self) -> usize {
        match self {
            Isa::Avx512 => 16,
            Isa::Avx2 => 8,
            Isa::Scalar => 1,
        }
    }
}

/// Whether the direct kernel computes this convolution: 3x3, padding 1, no dilation, stride 1
/// or 2 (wide stride-2 layers on AVX-512 only); any number of channels per group, planes of any
/// size. Until session 26 it took only part of these, by rules measured on AVX2 before the edge
/// masks (session 24). Measured again on AVX-512 (median ms, against the path each layer took
/// before), it is the faster path on all of them:
///
/// - **Stride 2 with more than 64 input channels per group**, on AVX-512 (where the four
///   phase planes of every channel had outgrown the caches and im2col + GEMM ran up to 1.8x
///   faster on AVX2, which keeps the old rule: [`wide_stride_2_pays`]). ResNet-50's
///   downsampling layers, alternating call by call with the channels-last kernel or im2col +
///   GEMM, ran in 0.68–0.91 of their time at batch 1, 0.85–0.98 at 8 and 0.78–0.92 at 16
///   (128x56² ×1.02 in one of two runs at 16). SE-ResNet-50 pass by pass: ×0.990 at batch 1,
///   ×0.994 at 8.
/// - **Planes narrower than 8**, where a 7x7 plane computes 64 positions for 49 outputs.
///   ResNet-50's 512x7² layer: 1.33 against 1.53–1.90 by im2col + GEMM at batch 1, 10.6
///   against 11.3 at 8, 21.4 against 26.5 by the channels-last kernel at 16, 42.8 against 42.0
///   at 32. SE-ResNeXt-50's grouped 1024x7² layer (32 channels per group): 0.18 against 0.52
///   at batch 1, 1.48 against 2.22 at 8. Pass by pass at batch 1: SE-ResNet-50 ×0.993 (×0.985
///   at 8), SE-ResNeXt-50 and SE-ResNet-18 ×0.980.
/// - **Groups of fewer than [`OUT_BLOCK`] output channels**, where most of each tile's
///   channels go unused (but each group's GEMM is as few rows high). SE-ResNeXt-50's first
///   stage (128x56², 32 groups of 4): 0.28 against 0.73 at batch 1, 5.6 against 6.5–6.9 at
///   16, the same at 8 (2.6–2.8); its input gradient 0.28 against 1.3, 2.7 against 4.2–4.6
///   and 5.6 against 8.6; its stride-2 form 0.13 against 0.35. SE-ResNeXt-50 pass by pass
///   ×0.976 at batch 1, ×0.995 at 8.
pub(crate) fn applies(g: &ConvGeometry) -> bool {
    enabled() && takes(g)
}

/// Whether [`applies`] holds, `SE_KERNELS_DIRECT` aside: the geometry rule alone.
pub(crate) fn takes(g: &ConvGeometry) -> bool {
    g.kernel == [3, 3]
        && (g.stride == [1, 1] || (g.stride == [2, 2] && wide_stride_2_pays(g)))
        && g.padding == [1, 1]
        && g.dilation == [1, 1]
}

/// Whether a stride-2 layer runs here: with at most 64 input channels per group on any ISA;
/// with more, on AVX-512 only. Forced onto AVX2 on the same machine, the direct kernel took
/// 0.94–1.09 of the other paths' time on ResNet-50's wider stride-2 layers at batch 1 and 8,
/// more on four of the six (while the narrow planes and small groups gained there too).
fn wide_stride_2_pays(g: &ConvGeometry) -> bool {
    g.c_in / g.groups <= 64 || Isa::selected() == Isa::Avx512
}

/// Whether the direct kernel runs at all: `SE_KERNELS_DIRECT=0` sends every convolution to the
/// im2col + GEMM path instead (to measure what the direct kernel buys); decided once per process.
pub fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("SE_KERNELS_DIRECT").map_or(true, |v| v != "0"))
}

/// The flat zero-bordered layout of one image's planes for a given geometry and ISA: rows as
/// wide as the output's, `row`, and no border column.
///
/// Stride 1: input pixel `(y, x)` at `(y + 1) · row + x + 1` of its channel's plane, zeros in
/// the first `row + 1` values (the top border) and past the last pixel. Stride 2 reads every
/// other row and column, which no vector load does; so each input plane is split into four
/// phase planes (even or odd rows, even or odd columns), each laid out the same way with
/// `(y / 2, x / 2)` in place of `(y, x)` (an odd width's odd columns are one short of the
/// row, and their last value is a zero), and each tap of the 3x3 kernel reads one phase at an
/// offset of 0 or 1 row and column: output `(oy, ox)` needs input rows `2·oy - 1, 2·oy,
/// 2·oy + 1`, which are odd row `oy - 1`, even row `oy`, odd row `oy`. Either way the output
/// is computed over positions `oy · row + ox`.
///
/// Where a tap reads left of a row's first column, its load masks that lane to zero: kernel
/// column 0 would read the row before's last value there ([`Layout::edge_masks`]). At stride 1
/// so does column 2 right of a row's last; stride 2's column 2 reads the odd phase at the
/// output's own column, inside the row. (Until session 24 each row had a zero border column
/// instead, and so one junk output column, copied out afterwards.)
#[derive(Clone, Copy)]
struct Layout {
    /// The output width.
    row: usize,
    /// Flat output positions computed, `rows · row` rounded up to whole vectors.
    positions: usize,
    /// Distance between two bordered (phase) planes: room for every tap of every tile.
    plane: usize,
    /// Planes per input channel: 1, or the 4 phases at stride 2.
    phases: usize,
}

impl Layout {
    fn new(g: &ConvGeometry, isa: Isa) -> Self {
        let [rows, row] = g.output_size();
        let positions = (rows * row).next_multiple_of(isa.lanes());
        Self {
            row,
            positions,
            plane: positions + 2 * row + 2,
            phases: g.stride[0] * g.stride[1],
        }
    }

    /// The lanes to keep of each of `T` vectors of `lanes` positions from `start`, as bit
    /// masks: for kernel column 0 all but those at a row's first column, for column 2 all but
    /// those at its last at stride 1, all at stride 2. One division per tile; the rest steps
    /// along the row.
    #[inline(always)]
    fn edge_masks<const T: usize>(&self, start: usize, lanes: usize) -> [[u32; 2]; T] {
        let row = self.row;
        let all = u32::MAX >> (32 - lanes);
        let mut column = start % row; // of the vector's first position
        std::array::from_fn(|_| {
            let keep = |edge: usize| {
                let mut keep = all;
                let mut lane = if edge >= column { edge } else { edge + row } - column;
                while lane < lanes {
                    keep &= !(1 << lane);
                    lane += row;
                }
                keep
            };
            let masks = [keep(0), if self.phases == 1 { keep(row - 1) } else { all }];
            column += lanes;
            while column >= row {
                column -= row;
            }
            masks
        })
    }

    /// Where each tap of the kernel reads, from a tile's first position in its channel's first
    /// plane, at stride `STRIDE` (a constant, so that the offsets fold into the addressing:
    /// read from an array, they cost the stride-1 kernel 40%).
    #[inline(always)]
    fn taps<const STRIDE: usize>(&self) -> [usize; 9] {
        let (row, plane) = (self.row, self.plane);
        std::array::from_fn(|tap| {
            let (ky, kx) = (tap / 3, tap % 3);
            match STRIDE {
                1 => ky * row + kx,
                // Phase `2 · (odd row) + (odd column)`; one row / column on unless tap 0.
                _ => {
                    let phase = 2 * usize::from(ky != 1) + usize::from(kx != 1);
                    phase * plane + usize::from(ky > 0) * row + usize::from(kx > 0)
                }
            }
        })
    }

    /// Values of one input channel's planes.
    fn channel(&self) -> usize {
        self.phases * self.plane
    }
}

/// One image's bordered input planes (`planes`: `[channels, H, W]`, all groups or one),
/// written into `padded`; a group's share is its slice for [`block`]. `parallel`: the
/// channels split over the threads (at batch 1 each thread then copies planes its share of the
/// previous layer mostly wrote, and neither waits on the other's copy).
pub(crate) fn border(
    isa: Isa,
    g: &ConvGeometry,
    planes: &[f32],
    padded: &mut Vec<f32>,
    parallel: bool,
) {
    let layout = Layout::new(g, isa);
    let channels = planes.len() / (g.h * g.w);
    // Grown, never cleared: each channel's planes are filled below, zeros and all.
    let len = channels * layout.channel();
    if padded.len() < len {
        padded.resize(len, 0.0);
    }
    padded.truncate(len);
    let channel = |(src, dst): (&[f32], &mut [f32])| {
        if layout.phases == 1 {
            // The plane as it is, between a zero row (and one zero before it) and the rest.
            let at = layout.row + 1;
            dst[..at].fill(0.0);
            dst[at..][..src.len()].copy_from_slice(src);
            dst[at + src.len()..].fill(0.0);
            return;
        }
        dst.fill(0.0);
        for (y, src_row) in src.chunks(g.w).enumerate() {
            // The row's even and odd columns, to its two phases.
            let at = |phase: usize| phase * layout.plane + (y / 2 + 1) * layout.row + 1;
            let (even, odd) = dst.split_at_mut(at(2 * (y % 2) + 1));
            let (even, odd) = (&mut even[at(2 * (y % 2))..], &mut odd[..g.w / 2]);
            for ((even, odd), pair) in even.iter_mut().zip(odd).zip(src_row.chunks_exact(2)) {
                (*even, *odd) = (pair[0], pair[1]);
            }
            if g.w % 2 == 1 {
                even[g.w / 2] = src_row[g.w - 1];
            }
        }
    };
    let (src_len, dst_len) = (g.h * g.w, layout.channel());
    if parallel {
        let per_thread = channels.div_ceil(rayon::current_num_threads());
        let pairs = planes
            .par_chunks(src_len)
            .zip(padded.par_chunks_mut(dst_len));
        pairs.with_min_len(per_thread).for_each(channel);
    } else {
        let pairs = planes.chunks(src_len).zip(padded.chunks_mut(dst_len));
        pairs.for_each(channel);
    }
}

/// Output channels `b · OUT_BLOCK..` of one group of one image (`out`: those channels' `[H, W]`
/// planes, fewer than `OUT_BLOCK` in a group's last block; every value stored, so it needs no
/// initialising, and returned initialised), from the group's [`border`]ed input and those
/// channels' filters (`weight`: their rows of `[c_out, c_in / groups, 3, 3]`), on `isa` (one
/// this CPU runs). `tiles` is scratch.
pub(crate) fn block<'o>(
    isa: Isa,
    g: &ConvGeometry,
    padded: &[f32],
    weight: &[f32],
    out: &'o mut [MaybeUninit<f32>],
    tiles: &mut Vec<f32>,
) -> &'o mut [f32] {
    let layout = Layout::new(g, isa);
    let group_in = g.c_in / g.groups;
    // The assembly tile's loop over input channels runs at least once.
    assert!(group_in > 0, "input channels");
    assert_eq!(
        padded.len(),
        group_in * layout.channel(),
        "bordered input size"
    );
    let [rows, columns] = g.output_size();
    let channels = out.len() / (rows * columns);
    assert_eq!(out.len(), channels * rows * columns, "output planes");
    assert!((1..=OUT_BLOCK).contains(&channels), "output planes");
    assert_eq!(weight.len(), channels * group_in * 9, "weight size");
    assert!(Isa::available().contains(&isa), "{isa:?} on this CPU");
    // A plane of whole vectors is the output plane itself: the tiles go straight to `out`,
    // with no copy.
    let in_place = layout.positions == rows * columns;
    // Grown, never cleared: `run` stores every value of the `channels` planes copied out below.
    let len = OUT_BLOCK * layout.positions;
    if !in_place && tiles.len() < len {
        tiles.resize(len, 0.0);
    }
    let args = Args {
        input: padded.as_ptr(),
        weights: weight.as_ptr(),
        channels,
        out: if in_place {
            out.as_mut_ptr().cast()
        } else {
            tiles.as_mut_ptr()
        },
        group_in,
        layout,
    };
    // SAFETY: the asserts above size every buffer for the loads and stores of `run` (the
    // layout leaves room for every tap of every tile; `run` stores the `channels` planes of
    // `positions` values only, which is `out`'s size when in place); the ISA is one this CPU
    // runs.
    unsafe {
        match (isa, layout.phases) {
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, 1) => x86::avx512::<1>(args),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, _) => x86::avx512::<2>(args),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2, 1) => x86::avx2::<1>(args),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2, _) => x86::avx2::<2>(args),
            (_, 1) => run::<Scalar, 4, OUT_BLOCK, 1>(args),
            _ => run::<Scalar, 4, OUT_BLOCK, 2>(args),
        }
    }
    if in_place {
        // SAFETY: `run` stored every value of the `channels` planes, which are all of `out`.
        return unsafe { assume_init_mut(out) };
    }
    // Each plane without its rounding (rows have no border column: the plane is contiguous).
    for (plane, tile) in out
        .chunks_mut(rows * columns)
        .zip(tiles[..len].chunks(layout.positions))
    {
        for (o, v) in plane.iter_mut().zip(tile) {
            o.write(*v);
        }
    }
    // SAFETY: the loop above stored every value of every plane of `out` (`channels` planes
    // of `rows · columns`, as asserted, each shorter than its tile's `positions`).
    unsafe { assume_init_mut(out) }
}

/// Pointers into the buffers [`block`] checked.
#[derive(Clone, Copy)]
struct Args {
    input: *const f32,
    /// The block's first filter; `channels` of them, `group_in · 9` values each.
    weights: *const f32,
    channels: usize,
    out: *mut f32,
    group_in: usize,
    layout: Layout,
}

/// Every tile of one block of output channels: `channels x positions` values at `args.out`,
/// in register tiles of `O` channels by `V` vectors (the last tile of a plane as many vectors
/// as are left; the last tile of a block's channels may compute channels past its last, never
/// stored).
///
/// # Safety
/// `args` must point at buffers sized as [`block`] checks; `S`'s instructions must run on
/// this CPU (the caller's `target_feature` compiles them in).
#[inline(always)]
unsafe fn run<S: Simd, const V: usize, const O: usize, const STRIDE: usize>(args: Args) {
    unsafe { run_with::<S, V, O, STRIDE>(args, tile::<S, V, O, STRIDE>) }
}

/// [`run`], with `full` computing each whole tile of `O` channels by `V` vectors (the same
/// sums as [`tile`]'s, in the same order) and [`tile`] the others.
///
/// # Safety
/// As [`run`]'s, and `full`'s own.
#[inline(always)]
unsafe fn run_with<S: Simd, const V: usize, const O: usize, const STRIDE: usize>(
    args: Args,
    full: unsafe fn(Args, usize, usize),
) {
    // The layout rounds positions up to whole vectors; the tail below covers up to 3 of them.
    assert!(
        args.layout.positions.is_multiple_of(S::LANES) && V <= 4,
        "tile size"
    );
    assert_eq!(OUT_BLOCK % O, 0, "channels per tile");
    assert_eq!(args.layout.phases, STRIDE * STRIDE, "stride");
    let step = V * S::LANES;
    let mut start = 0;
    // SAFETY (every call): `start` plus the tile's vectors stays inside `positions`.
    while start + step <= args.layout.positions {
        for first in (0..args.channels).step_by(O) {
            if first + O <= args.channels {
                unsafe { full(args, start, first) }
            } else {
                unsafe { tile::<S, V, O, STRIDE>(args, start, first) }
            }
        }
        start += step;
    }
    for first in (0..args.channels).step_by(O) {
        match (args.layout.positions - start) / S::LANES {
            0 => {}
            1 => unsafe { tile::<S, 1, O, STRIDE>(args, start, first) },
            2 => unsafe { tile::<S, 2, O, STRIDE>(args, start, first) },
            _ => unsafe { tile::<S, 3, O, STRIDE>(args, start, first) },
        }
    }
}

/// One register tile: output channels `first..first + O` of the block by the `T` vectors of
/// positions from `start`.
///
/// # Safety
/// As [`run`]'s, and `start + T · LANES <= positions`, `first + O <= OUT_BLOCK`.
#[inline(always)]
unsafe fn tile<S: Simd, const T: usize, const O: usize, const STRIDE: usize>(
    args: Args,
    start: usize,
    first: usize,
) {
    let Args {
        input,
        weights,
        channels,
        out,
        group_in,
        layout,
    } = args;
    let taps = layout.taps::<STRIDE>();
    // SAFETY (all pointer arithmetic below): `start + T · LANES <= positions`, and the
    // furthest tap reads at most `2 · row + 2` past it in its (phase) plane, inside `plane`.
    unsafe {
        // One filter per channel of the tile; past the block's last channel, its first filter
        // again (in bounds; those rows of the tile are never stored).
        let filters: [*const f32; O] = std::array::from_fn(|o| {
            let channel = if first + o < channels { first + o } else { 0 };
            weights.add(channel * group_in * 9)
        });
        let edges: [[u32; 2]; T] = layout.edge_masks(start, S::LANES);
        let mut acc = [[S::zero(); T]; O];
        for ci in 0..group_in {
            let plane = input.add(ci * layout.channel() + start);
            for (tap, offset) in taps.iter().enumerate() {
                let mut x = [S::zero(); T];
                for ((v, x), edges) in x.iter_mut().enumerate().zip(edges) {
                    let at = plane.add(offset + v * S::LANES);
                    *x = match (STRIDE, tap % 3) {
                        (_, 0) => S::load_masked(at, edges[0]),
                        (1, 2) => S::load_masked(at, edges[1]),
                        _ => S::load(at),
                    };
                }
                for (acc, filter) in acc.iter_mut().zip(filters) {
                    let w = S::splat(*filter.add(ci * 9 + tap));
                    for (acc, x) in acc.iter_mut().zip(x) {
                        *acc = S::fma(w, x, *acc);
                    }
                }
            }
        }
        // Only the block's channels: the output may be `block`'s `out` itself.
        for (o, acc) in acc.iter().enumerate().take(channels - first) {
            let out = out.add((first + o) * layout.positions + start);
            for (v, acc) in acc.iter().enumerate() {
                S::store(out.add(v * S::LANES), *acc);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The `target_feature` entry points that compile [`run`] for each x86 vector width (the
    //! `#[inline(always)]` kernel and operations inline into each).

    use super::{Args, run, run_with};
    use crate::simd::x86::{Avx2, Avx512};

    /// # Safety
    /// As [`run`]'s, on a CPU with AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn avx512<const STRIDE: usize>(args: Args) {
        unsafe { run::<Avx512, 3, 8, STRIDE>(args) }
    }

    /// # Safety
    /// As [`run`]'s, on a CPU with AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn avx2<const STRIDE: usize>(args: Args) {
        unsafe { run_with::<Avx2, 3, 4, STRIDE>(args, avx2_tile::<STRIDE>) }
    }

    /// One tile of 4 channels by 3 vectors of 8, as [`tile`] computes it, in assembly: its 12
    /// accumulators, 3 input vectors and 1 broadcast weight are exactly the 16 registers, and
    /// the compiled [`tile`] spilled accumulators to the stack (a store and a reload in the
    /// chain of every third FMA; this runs 1.5x faster).
    ///
    /// The taps of kernel row `ky` read from one base pointer per row, `b{ky}`: column `kx`
    /// at `+ q`, `+ 4`, then `+ 8` at stride 1 (`q = 0`) or `+ q + 4` at stride 2 (`q`: one
    /// phase plane, so that columns 0 and 2 read the odd-column phase; see [`Layout::taps`]).
    /// The loads of column 0 (and at stride 1 of column 2) are ANDed with lane masks from
    /// memory (`{m}`: column 0's three vectors, then column 2's): no register is left for one.
    ///
    /// # Safety
    /// As [`tile`]'s for `T = 3`, `O = 4`, with `first + 4 <= channels`; a CPU with AVX2 and
    /// FMA.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2_tile<const STRIDE: usize>(args: Args, start: usize, first: usize) {
        use std::arch::asm;
        use std::arch::x86_64::{_mm256_setzero_ps, _mm256_setzero_si256, _mm256_storeu_ps};

        use crate::simd::x86::avx2_lanes;

        /// One filter's weight (`$w`: its address) broadcast, times the 3 input vectors into
        /// that filter's 3 accumulators.
        #[rustfmt::skip]
        macro_rules! filter {
            ($w:expr, $a:literal, $b:literal, $c:literal) => {
                concat!(
                    "vbroadcastss ymm15, [", $w, "]\n",
                    "vfmadd231ps ymm", $a, ", ymm15, ymm12\n",
                    "vfmadd231ps ymm", $b, ", ymm15, ymm13\n",
                    "vfmadd231ps ymm", $c, ", ymm15, ymm14\n",
                )
            };
        }
        /// The 3 input vectors of one tap (`$at`: its address), ANDed with the lane masks at
        /// byte `$m` of `{m}` if given, times the weight of each of the 4 filters at byte `$w`
        /// of their rows: 12 FMAs, in `tile`'s order.
        #[rustfmt::skip]
        macro_rules! tap {
            ($at:expr, $w:literal $(, $m:literal)?) => {
                concat!(
                    "vmovups ymm12, [", $at, "]\n",
                    "vmovups ymm13, [", $at, " + 32]\n",
                    "vmovups ymm14, [", $at, " + 64]\n",
                    $(
                        "vandps ymm12, ymm12, [{m} + ", $m, "]\n",
                        "vandps ymm13, ymm13, [{m} + ", $m, " + 32]\n",
                        "vandps ymm14, ymm14, [{m} + ", $m, " + 64]\n",
                    )?
                    filter!(concat!("{w0} + ", $w), "0", "1", "2"),
                    filter!(concat!("{w0} + {filter} + ", $w), "3", "4", "5"),
                    filter!(concat!("{w2} + ", $w), "6", "7", "8"),
                    filter!(concat!("{w2} + {filter} + ", $w), "9", "10", "11"),
                )
            };
        }

        let Args {
            input,
            weights,
            out,
            group_in,
            layout,
            ..
        } = args;
        let filter = group_in * 9; // values between two filters' rows
        let x = unsafe { input.add(start) };
        let (row, plane) = (layout.row, layout.plane);
        // Kernel row `ky`'s base and the offset of column 0, as `Layout::taps` places them.
        let (bases, q) = match STRIDE {
            1 => ([0, row, 2 * row], 0),
            _ => ([2 * plane, row, 2 * plane + row], plane),
        };
        let [b0, b1, b2] = bases.map(|b| unsafe { x.add(b) });
        // Column 0's lane masks for the 3 vectors, then column 2's.
        let mut masks = [_mm256_setzero_si256(); 6];
        let edges: [[u32; 2]; 3] = layout.edge_masks(start, 8);
        for (v, [left, right]) in edges.into_iter().enumerate() {
            (masks[v], masks[3 + v]) = unsafe { (avx2_lanes(left), avx2_lanes(right)) };
        }
        // Written by the assembly (ymm0-11: filter `i / 3`, vector `i % 3`).
        let mut acc = [_mm256_setzero_ps(); 12];
        /// The tile's sums over every input channel into ymm0-11, with column 2 of each
        /// kernel row at `$kx2`, column 0 masked with `{m}`'s masks at byte `$left` and
        /// column 2 with those at `$right` if given.
        macro_rules! accumulate {
            ($kx2:literal, $left:literal $(, $right:literal)?) => {
                asm!(
                    "vxorps ymm0, ymm0, ymm0",
                    "vxorps ymm1, ymm1, ymm1",
                    "vxorps ymm2, ymm2, ymm2",
                    "vxorps ymm3, ymm3, ymm3",
                    "vxorps ymm4, ymm4, ymm4",
                    "vxorps ymm5, ymm5, ymm5",
                    "vxorps ymm6, ymm6, ymm6",
                    "vxorps ymm7, ymm7, ymm7",
                    "vxorps ymm8, ymm8, ymm8",
                    "vxorps ymm9, ymm9, ymm9",
                    "vxorps ymm10, ymm10, ymm10",
                    "vxorps ymm11, ymm11, ymm11",
                    "2:",
                    tap!("{b0} + {q}", "0", $left),
                    tap!("{b0} + 4", "4"),
                    tap!(concat!("{b0}", $kx2), "8" $(, $right)?),
                    tap!("{b1} + {q}", "12", $left),
                    tap!("{b1} + 4", "16"),
                    tap!(concat!("{b1}", $kx2), "20" $(, $right)?),
                    tap!("{b2} + {q}", "24", $left),
                    tap!("{b2} + 4", "28"),
                    tap!(concat!("{b2}", $kx2), "32" $(, $right)?),
                    "add {b0}, {channel}",
                    "add {b1}, {channel}",
                    "add {b2}, {channel}",
                    "add {w0}, 36",
                    "add {w2}, 36",
                    "dec {n}",
                    "jnz 2b",
                    b0 = inout(reg) b0 => _,
                    b1 = inout(reg) b1 => _,
                    b2 = inout(reg) b2 => _,
                    w0 = inout(reg) weights.add(first * filter) => _,
                    w2 = inout(reg) weights.add((first + 2) * filter) => _,
                    n = inout(reg) group_in => _,
                    q = in(reg) q * 4,
                    filter = in(reg) filter * 4,
                    channel = in(reg) layout.channel() * 4,
                    m = in(reg) masks.as_ptr(),
                    out("ymm0") acc[0], out("ymm1") acc[1], out("ymm2") acc[2],
                    out("ymm3") acc[3], out("ymm4") acc[4], out("ymm5") acc[5],
                    out("ymm6") acc[6], out("ymm7") acc[7], out("ymm8") acc[8],
                    out("ymm9") acc[9], out("ymm10") acc[10], out("ymm11") acc[11],
                    out("ymm12") _, out("ymm13") _, out("ymm14") _, out("ymm15") _,
                    options(nostack, readonly),
                )
            };
        }
        // SAFETY: as `tile`'s: every load is a tap of a position inside the tile, which the
        // layout keeps inside its (phase) plane; the weights are the 4 rows `first..first + 4`;
        // the masks are the 192 bytes of `masks`.
        unsafe {
            match STRIDE {
                1 => accumulate!(" + 8", "0", "96"),
                _ => accumulate!(" + {q} + 4", "0"),
            }
            for (i, acc) in acc.iter().enumerate() {
                let (o, v) = (i / 3, i % 3);
                _mm256_storeu_ps(
                    out.add((first + o) * layout.positions + start + v * 8),
                    *acc,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain six-loop convolution with zero padding 1.
    fn reference(g: &ConvGeometry, x: &[f32], w: &[f32]) -> Vec<f32> {
        let (gi, go) = (g.c_in / g.groups, g.c_out / g.groups);
        let [oh, ow] = g.output_size();
        let s = g.stride[0];
        let mut y = vec![0.0; g.c_out * oh * ow];
        for co in 0..g.c_out {
            for ci in 0..gi {
                let input = (co / go) * gi + ci;
                for oy in 0..oh {
                    for ox in 0..ow {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let (iy, ix) = (oy * s + ky, ox * s + kx);
                                if iy < 1 || ix < 1 || iy > g.h || ix > g.w {
                                    continue;
                                }
                                y[(co * oh + oy) * ow + ox] += w
                                    [((co * gi + ci) * 3 + ky) * 3 + kx]
                                    * x[(input * g.h + iy - 1) * g.w + ix - 1];
                            }
                        }
                    }
                }
            }
        }
        y
    }

    fn geometry(c_in: usize, c_out: usize, h: usize, w: usize, groups: usize) -> ConvGeometry {
        strided(c_in, c_out, h, w, groups, 1)
    }

    fn strided(
        c_in: usize,
        c_out: usize,
        h: usize,
        w: usize,
        groups: usize,
        stride: usize,
    ) -> ConvGeometry {
        ConvGeometry {
            n: 1,
            c_in,
            h,
            w,
            c_out,
            kernel: [3, 3],
            stride: [stride, stride],
            padding: [1, 1],
            dilation: [1, 1],
            groups,
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
        // One tile buffer and one bordered-input buffer (NaN at first) for every case, as a
        // thread's are reused: stale values from the case before must never reach an output.
        let mut tiles = Vec::new();
        let mut padded = vec![f32::NAN; 1 << 14];
        // Odd sizes (tails of 1, 2 and 3 vectors, of channel blocks), two groups.
        for g in [
            geometry(3, 8, 8, 8, 1),
            geometry(5, 11, 9, 17, 1),
            geometry(4, 18, 10, 8, 2),
            geometry(2, 8, 7, 8, 1),
            // Stride 2: even and odd sizes (an odd one's last odd row and column are the
            // bottom and right padding), grouped.
            strided(3, 8, 16, 16, 1, 2),
            strided(5, 11, 17, 15, 1, 2),
            strided(4, 16, 9, 20, 2, 2),
            // Groups of fewer output channels than a block: 4 (ResNeXt's first stage), 1,
            // and 2 at stride 2.
            geometry(8, 8, 9, 9, 2),
            geometry(6, 6, 5, 11, 6),
            strided(8, 4, 9, 9, 2, 2),
            // Planes narrower than a vector: ResNet-50's 7x7, and down to a single pixel
            // (every tap but the centre's in the padding), at both strides.
            geometry(4, 8, 7, 7, 1),
            geometry(6, 16, 7, 7, 2),
            geometry(3, 9, 4, 5, 1),
            geometry(2, 8, 2, 3, 1),
            geometry(2, 8, 1, 1, 1),
            strided(4, 8, 7, 7, 1, 2),
            strided(3, 8, 3, 2, 1, 2),
            strided(2, 8, 1, 1, 1, 2),
            // Stride 1 again, on the buffer the stride-2 cases left behind.
            geometry(5, 11, 9, 17, 1),
        ] {
            let x = values(g.c_in * g.h * g.w, 1);
            let w = values(g.c_out * g.c_in / g.groups * 9, 2);
            let expected = reference(&g, &x, &w);
            let pixels = g.output_size()[0] * g.output_size()[1];
            let (group_in, group_out) = (g.c_in / g.groups, g.c_out / g.groups);
            for &isa in Isa::available() {
                // NaN: a value `block` failed to store would show.
                let mut y = vec![MaybeUninit::new(f32::NAN); g.c_out * pixels];
                for group in 0..g.groups {
                    let planes = &x[group * group_in * g.h * g.w..][..group_in * g.h * g.w];
                    border(isa, &g, planes, &mut padded, isa != Isa::Scalar);
                    let out = &mut y[group * group_out * pixels..][..group_out * pixels];
                    let w = &w[group * group_out * group_in * 9..][..group_out * group_in * 9];
                    let blocks = out
                        .chunks_mut(OUT_BLOCK * pixels)
                        .zip(w.chunks(OUT_BLOCK * group_in * 9));
                    for (out, w) in blocks {
                        block(isa, &g, &padded, w, out, &mut tiles);
                    }
                }
                // SAFETY: initialised with NaN above.
                let y = unsafe { assume_init_mut(&mut y) };
                assert_eq!(y, expected, "{isa:?} on {g:?}");
            }
        }
    }

    #[test]
    fn a_hand_worked_box_filter_sums_each_neighbourhood() {
        // All-ones 3x3 weights on a 8x8 plane of ones: 4 at corners, 6 on edges, 9 inside.
        let g = geometry(1, 8, 8, 8, 1);
        let mut padded = Vec::new();
        border(Isa::Scalar, &g, &vec![1.0; 64], &mut padded, true);
        let mut y = vec![MaybeUninit::uninit(); 8 * 64];
        let y = block(
            Isa::Scalar,
            &g,
            &padded,
            &[1.0; 8 * 9],
            &mut y,
            &mut Vec::new(),
        );
        assert_eq!(&y[..8], &[4.0, 6.0, 6.0, 6.0, 6.0, 6.0, 6.0, 4.0]);
        assert_eq!(&y[8..16], &[6.0, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0, 6.0]);
        assert_eq!(
            &y[7 * 64..][56..],
            &[4.0, 6.0, 6.0, 6.0, 6.0, 6.0, 6.0, 4.0]
        );
    }
}
