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
