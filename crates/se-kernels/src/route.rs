//! Which kernels a call runs: the backend's type is compared with the ones that have kernels of
//! their own ([`Kernels`] impls), and the call goes there or to Burn's ops.
//!
//! Burn 0.21 has no specialisation, and a trait that every backend must implement would shut out
//! the backends this crate does not name (the orphan rule forbids a user's `impl` of a foreign
//! trait for a foreign backend). Comparing `TypeId`s costs a few instructions per call; the
//! casts are checked (`Any::downcast`), never `unsafe`.

use std::any::{Any, TypeId};

use burn::prelude::*;
use burn::tensor::ops::{ConvOptions, FloatTensor};

#[cfg(feature = "flex")]
use crate::kernels::Kernels;
use crate::{ConvEpilogue, burn_ops};

/// Whether `B` runs this crate's CPU kernels (`Flex`, or `Autodiff` over it) rather than Burn's
/// ops. Every backend gives the same results either way; this only says which code runs.
pub fn has_cpu_kernels<B: Backend>() -> bool {
    #[cfg(feature = "flex")]
    {
        use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
        use burn::backend::{Autodiff, Flex};
        same::<B, Flex>()
            || same::<B, Autodiff<Flex>>()
            || same::<B, Autodiff<Flex, BalancedCheckpointing>>()
    }
    #[cfg(not(feature = "flex"))]
    {
        false
    }
}

/// Runs `f` on one of the CPU kernels' worker threads when `B` is plain `Flex` (inference),
/// else on this thread.
///
/// Why: every parallel loop of a kernel started from a thread outside rayon's pool is injected
/// into the pool, and the caller sleeps until a worker wakes it; a batch-1 forward pass makes
/// that round trip for every layer, and on two cores half of its time went to the scheduler.
/// Started on a worker, the loops fork and join on the pool's own queues, and the calling
/// thread works instead of sleeping. Inside the pool already, `f` runs in place.
///
/// Not under autodiff: a backward pass holds Burn's graph lock while its kernels run parallel
/// loops, and a worker waiting in such a loop may steal another thread's whole pass, which then
/// blocks on the same lock beneath the waiting loop: a deadlock (seen with two trainings in one
/// process). Plain `Flex` takes no lock around its kernels.
///
/// `f` runs on a worker's stack (2 MiB unless the global pool was built with another size), and
/// while one of its loops waits, that worker may run another caller's whole pass first: fine
/// for a network's forward pass, not for deep recursion.
pub fn on_cpu_threads<B: Backend, R: Send>(f: impl FnOnce() -> R + Send) -> R {
    #[cfg(feature = "flex")]
    if same::<B, burn::backend::Flex>() && rayon::current_thread_index().is_none() {
        let mut result = None;
        rayon::scope(|_| result = Some(f()));
        return result.expect("the scope ran its operation");
    }
    f()
}

/// `route!(B, method(args...), else fallback)`: returns `<K as Kernels>::method(args...)` for the
/// backend `K` that `B` is, if it is one with kernels; otherwise evaluates `fallback`.
macro_rules! route {
    ($B:ident, $method:ident($($arg:ident),*), else $fallback:expr) => {{
        #[cfg(feature = "flex")]
        {
            use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
            use burn::backend::{Autodiff, Flex};
            if same::<$B, Flex>() {
                return cast(<Flex as Kernels>::$method($(cast($arg)),*));
            }
            if same::<$B, Autodiff<Flex>>() {
                return cast(<Autodiff<Flex> as Kernels>::$method($(cast($arg)),*));
            }
            if same::<$B, Autodiff<Flex, BalancedCheckpointing>>() {
                type K = Autodiff<Flex, BalancedCheckpointing>;
                return cast(<K as Kernels>::$method($(cast($arg)),*));
            }
        }
        $fallback
    }};
}

pub(crate) fn convolution<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    options: ConvOptions<2>,
) -> FloatTensor<B> {
    route!(B, convolution(x, weight, options), else B::conv2d(x, weight, None, options))
}

pub(crate) fn convolution_fused<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    options: ConvOptions<2>,
    epilogue: ConvEpilogue<B>,
) -> (FloatTensor<B>, Option<FloatTensor<B>>) {
    route!(
        B,
        convolution_fused(x, weight, options, epilogue),
        else burn_ops::convolution_fused::<B>(x, weight, options, epilogue)
    )
}

pub(crate) fn plane_affine<B: Backend>(
    x: FloatTensor<B>,
    scale: FloatTensor<B>,
    shift: FloatTensor<B>,
    residual: Option<FloatTensor<B>>,
    relu: bool,
) -> FloatTensor<B> {
    route!(
        B,
        plane_affine(x, scale, shift, residual, relu),
        else burn_ops::plane_affine::<B>(x, scale, shift, residual, relu)
    )
}

pub(crate) fn max_pool<B: Backend>(
    x: FloatTensor<B>,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    ceil_mode: bool,
) -> FloatTensor<B> {
    route!(
        B,
        max_pool(x, kernel, stride, padding, dilation, ceil_mode),
        else B::max_pool2d(x, kernel, stride, padding, dilation, ceil_mode)
    )
}

pub(crate) fn plane_moments<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    route!(B, plane_moments(x), else burn_ops::plane_moments::<B>(x))
}

/// Whether `A` and `B` are the same type.
fn same<A: 'static, B: 'static>() -> bool {
    TypeId::of::<A>() == TypeId::of::<B>()
}

/// `value` as type `U`, which [`same`] has found to be its own type `T`.
#[allow(dead_code)] // unused without a backend that has kernels
fn cast<T: 'static, U: 'static>(value: T) -> U {
    let mut slot = Some(value);
    let slot: &mut dyn Any = &mut slot;
    slot.downcast_mut::<Option<U>>()
        .and_then(Option::take)
        .expect("route: the types were compared before the cast")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cast_keeps_the_value_and_refuses_another_type() {
        assert_eq!(cast::<(u8, bool), (u8, bool)>((7, true)), (7, true));
        let refused = std::panic::catch_unwind(|| cast::<u8, u16>(7));
        assert!(refused.is_err());
    }

    #[test]
    fn only_flex_and_autodiff_over_it_have_cpu_kernels() {
        use burn::backend::{Autodiff, Flex, NdArray};
        assert_eq!(has_cpu_kernels::<Flex>(), cfg!(feature = "flex"));
        assert_eq!(has_cpu_kernels::<Autodiff<Flex>>(), cfg!(feature = "flex"));
        assert!(!has_cpu_kernels::<NdArray<f64>>());
        assert!(!has_cpu_kernels::<NdArray>());
        assert!(!has_cpu_kernels::<Autodiff<NdArray>>());
    }

    #[cfg(feature = "flex")]
    #[test]
    fn plain_flex_runs_on_a_pool_worker_and_autodiff_in_place() {
        use burn::backend::{Autodiff, Flex, NdArray};
        let worker = || rayon::current_thread_index();
        assert!(on_cpu_threads::<Flex, _>(worker).is_some());
        // Under autodiff (Burn's graph lock, see `on_cpu_threads`) and elsewhere: this thread.
        assert_eq!(on_cpu_threads::<Autodiff<Flex>, _>(worker), None);
        assert_eq!(on_cpu_threads::<NdArray, _>(worker), None);
        // Nested: in place on the worker already running.
        let nested = on_cpu_threads::<Flex, _>(|| (worker(), on_cpu_threads::<Flex, _>(worker)));
        assert_eq!(nested.0, nested.1);
    }
}
