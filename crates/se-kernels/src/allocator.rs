//! The process's allocator, set for a network's buffers.

/// Makes the C allocator keep freed buffers for reuse instead of giving them back to the
/// kernel; returns whether it could (glibc on Linux; elsewhere it does nothing).
///
/// Why: a forward and backward pass allocates and frees buffers of the same few sizes, each
/// several megabytes, every step. glibc's malloc serves a buffer above its mmap threshold
/// (128 KiB at first, raised only as such buffers are freed) with a fresh `mmap`, and hands the
/// free top of its heap back once it exceeds the trim threshold, so the next step takes its
/// memory as new pages again: a page fault and a zeroing per 4 KiB. On SE-ResNet-20 training
/// at batch 128 that was a quarter of the step; with the thresholds at their maximum (mmap only
/// above 32 MiB, trim above 1 GiB of free heap) the buffers are reused, the step ran ~1.4x
/// faster and the peak memory did not change (docs/benchmarks.md). PyTorch users get the same
/// effect from jemalloc or tcmalloc. The cost: up to 1 GiB of freed memory stays with the
/// process until it exits, which suits a training or inference process, not a long-lived one
/// that runs a network once.
///
/// Call it once at the start of `main`; `se` does.
pub fn keep_freed_buffers() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallopt` only sets two of malloc's parameters; called before any thread
        // allocates concurrently, and glibc takes its own lock anyway.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn glibc_takes_the_settings() {
        let expected = cfg!(all(target_os = "linux", target_env = "gnu"));
        assert_eq!(super::keep_freed_buffers(), expected);
        // Allocation still works, at a size that glibc would otherwise map afresh.
        let buffer = vec![1.0f32; 4 << 20];
        assert_eq!(buffer.iter().sum::<f32>(), (4 << 20) as f32);
    }
}
