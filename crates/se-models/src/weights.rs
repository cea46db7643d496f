//! Burn weights files (`.mpk`): named MessagePack records in full precision, the format of every
//! weights file the project writes (`se import`, a run's `model.mpk` and its checkpoints), each
//! written atomically.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::record::{FileRecorder, FullPrecisionSettings, Recorder as BurnRecorder, RecorderError};
use burn::tensor::backend::Backend;
use serde::Serialize;
use serde::de::DeserializeOwned;

use burn_store::ModuleSnapshot;

use crate::files::write_atomically;
use crate::interop::{InteropError, Mismatch};
use crate::resnet::ResNet;

/// The recorder of every weights file and checkpoint: named MessagePack in full precision, the
/// same bytes as Burn's `NamedMpkFileRecorder`, but written atomically ([`crate::files`]):
/// Burn's deletes the old file, then streams the new one with no fsync and ignores the final
/// flush's errors, so a kill mid-write leaves a torn checkpoint.
#[derive(Debug, Default, Clone)]
pub struct Recorder;

impl Recorder {
    /// The recorder.
    pub fn new() -> Self {
        Self
    }
}

impl<B: Backend> BurnRecorder<B> for Recorder {
    type Settings = FullPrecisionSettings;
    type RecordArgs = PathBuf;
    type RecordOutput = ();
    type LoadArgs = PathBuf;

    fn save_item<I: Serialize>(&self, item: I, mut file: PathBuf) -> Result<(), RecorderError> {
        file.set_extension(<Self as FileRecorder<B>>::file_extension());
        let bytes = rmp_serde::encode::to_vec_named(&item)
            .map_err(|e| RecorderError::Unknown(e.to_string()))?;
        if let Some(folder) = file.parent() {
            std::fs::create_dir_all(folder).ok();
        }
        write_atomically(&file, &bytes)
            .map_err(|e| RecorderError::Unknown(format!("{}: {e}", file.display())))
    }

    fn load_item<I: DeserializeOwned>(&self, file: &mut PathBuf) -> Result<I, RecorderError> {
        file.set_extension(<Self as FileRecorder<B>>::file_extension());
        let bytes = std::fs::read(&*file).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => RecorderError::FileNotFound(file.display().to_string()),
            _ => RecorderError::Unknown(format!("{}: {e}", file.display())),
        })?;
        rmp_serde::from_slice(&bytes).map_err(|e| RecorderError::Unknown(e.to_string()))
    }
}

impl<B: Backend> FileRecorder<B> for Recorder {
    fn file_extension() -> &'static str {
        "mpk"
    }
}

/// Loads `path` into `model` (which fixes the architecture), strictly: a parameter the file
/// lacks is Burn's decoding error, and a parameter whose shape differs from the model's is a
/// [`InteropError::Mismatch`] listing every such key (Burn's recorder would take it as is).
pub fn load<B: Backend>(
    model: ResNet<B>,
    path: &Path,
    device: &B::Device,
) -> Result<ResNet<B>, InteropError> {
    let (loaded, wrong_shape) = load_with_shapes(model, path, device)?;
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

/// `(key, file shape, model shape)` of every parameter whose shape differs.
pub(crate) type WrongShapes = Vec<(String, Vec<usize>, Vec<usize>)>;

/// Loads `path` into `model` as Burn's recorder does (every tensor as the file has it) and
/// lists the parameters whose shape differs from `model`'s: `(key, file shape, model shape)`.
pub(crate) fn load_with_shapes<B: Backend>(
    model: ResNet<B>,
    path: &Path,
    device: &B::Device,
) -> Result<(ResNet<B>, WrongShapes), InteropError> {
    let expected = shapes(&model);
    // Burn panics while turning some malformed records into a module (a parameter id that does
    // not decode, `ParamId::deserialize`): a damaged file is an error, not a crash.
    let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        model.load_file(path.to_path_buf(), &Recorder, device)
    }))
    .map_err(|_| InteropError::read(path, "cannot load Burn weights: a malformed record"))?
    .map_err(|e| InteropError::read(path, format!("cannot load Burn weights: {e}")))?;
    let wrong_shape = shapes(&loaded)
        .into_iter()
        .filter_map(|(key, found)| {
            let wanted = expected.get(&key)?;
            (*wanted != found).then(|| (key, found, wanted.clone()))
        })
        .collect();
    Ok((loaded, wrong_shape))
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
/// old file or the new one).
pub fn save<B: Backend>(model: ResNet<B>, path: &Path) -> Result<(), RecorderError> {
    model.save_file(path.to_path_buf(), &Recorder)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::record::NamedMpkFileRecorder;

    /// Burn's own recorder reads our files and we read its (the format differs only in the
    /// recorder's name in the metadata), and no temporary file is left beside them.
    #[test]
    fn files_are_burns_format_written_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let device = Default::default();
        let fresh = || crate::zoo::se_resnet20().init::<Flex>(&device);
        let model = fresh();
        let weight = |m: &ResNet<Flex>| m.conv1.weight.val().into_data();
        // Drawn now: a clone of a lazily initialised parameter would draw its own values.
        let expected = weight(&model);
        save(model.clone(), &dir.path().join("ours")).unwrap();
        let burns = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
        model
            .clone()
            .save_file(dir.path().join("burns"), &burns)
            .unwrap();
        let theirs_of_ours = fresh()
            .load_file(dir.path().join("ours"), &burns, &device)
            .unwrap();
        weight(&theirs_of_ours).assert_eq(&expected, true);
        let ours_of_theirs = load(fresh(), &dir.path().join("burns.mpk"), &device).unwrap();
        weight(&ours_of_theirs).assert_eq(&expected, true);
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["burns.mpk", "ours.mpk"]);
    }
}
