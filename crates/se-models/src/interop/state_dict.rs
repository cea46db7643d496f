//! State dicts on disk: PyTorch pickles (`.pth`, `.pt`, `.bin`) and `.safetensors` files.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use burn::tensor::{DType, TensorData};
use burn_store::pytorch::PytorchReader;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use super::error::InteropError;
use super::records::check_zip_records;
use crate::files::write_atomically;

/// Tensors by PyTorch key, in key order.
pub type StateDict = BTreeMap<String, TensorData>;

/// A PyTorch checkpoint's format, by its file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointFormat {
    /// A pickle (`.pth`, `.pt`, `.bin`, `.ckpt`, `.tar`), zip or legacy.
    Pickle,
    /// A `.safetensors` file.
    Safetensors,
}

impl CheckpointFormat {
    /// Every extension a PyTorch checkpoint is read from (lower case, without the dot).
    pub const EXTENSIONS: &[&str] = &["pth", "pt", "bin", "ckpt", "tar", "safetensors"];

    /// The format of `path`, or `None` if its extension is not a PyTorch checkpoint's.
    pub fn of(path: &Path) -> Option<Self> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "safetensors" => Some(Self::Safetensors),
            other if Self::EXTENSIONS.contains(&other) => Some(Self::Pickle),
            _ => None,
        }
    }

    /// The extensions as `.pth, .pt, ...` for messages.
    pub fn extension_list() -> String {
        Self::EXTENSIONS
            .iter()
            .map(|e| format!(".{e}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Reads every tensor of a `.pth`/`.pt`/`.bin` (PyTorch pickle, zip or legacy) or
/// `.safetensors` file. Nested dicts (`{"state_dict": {...}}`) come back with dotted keys.
pub fn read_state_dict(path: &Path) -> Result<StateDict, InteropError> {
    if !path.is_file() {
        return Err(InteropError::read(path, "no such file"));
    }
    match CheckpointFormat::of(path) {
        Some(CheckpointFormat::Safetensors) => read_safetensors(path),
        Some(CheckpointFormat::Pickle) => read_pytorch(path),
        None => Err(InteropError::read(
            path,
            format!(
                "unknown checkpoint type: expected one of {}",
                CheckpointFormat::extension_list()
            ),
        )),
    }
}

fn read_pytorch(path: &Path) -> Result<StateDict, InteropError> {
    // burn-store would fill a missing or short tensor record with zeros.
    check_zip_records(path)?;
    // A third-party parser on a corrupt file may panic; that is this file's error, not ours.
    let read = std::panic::catch_unwind(|| -> Result<StateDict, InteropError> {
        let reader = PytorchReader::new(path)
            .map_err(|e| InteropError::read(path, format!("not a readable PyTorch file: {e}")))?;
        let mut state = StateDict::new();
        for (key, snapshot) in reader.into_tensors() {
            let data = snapshot
                .to_data()
                .map_err(|e| InteropError::read(path, format!("tensor `{key}`: {e}")))?;
            state.insert(key, data);
        }
        Ok(state)
    });
    let state = read.unwrap_or_else(|_| {
        Err(InteropError::read(
            path,
            "not a readable PyTorch file (its reader failed)",
        ))
    })?;
    if state.is_empty() {
        return Err(InteropError::read(path, "no tensors in the file"));
    }
    Ok(state)
}

fn read_safetensors(path: &Path) -> Result<StateDict, InteropError> {
    let bytes = fs::read(path).map_err(|e| InteropError::read(path, e))?;
    let tensors = SafeTensors::deserialize(&bytes)
        .map_err(|e| InteropError::read(path, format!("not a valid safetensors file: {e}")))?;
    let mut state = StateDict::new();
    for (key, view) in tensors.tensors() {
        let dtype = match view.dtype() {
            Dtype::F64 => DType::F64,
            Dtype::F32 => DType::F32,
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            Dtype::I64 => DType::I64,
            Dtype::I32 => DType::I32,
            Dtype::U8 => DType::U8,
            Dtype::BOOL => DType::Bool(burn::tensor::BoolStore::Native),
            other => {
                return Err(InteropError::read(
                    path,
                    format!("tensor `{key}` has unsupported type {other:?}"),
                ));
            }
        };
        let data = TensorData::from_bytes_vec(view.data().to_vec(), view.shape().to_vec(), dtype);
        state.insert(key, data);
    }
    Ok(state)
}

/// Writes `state` as a `.safetensors` file (through a temporary file, so an existing file is
/// replaced only by a complete one).
pub fn write_safetensors(state: &StateDict, path: &Path) -> Result<(), InteropError> {
    let mut views = Vec::with_capacity(state.len());
    for (key, data) in state {
        let dtype = match data.dtype {
            DType::F32 => Dtype::F32,
            DType::I64 => Dtype::I64,
            other => {
                return Err(InteropError::write(
                    path,
                    format!("tensor `{key}`: cannot write {other:?}"),
                ));
            }
        };
        let view = TensorView::new(dtype, data.shape.to_vec(), data.as_bytes())
            .map_err(|e| InteropError::write(path, format!("tensor `{key}`: {e}")))?;
        views.push((key.clone(), view));
    }
    let bytes = safetensors::serialize(views, None).map_err(|e| InteropError::write(path, e))?;
    write_atomically(path, &bytes).map_err(|e| InteropError::write(path, e))
}
