//! ResNet, SE-ResNet and SE-ResNeXt families for Burn.
//!
//! ```no_run
//! use burn::backend::Flex;
//! use burn::tensor::Tensor;
//!
//! let device = Default::default();
//! let model = se_models::zoo::se_resnet50().with_num_classes(10).init::<Flex>(&device);
//! let logits = model.forward(Tensor::zeros([1, 3, 224, 224], &device)); // [1, 10]
//! # let _ = logits;
//! ```

pub mod interop;
pub mod resnet;
pub mod weights;
pub mod zoo;

pub use resnet::{BlockKind, ResNet, ResNetConfig, StageComplexity, Stem};
pub use zoo::{Family, MODELS, ModelEntry, UnknownModel, config, known_names, lookup};
