//! Import a PyTorch state dict into a [`ResNet`], and export one back.

use std::collections::BTreeSet;
use std::path::Path;

use burn::tensor::TensorData;
use burn::tensor::backend::Backend;
use burn_store::{ModuleSnapshot, TensorSnapshot};

use super::error::{InteropError, Mismatch};
use super::names::{Layout, batches_tracked_key, torch_name};
use super::state_dict::{StateDict, read_state_dict};
use crate::resnet::ResNet;

/// Prefixes that training scripts put before the model's keys (`{"state_dict": ...}`,
/// `{"model": ...}`, `DataParallel`'s `module.`); the one that matches most keys is used.
const KEY_PREFIXES: [&str; 6] = [
    "",
    "state_dict.",
    "model.",
    "module.",
    "state_dict.module.",
    "model.module.",
];

/// The number of classes of the checkpoint's classifier (`fc` or Cadene's `last_linear`), so
/// that a model can be built to fit a fine-tuned checkpoint.
pub fn checkpoint_classes(state: &StateDict, layout: Layout) -> Option<usize> {
    let head = match layout {
        Layout::Cadene => "last_linear.weight",
        Layout::Timm | Layout::Torchvision => "fc.weight",
    };
    KEY_PREFIXES
        .iter()
        .find_map(|prefix| state.get(&format!("{prefix}{head}")))
        .filter(|weight| weight.shape.len() == 2)
        .map(|weight| weight.shape[0])
}

/// What an import loaded and, for a partial load, what it left out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportReport {
    /// How many tensors were loaded.
    pub loaded: usize,
    /// The prefix stripped from the checkpoint's keys (empty for a plain state dict).
    pub prefix: String,
    /// What did not fit (always empty unless the load was partial).
    pub skipped: Mismatch,
}

/// Loads a PyTorch checkpoint file into `model`; see [`import_state_dict`].
pub fn load_pytorch<B: Backend>(
    model: ResNet<B>,
    path: &Path,
    layout: Layout,
    partial: bool,
) -> Result<(ResNet<B>, ImportReport), InteropError> {
    let state = read_state_dict(path)?;
    import_state_dict(model, &state, layout, partial).map_err(|mismatch| InteropError::Mismatch {
        path: path.to_path_buf(),
        mismatch,
    })
}

/// Copies the tensors of a PyTorch state dict in `layout`'s names into `model`.
///
/// Every tensor of the model must be present with its shape and every tensor of the
/// checkpoint must have a place in the model (BatchNorm's `num_batches_tracked` aside),
/// unless `partial`: then what fits is loaded, the rest is reported and the model keeps its
/// own values there. The architecture itself is checked by [`Layout::check`] beforehand.
pub fn import_state_dict<B: Backend>(
    mut model: ResNet<B>,
    state: &StateDict,
    layout: Layout,
    partial: bool,
) -> Result<(ResNet<B>, ImportReport), Mismatch> {
    let targets: Vec<(TensorSnapshot, String, _)> = model
        .collect(None, None, true)
        .into_iter()
        .map(|snapshot| {
            let (key, conversion) = torch_name(&snapshot, layout);
            (snapshot, key, conversion)
        })
        .collect();
    let prefix = KEY_PREFIXES
        .iter()
        .max_by_key(|prefix| {
            let hits = targets
                .iter()
                .filter(|(_, key, _)| state.contains_key(&format!("{prefix}{key}")))
                .count();
            // On a tie the shorter (earlier) prefix wins.
            (hits, std::cmp::Reverse(prefix.len()))
        })
        .copied()
        .unwrap_or_default();

    let mut mismatch = Mismatch::default();
    let mut claimed = BTreeSet::new();
    let mut snapshots = Vec::with_capacity(targets.len());
    for (target, key, conversion) in targets {
        let expected = conversion.torch_shape(&target.shape);
        let full_key = format!("{prefix}{key}");
        let Some(data) = state.get(&full_key) else {
            mismatch.missing.push((key, expected));
            continue;
        };
        claimed.insert(full_key);
        if data.shape.to_vec() != expected {
            mismatch
                .wrong_shape
                .push((key, data.shape.to_vec(), expected));
            continue;
        }
        let data = conversion.to_burn(data.clone()).convert_dtype(target.dtype);
        snapshots.push(TensorSnapshot::from_data(
            data,
            target.path_stack.clone().unwrap_or_default(),
            target.container_stack.clone().unwrap_or_default(),
            target.tensor_id.unwrap_or_default(),
        ));
    }
    mismatch.unexpected = state
        .iter()
        .filter(|(key, _)| key.starts_with(prefix) && !claimed.contains(*key))
        .filter(|(key, _)| !key.ends_with(".num_batches_tracked"))
        .map(|(key, data)| (key[prefix.len()..].to_string(), data.shape.to_vec()))
        .collect();
    if !partial && !mismatch.is_empty() {
        return Err(mismatch);
    }

    let result = model.apply(snapshots, None, None, true);
    if !result.errors.is_empty() || !result.unused.is_empty() {
        // The names above come from the model itself, so this is a bug, not a bad file.
        panic!("burn-store did not apply the imported tensors: {result}");
    }
    let report = ImportReport {
        loaded: result.applied.len(),
        prefix: prefix.to_string(),
        skipped: mismatch,
    };
    Ok((model, report))
}

/// The model's tensors as a PyTorch state dict in `layout`'s names and shapes (f32), with
/// the `num_batches_tracked` counters PyTorch's BatchNorm expects, so that
/// `load_state_dict(strict=True)` accepts it.
///
/// # Panics
/// If `model` is the folded inference form.
pub fn export_state_dict<B: Backend>(model: &ResNet<B>, layout: Layout) -> StateDict {
    model.assert_not_folded("state-dict export");
    let mut state = StateDict::new();
    for snapshot in model.collect(None, None, true) {
        let (key, conversion) = torch_name(&snapshot, layout);
        let data = snapshot
            .to_data()
            .unwrap_or_else(|e| panic!("reading `{key}` from the model: {e}"));
        if let Some(counter) = batches_tracked_key(&key) {
            state.insert(counter, TensorData::new(vec![0i64], [0usize; 0]));
        }
        state.insert(key, conversion.to_torch(data));
    }
    state
}
