//! What can go wrong reading or writing PyTorch checkpoints and arrays: every variant names the
//! file, and a checkpoint that does not fit lists every offending key.

use std::fmt;
use std::path::{Path, PathBuf};

/// A checkpoint or array file that could not be used; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum InteropError {
    /// The file could not be read or parsed.
    #[error("{}: {message}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The file could not be written.
    #[error("{}: {message}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The checkpoint's tensors do not fit the model.
    #[error("{}: the checkpoint does not fit the model\n{mismatch}", path.display())]
    Mismatch {
        /// The checkpoint.
        path: PathBuf,
        /// The offending keys and shapes.
        mismatch: Mismatch,
    },
}

impl InteropError {
    pub(crate) fn read(path: &Path, message: impl ToString) -> Self {
        InteropError::Read {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }

    pub(crate) fn write(path: &Path, message: impl ToString) -> Self {
        InteropError::Write {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }
}

/// Why a checkpoint does not fit a model: every offending key, with shapes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mismatch {
    /// Keys the model needs that the checkpoint lacks, with the model's PyTorch shape.
    pub missing: Vec<(String, Vec<usize>)>,
    /// Keys in the checkpoint that the model has no place for, with their shape.
    pub unexpected: Vec<(String, Vec<usize>)>,
    /// Keys present in both with different shapes: `(key, checkpoint shape, model shape)`.
    pub wrong_shape: Vec<(String, Vec<usize>, Vec<usize>)>,
}

impl Mismatch {
    /// Whether everything fits.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.wrong_shape.is_empty()
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.missing.is_empty() {
            writeln!(f, "  missing from the checkpoint ({}):", self.missing.len())?;
            for (key, shape) in &self.missing {
                writeln!(f, "    {key} {shape:?}")?;
            }
        }
        if !self.unexpected.is_empty() {
            writeln!(f, "  not in the model ({}):", self.unexpected.len())?;
            for (key, shape) in &self.unexpected {
                writeln!(f, "    {key} {shape:?}")?;
            }
        }
        if !self.wrong_shape.is_empty() {
            writeln!(f, "  wrong shape ({}):", self.wrong_shape.len())?;
            for (key, found, expected) in &self.wrong_shape {
                writeln!(f, "    {key}: checkpoint {found:?}, model {expected:?}")?;
            }
        }
        Ok(())
    }
}
