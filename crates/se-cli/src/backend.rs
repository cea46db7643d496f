//! The backend this binary was built for: one cargo feature each (`cargo xtask --backend X`
//! builds with `--no-default-features --features X`). With several features on, the first of
//! cuda, wgpu, flex, ndarray wins.

#[cfg(feature = "cuda")]
mod chosen {
    pub type Backend = burn::backend::Cuda;
    pub type F16 = burn::backend::Cuda<burn::tensor::f16>;
    pub type Bf16 = burn::backend::Cuda<burn::tensor::bf16>;
    pub const NAME: &str = "cuda";
    pub const MISSING: &str = "an NVIDIA GPU and its driver (libcuda); no CUDA toolkit is needed";

    /// The `index`-th GPU.
    pub fn device_at(index: usize) -> Option<burn::tensor::Device<Backend>> {
        Some(burn::backend::cuda::CudaDevice::new(index))
    }
}

#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
mod chosen {
    use burn::backend::wgpu::WgpuDevice;

    pub type Backend = burn::backend::Wgpu;
    pub type F16 = burn::backend::Wgpu<burn::tensor::f16>;
    pub const NAME: &str = "wgpu";
    pub const MISSING: &str = "a GPU adapter (Vulkan, Metal or DirectX 12); on a machine without \
        a GPU, Mesa's software Vulkan: `apt-get install mesa-vulkan-drivers libvulkan1` and \
        SE_DEVICE=cpu";

    /// The adapter of the kind `SE_DEVICE` names: `cpu` (a software adapter such as lavapipe),
    /// `discrete`, `integrated`, with the `index`-th of that kind; default: the best adapter
    /// wgpu finds (index 0), else the `index`-th discrete GPU.
    pub fn device_at(index: usize) -> Option<burn::tensor::Device<Backend>> {
        let wanted = std::env::var("SE_DEVICE").unwrap_or_default();
        Some(match wanted.split(':').next().unwrap_or_default() {
            "cpu" if index == 0 => WgpuDevice::Cpu,
            "cpu" => return None,
            "integrated" => WgpuDevice::IntegratedGpu(index),
            "discrete" => WgpuDevice::DiscreteGpu(index),
            _ if index == 0 => WgpuDevice::DefaultDevice,
            _ => WgpuDevice::DiscreteGpu(index),
        })
    }
}

#[cfg(all(feature = "flex", not(any(feature = "cuda", feature = "wgpu"))))]
mod chosen {
    pub type Backend = burn::backend::Flex;
    pub const NAME: &str = "flex";
    pub const MISSING: &str = "nothing (a CPU backend)";

    /// The CPU, the only device.
    pub fn device_at(index: usize) -> Option<burn::tensor::Device<Backend>> {
        (index == 0).then(Default::default)
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

    /// The CPU, the only device.
    pub fn device_at(index: usize) -> Option<burn::tensor::Device<Backend>> {
        (index == 0).then(Default::default)
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

/// The device index: with `SE_DEVICE` set, the number after its `:` (`SE_DEVICE=1`,
/// `SE_DEVICE=discrete:1`; `SE_DEVICE=cpu` is 0); else, in an MPI job, the rank's index on its
/// node, so that `mpirun -np 4` on a 4-GPU machine gives each rank its own GPU; else 0.
fn device_index() -> usize {
    let number = |value: String| value.rsplit(':').next()?.parse().ok();
    match std::env::var("SE_DEVICE") {
        Ok(value) => number(value).unwrap_or(0),
        Err(_) => ["OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID"]
            .iter()
            .find_map(|name| number(std::env::var(name).ok()?))
            .unwrap_or(0),
    }
}

/// The device models run on (see [`device_index`]), once it is known to start.
pub fn device() -> anyhow::Result<burn::tensor::Device<Backend>> {
    let index = if cfg!(any(feature = "cuda", feature = "wgpu")) {
        device_index()
    } else {
        0
    };
    device_at(index)
}

/// The devices of `se train --devices 0,1`.
pub fn devices(indices: &[usize]) -> anyhow::Result<Vec<burn::tensor::Device<Backend>>> {
    indices.iter().map(|&index| device_at(index)).collect()
}

/// The `index`-th device, after checking that it starts: GPU backends panic deep inside their
/// runtime when there is no adapter or driver, so a one-element tensor is made first and a
/// failure becomes an error naming the backend and what it needs.
fn device_at(index: usize) -> anyhow::Result<burn::tensor::Device<Backend>> {
    let Some(device) = chosen::device_at(index) else {
        anyhow::bail!(
            "the {NAME} backend has no device {index}: it runs on one device{}",
            if cfg!(any(feature = "cuda", feature = "wgpu")) {
                " of this kind (SE_DEVICE)"
            } else {
                ", the CPU (--devices is for GPU backends)"
            }
        )
    };
    match probe::<Backend>(&device) {
        Ok(()) => Ok(device),
        Err(reason) => anyhow::bail!(
            "the {NAME} backend could not start on {device:?}: {reason}\n\
             it needs {}",
            chosen::MISSING
        ),
    }
}

/// Runs a small computation on `device`, turning a runtime panic into its message.
fn probe<B: burn::tensor::backend::Backend>(device: &B::Device) -> Result<(), String> {
    let device = device.clone();
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let x = burn::tensor::Tensor::<B, 1>::ones([4], &device);
        (x.clone() * x).sum().into_scalar()
    }));
    std::panic::set_hook(previous_hook);
    result.map(|_| ()).map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown reason".into())
    })
}

/// The float type of weights, activations and gradients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Precision {
    /// 32-bit floats (every backend).
    #[default]
    F32,
    /// IEEE half precision (cuda; wgpu where the adapter has shader-f16).
    F16,
    /// bfloat16 (cuda).
    Bf16,
}

impl Precision {
    /// The name on the command line: `f32`, `f16`, `bf16`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
        }
    }
}

/// Work that runs on any backend: `se train`, `eval` and `predict` are written once, generic over
/// the backend, and [`run_with_precision`] picks the backend of the precision asked for.
pub trait Job {
    /// What the job returns.
    type Output;
    /// Runs on backend `B` (with autodiff; inference uses `B::InnerBackend`).
    fn run<B: burn::tensor::backend::AutodiffBackend>(
        self,
        devices: Vec<B::Device>,
    ) -> anyhow::Result<Self::Output>;
}

/// Runs `job` on `devices` with this binary's backend at `precision`. Half precision exists on
/// the GPU backends only (Burn's CPU backends compute in f32), and is checked to run on the first
/// device before the job starts.
pub fn run_with_precision<J: Job>(
    precision: Precision,
    devices: Vec<burn::tensor::Device<Backend>>,
    job: J,
) -> anyhow::Result<J::Output> {
    match precision {
        Precision::F32 => job.run::<TrainBackend>(devices),
        #[cfg(any(feature = "cuda", feature = "wgpu"))]
        Precision::F16 => {
            check_precision::<chosen::F16>(precision, &devices[0])?;
            job.run::<burn::backend::Autodiff<chosen::F16>>(devices)
        }
        #[cfg(feature = "cuda")]
        Precision::Bf16 => {
            check_precision::<chosen::Bf16>(precision, &devices[0])?;
            job.run::<burn::backend::Autodiff<chosen::Bf16>>(devices)
        }
        #[allow(unreachable_patterns)]
        other => anyhow::bail!(
            "the {NAME} backend computes in f32 only; --precision {} needs {}",
            other.name(),
            if other == Precision::Bf16 {
                "the cuda backend"
            } else {
                "a GPU backend (cuda, or wgpu on an adapter with shader-f16)"
            }
        ),
    }
}

#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn check_precision<B: burn::tensor::backend::Backend>(
    precision: Precision,
    device: &B::Device,
) -> anyhow::Result<()> {
    probe::<B>(device).map_err(|reason| {
        anyhow::anyhow!(
            "the {NAME} backend cannot compute in {} on {device:?}: {reason}",
            precision.name()
        )
    })
}
