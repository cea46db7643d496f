//! The backend this binary was built for: one cargo feature each (`cargo xtask --backend X`
//! builds with `--no-default-features --features X`). With several features on, the first of
//! cuda, wgpu, flex, ndarray wins.

#[cfg(feature = "cuda")]
mod chosen {
    pub type Backend = burn::backend::Cuda;
    pub const NAME: &str = "cuda";
    pub const MISSING: &str = "an NVIDIA GPU and its driver (libcuda); no CUDA toolkit is needed";

    /// `SE_DEVICE=N` picks the N-th GPU (default 0).
    pub fn device() -> burn::tensor::Device<Backend> {
        burn::backend::cuda::CudaDevice::new(super::device_index())
    }
}

#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
mod chosen {
    use burn::backend::wgpu::WgpuDevice;

    pub type Backend = burn::backend::Wgpu;
    pub const NAME: &str = "wgpu";
    pub const MISSING: &str = "a GPU adapter (Vulkan, Metal or DirectX 12); on a machine without \
        a GPU, Mesa's software Vulkan: `apt-get install mesa-vulkan-drivers libvulkan1` and \
        SE_DEVICE=cpu";

    /// `SE_DEVICE=cpu` (a software adapter such as lavapipe), `discrete[:N]`, `integrated[:N]`;
    /// default: the best adapter wgpu finds.
    pub fn device() -> burn::tensor::Device<Backend> {
        let wanted = std::env::var("SE_DEVICE").unwrap_or_default();
        let index = super::device_index();
        match wanted.split(':').next().unwrap_or_default() {
            "cpu" => WgpuDevice::Cpu,
            "discrete" => WgpuDevice::DiscreteGpu(index),
            "integrated" => WgpuDevice::IntegratedGpu(index),
            _ => WgpuDevice::DefaultDevice,
        }
    }
}

#[cfg(all(feature = "flex", not(any(feature = "cuda", feature = "wgpu"))))]
mod chosen {
    pub type Backend = burn::backend::Flex;
    pub const NAME: &str = "flex";
    pub const MISSING: &str = "nothing (a CPU backend)";

    pub fn device() -> burn::tensor::Device<Backend> {
        Default::default()
    }
}

#[cfg(all(
    feature = "ndarray",
    not(any(feature = "cuda", feature = "wgpu", feature = "flex"))
))]
mod chosen {
    pub type Backend = burn::backend::NdArray;
    pub const NAME: &str = "ndarray";
    pub const MISSING: &str = "nothing (a CPU backend)";

    pub fn device() -> burn::tensor::Device<Backend> {
        Default::default()
    }
}

#[cfg(not(any(
    feature = "flex",
    feature = "ndarray",
    feature = "wgpu",
    feature = "cuda"
)))]
compile_error!("build se-cli with one backend feature: flex, ndarray, wgpu or cuda");

pub use chosen::{Backend, NAME};

/// The backend with automatic differentiation, for training.
pub type TrainBackend = burn::backend::Autodiff<Backend>;

/// The number after `:` in `SE_DEVICE` (`SE_DEVICE=1`, `SE_DEVICE=discrete:1`), default 0.
#[allow(dead_code)]
fn device_index() -> usize {
    std::env::var("SE_DEVICE")
        .ok()
        .and_then(|v| v.rsplit(':').next()?.parse().ok())
        .unwrap_or(0)
}

/// The device models run on, after checking that the backend starts: GPU backends panic deep
/// inside their runtime when there is no adapter or driver, so a one-element tensor is made
/// first and a failure becomes an error naming the backend and what it needs.
pub fn device() -> anyhow::Result<burn::tensor::Device<Backend>> {
    let device = chosen::device();
    let probe = device.clone();
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let started = std::panic::catch_unwind(move || {
        burn::tensor::Tensor::<Backend, 1>::ones([1], &probe).into_scalar()
    });
    std::panic::set_hook(previous_hook);
    match started {
        Ok(_) => Ok(device),
        Err(panic) => {
            let reason = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown reason");
            anyhow::bail!(
                "the {NAME} backend could not start on {device:?}: {reason}\n\
                 it needs {}",
                chosen::MISSING
            )
        }
    }
}
