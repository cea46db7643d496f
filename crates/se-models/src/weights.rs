//! Burn weights files (`.mpk`): named MessagePack records in full precision, the format of every
//! weights file the project writes (`se import`, a run's `model.mpk` and checkpoints).

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::Module;
use burn::record::{
    FullPrecisionSettings, NamedMpkBytesRecorder, NamedMpkFileRecorder, Recorder as _,
    RecorderError,
};
use burn::tensor::backend::Backend;

use burn_store::ModuleSnapshot;

use crate::files::write_atomically;
use crate::interop::{InteropError, Mismatch};
use crate::resnet::ResNet;

/// The recorder of every weights file: named MessagePack, full precision.
pub type Recorder = NamedMpkFileRecorder<FullPrecisionSettings>;

/// Loads `path` into `model` (which fixes the architecture), strictly: a parameter the file
/// lacks is Burn's decoding error, and a parameter whose shape differs from the model's is a
/// [`InteropError::Mismatch`] listing every such key (Burn's recorder would take it as is).
pub fn load<B: Backend>(
    model: ResNet<B>,
    path: &Path,
    device: &B::Device,
) -> Result<ResNet<B>, InteropError> {
    let expected = shapes(&model);
    let loaded = model
        .load_file(path.to_path_buf(), &Recorder::new(), device)
        .map_err(|e| InteropError::read(path, format!("cannot load Burn weights: {e}")))?;
    let wrong_shape: Vec<_> = shapes(&loaded)
        .into_iter()
        .filter_map(|(key, found)| {
            let wanted = expected.get(&key)?;
            (*wanted != found).then(|| (key, found, wanted.clone()))
        })
        .collect();
    if wrong_shape.is_empty() {
        Ok(loaded)
    } else {
        Err(InteropError::Mismatch {
            path: path.to_path_buf(),
            mismatch: Mismatch {
                wrong_shape,
                ..Mismatch::default()
            },
        })
    }
}

/// Every parameter's shape, by its path in the module tree.
fn shapes<B: Backend>(model: &ResNet<B>) -> BTreeMap<String, Vec<usize>> {
    model
        .collect(None, None, false)
        .into_iter()
        .map(|snapshot| (snapshot.full_path(), snapshot.shape.to_vec()))
        .collect()
}

/// Writes `model`'s weights to `path` with the `.mpk` extension, atomically (a crash leaves the
/// old file or the new one: [`crate::files`]). The bytes are those [`Recorder`] writes.
pub fn save<B: Backend>(model: ResNet<B>, path: &Path) -> Result<(), RecorderError> {
    let bytes = NamedMpkBytesRecorder::<FullPrecisionSettings>::default()
        .record(model.into_record(), ())?;
    write_atomically(&path.with_extension("mpk"), &bytes)
        .map_err(|e| RecorderError::Unknown(format!("{}: {e}", path.display())))
}
