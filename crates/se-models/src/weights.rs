//! Burn weights files (`.mpk`): named MessagePack records in full precision, the format of every
//! weights file the project writes (`se import`, a run's `model.mpk` and checkpoints).

use std::path::Path;

use burn::module::Module;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, RecorderError};
use burn::tensor::backend::Backend;

use crate::resnet::ResNet;

/// The recorder of every weights file: named MessagePack, full precision.
pub type Recorder = NamedMpkFileRecorder<FullPrecisionSettings>;

/// Loads `path` into `model` (which fixes the architecture).
pub fn load<B: Backend>(
    model: ResNet<B>,
    path: &Path,
    device: &B::Device,
) -> Result<ResNet<B>, RecorderError> {
    model.load_file(path.to_path_buf(), &Recorder::new(), device)
}

/// Writes `model`'s weights to `path` (Burn adds `.mpk` if missing).
pub fn save<B: Backend>(model: ResNet<B>, path: &Path) -> Result<(), RecorderError> {
    model.save_file(path.to_path_buf(), &Recorder::new())
}
