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
    let in_file = file_shapes(path)?;
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
        unexpected: in_file
            .into_iter()
            .filter(|(key, _)| !expected.contains_key(key))
            .collect(),
    };
    Ok((loaded, mismatch))
}

/// A weights record read as a tree, with the contents of tensors skipped: enough to list the
/// parameters a file holds without building any tensor.
enum Node {
    Map(Vec<(String, Node)>),
    Seq(Vec<Node>),
    Int(u64),
    Other,
}

/// Elements of a sequence kept in a [`Node`]: module lists and shapes are short; a tensor's
/// bytes, when a format writes them as a sequence, are skipped past this.
const KEPT_ELEMENTS: usize = 256;

impl<'de> serde::Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> serde::de::Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a Burn weights record")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Other)
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(u64::try_from(v).map_or(Node::Other, Node::Int))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Other)
    }
    fn visit_str<E>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Other)
    }
    fn visit_bytes<E>(self, _: &[u8]) -> Result<Node, E> {
        Ok(Node::Other)
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Other)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Other)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        serde::Deserialize::deserialize(d)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while items.len() < KEPT_ELEMENTS {
            match seq.next_element::<Node>()? {
                Some(item) => items.push(item),
                None => return Ok(Node::Seq(items)),
            }
        }
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Node::Seq(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            entries.push((key, map.next_value::<Node>()?));
        }
        Ok(Node::Map(entries))
    }
}

/// Every parameter a Burn weights file holds, with its shape, by the path [`shapes`] gives the
/// same parameter of a model (`layer1.0.Basic.se.Se.fc1.weight`).
fn file_shapes(path: &Path) -> Result<BTreeMap<String, Vec<usize>>, InteropError> {
    let bytes = std::fs::read(path).map_err(|e| InteropError::read(path, e.to_string()))?;
    let root: Node = rmp_serde::from_slice(&bytes)
        .map_err(|e| InteropError::read(path, format!("cannot read Burn weights: {e}")))?;
    let item = match &root {
        Node::Map(entries) => entries
            .iter()
            .find(|(key, _)| key == "item")
            .map(|(_, n)| n),
        _ => None,
    };
    let mut found = BTreeMap::new();
    if let Some(item) = item {
        collect_params(item, String::new(), &mut found);
    }
    Ok(found)
}

/// Walks a record: a map with `id` and `param` (whose `shape` is a list of sizes) is a
/// parameter; any other map or list is a module or a list of them.
fn collect_params(node: &Node, path: String, found: &mut BTreeMap<String, Vec<usize>>) {
    let join = |key: &str| match path.is_empty() {
        true => key.to_string(),
        false => format!("{path}.{key}"),
    };
    match node {
        Node::Map(entries) => {
            let get = |name: &str| entries.iter().find(|(k, _)| k == name).map(|(_, v)| v);
            if let (Some(_), Some(Node::Map(param))) = (get("id"), get("param")) {
                let shape = param.iter().find(|(k, _)| k == "shape").map(|(_, v)| v);
                if let Some(Node::Seq(sizes)) = shape {
                    let sizes = sizes.iter().map(|s| match s {
                        Node::Int(n) => *n as usize,
                        _ => usize::MAX,
                    });
                    found.insert(path.clone(), sizes.collect());
                    return;
                }
            }
            for (key, value) in entries {
                collect_params(value, join(key), found);
            }
        }
        Node::Seq(items) => {
            for (index, item) in items.iter().enumerate() {
                collect_params(item, join(&index.to_string()), found);
            }
        }
        Node::Int(_) | Node::Other => {}
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
/// old file or the new one).
///
/// # Panics
/// If `model` is the folded inference form.
pub fn save<B: Backend>(model: ResNet<B>, path: &Path) -> Result<(), RecorderError> {
    model.assert_not_folded(&path.display().to_string());
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

    /// A file without the SE modules (a plain ResNet's) does not load into an SE-ResNet, nor an
    /// SE-ResNet's into a plain ResNet: Burn's recorder would silently drop the SE modules, or
    /// ignore them; here every missing or unexpected parameter is listed.
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
