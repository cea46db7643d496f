//! Burn weights files (`.mpk`): named MessagePack records in full precision, the format of every
//! weights file the project writes (`se import`, a run's `model.mpk` and checkpoints).

use std::path::Path;

use burn::module::Module;
use burn::record::{
    FullPrecisionSettings, NamedMpkBytesRecorder, NamedMpkFileRecorder, Recorder as _,
    RecorderError,
};
use burn::tensor::backend::Backend;

use crate::files::write_atomically;
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

/// Writes `model`'s weights to `path` with the `.mpk` extension, atomically (a crash leaves the
/// old file or the new one: [`crate::files`]). The bytes are those [`Recorder`] writes.
pub fn save<B: Backend>(model: ResNet<B>, path: &Path) -> Result<(), RecorderError> {
    let bytes = NamedMpkBytesRecorder::<FullPrecisionSettings>::default()
        .record(model.into_record(), ())?;
    write_atomically(&path.with_extension("mpk"), &bytes)
        .map_err(|e| RecorderError::Unknown(format!("{}: {e}", path.display())))
}
