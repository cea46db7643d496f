//! ResNet, SE-ResNet and SE-ResNeXt families for Burn.
//!
//! - [`ResNetConfig`] → [`ResNet`]: one generic network; blocks, widths, stem and attention are
//!   configuration.
//! - [`zoo`]: the named models (`zoo::se_resnet50()`, ...), each a short config, and the
//!   registry that finds them by name ([`config`], [`lookup`], [`MODELS`]).
//! - [`interop`]: timm, torchvision and Cadene checkpoints in and out; [`weights`]: Burn's own
//!   weights files; [`pretrained`]: either as the start of another task (new classifier);
//!   [`onnx`]: export for ONNX Runtime and other deployment tools.
//!
//! ```no_run
//! use burn::backend::Flex;
//! use burn::tensor::Tensor;
//!
//! let device = Default::default();
//! let model = se_models::config("se_resnet50")?.with_num_classes(10).init::<Flex>(&device);
//! let logits = model.forward(Tensor::zeros([1, 3, 224, 224], &device));
//! assert_eq!(logits.dims(), [1, 10]);
//!
//! // The same model by its constructor, and a CIFAR one.
//! let same = se_models::zoo::se_resnet50().with_num_classes(10);
//! let cifar = se_models::zoo::se_resnet20().init::<Flex>(&device);
//! # let _ = (same, cifar);
//! # Ok::<(), se_models::UnknownModel>(())
//! ```

#![warn(missing_docs)]

pub mod files;
pub mod interop;
pub mod onnx;
mod pretrained;
pub mod resnet;
pub mod variant;
pub mod weights;
pub mod zoo;

pub use pretrained::{PretrainedReport, pretrained};
pub use resnet::{
    BlockKind, InvalidModelConfig, PARTS, ResNet, ResNetConfig, SeModuleInfo, StageComplexity, Stem,
};
pub use variant::{AttentionVariant, VariantMismatch};
pub use zoo::{Family, MODELS, ModelEntry, UnknownModel, config, known_names, lookup};
