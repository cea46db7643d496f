//! The model as the Learner sees it: a ResNet plus its loss.

use burn::module::{AutodiffModule, Module};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Int, Tensor};
use burn::train::{ClassificationOutput, InferenceStep, TrainOutput, TrainStep};
use se_models::ResNet;

use crate::data::batcher::ImageBatch;
use crate::distributed::GradientAverager;
use crate::guard::LossGuard;

/// A ResNet with a cross-entropy loss (optionally label-smoothed) on its logits.
#[derive(Module, Debug)]
pub struct Classifier<B: Backend> {
    /// The network.
    pub model: ResNet<B>,
    /// Label smoothing (0 = plain cross-entropy).
    pub label_smoothing: f32,
    /// In data-parallel training, averages each step's gradients over the ranks.
    #[module(skip)]
    pub gradient_averager: Option<GradientAverager>,
    /// Factor of the loss before `backward` (the reported loss is unscaled): `1 / devices` when
    /// one process trains on several devices, whose gradients Burn's multi-device strategy
    /// sums, so that the step uses their mean as on one device.
    #[module(skip)]
    pub gradient_scale: f32,
    /// Stops training at the first non-finite loss, applying no gradient from it.
    #[module(skip)]
    pub loss_guard: Option<LossGuard>,
    /// How many parts of the network, from the input on ([`se_models::PARTS`]), are frozen:
    /// in training they run without autodiff, so they get no gradient and their BatchNorms
    /// keep their running statistics.
    #[module(skip)]
    pub frozen_parts: usize,
}

impl<B: Backend> Classifier<B> {
    /// Wraps a model.
    pub fn new(model: ResNet<B>, label_smoothing: f32) -> Self {
        Self {
            model,
            label_smoothing,
            gradient_averager: None,
            gradient_scale: 1.0,
            loss_guard: None,
            frozen_parts: 0,
        }
    }

    /// Freezes the first `parts` parts of the network (see [`Classifier::frozen_parts`]).
    pub fn with_frozen_parts(mut self, parts: usize) -> Self {
        self.frozen_parts = parts;
        self
    }

    /// Guards every training step's loss (see [`LossGuard`]).
    pub fn with_loss_guard(mut self, guard: LossGuard) -> Self {
        self.loss_guard = Some(guard);
        self
    }

    /// Scales the gradients of every training step (see [`Classifier::gradient_scale`]).
    pub fn with_gradient_scale(mut self, scale: f32) -> Self {
        self.gradient_scale = scale;
        self
    }

    /// Averages the gradients of every training step over the ranks of a data-parallel job.
    pub fn with_gradient_averager(mut self, averager: Option<GradientAverager>) -> Self {
        self.gradient_averager = averager;
        self
    }
}

impl<B: Backend> Classifier<B> {
    /// Logits and loss for a batch.
    pub fn forward_classification(
        &self,
        images: Tensor<B, 4>,
        targets: Tensor<B, 1, Int>,
    ) -> ClassificationOutput<B> {
        self.classification(self.model.forward(images), targets)
    }

    /// The loss of `logits` against `targets`.
    fn classification(
        &self,
        logits: Tensor<B, 2>,
        targets: Tensor<B, 1, Int>,
    ) -> ClassificationOutput<B> {
        let smoothing = (self.label_smoothing > 0.0).then_some(self.label_smoothing);
        let loss = CrossEntropyLossConfig::new()
            .with_smoothing(smoothing)
            .init(&logits.device())
            .forward(logits.clone(), targets.clone());
        ClassificationOutput::new(loss, logits, targets)
    }
}

impl<B: AutodiffBackend> Classifier<B> {
    /// Training logits: the frozen parts run on the inner backend (no graph, BatchNorms on their
    /// running statistics), the rest under autodiff from their output.
    ///
    /// # Shapes
    /// - `images`: `[N, C, H, W]`
    /// - output: `[N, num_classes]`
    pub fn train_logits(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let frozen = self.frozen_parts;
        if frozen == 0 {
            return self.model.forward(images);
        }
        let features = self.model.valid().forward_parts(images.inner(), 0..frozen);
        let map = self
            .model
            .forward_parts(Tensor::from_inner(features), frozen..5);
        self.model.head(map)
    }
}

impl<B: AutodiffBackend> TrainStep for Classifier<B> {
    type Input = ImageBatch<B>;
    type Output = ClassificationOutput<B>;

    fn step(&self, batch: ImageBatch<B>) -> TrainOutput<ClassificationOutput<B>> {
        let output = self.classification(self.train_logits(batch.images), batch.targets);
        if let Some(guard) = &self.loss_guard {
            let value: f64 = output.loss.clone().inner().into_scalar().elem();
            if !guard.check(value) {
                // No gradient from this step: the weights stay as the last finite step left them.
                return TrainOutput {
                    grads: GradientsParams::new(),
                    item: output,
                };
            }
        }
        let loss = if self.gradient_scale == 1.0 {
            output.loss.clone()
        } else {
            output.loss.clone().mul_scalar(self.gradient_scale)
        };
        let mut grads = GradientsParams::from_grads(loss.backward(), self);
        if let Some(averager) = &self.gradient_averager {
            averager.average(self, &mut grads);
        }
        TrainOutput {
            grads,
            item: output,
        }
    }
}

impl<B: Backend> InferenceStep for Classifier<B> {
    type Input = ImageBatch<B>;
    type Output = ClassificationOutput<B>;

    fn step(&self, batch: ImageBatch<B>) -> ClassificationOutput<B> {
        self.forward_classification(batch.images, batch.targets)
    }
}
