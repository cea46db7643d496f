//! The backend this binary was built for (one cargo feature each; `cargo xtask --backend X` picks).

#[cfg(feature = "flex")]
mod chosen {
    pub type Backend = burn::backend::Flex;
    pub const NAME: &str = "flex";
}

#[cfg(all(feature = "ndarray", not(feature = "flex")))]
mod chosen {
    pub type Backend = burn::backend::NdArray;
    pub const NAME: &str = "ndarray";
}

#[cfg(not(any(feature = "flex", feature = "ndarray")))]
compile_error!("build se-cli with one backend feature: flex or ndarray");

pub use chosen::{Backend, NAME};

/// The backend with automatic differentiation, for training.
pub type TrainBackend = burn::backend::Autodiff<Backend>;

/// The device models run on.
pub fn device() -> burn::tensor::Device<Backend> {
    Default::default()
}
