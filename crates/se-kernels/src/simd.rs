//! The vector operations the direct kernels are written in, for each x86 vector width and for
//! plain scalar code: one `#[inline(always)]` generic kernel per layout, compiled for each by a
//! `#[target_feature]` entry point in its module. Plain loops elsewhere (a convolution's
//! epilogue) get the same widths through [`widest`].

#[cfg(target_arch = "x86_64")]
use crate::cpu_direct::Isa;

/// `f()` compiled for the widest vector ISA the kernels run on (`Isa::selected`, which
/// `SE_KERNELS_ISA` can narrow): plain loops in `f` (a plane's epilogue, a sum) vectorise 16 or
/// 8 lanes wide there instead of the 4 of the baseline x86-64 target. `f` is inlined into a
/// `#[target_feature]` entry point.
#[inline(always)]
pub(crate) fn widest<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    match Isa::selected() {
        // SAFETY: `Isa::selected` is an ISA this CPU runs.
        Isa::Avx512 => return unsafe { x86::with_avx512(f) },
        Isa::Avx2 => return unsafe { x86::with_avx2(f) },
        Isa::Scalar => {}
    }
    f()
}

/// The vector operations the kernels need.
pub(crate) trait Simd {
    type V: Copy;
    const LANES: usize;
    unsafe fn zero() -> Self::V;
    unsafe fn splat(value: f32) -> Self::V;
    unsafe fn load(from: *const f32) -> Self::V;
    /// A load with lane `l` zero unless bit `l` of `keep` is set (every lane's address must
    /// still be readable).
    unsafe fn load_masked(from: *const f32, keep: u32) -> Self::V;
    unsafe fn store(to: *mut f32, v: Self::V);
    /// `a · b + c`.
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
}

/// One lane, plain `f32` arithmetic.
pub(crate) struct Scalar;

impl Simd for Scalar {
    type V = f32;
    const LANES: usize = 1;
    #[inline(always)]
    unsafe fn zero() -> f32 {
        0.0
    }
    #[inline(always)]
    unsafe fn splat(value: f32) -> f32 {
        value
    }
    #[inline(always)]
    unsafe fn load(from: *const f32) -> f32 {
        unsafe { *from }
    }
    #[inline(always)]
    unsafe fn load_masked(from: *const f32, keep: u32) -> f32 {
        if keep & 1 == 1 { unsafe { *from } } else { 0.0 }
    }
    #[inline(always)]
    unsafe fn store(to: *mut f32, v: f32) {
        unsafe { *to = v }
    }
    #[inline(always)]
    unsafe fn fma(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    //! The x86 vector types (the kernels' `target_feature` entry points compile them in).

    use std::arch::x86_64::*;

    use super::Simd;

    /// `f()` with AVX-512F enabled (see [`super::widest`]).
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn with_avx512<R>(f: impl FnOnce() -> R) -> R {
        f()
    }

    /// `f()` with AVX2 and FMA enabled (see [`super::widest`]).
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
        f()
    }

    pub(crate) struct Avx512;

    impl Simd for Avx512 {
        type V = __m512;
        const LANES: usize = 16;
        #[inline(always)]
        unsafe fn zero() -> __m512 {
            unsafe { _mm512_setzero_ps() }
        }
        #[inline(always)]
        unsafe fn splat(value: f32) -> __m512 {
            unsafe { _mm512_set1_ps(value) }
        }
        #[inline(always)]
        unsafe fn load(from: *const f32) -> __m512 {
            unsafe { _mm512_loadu_ps(from) }
        }
        #[inline(always)]
        unsafe fn load_masked(from: *const f32, keep: u32) -> __m512 {
            unsafe { _mm512_maskz_loadu_ps(keep as __mmask16, from) }
        }
        #[inline(always)]
        unsafe fn store(to: *mut f32, v: __m512) {
            unsafe { _mm512_storeu_ps(to, v) }
        }
        #[inline(always)]
        unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }
    }

    pub(crate) struct Avx2;

    /// Lane `l` all ones if bit `l` of `keep` is set, else zero: an AVX2 lane mask.
    #[inline(always)]
    pub(crate) unsafe fn avx2_lanes(keep: u32) -> __m256i {
        unsafe {
            let bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
            let kept = _mm256_and_si256(_mm256_set1_epi32(keep as i32), bits);
            _mm256_cmpeq_epi32(kept, bits)
        }
    }

    impl Simd for Avx2 {
        type V = __m256;
        const LANES: usize = 8;
        #[inline(always)]
        unsafe fn zero() -> __m256 {
            unsafe { _mm256_setzero_ps() }
        }
        #[inline(always)]
        unsafe fn splat(value: f32) -> __m256 {
            unsafe { _mm256_set1_ps(value) }
        }
        #[inline(always)]
        unsafe fn load(from: *const f32) -> __m256 {
            unsafe { _mm256_loadu_ps(from) }
        }
        #[inline(always)]
        unsafe fn load_masked(from: *const f32, keep: u32) -> __m256 {
            unsafe { _mm256_maskload_ps(from, avx2_lanes(keep)) }
        }
        #[inline(always)]
        unsafe fn store(to: *mut f32, v: __m256) {
            unsafe { _mm256_storeu_ps(to, v) }
        }
        #[inline(always)]
        unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu_direct::Isa;

    /// Lanes 0, 2, 13 and 15 of the first `S::LANES` of 1, 2, 3, ...
    fn masked<S: Simd>() -> Vec<f32> {
        let values: Vec<f32> = (1..=16).map(|v| v as f32).collect();
        let mut out = vec![f32::NAN; 16];
        // SAFETY: 16 values to read and to write; the callers run only the ISAs this CPU has.
        unsafe { S::store(out.as_mut_ptr(), S::load_masked(values.as_ptr(), 0xa005)) };
        out.truncate(S::LANES);
        out
    }

    #[test]
    fn a_masked_load_keeps_the_lanes_asked_for_and_zeroes_the_rest() {
        let expected = [
            1.0, 0.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 14.0, 0.0, 16.0,
        ];
        for isa in Isa::available() {
            let got = match isa {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => masked::<x86::Avx512>(),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => masked::<x86::Avx2>(),
                _ => masked::<Scalar>(),
            };
            assert_eq!(got, &expected[..got.len()], "{isa:?}");
        }
    }
}
