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

/// Loads `path` into `model` (which fixes the architecture), strictly, as PyTorch's
/// `load_state_dict(strict=True)`: a parameter the file lacks (Burn's recorder would drop an
/// optional module such as an SE, or fail to decode) and a parameter whose shape differs from
/// the model's (Burn's recorder would take it as is) are an [`InteropError::Mismatch`] listing
/// every such key.
pub fn load<B: Backend>(
    model: ResNet<B>,
    path: &Path,
    device: &B::Device,
) -> Result<ResNet<B>, InteropError> {
    let (loaded, mismatch) = load_with_shapes(model, path, device)?;
    if mismatch.is_empty() {
        Ok(loaded)
    } else {
        Err(InteropError::Mismatch {
            path: path.to_path_buf(),
            mismatch,
        })
    }
}

/// Loads `path` into `model` as Burn's recorder does (every tensor as the file has it) and
/// lists what does not fit `model`: the parameters the file lacks (`missing`, with the model's
/// shape) and those whose shape differs (`wrong_shape`: key, file shape, model shape).
pub(crate) fn load_with_shapes<B: Backend>(
    model: ResNet<B>,
    path: &Path,
    device: &B::Device,
) -> Result<(ResNet<B>, Mismatch), InteropError> {
    let expected = shapes(&model);
    // Burn panics while turning some malformed records into a module (a parameter id that does
    // not decode, `ParamId::deserialize`): a damaged file is an error, not a crash.
    let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        model.load_file(path.to_path_buf(), &Recorder, device)
    }))
    .map_err(|_| InteropError::read(path, "cannot load Burn weights: a malformed record"))?
    .map_err(|e| InteropError::read(path, format!("cannot load Burn weights: {e}")))?;
    let found = shapes(&loaded);
    let mismatch = Mismatch {
        missing: expected
            .iter()
            .filter(|(key, _)| !found.contains_key(*key))
            .map(|(key, shape)| (key.clone(), shape.clone()))
            .collect(),
        wrong_shape: found
            .into_iter()
            .filter_map(|(key, found)| {
                let wanted = expected.get(&key)?;
                (*wanted != found).then(|| (key, found, wanted.clone()))
            })
            .collect(),
        ..Mismatch::default()
    };
    Ok((loaded, mismatch))
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

    /// A file without the SE modules (a plain ResNet's) does not load into an SE-ResNet: Burn's
    /// recorder would silently drop the SE modules; here every missing parameter is listed.
    #[test]
    fn a_file_lacking_modules_the_model_has_is_refused_with_their_names() {
        let dir = tempfile::tempdir().unwrap();
        let device = Default::default();
        let plain = crate::zoo::resnet20().init::<Flex>(&device);
        save(plain, &dir.path().join("plain")).unwrap();
        let se = crate::zoo::se_resnet20().init::<Flex>(&device);
        let error = load(se, &dir.path().join("plain.mpk"), &device).unwrap_err();
        let InteropError::Mismatch { mismatch, .. } = &error else {
            panic!("{error}");
        };
        // Nine blocks, each with fc1 and fc2 weight and bias.
        assert_eq!(mismatch.missing.len(), 9 * 4, "{error}");
        assert!(
            mismatch
                .missing
                .contains(&("layer1.0.Basic.se.Se.fc1.weight".to_string(), vec![16, 1])),
            "{error}"
        );
        assert!(
            error
                .to_string()
                .contains("missing from the checkpoint (36)"),
            "{error}"
        );
    }
}
