//! Direct 3x3 stride-1 convolution on the CPU (padding 1, the 3x3 layers of every ResNet
//! block): no column matrix, each input value is read from cache by the nine taps that use it.
//!
//! The trick that keeps it short: each input plane is copied once into a zero-bordered plane
//! `(H + 2) x (W + 2)` laid out flat, and the output is computed over the same flat positions
//! `p = y · (W + 2) + x` (two junk columns per row, dropped when the result is copied out).
//! Tap `(ky, kx)` of output position `p` then reads position `p + ky · (W + 2) + kx`, so every
//! tap of a whole run of outputs is one contiguous vector load, with no edge cases.
//!
//! The register tile is [`OUT_BLOCK`] output channels by `V` vectors of positions: for each
//! input channel and tap, `V` loads, then `OUT_BLOCK · V` fused multiply-adds with the weight
//! broadcast. Weights are repacked per call as `[groups][channel block][c_in/groups][9][OUT_BLOCK]`
//! so that the broadcasts read memory in order. The vector width is chosen at run time
//! ([`Isa`]): AVX-512 (16 lanes, `V = 3`: 24 accumulators of 32 registers), AVX2 + FMA (8 lanes,
//! `V = 1`: 8 of 16) or scalar code for every other CPU; `SE_KERNELS_ISA=avx2|scalar` forces a
//! narrower one (the tests run each against the im2col path).
//!
//! Why not the blocked `NCHWc` layout of ONNX Runtime's MLAS: it needs every other op of the
//! network (BatchNorm, SE, residual adds, pools) to read and write that layout too; the flat
//! zero-bordered copy costs one pass over the input per layer (1/9 of im2col's), keeps NCHW
//! between layers and shares the epilogue with the GEMM path.

use std::sync::OnceLock;

use super::cpu_conv::ConvGeometry;
use crate::simd::{Scalar, Simd};

/// Output channels per register tile (and per block of packed weights).
pub(crate) const OUT_BLOCK: usize = 8;

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

    /// Flat output positions per register tile.
    fn tile(self) -> usize {
        match self {
            Isa::Avx512 => 48,
            Isa::Avx2 => 8,
            Isa::Scalar => 4,
        }
    }
}

/// Whether the direct kernel computes this convolution: 3x3, stride 1, padding 1, no dilation,
/// at least [`OUT_BLOCK`] output channels per group (fewer would leave most of each tile
/// unused) and planes at least 16 wide (on narrower ones the two border columns of each row
/// and the last tile's rounding waste a fifth or more of the work, and im2col + GEMM measured
/// as fast or faster: `examples/direct.rs`).
pub(crate) fn applies(g: &ConvGeometry) -> bool {
    enabled() && takes(g)
}

/// Whether [`applies`] holds, `SE_KERNELS_DIRECT` aside: the geometry rule alone.
pub(crate) fn takes(g: &ConvGeometry) -> bool {
    g.kernel == [3, 3]
        && g.stride == [1, 1]
        && g.padding == [1, 1]
        && g.dilation == [1, 1]
        && g.c_out / g.groups >= OUT_BLOCK
        && g.w >= 16
}

/// Whether the direct kernel runs at all: `SE_KERNELS_DIRECT=0` sends every convolution to the
/// im2col + GEMM path instead (to measure what the direct kernel buys); decided once per process.
pub fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("SE_KERNELS_DIRECT").map_or(true, |v| v != "0"))
}

/// The flat zero-bordered layout of one image's planes for a given geometry and ISA.
#[derive(Clone, Copy)]
struct Layout {
    /// `W + 2`: a bordered row.
    row: usize,
    /// Flat output positions computed, `H · (W + 2)` rounded up to whole tiles.
    positions: usize,
    /// Distance between two bordered input planes: room for every tap of every tile.
    plane: usize,
}

impl Layout {
    fn new(g: &ConvGeometry, isa: Isa) -> Self {
        let row = g.w + 2;
        let positions = (g.h * row).next_multiple_of(isa.tile());
        Self {
            row,
            positions,
            plane: positions + 2 * row + 2,
        }
    }
}

/// Weights `[c_out, c_in / groups, 3, 3]` repacked for the kernel: for each group and block of
/// [`OUT_BLOCK`] output channels, `[c_in / groups][9][OUT_BLOCK]`, zero for channels past the
/// group's last.
pub(crate) fn pack(g: &ConvGeometry, weight: &[f32]) -> Vec<f32> {
    let (group_in, group_out) = (g.c_in / g.groups, g.c_out / g.groups);
    let blocks = group_out.div_ceil(OUT_BLOCK);
    let block_len = group_in * 9 * OUT_BLOCK;
    let mut packed = vec![0.0; g.groups * blocks * block_len];
    for (co, filters) in weight.chunks(group_in * 9).enumerate() {
        let (group, within) = (co / group_out, co % group_out);
        let block = &mut packed[(group * blocks + within / OUT_BLOCK) * block_len..][..block_len];
        for (ci_tap, value) in filters.iter().enumerate() {
            block[ci_tap * OUT_BLOCK + within % OUT_BLOCK] = *value;
        }
    }
    packed
}

/// One image's bordered input planes (`planes`: `[channels, H, W]`, all groups or one),
/// written into `padded`; a group's share is its slice for [`block`].
pub(crate) fn border(isa: Isa, g: &ConvGeometry, planes: &[f32], padded: &mut Vec<f32>) {
    let layout = Layout::new(g, isa);
    let channels = planes.len() / (g.h * g.w);
    padded.clear();
    padded.resize(channels * layout.plane, 0.0);
    for (src, dst) in planes
        .chunks(g.h * g.w)
        .zip(padded.chunks_mut(layout.plane))
    {
        for (y, src_row) in src.chunks(g.w).enumerate() {
            dst[(y + 1) * layout.row + 1..][..g.w].copy_from_slice(src_row);
        }
    }
}

/// Values of [`pack`]ed weights per block of output channels.
pub(crate) fn block_len(g: &ConvGeometry) -> usize {
    g.c_in / g.groups * 9 * OUT_BLOCK
}

/// Output channels `b · OUT_BLOCK..` of one group of one image (`out`: those channels' `[H, W]`
/// planes, fewer than `OUT_BLOCK` in a group's last block), from the group's [`border`]ed input
/// and block `b` of its [`pack`]ed weights, on `isa` (one this CPU runs). `tiles` is scratch.
pub(crate) fn block(
    isa: Isa,
    g: &ConvGeometry,
    padded: &[f32],
    packed_block: &[f32],
    out: &mut [f32],
    tiles: &mut Vec<f32>,
) {
    let layout = Layout::new(g, isa);
    let group_in = g.c_in / g.groups;
    assert_eq!(padded.len(), group_in * layout.plane, "bordered input size");
    assert_eq!(packed_block.len(), block_len(g), "packed weight size");
    assert_eq!(out.len() % (g.h * g.w), 0, "output planes");
    assert!(out.len() <= OUT_BLOCK * g.h * g.w, "output planes");
    assert!(Isa::available().contains(&isa), "{isa:?} on this CPU");
    // Grown, never cleared: `run` stores every value of every tile before it is read.
    let len = OUT_BLOCK * layout.positions;
    if tiles.len() < len {
        tiles.resize(len, 0.0);
    }
    let args = Args {
        input: padded.as_ptr(),
        weights: packed_block.as_ptr(),
        out: tiles.as_mut_ptr(),
        group_in,
        layout,
    };
    // SAFETY: the asserts above size every buffer for the loads and stores of `run` (the
    // layout leaves room for every tap of every tile); the ISA is one this CPU runs.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => x86::avx512(args),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => x86::avx2(args),
            _ => run::<Scalar, 4>(args),
        }
    }
    // Drop the border columns and the rounding.
    for (plane, tile) in out
        .chunks_mut(g.h * g.w)
        .zip(tiles[..len].chunks(layout.positions))
    {
        for (y, row) in plane.chunks_mut(g.w).enumerate() {
            row.copy_from_slice(&tile[y * layout.row..][..g.w]);
        }
    }
}

/// Pointers into the buffers [`block`] checked.
#[derive(Clone, Copy)]
struct Args {
    input: *const f32,
    weights: *const f32,
    out: *mut f32,
    group_in: usize,
    layout: Layout,
}

/// Every tile of one block of output channels: `OUT_BLOCK x positions` values at `args.out`.
///
/// # Safety
/// `args` must point at buffers sized as [`block`] checks; `S`'s instructions must run on
/// this CPU (the caller's `target_feature` compiles them in).
#[inline(always)]
unsafe fn run<S: Simd, const V: usize>(args: Args) {
    let Args {
        input,
        weights,
        out,
        group_in,
        layout,
    } = args;
    // The tile of `Isa::tile` positions must be `V` vectors, or the last one reads past `plane`.
    assert_eq!(layout.positions % (V * S::LANES), 0, "tile size");
    let row = layout.row;
    let taps = [
        0,
        1,
        2,
        row,
        row + 1,
        row + 2,
        2 * row,
        2 * row + 1,
        2 * row + 2,
    ];
    let mut start = 0;
    while start < layout.positions {
        // SAFETY (all pointer arithmetic below): `start + V · LANES <= positions`, and the
        // furthest tap reads `2 · row + 2` past it, inside `plane`.
        unsafe {
            let mut acc = [[S::zero(); V]; OUT_BLOCK];
            for ci in 0..group_in {
                let plane = input.add(ci * layout.plane + start);
                let filters = weights.add(ci * 9 * OUT_BLOCK);
                for (tap, offset) in taps.iter().enumerate() {
                    let mut x = [S::zero(); V];
                    for (v, x) in x.iter_mut().enumerate() {
                        *x = S::load(plane.add(offset + v * S::LANES));
                    }
                    let w = filters.add(tap * OUT_BLOCK);
                    for (o, acc) in acc.iter_mut().enumerate() {
                        let w = S::splat(*w.add(o));
                        for (acc, x) in acc.iter_mut().zip(x) {
                            *acc = S::fma(w, x, *acc);
                        }
                    }
                }
            }
            for (o, acc) in acc.iter().enumerate() {
                for (v, acc) in acc.iter().enumerate() {
                    S::store(out.add(o * layout.positions + start + v * S::LANES), *acc);
                }
            }
        }
        start += V * S::LANES;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The `target_feature` entry points that compile [`run`] for each x86 vector width (the
    //! `#[inline(always)]` kernel and operations inline into each).

    use super::{Args, run};
    use crate::simd::x86::{Avx2, Avx512};

    /// # Safety
    /// As [`run`]'s, on a CPU with AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn avx512(args: Args) {
        unsafe { run::<Avx512, 3>(args) }
    }

    /// # Safety
    /// As [`run`]'s, on a CPU with AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn avx2(args: Args) {
        unsafe { run::<Avx2, 1>(args) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain six-loop convolution with zero padding 1.
    fn reference(g: &ConvGeometry, x: &[f32], w: &[f32]) -> Vec<f32> {
        let (gi, go) = (g.c_in / g.groups, g.c_out / g.groups);
        let mut y = vec![0.0; g.c_out * g.h * g.w];
        for co in 0..g.c_out {
            for ci in 0..gi {
                let input = (co / go) * gi + ci;
                for oy in 0..g.h {
                    for ox in 0..g.w {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let (iy, ix) = (oy + ky, ox + kx);
                                if iy < 1 || ix < 1 || iy > g.h || ix > g.w {
                                    continue;
                                }
                                y[(co * g.h + oy) * g.w + ox] += w
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
        ConvGeometry {
            n: 1,
            c_in,
            h,
            w,
            c_out,
            kernel: [3, 3],
            stride: [1, 1],
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
        // One tile buffer for every case, as a thread's is reused: stale values from the case
        // before must never reach an output.
        let mut tiles = Vec::new();
        // Odd sizes (tails of tiles and of channel blocks), two groups, a 1-row-high tile.
        for g in [
            geometry(3, 8, 8, 8, 1),
            geometry(5, 11, 9, 17, 1),
            geometry(4, 18, 10, 8, 2),
        ] {
            let x = values(g.c_in * g.h * g.w, 1);
            let w = values(g.c_out * g.c_in / g.groups * 9, 2);
            let expected = reference(&g, &x, &w);
            let packed = pack(&g, &w);
            let (group_in, group_out) = (g.c_in / g.groups, g.c_out / g.groups);
            let blocks = group_out.div_ceil(OUT_BLOCK);
            for &isa in Isa::available() {
                let mut y = vec![f32::NAN; g.c_out * g.h * g.w];
                for group in 0..g.groups {
                    let planes = &x[group * group_in * g.h * g.w..][..group_in * g.h * g.w];
                    let mut padded = Vec::new();
                    border(isa, &g, planes, &mut padded);
                    let out = &mut y[group * group_out * g.h * g.w..][..group_out * g.h * g.w];
                    for (b, out) in out.chunks_mut(OUT_BLOCK * g.h * g.w).enumerate() {
                        let packed =
                            &packed[(group * blocks + b) * block_len(&g)..][..block_len(&g)];
                        block(isa, &g, &padded, packed, out, &mut tiles);
                    }
                }
                assert_eq!(y, expected, "{isa:?} on {g:?}");
            }
        }
    }

    #[test]
    fn a_hand_worked_box_filter_sums_each_neighbourhood() {
        // All-ones 3x3 weights on a 8x8 plane of ones: 4 at corners, 6 on edges, 9 inside.
        let g = geometry(1, 8, 8, 8, 1);
        let packed = pack(&g, &vec![1.0; 8 * 9]);
        let mut padded = Vec::new();
        border(Isa::Scalar, &g, &vec![1.0; 64], &mut padded);
        let mut y = vec![0.0; 8 * 64];
        block(Isa::Scalar, &g, &padded, &packed, &mut y, &mut Vec::new());
        assert_eq!(&y[..8], &[4.0, 6.0, 6.0, 6.0, 6.0, 6.0, 6.0, 4.0]);
        assert_eq!(&y[8..16], &[6.0, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0, 6.0]);
        assert_eq!(
            &y[7 * 64..][56..],
            &[4.0, 6.0, 6.0, 6.0, 6.0, 6.0, 6.0, 4.0]
        );
    }
}
