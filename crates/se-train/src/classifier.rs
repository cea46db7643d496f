//! The model as the Learner sees it: a ResNet plus its loss.

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor};
use burn::train::{ClassificationOutput, InferenceStep, TrainOutput, TrainStep};
use se_models::ResNet;

use crate::data::batcher::ImageBatch;

/// A ResNet with a cross-entropy loss (optionally label-smoothed) on its logits.
#[derive(Module, Debug)]
pub struct Classifier<B: Backend> {
    /// The network.
    pub model: ResNet<B>,
    /// Label smoothing (0 = plain cross-entropy).
    pub label_smoothing: f32,
}

impl<B: Backend> Classifier<B> {
    /// Wraps a model.
    pub fn new(model: ResNet<B>, label_smoothing: f32) -> Self {
        Self {
            model,
            label_smoothing,
        }
    }

    /// Logits and loss for a batch.
    pub fn forward_classification(
        &self,
        images: Tensor<B, 4>,
        targets: Tensor<B, 1, Int>,
    ) -> ClassificationOutput<B> {
        let logits = self.model.forward(images);
        let smoothing = (self.label_smoothing > 0.0).then_some(self.label_smoothing);
        let loss = CrossEntropyLossConfig::new()
            .with_smoothing(smoothing)
            .init(&logits.device())
            .forward(logits.clone(), targets.clone());
        ClassificationOutput::new(loss, logits, targets)
    }
}

impl<B: AutodiffBackend> TrainStep for Classifier<B> {
    type Input = ImageBatch<B>;
    type Output = ClassificationOutput<B>;

    fn step(&self, batch: ImageBatch<B>) -> TrainOutput<ClassificationOutput<B>> {
        let output = self.forward_classification(batch.images, batch.targets);
        TrainOutput::new(self, output.loss.backward(), output)
    }
}

impl<B: Backend> InferenceStep for Classifier<B> {
    type Input = ImageBatch<B>;
    type Output = ClassificationOutput<B>;

    fn step(&self, batch: ImageBatch<B>) -> ClassificationOutput<B> {
        self.forward_classification(batch.images, batch.targets)
    }
}
