//! Fine-tuning: a run that starts from pretrained weights ([`FineTuneConfig::init`]), keeps a
//! prefix of the network frozen, and moves the pretrained body more slowly than the new head.
//!
//! - Frozen parts run on the inner (non-autodiff) backend, before the trained ones: no graph and
//!   no gradient for them, and their BatchNorms use and keep their running statistics (PyTorch's
//!   `requires_grad_(False)` plus `.eval()` on the frozen modules). Their weights stay
//!   bit-identical.
//! - [`BodyLr`] steps the classifier at the scheduled learning rate and everything else at
//!   `body_lr_mult` times it (PyTorch's two parameter groups).

use std::path::{Path, PathBuf};

use burn::config::Config;
use burn::optim::{GradientsParams, LearningRate, MultiGradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use se_models::interop::{CheckpointFormat, Layout};
use se_models::{PARTS, ResNet, ResNetConfig};

use crate::classifier::Classifier;
use crate::config::InvalidTrainConfig;
use crate::data::{DatasetInfo, IMAGENET_MEAN, IMAGENET_STD, MeanStd};
use crate::error::TrainError;

/// How a run fine-tunes; saved in `config.json`, so a resumed run freezes the same parts.
#[derive(Config, Debug, PartialEq)]
pub struct FineTuneConfig {
    /// Weights to start from: Burn weights (`.mpk`, from `se import` or a run) or a PyTorch
    /// checkpoint (`.pth`, `.safetensors`, ...). The classifier is re-created when its class
    /// count differs from the data's; every other tensor must fit. `None`: random weights.
    #[config(default = "None")]
    pub init: Option<PathBuf>,
    /// Key layout of a PyTorch `init`; `None` takes the model's native one (timm, or Cadene for
    /// `legacy_*` models).
    #[config(default = "None")]
    pub layout: Option<Layout>,
    /// Parts kept as initialised, a prefix of `stem`, `layer1` .. `layer4` (see [`PARTS`]):
    /// excluded from the optimizer, BatchNorm statistics fixed.
    #[config(default = "Vec::new()")]
    pub freeze: Vec<String>,
    /// Every BatchNorm normalises with its running statistics and keeps them, while scale and
    /// shift still learn (small batches on pretrained weights).
    #[config(default = false)]
    pub freeze_bn: bool,
    /// Learning rate of everything but the classifier, as a multiple of the scheduled one.
    #[config(default = 1.0)]
    pub body_lr_mult: f64,
    /// Input normalisation `(mean, std)` per channel, when it is neither the data's own nor the
    /// one `init` implies (see [`FineTuneConfig::normalisation`]).
    #[config(default = "None")]
    pub normalize: Option<(Vec<f32>, Vec<f32>)>,
}

impl FineTuneConfig {
    /// How many parts of [`PARTS`], from the input on, are frozen.
    pub fn frozen_parts(&self) -> usize {
        self.freeze.len()
    }

    /// Checks the parts and the multiplier.
    pub fn validate(&self) -> Result<(), InvalidTrainConfig> {
        let invalid = |field, value: String, rule| Err(InvalidTrainConfig { field, value, rule });
        let listed = self.freeze.join(",");
        for part in &self.freeze {
            if !PARTS[..PARTS.len() - 1].contains(&part.as_str()) {
                return invalid(
                    "freeze",
                    listed,
                    "parts are stem, layer1, layer2, layer3, layer4",
                );
            }
        }
        let mut indices: Vec<usize> = self
            .freeze
            .iter()
            .filter_map(|part| PARTS.iter().position(|p| p == part))
            .collect();
        indices.sort_unstable();
        if indices.iter().enumerate().any(|(i, &index)| i != index) {
            return invalid(
                "freeze",
                listed,
                "the frozen parts are a prefix of the network, each once: stem, then layer1, ...",
            );
        }
        if let Some((mean, std)) = &self.normalize {
            if mean.len() != std.len() || mean.is_empty() {
                return invalid(
                    "normalize",
                    format!("{mean:?} / {std:?}"),
                    "one mean and one standard deviation per channel",
                );
            }
            if !mean.iter().chain(std).all(|v| v.is_finite()) || std.iter().any(|&s| s <= 0.0) {
                return invalid(
                    "normalize",
                    format!("{mean:?} / {std:?}"),
                    "finite means and standard deviations above 0",
                );
            }
        }
        if !(self.body_lr_mult.is_finite() && self.body_lr_mult > 0.0) {
            return invalid(
                "body_lr_mult",
                self.body_lr_mult.to_string(),
                "a finite number above 0 (freeze parts to keep them fixed)",
            );
        }
        Ok(())
    }

    /// The network of `config` with the `init` weights (classifier re-created for the data's
    /// classes if needed), or `None` without `init`. Says in one line what it loaded.
    pub(crate) fn initial_model<B: Backend>(
        &self,
        config: &ResNetConfig,
        device: &B::Device,
    ) -> Result<Option<ResNet<B>>, TrainError> {
        let Some(path) = &self.init else {
            return Ok(None);
        };
        let (model, report) =
            se_models::pretrained(config, path, self.layout, config.num_classes, device)?;
        eprintln!("{report}");
        Ok(Some(model))
    }

    /// The input normalisation where it differs from the data's own: the one given
    /// ([`normalize`](Self::normalize), which must have one value per channel), else the one
    /// the `init` weights were trained with (a run folder's weights bring its `dataset.json`,
    /// anything else, PyTorch checkpoints and `se import` output, is taken as ImageNet's).
    pub(crate) fn normalisation(
        &self,
        info: &DatasetInfo,
    ) -> Result<Option<MeanStd>, InvalidTrainConfig> {
        let differs =
            |(mean, std): MeanStd| (mean != info.mean || std != info.std).then_some((mean, std));
        if let Some((mean, std)) = &self.normalize {
            if mean.len() != info.channels {
                return Err(InvalidTrainConfig {
                    field: "normalize",
                    value: format!("{mean:?} / {std:?}"),
                    rule: "one value per channel of the data's images",
                });
            }
            return Ok(differs((mean.clone(), std.clone())));
        }
        let Some(path) = self.init.as_deref() else {
            return Ok(None);
        };
        let (mean, std) = match run_dataset_beside(path) {
            Some(origin) => (origin.mean, origin.std),
            None => (IMAGENET_MEAN.to_vec(), IMAGENET_STD.to_vec()),
        };
        let fits = mean.len() == info.channels && std.len() == info.channels;
        Ok(if fits { differs((mean, std)) } else { None })
    }
}

/// The dataset description of the run folder holding Burn weights `path`, if it is one.
fn run_dataset_beside(path: &Path) -> Option<DatasetInfo> {
    if CheckpointFormat::of(path).is_some() {
        return None;
    }
    let text = std::fs::read_to_string(path.with_file_name("dataset.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// An optimizer that steps the classifier (`fc`) at the scheduled learning rate and every other
/// parameter at `body_lr_mult` times it: two steps of the inner optimizer over disjoint
/// gradients, so its per-parameter state (momentum, Adam moments) is kept as with one.
#[derive(Clone)]
pub(crate) struct BodyLr<O> {
    inner: O,
    body_lr_mult: f64,
}

impl<O> BodyLr<O> {
    pub(crate) fn new(inner: O, body_lr_mult: f64) -> Self {
        Self {
            inner,
            body_lr_mult,
        }
    }
}

/// Moves the classifier's gradients out of `grads`.
fn take_head<B: AutodiffBackend>(
    model: &Classifier<B>,
    grads: &mut GradientsParams,
) -> GradientsParams {
    let fc = &model.model.fc;
    let mut head = GradientsParams::new();
    if let Some(grad) = grads.remove::<B::InnerBackend, 2>(fc.weight.id) {
        head.register(fc.weight.id, grad);
    }
    if let Some(bias) = &fc.bias
        && let Some(grad) = grads.remove::<B::InnerBackend, 1>(bias.id)
    {
        head.register(bias.id, grad);
    }
    head
}

impl<B, O> Optimizer<Classifier<B>, B> for BodyLr<O>
where
    B: AutodiffBackend,
    O: Optimizer<Classifier<B>, B>,
{
    type Record = O::Record;

    fn step(
        &mut self,
        lr: LearningRate,
        module: Classifier<B>,
        mut grads: GradientsParams,
    ) -> Classifier<B> {
        if self.body_lr_mult == 1.0 {
            return self.inner.step(lr, module, grads);
        }
        let head = take_head(&module, &mut grads);
        let module = self.inner.step(lr * self.body_lr_mult, module, grads);
        self.inner.step(lr, module, head)
    }

    fn step_multi(
        &mut self,
        lr: LearningRate,
        module: Classifier<B>,
        mut grads: MultiGradientsParams,
    ) -> Classifier<B> {
        if self.body_lr_mult == 1.0 {
            return self.inner.step_multi(lr, module, grads);
        }
        let head = MultiGradientsParams {
            grads: grads
                .grads
                .iter_mut()
                .map(|(device_grads, device)| (take_head(&module, device_grads), *device))
                .collect(),
        };
        let module = self.inner.step_multi(lr * self.body_lr_mult, module, grads);
        self.inner.step_multi(lr, module, head)
    }

    fn to_record(&self) -> Self::Record {
        self.inner.to_record()
    }

    fn load_record(self, record: Self::Record) -> Self {
        Self {
            inner: self.inner.load_record(record),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_normalisation_given_wins_and_must_fit_the_channels() {
        let info = DatasetInfo {
            kind: "folder".into(),
            channels: 3,
            image_size: [8, 8],
            class_names: vec!["a".into()],
            mean: vec![0.1; 3],
            std: vec![0.2; 3],
        };
        let pytorch = FineTuneConfig::new().with_init(Some("w.pth".into()));
        let imagenet = (IMAGENET_MEAN.to_vec(), IMAGENET_STD.to_vec());
        assert_eq!(pytorch.normalisation(&info), Ok(Some(imagenet)));
        let given = (vec![0.5; 3], vec![0.25; 3]);
        let config = pytorch.with_normalize(Some(given.clone()));
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.normalisation(&info), Ok(Some(given)));
        let same =
            FineTuneConfig::new().with_normalize(Some((info.mean.clone(), info.std.clone())));
        assert_eq!(same.normalisation(&info), Ok(None));
        let one = FineTuneConfig::new().with_normalize(Some((vec![0.5], vec![0.25])));
        assert_eq!(one.normalisation(&info).unwrap_err().field, "normalize");
        let zero = FineTuneConfig::new().with_normalize(Some((vec![0.5], vec![0.0])));
        assert_eq!(zero.validate().unwrap_err().field, "normalize");
    }

    #[test]
    fn frozen_parts_are_a_prefix_and_the_multiplier_positive() {
        let freeze = |parts: &[&str]| {
            FineTuneConfig::new()
                .with_freeze(parts.iter().map(|p| p.to_string()).collect())
                .validate()
        };
        assert_eq!(freeze(&[]), Ok(()));
        assert_eq!(freeze(&["layer1", "stem"]), Ok(()));
        assert_eq!(
            FineTuneConfig::new()
                .with_freeze(vec!["stem".into(), "layer1".into()])
                .frozen_parts(),
            2
        );
        let rule = |parts: &[&str]| freeze(parts).unwrap_err().rule;
        assert_eq!(
            rule(&["layer1"]),
            "the frozen parts are a prefix of the network, each once: stem, then layer1, ..."
        );
        assert_eq!(rule(&["stem", "stem"]), rule(&["layer1"]));
        assert_eq!(
            rule(&["fc"]),
            "parts are stem, layer1, layer2, layer3, layer4"
        );
        assert_eq!(rule(&["layer9"]), rule(&["fc"]));
        for mult in [0.0, -1.0, f64::NAN] {
            let error = FineTuneConfig::new()
                .with_body_lr_mult(mult)
                .validate()
                .unwrap_err();
            assert_eq!(error.field, "body_lr_mult");
        }
    }
}
