//! Pretrained weights as the start of another task: what timm's
//! `create_model(name, pretrained=True, num_classes=n)` does, from a file (no hub is reached).
//!
//! ```no_run
//! use burn::backend::Flex;
//! use se_models::interop::Layout;
//!
//! let device = Default::default();
//! let config = se_models::config("resnet50")?;
//! let (model, report) = se_models::pretrained::<Flex>(
//!     &config, "resnet50.pth".as_ref(), Some(Layout::Torchvision), 10, &device)?;
//! println!("{report}"); // ... classifier re-created for 10 classes (the checkpoint's has 1000)
//! # let _ = model;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;

use crate::interop::{
    CheckpointFormat, InteropError, Layout, Mismatch, checkpoint_classes, import_state_dict,
    read_state_dict,
};
use crate::resnet::{ResNet, ResNetConfig};
use crate::weights;

/// What [`pretrained`] loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct PretrainedReport {
    /// The weights file.
    pub path: PathBuf,
    /// The key layout of a PyTorch checkpoint; `None` for Burn weights.
    pub layout: Option<Layout>,
    /// Classes of the file's classifier.
    pub checkpoint_classes: usize,
    /// Classes of the returned model's classifier.
    pub num_classes: usize,
}

impl PretrainedReport {
    /// Whether the classifier was re-created (the file's has another number of classes).
    pub fn classifier_reset(&self) -> bool {
        self.checkpoint_classes != self.num_classes
    }
}

impl fmt::Display for PretrainedReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: pretrained weights loaded", self.path.display())?;
        if let Some(layout) = self.layout {
            write!(f, " ({} layout)", layout.name())?;
        }
        if self.classifier_reset() {
            write!(
                f,
                "; classifier re-created for {} classes (the checkpoint's has {})",
                self.num_classes, self.checkpoint_classes
            )?;
        }
        Ok(())
    }
}

/// Builds `config`'s network with `num_classes` classes and loads the weights at `path` into it:
/// a PyTorch checkpoint (`.pth`, `.safetensors`, ... in `layout`, default the config's native
/// one) or Burn weights (`.mpk`, from `se import` or a run).
///
/// Every tensor must fit, strictly (`load_state_dict(strict=True)`), except the classifier: when
/// the file's has another number of classes it is re-created ([`ResNet::reset_classifier`]).
/// Anything else that does not fit is an [`InteropError::Mismatch`] listing every key.
pub fn pretrained<B: Backend>(
    config: &ResNetConfig,
    path: &Path,
    layout: Option<Layout>,
    num_classes: usize,
    device: &B::Device,
) -> Result<(ResNet<B>, PretrainedReport), InteropError> {
    let mismatch = |mismatch| InteropError::Mismatch {
        path: path.to_path_buf(),
        mismatch,
    };
    let (model, layout) = if CheckpointFormat::of(path).is_some() {
        let layout = layout.unwrap_or_else(|| Layout::native(config));
        layout.check(config).map_err(|why| {
            InteropError::read(path, format!("the {} layout: {why}", layout.name()))
        })?;
        let state = read_state_dict(path)?;
        let classes = checkpoint_classes(&state, layout).unwrap_or(num_classes);
        let model = config.clone().with_num_classes(classes).init(device);
        let (model, _) = import_state_dict(model, &state, layout, false).map_err(mismatch)?;
        (model, Some(layout))
    } else {
        let model = config.clone().with_num_classes(num_classes).init(device);
        let (model, found) = weights::load_with_shapes(model, path, device)?;
        // The classifier's shape may differ (it is re-created below); nothing else may.
        let (head, body): (Vec<_>, Vec<_>) = found
            .wrong_shape
            .into_iter()
            .partition(|(key, ..)| key.starts_with("fc."));
        if !body.is_empty() || !found.missing.is_empty() || !found.unexpected.is_empty() {
            return Err(mismatch(Mismatch {
                missing: found.missing,
                unexpected: found.unexpected,
                wrong_shape: body.into_iter().chain(head).collect(),
            }));
        }
        (model, None)
    };
    let report = PretrainedReport {
        path: path.to_path_buf(),
        layout,
        checkpoint_classes: model.num_classes(),
        num_classes,
    };
    let model = if report.classifier_reset() {
        model.reset_classifier(num_classes, device)
    } else {
        model
    };
    Ok((model, report))
}
