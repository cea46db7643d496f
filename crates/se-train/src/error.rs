//! What stops a run: bad data, an unknown model, a run folder in the wrong state.

use std::path::{Path, PathBuf};

use crate::data::DataError;

/// What can stop a run before it starts or after it ends (never halfway: the Learner owns that).
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Bad or missing data.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Unknown model name.
    #[error(transparent)]
    Model(#[from] se_models::UnknownModel),
    /// Weights that cannot be read or do not fit the model.
    #[error(transparent)]
    Weights(#[from] se_models::interop::InteropError),
    /// The ranks of a data-parallel job do not run the same thing.
    #[error(transparent)]
    Ranks(#[from] crate::distributed::RanksDisagree),
    /// A training setting no run can start with.
    #[error("invalid training config: {0}")]
    Config(#[from] crate::config::InvalidTrainConfig),
    /// A model configuration that cannot build a network, or does not take the data's images.
    #[error(transparent)]
    ModelConfig(#[from] se_models::InvalidModelConfig),
    /// An ablation variant that does not fit the model.
    #[error("model variant: {0}")]
    Variant(#[from] se_models::VariantMismatch),
    /// The data's images are smaller than the model takes.
    #[error(
        "the images are {}x{}; {model} needs at least {min_size}x{min_size}",
        image_size[0],
        image_size[1]
    )]
    ImageTooSmall {
        /// The model.
        model: String,
        /// Height and width of the data's images.
        image_size: [usize; 2],
        /// The smallest side the model takes.
        min_size: usize,
    },
    /// The loss became NaN or infinite: the run stopped, keeping the last finite checkpoint.
    #[error(
        "the loss became {loss} at epoch {epoch}{}: training stopped before applying it; {}",
        iteration.map_or(" (validation)".to_string(), |i| format!(", iteration {i}")),
        last_checkpoint.map_or(
            "no epoch was completed, so there is no checkpoint to resume".to_string(),
            |e| format!("the last finite checkpoint (epoch {e}) is kept: resume from it, \
                         e.g. with a lower learning rate")
        )
    )]
    NonFiniteLoss {
        /// The epoch (from 1).
        epoch: usize,
        /// The iteration within the epoch (from 1); `None` when validation found it.
        iteration: Option<usize>,
        /// The loss.
        loss: f64,
        /// The newest checkpoint left, all finite.
        last_checkpoint: Option<usize>,
    },
    /// The run folder is not in the state the request needs.
    #[error("{}: {message}", path.display())]
    RunFolder {
        /// The folder or file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

pub(crate) fn run_error(path: &Path, message: impl Into<String>) -> TrainError {
    TrainError::RunFolder {
        path: path.to_path_buf(),
        message: message.into(),
    }
}
