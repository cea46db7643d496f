//! One generic ResNet: stem, up to four stages of residual blocks, global average pool, classifier.
//! Every named model (ResNet, SE-ResNet, SE-ResNeXt, CIFAR ResNets) is a [`ResNetConfig`].

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use se_core::block::{conv, conv_norm};
use se_core::complexity::{Complexity, Size, conv_bn, linear, window_output};
use se_core::{
    Attention, BasicBlockConfig, BatchNorm2d, BatchNorm2dConfig, BlockAttentionConfig,
    BottleneckConfig, ExcitationHook, ResidualBlock, Squeeze, SqueezeExcitation,
};

/// The stem that turns the input image into the first stage's feature map.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Stem {
    /// 7x7/2 conv, BN, ReLU, 3x3/2 max pool with padding 1 (torchvision, timm): 224 → 56.
    ImageNet,
    /// 7x7/2 conv, BN, ReLU, 3x3/2 max pool without padding, rounding up (Caffe, and Cadene's port
    /// of the original SENet release): 224 → 56.
    Caffe,
    /// 3x3/1 conv, BN, ReLU, no pooling (He et al.'s CIFAR ResNets): 32 → 32.
    Cifar,
    /// Three 3x3 convs (stride 2, 1, 1; `stem_width / 2`, `stem_width / 2`, `stem_width`
    /// channels), each with BN and ReLU, then the Caffe max pool (Cadene's SENet-154): 224 → 56.
    Deep,
}

impl Stem {
    fn conv_kernel_stride(self) -> (usize, usize) {
        match self {
            Stem::ImageNet | Stem::Caffe => (7, 2),
            Stem::Cifar => (3, 1),
            Stem::Deep => (3, 2),
        }
    }

    /// `(padding, ceil_mode)` of the max pool, if the stem has one.
    fn pool(self) -> Option<(usize, bool)> {
        match self {
            Stem::ImageNet => Some((1, false)),
            Stem::Caffe | Stem::Deep => Some((0, true)),
            Stem::Cifar => None,
        }
    }
}

/// The residual block type of every stage.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// Two 3x3 convs, expansion 1.
    Basic,
    /// 1x1 → 3x3 → 1x1, expansion 4.
    Bottleneck,
}

impl BlockKind {
    /// Output channels per `planes`.
    pub fn expansion(self) -> usize {
        match self {
            BlockKind::Basic => BasicBlockConfig::EXPANSION,
            BlockKind::Bottleneck => BottleneckConfig::EXPANSION,
        }
    }
}

/// Configuration of a [`ResNet`].
#[derive(Config, Debug)]
pub struct ResNetConfig {
    /// Number of blocks in each stage (one to four stages).
    pub layers: Vec<usize>,
    /// Block type of every stage.
    pub block: BlockKind,
    /// Base width (`planes`) of each stage; a stage outputs `planes * expansion` channels.
    #[config(default = "vec![64, 128, 256, 512]")]
    pub widths: Vec<usize>,
    /// The stem.
    #[config(default = "Stem::ImageNet")]
    pub stem: Stem,
    /// Output channels of the stem.
    #[config(default = 64)]
    pub stem_width: usize,
    /// Groups of the bottleneck's 3x3 conv (ResNeXt cardinality).
    #[config(default = 1)]
    pub groups: usize,
    /// Width per group of the bottleneck's 3x3 conv at `planes = 64` (ResNeXt `d`).
    #[config(default = 64)]
    pub base_width: usize,
    /// Stride on the bottleneck's first 1x1 conv instead of its 3x3 (Caffe/Cadene SE-ResNet).
    #[config(default = false)]
    pub stride_on_1x1: bool,
    /// The bottleneck's first 1x1 conv outputs `width / reduce_first` channels; `None` is 1
    /// (2 in SENet-154). An `Option` so that `model.json` files written before it still load.
    #[config(default = "None")]
    pub reduce_first: Option<usize>,
    /// Kernel of the projection shortcut's conv in the strided stages (2 to 4; the first
    /// stage's is 1x1, as Cadene's SENet); `None` is 1 (3 in SENet-154).
    #[config(default = "None")]
    pub down_kernel_size: Option<usize>,
    /// SE module and placement of every block.
    #[config(default = "BlockAttentionConfig::new()")]
    pub attention: BlockAttentionConfig,
    /// The stages (1 to 4) whose blocks carry `attention`; `None` is every stage (the paper's
    /// Table 13 puts SE in one stage at a time).
    #[config(default = "None")]
    pub attention_stages: Option<Vec<usize>>,
    /// Channels of the input image (3 for RGB, 1 for MNIST).
    #[config(default = 3)]
    pub in_channels: usize,
    /// Number of classes of the classifier.
    #[config(default = 1000)]
    pub num_classes: usize,
    /// Dropout before the classifier.
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Start every block as the identity by zeroing its last BatchNorm's scale.
    #[config(default = false)]
    pub zero_init_last: bool,
}

/// A [`ResNetConfig`] that cannot build a network (read from a hand-edited or foreign
/// `model.json`, say): which field, its value, and the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("model config: {field} = {value}: {rule}")]
pub struct InvalidModelConfig {
    /// The field.
    pub field: &'static str,
    /// Its value, as written.
    pub value: String,
    /// What it must be.
    pub rule: &'static str,
}

impl ResNetConfig {
    /// Checks every field a network is built from, before any tensor is made: stage counts and
    /// widths, groups that divide the grouped convolution, channels, classes, dropout.
    pub fn validate(&self) -> Result<(), InvalidModelConfig> {
        let invalid = |field, value: &dyn std::fmt::Debug, rule| {
            Err(InvalidModelConfig {
                field,
                value: format!("{value:?}"),
                rule,
            })
        };
        if self.layers.is_empty() || self.layers.len() > STAGE_NAMES.len() {
            return invalid("layers", &self.layers, "one to four stages");
        }
        if self.layers.contains(&0) {
            return invalid(
                "layers",
                &self.layers,
                "every stage needs at least one block",
            );
        }
        if self.widths.len() != self.layers.len() {
            return invalid("widths", &self.widths, "one width per stage of `layers`");
        }
        if self.widths.contains(&0) {
            return invalid("widths", &self.widths, "every width must be at least 1");
        }
        for (field, value) in [
            ("stem_width", self.stem_width),
            ("in_channels", self.in_channels),
            ("num_classes", self.num_classes),
            ("groups", self.groups),
            ("base_width", self.base_width),
            ("reduce_first", self.reduce_first.unwrap_or(1)),
            ("down_kernel_size", self.down_kernel_size.unwrap_or(1)),
        ] {
            if value == 0 {
                return invalid(field, &value, "must be at least 1");
            }
        }
        if self.block == BlockKind::Bottleneck
            && self
                .widths
                .iter()
                .any(|&planes| planes * self.base_width / 64 == 0)
        {
            return invalid(
                "base_width",
                &self.base_width,
                "too small: a stage's grouped convolution would have no channel per group",
            );
        }
        if self.block == BlockKind::Bottleneck
            && self.widths.iter().any(|&planes| {
                let width = planes * self.base_width / 64 * self.groups;
                !width.is_multiple_of(self.reduce_first.unwrap_or(1))
            })
        {
            return invalid(
                "reduce_first",
                &self.reduce_first,
                "must divide the width of every stage's grouped convolution",
            );
        }
        if self.block == BlockKind::Basic
            && (self.reduce_first.unwrap_or(1) != 1 || self.down_kernel_size.unwrap_or(1) != 1)
        {
            return invalid(
                "reduce_first",
                &self.reduce_first,
                "reduce_first and down_kernel_size need bottleneck blocks",
            );
        }
        if self.stem == Stem::Deep && self.stem_width < 2 {
            return invalid(
                "stem_width",
                &self.stem_width,
                "the deep stem needs at least 2",
            );
        }
        if self.block == BlockKind::Basic && (self.groups != 1 || self.base_width != 64) {
            return invalid(
                "groups",
                &self.groups,
                "grouped convolutions (ResNeXt) need bottleneck blocks",
            );
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return invalid("dropout", &self.dropout, "a probability in [0, 1)");
        }
        if let Some(stages) = &self.attention_stages
            && stages.iter().any(|&s| s == 0 || s > self.layers.len())
        {
            return invalid(
                "attention_stages",
                stages,
                "stage numbers from 1 to the number of stages",
            );
        }
        Ok(())
    }

    /// The smallest image side the network takes: every window of the stem must fit its
    /// padded input (the stages' 3x3 and 1x1 convolutions fit any size from 1).
    pub fn min_input_size(&self) -> usize {
        (1..)
            .find(|&side| self.stem_output(side).is_some())
            .unwrap_or(1)
    }

    /// The side of the stem's output for an input `side`, `None` where a window does not fit.
    fn stem_output(&self, side: usize) -> Option<usize> {
        let window = |side: usize, kernel: usize, stride: usize, padding: usize, ceil: bool| {
            let span = (side + 2 * padding).checked_sub(kernel)?;
            Some(
                if ceil {
                    span.div_ceil(stride)
                } else {
                    span / stride
                } + 1,
            )
        };
        let (kernel, stride) = self.stem.conv_kernel_stride();
        let side = window(side, kernel, stride, kernel / 2, false)?;
        match self.stem.pool() {
            Some((padding, ceil)) => window(side, 3, 2, padding, ceil),
            None => Some(side),
        }
    }
}

/// The configuration of one block of a network, of either kind.
enum BlockSpec {
    Basic(BasicBlockConfig),
    Bottleneck(BottleneckConfig),
}

impl BlockSpec {
    fn init<B: Backend>(&self, device: &B::Device) -> ResidualBlock<B> {
        match self {
            BlockSpec::Basic(config) => ResidualBlock::Basic(config.init(device)),
            BlockSpec::Bottleneck(config) => ResidualBlock::Bottleneck(config.init(device)),
        }
    }

    fn complexity(&self, input: Size) -> (Complexity, Size) {
        match self {
            BlockSpec::Basic(config) => config.complexity(input),
            BlockSpec::Bottleneck(config) => config.complexity(input),
        }
    }
}

/// Parameters and multiply-adds of one part of a network.
#[derive(Debug, Clone, PartialEq)]
pub struct StageComplexity {
    /// `stem`, `layer1`..`layer4` or `fc`, as the module fields.
    pub name: &'static str,
    /// Cost of the part.
    pub cost: Complexity,
    /// Output shape `[C, H, W]` (`[classes, 1, 1]` for `fc`).
    pub output: [usize; 3],
}

const STAGE_NAMES: [&str; 4] = ["layer1", "layer2", "layer3", "layer4"];

impl ResNetConfig {
    /// Channels of the pooled feature vector (the classifier's input).
    pub fn feature_channels(&self) -> usize {
        self.widths
            .last()
            .map_or(self.stem_width, |w| w * self.block.expansion())
    }

    /// The attention of the blocks of `stage` (1 to 4): `attention`, or none where
    /// `attention_stages` leaves the stage out.
    fn stage_attention(&self, stage: usize) -> BlockAttentionConfig {
        match &self.attention_stages {
            Some(stages) if !stages.contains(&stage) => BlockAttentionConfig::new(),
            _ => self.attention.clone(),
        }
    }

    /// Block configurations, stage by stage: the first block of every stage but the first has
    /// stride 2.
    fn block_specs(&self) -> Vec<Vec<BlockSpec>> {
        // `init` has no error path (Burn's convention); readers of config files call
        // `validate` first and report a typed error.
        if let Err(error) = self.validate() {
            panic!("{error}");
        }
        let mut in_channels = self.stem_width;
        let mut stages = Vec::with_capacity(self.layers.len());
        for (stage, (&blocks, &planes)) in self.layers.iter().zip(&self.widths).enumerate() {
            let attention = self.stage_attention(stage + 1);
            let mut specs = Vec::with_capacity(blocks);
            for index in 0..blocks {
                let stride = if stage > 0 && index == 0 { 2 } else { 1 };
                specs.push(match self.block {
                    BlockKind::Basic => BlockSpec::Basic(
                        BasicBlockConfig::new(in_channels, planes)
                            .with_stride(stride)
                            .with_attention(attention.clone())
                            .with_zero_init_last(self.zero_init_last),
                    ),
                    BlockKind::Bottleneck => BlockSpec::Bottleneck(
                        BottleneckConfig::new(in_channels, planes)
                            .with_stride(stride)
                            .with_groups(self.groups)
                            .with_base_width(self.base_width)
                            .with_stride_on_1x1(self.stride_on_1x1)
                            .with_reduce_first(self.reduce_first.unwrap_or(1))
                            .with_down_kernel_size(match stage {
                                0 => 1,
                                _ => self.down_kernel_size.unwrap_or(1),
                            })
                            .with_attention(attention.clone())
                            .with_zero_init_last(self.zero_init_last),
                    ),
                });
                in_channels = planes * self.block.expansion();
            }
            stages.push(specs);
        }
        stages
    }

    /// Builds the network.
    pub fn init<B: Backend>(&self, device: &B::Device) -> ResNet<B> {
        let mut stages = self.block_specs().into_iter().map(|specs| {
            specs
                .iter()
                .map(|spec| spec.init(device))
                .collect::<Vec<_>>()
        });
        let mut next_stage = || stages.next().unwrap_or_default();
        let (kernel, stride) = self.stem.conv_kernel_stride();
        let [first, second] = self.stem_convs();
        let deep = |from: usize, to: usize| {
            (self.stem == Stem::Deep).then(|| conv(from, to, 3, 1, 1).init(device))
        };
        let deep_bn = |channels| {
            (self.stem == Stem::Deep).then(|| BatchNorm2dConfig::new(channels).init(device))
        };
        ResNet {
            conv1: conv(self.in_channels, first, kernel, stride, 1).init(device),
            bn1: BatchNorm2dConfig::new(first).init(device),
            conv2: deep(first, second),
            bn2: deep_bn(second),
            conv3: deep(second, self.stem_width),
            bn3: deep_bn(self.stem_width),
            maxpool: self.stem.pool().map(|(padding, ceil_mode)| {
                MaxPool2dConfig::new([3, 3])
                    .with_strides([2, 2])
                    .with_padding(PaddingConfig2d::Explicit(
                        padding, padding, padding, padding,
                    ))
                    .with_ceil_mode(ceil_mode)
                    .init()
            }),
            layer1: next_stage(),
            layer2: next_stage(),
            layer3: next_stage(),
            layer4: next_stage(),
            dropout: DropoutConfig::new(self.dropout).init(),
            fc: LinearConfig::new(self.feature_channels(), self.num_classes).init(device),
        }
    }

    /// Output channels of the stem's first convolution and, for the deep stem, of its second
    /// (the third outputs `stem_width`).
    fn stem_convs(&self) -> [usize; 2] {
        match self.stem {
            Stem::Deep => [self.stem_width / 2; 2],
            _ => [self.stem_width; 2],
        }
    }

    /// Parameters and multiply-adds per part for an `input`-sized image, computed from the config.
    pub fn complexity(&self, input: Size) -> Vec<StageComplexity> {
        let (kernel, stride) = self.stem.conv_kernel_stride();
        let [first, second] = self.stem_convs();
        let (mut stem, mut size) = conv_bn(self.in_channels, first, kernel, stride, 1, input);
        if self.stem == Stem::Deep {
            for (from, to) in [(first, second), (second, self.stem_width)] {
                let (cost, out) = conv_bn(from, to, 3, 1, 1, size);
                (stem, size) = (stem + cost, out);
            }
        }
        if let Some((padding, ceil)) = self.stem.pool() {
            size = window_output(size, 3, 2, padding, ceil);
        }
        let mut parts = vec![StageComplexity {
            name: "stem",
            cost: stem,
            output: [self.stem_width, size[0], size[1]],
        }];
        let mut channels = self.stem_width;
        for ((specs, name), planes) in self.block_specs().iter().zip(STAGE_NAMES).zip(&self.widths)
        {
            let mut cost = Complexity::default();
            for spec in specs {
                let (block, out) = spec.complexity(size);
                cost += block;
                size = out;
            }
            channels = planes * self.block.expansion();
            parts.push(StageComplexity {
                name,
                cost,
                output: [channels, size[0], size[1]],
            });
        }
        parts.push(StageComplexity {
            name: "fc",
            cost: linear(channels, self.num_classes, true),
            output: [self.num_classes, 1, 1],
        });
        parts
    }

    /// Total parameters and multiply-adds for an `input`-sized image.
    pub fn total_complexity(&self, input: Size) -> Complexity {
        self.complexity(input)
            .iter()
            .fold(Complexity::default(), |total, part| total + part.cost)
    }
}

/// A ResNet. Field names follow torchvision/timm's state-dict keys (`conv1`, `bn1`, `layer1`..`layer4`,
/// `fc`), so PyTorch checkpoints map onto it with few renames. Stages a config does not use
/// (CIFAR ResNets have three) are empty.
#[derive(Module, Debug)]
pub struct ResNet<B: Backend> {
    /// Stem convolution.
    pub conv1: Conv2d<B>,
    /// Stem BatchNorm.
    pub bn1: BatchNorm2d<B>,
    /// The deep stem's second convolution (Cadene's `layer0.conv2`); `None` for other stems.
    pub conv2: Option<Conv2d<B>>,
    /// Its BatchNorm.
    pub bn2: Option<BatchNorm2d<B>>,
    /// The deep stem's third convolution.
    pub conv3: Option<Conv2d<B>>,
    /// Its BatchNorm.
    pub bn3: Option<BatchNorm2d<B>>,
    /// Stem max pool (ImageNet and Caffe stems).
    pub maxpool: Option<MaxPool2d>,
    /// Stage 1 (stride 1).
    pub layer1: Vec<ResidualBlock<B>>,
    /// Stage 2 (stride 2).
    pub layer2: Vec<ResidualBlock<B>>,
    /// Stage 3 (stride 2).
    pub layer3: Vec<ResidualBlock<B>>,
    /// Stage 4 (stride 2).
    pub layer4: Vec<ResidualBlock<B>>,
    /// Dropout before the classifier.
    pub dropout: Dropout,
    /// Classifier.
    pub fc: Linear<B>,
}

/// An SE module of a [`ResNet`], as [`ResNet::se_modules`] lists them.
#[derive(Debug)]
pub struct SeModuleInfo<'a, B: Backend> {
    /// State-dict name, e.g. `layer3.1.se`.
    pub name: String,
    /// Stage, 1 to 4.
    pub stage: usize,
    /// The module.
    pub module: &'a SqueezeExcitation<B>,
}

/// The parts of a [`ResNet`] in the order the input flows through them, by the names of their
/// module fields (`stem` is `conv1`, `bn1` and the max pool): what `--freeze` names.
pub const PARTS: [&str; 6] = ["stem", "layer1", "layer2", "layer3", "layer4", "fc"];

impl<B: Backend> ResNet<B> {
    /// The feature map after the last stage.
    ///
    /// # Shapes
    /// - `x`: `[N, C_in, H, W]`
    /// - output: `[N, C_features, H / s, W / s]` (`s` = 32 for ImageNet models, 4 for CIFAR ones)
    pub fn feature_map(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.forward_parts(x, 0..5)
    }

    /// Runs the parts `parts` of [`PARTS`] up to the last stage (`0..5` is the whole
    /// [`feature_map`](Self::feature_map)), so that a caller can run a frozen prefix apart:
    /// `forward_parts(forward_parts(x, 0..k), k..5)` is `feature_map(x)`.
    ///
    /// # Shapes
    /// - `x`: the input of part `parts.start`
    /// - output: the output of part `parts.end - 1`
    pub fn forward_parts(&self, x: Tensor<B, 4>, parts: std::ops::Range<usize>) -> Tensor<B, 4> {
        let stages = self.stages();
        let mut x = x;
        for part in parts.clone().filter(|&part| part < 5) {
            x = match part {
                0 => {
                    let mut x = conv_norm(&self.conv1, &self.bn1, x, None, true);
                    for (conv, bn) in [(&self.conv2, &self.bn2), (&self.conv3, &self.bn3)] {
                        if let (Some(conv), Some(bn)) = (conv, bn) {
                            x = conv_norm(conv, bn, x, None, true);
                        }
                    }
                    match &self.maxpool {
                        Some(pool) => max_pool(pool, x),
                        None => x,
                    }
                }
                stage => stages[stage - 1]
                    .iter()
                    .fold(x, |x, block| block.forward(x)),
            };
        }
        x
    }

    /// Class logits, with the channel weights of every SE module shown to `hook` in the order
    /// the input meets them, which is the order of [`se_modules`](Self::se_modules): the
    /// excitation analysis records them there, and its ablation replaces some.
    ///
    /// # Shapes
    /// - `x`: `[N, C_in, H, W]`
    /// - output: `[N, num_classes]`
    pub fn forward_hooked(
        &self,
        x: Tensor<B, 4>,
        hook: &mut dyn ExcitationHook<B>,
    ) -> Tensor<B, 2> {
        let x = self.forward_parts(x, 0..1);
        let x = self
            .stages()
            .into_iter()
            .flatten()
            .fold(x, |x, block| block.forward_hooked(x, Some(&mut *hook)));
        self.head(x)
    }

    fn stages(&self) -> [&Vec<ResidualBlock<B>>; 4] {
        [&self.layer1, &self.layer2, &self.layer3, &self.layer4]
    }

    /// The SE modules an [`ExcitationHook`] sees (those with a squeeze), in the order it sees
    /// them, by their state-dict names (`layer3.1.se`) with their stage (1 to 4).
    pub fn se_modules(&self) -> Vec<SeModuleInfo<'_, B>> {
        let mut modules = Vec::new();
        for (stage, blocks) in self.stages().into_iter().enumerate() {
            for (index, block) in blocks.iter().enumerate() {
                if let Some(Attention::Se(se)) = block.attention()
                    && se.squeeze != Squeeze::None
                {
                    modules.push(SeModuleInfo {
                        name: format!("layer{}.{index}.se", stage + 1),
                        stage: stage + 1,
                        module: se,
                    });
                }
            }
        }
        modules
    }

    /// The pooled embedding: the global average of the last feature map, whatever its size.
    ///
    /// # Shapes
    /// - `x`: `[N, C_in, H, W]`
    /// - output: `[N, C_features]`
    pub fn features(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        self.pool(self.feature_map(x))
    }

    /// Class logits (no softmax: the loss or the caller applies it).
    ///
    /// # Shapes
    /// - `x`: `[N, C_in, H, W]`
    /// - output: `[N, num_classes]`
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        se_kernels::on_cpu_threads::<B, _>(|| self.head(self.feature_map(x)))
    }

    /// Global average pool, dropout and classifier on the last feature map.
    ///
    /// # Shapes
    /// - `map`: `[N, C_features, H, W]`
    /// - output: `[N, num_classes]`
    pub fn head(&self, map: Tensor<B, 4>) -> Tensor<B, 2> {
        self.fc.forward(self.dropout.forward(self.pool(map)))
    }

    fn pool(&self, map: Tensor<B, 4>) -> Tensor<B, 2> {
        let [n, c, h, w] = map.dims();
        map.reshape([n, c, h * w]).mean_dim(2).reshape([n, c])
    }

    /// The number of classes of the classifier.
    pub fn num_classes(&self) -> usize {
        self.fc.weight.lazy_shape()[1]
    }

    /// Replaces the classifier by a freshly initialised one for `num_classes` classes (timm's
    /// `reset_classifier`), keeping everything before it: the step that turns a network
    /// pretrained on one task into the start of another.
    pub fn reset_classifier(mut self, num_classes: usize, device: &B::Device) -> Self {
        let features = self.fc.weight.lazy_shape()[0];
        self.fc = LinearConfig::new(features, num_classes).init(device);
        self
    }

    /// The inference form of the network: every BatchNorm that follows a convolution (stem,
    /// blocks, shortcuts) folded into that convolution's weights and bias from its running
    /// statistics, as ONNX Runtime and TensorRT deploy a ResNet. The convolutions then finish
    /// their own output (bias, residual addition, ReLU, and an SE module's squeeze) in the pass
    /// that writes it. Same logits as the model in evaluation mode, to float rounding; for
    /// inference only (a folded BatchNorm no longer normalises by batch statistics, so training
    /// it is not training the original network), and its weights no longer fit the unfolded
    /// model's files (the convolutions gained biases), which strict loading refuses.
    ///
    /// ```
    /// # use burn::backend::Flex;
    /// let device = Default::default();
    /// let model = se_models::zoo::se_resnet20().init::<Flex>(&device).fold_batch_norms();
    /// let x = burn::tensor::Tensor::<Flex, 4>::zeros([1, 3, 32, 32], &device);
    /// assert_eq!(model.forward(x).dims(), [1, 10]);
    /// ```
    pub fn fold_batch_norms(mut self) -> Self {
        self.bn1.fold_into(&mut self.conv1);
        let stem = [
            (&mut self.conv2, &mut self.bn2),
            (&mut self.conv3, &mut self.bn3),
        ];
        for (conv, bn) in stem {
            if let (Some(conv), Some(bn)) = (conv, bn) {
                bn.fold_into(conv);
            }
        }
        for stage in [
            &mut self.layer1,
            &mut self.layer2,
            &mut self.layer3,
            &mut self.layer4,
        ] {
            stage.iter_mut().for_each(ResidualBlock::fold_batch_norms);
        }
        self
    }

    /// Whether this is the inference form ([`fold_batch_norms`](Self::fold_batch_norms)).
    pub fn is_folded(&self) -> bool {
        self.bn1.folded
    }

    /// Panics if this is the inference form: its weights are not the network's (folded
    /// convolutions carry biases and their BatchNorms are spent), so writing them as the
    /// network's would have a loader apply each BatchNorm twice.
    pub(crate) fn assert_not_folded(&self, writing: &str) {
        assert!(
            !self.is_folded(),
            "{writing}: the model is the folded inference form; write the model before folding"
        );
    }

    /// Puts every BatchNorm in evaluation mode for good: normalised by its running statistics,
    /// which stay as they are, even while the rest trains (PyTorch's `bn.eval()` during
    /// fine-tuning; `--freeze-bn`). Scale and shift still learn unless their part is frozen.
    pub fn freeze_batch_norms(mut self) -> Self {
        self.bn1.frozen = true;
        for bn in [&mut self.bn2, &mut self.bn3].into_iter().flatten() {
            bn.frozen = true;
        }
        for block in [
            &mut self.layer1,
            &mut self.layer2,
            &mut self.layer3,
            &mut self.layer4,
        ]
        .into_iter()
        .flatten()
        {
            for bn in block.batch_norms_mut() {
                bn.frozen = true;
            }
        }
        self
    }
}

/// The stem's max pool through se-kernels (its CPU kernel on flex, Burn's op elsewhere) when
/// its padding is the same on both sides, as every stem's is; Burn's module otherwise.
fn max_pool<B: Backend>(pool: &MaxPool2d, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let padding = match pool.padding {
        PaddingConfig2d::Valid => [0, 0],
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => {
            [top, left]
        }
        _ => return pool.forward(x),
    };
    se_kernels::max_pool2d(
        x,
        pool.kernel_size,
        pool.stride,
        padding,
        pool.dilation,
        pool.ceil_mode,
    )
}
