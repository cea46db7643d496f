//! Named models: each is a short [`ResNetConfig`], and a registry finds them by name.

use se_core::{
    AttentionConfig, BlockAttentionConfig, CbamConfig, EcaConfig, ScseConfig,
    SqueezeExcitationConfig,
};

use crate::resnet::{BlockKind, ResNetConfig, Stem};

/// timm's SE module (`seresnet*`, `seresnext*`): reduction 16, hidden width rounded to a multiple
/// of 8, so checkpoints from timm fit.
fn timm_se() -> BlockAttentionConfig {
    BlockAttentionConfig::of(AttentionConfig::Se(SqueezeExcitationConfig::new()))
}

/// The paper's SE module for the narrow CIFAR networks: hidden width exactly `C / 16`.
fn paper_se() -> BlockAttentionConfig {
    BlockAttentionConfig::of(AttentionConfig::Se(SqueezeExcitationConfig::paper(16)))
}

/// ECA (Wang et al. 2020): adaptive 1-D kernel, no reduction.
fn eca() -> BlockAttentionConfig {
    BlockAttentionConfig::of(AttentionConfig::Eca(EcaConfig::new()))
}

/// Spatial SE (Roy et al. 2018).
fn sse() -> BlockAttentionConfig {
    BlockAttentionConfig::of(AttentionConfig::Sse)
}

/// Concurrent spatial and channel SE, channel branch as timm's SE.
fn scse() -> BlockAttentionConfig {
    BlockAttentionConfig::of(AttentionConfig::Scse(ScseConfig::new()))
}

/// Concurrent spatial and channel SE, channel branch as the paper's `C / 16` (CIFAR widths).
fn cifar_scse() -> BlockAttentionConfig {
    BlockAttentionConfig::of(AttentionConfig::Scse(
        ScseConfig::new().with_channel(SqueezeExcitationConfig::paper(16)),
    ))
}

/// CBAM (Woo et al. 2018) with timm's defaults.
fn cbam() -> BlockAttentionConfig {
    BlockAttentionConfig::of(AttentionConfig::Cbam(CbamConfig::new()))
}

fn imagenet(block: BlockKind, layers: [usize; 4]) -> ResNetConfig {
    ResNetConfig::new(layers.to_vec(), block)
}

fn resnext(layers: [usize; 4]) -> ResNetConfig {
    imagenet(BlockKind::Bottleneck, layers)
        .with_groups(32)
        .with_base_width(4)
}

/// He et al.'s CIFAR ResNets: three stages of 16, 32, 64 planes, `depth = 6n + 2` with basic
/// blocks or `9n + 2` with bottlenecks; 10 classes. Projection (1x1 conv) shortcuts where the shape
/// changes (the paper's option B).
fn cifar(block: BlockKind, depth: usize) -> ResNetConfig {
    let per_block = match block {
        BlockKind::Basic => 6,
        BlockKind::Bottleneck => 9,
    };
    let n = (depth - 2) / per_block;
    ResNetConfig::new(vec![n; 3], block)
        .with_widths(vec![16, 32, 64])
        .with_stem(Stem::Cifar)
        .with_stem_width(16)
        .with_num_classes(10)
}

/// Cadene's `pretrainedmodels` SE-ResNet (a port of the original Caffe release; also timm's
/// `legacy_seresnet*`): Caffe stem (max pool with `ceil_mode`), stride on the first 1x1
/// conv, SE reduction exactly C/16. Loads `--layout cadene` checkpoints.
fn legacy_se_resnet(layers: [usize; 4]) -> ResNetConfig {
    imagenet(BlockKind::Bottleneck, layers)
        .with_stem(Stem::Caffe)
        .with_stride_on_1x1(true)
        .with_attention(paper_se())
}

/// Cadene's SE-ResNeXt (32x4d): Caffe stem, stride on the 3x3 conv, SE reduction C/16.
fn legacy_se_resnext(layers: [usize; 4]) -> ResNetConfig {
    resnext(layers)
        .with_stem(Stem::Caffe)
        .with_attention(paper_se())
}

/// SENet-154 (Hu et al. 2018, the paper's ILSVRC 2017 winner) as Cadene's `senet154` (timm
/// `legacy_senet154`): SE-ResNeXt bottlenecks with 64 groups (3x3 conv `2·planes → 4·planes`),
/// stages [3, 8, 36, 3], the deep stem (three 3x3 convs to 128 channels, Caffe max pool), 3x3
/// projection shortcuts, SE reduction exactly C/16, dropout 0.2 before the classifier.
fn senet154_config() -> ResNetConfig {
    imagenet(BlockKind::Bottleneck, [3, 8, 36, 3])
        .with_groups(64)
        .with_base_width(4)
        .with_reduce_first(Some(2))
        .with_down_kernel_size(Some(3))
        .with_stem(Stem::Deep)
        .with_stem_width(128)
        .with_attention(paper_se())
        .with_dropout(0.2)
}

/// Which input a registered model was designed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// 224x224 RGB, 1000 classes.
    ImageNet,
    /// 32x32 RGB, 10 classes.
    Cifar,
}

/// A registered model.
#[derive(Debug, Clone, Copy)]
pub struct ModelEntry {
    /// Registry name.
    pub name: &'static str,
    /// What it was designed for.
    pub family: Family,
    /// Builds its configuration.
    pub config: fn() -> ResNetConfig,
}

/// The one place a model is added: each row `name = config;` under its family makes the
/// constructor `name()` and its entry in [`MODELS`] (docs/models.md).
macro_rules! models {
    ($($family:ident { $($(#[$doc:meta])* $name:ident = $config:expr;)+ })+) => {
        $($(
            $(#[$doc])*
            #[doc = concat!("\n\nRegistered as `", stringify!($name), "`: `", stringify!($config), "`.")]
            pub fn $name() -> ResNetConfig {
                $config
            }
        )+)+

        /// Every registered model, in table order.
        pub const MODELS: &[ModelEntry] = &[
            $($(ModelEntry { name: stringify!($name), family: Family::$family, config: $name },)+)+
        ];
    };
}

models! {
    ImageNet {
        /// ResNet-18 (He et al. 2016; torchvision `resnet18`).
        resnet18 = imagenet(BlockKind::Basic, [2, 2, 2, 2]);
        /// ResNet-34.
        resnet34 = imagenet(BlockKind::Basic, [3, 4, 6, 3]);
        /// ResNet-50.
        resnet50 = imagenet(BlockKind::Bottleneck, [3, 4, 6, 3]);
        /// ResNet-101.
        resnet101 = imagenet(BlockKind::Bottleneck, [3, 4, 23, 3]);
        /// ResNet-152.
        resnet152 = imagenet(BlockKind::Bottleneck, [3, 8, 36, 3]);
        /// ResNeXt-50 (32x4d) (Xie et al. 2017).
        resnext50_32x4d = resnext([3, 4, 6, 3]);
        /// ResNeXt-101 (32x4d).
        resnext101_32x4d = resnext([3, 4, 23, 3]);
        /// SE-ResNet-18 (timm `seresnet18`).
        se_resnet18 = resnet18().with_attention(timm_se());
        /// SE-ResNet-34 (timm `seresnet34`).
        se_resnet34 = resnet34().with_attention(timm_se());
        /// SE-ResNet-50 (timm `seresnet50`).
        se_resnet50 = resnet50().with_attention(timm_se());
        /// SE-ResNet-101 (timm `seresnet101`).
        se_resnet101 = resnet101().with_attention(timm_se());
        /// SE-ResNet-152 (timm `seresnet152`).
        se_resnet152 = resnet152().with_attention(timm_se());
        /// SE-ResNeXt-50 (32x4d) (timm `seresnext50_32x4d`).
        se_resnext50_32x4d = resnext50_32x4d().with_attention(timm_se());
        /// SE-ResNeXt-101 (32x4d) (timm `seresnext101_32x4d`).
        se_resnext101_32x4d = resnext101_32x4d().with_attention(timm_se());
        /// Cadene/Caffe SE-ResNet-50 (`pretrainedmodels.se_resnet50`, timm `legacy_seresnet50`).
        legacy_se_resnet50 = legacy_se_resnet([3, 4, 6, 3]);
        /// Cadene/Caffe SE-ResNet-101.
        legacy_se_resnet101 = legacy_se_resnet([3, 4, 23, 3]);
        /// Cadene/Caffe SE-ResNet-152.
        legacy_se_resnet152 = legacy_se_resnet([3, 8, 36, 3]);
        /// Cadene/Caffe SE-ResNeXt-50 (32x4d) (`pretrainedmodels.se_resnext50_32x4d`).
        legacy_se_resnext50_32x4d = legacy_se_resnext([3, 4, 6, 3]);
        /// Cadene/Caffe SE-ResNeXt-101 (32x4d).
        legacy_se_resnext101_32x4d = legacy_se_resnext([3, 4, 23, 3]);
        /// SENet-154 (Cadene `senet154`, timm `legacy_senet154`): 115,088,984 parameters.
        senet154 = senet154_config();
    }
    Cifar {
        /// CIFAR ResNet-20 (He et al. 2016, §4.2).
        resnet20 = cifar(BlockKind::Basic, 20);
        /// CIFAR ResNet-32.
        resnet32 = cifar(BlockKind::Basic, 32);
        /// CIFAR ResNet-44.
        resnet44 = cifar(BlockKind::Basic, 44);
        /// CIFAR ResNet-56.
        resnet56 = cifar(BlockKind::Basic, 56);
        /// CIFAR ResNet-110.
        resnet110 = cifar(BlockKind::Basic, 110);
        /// CIFAR ResNet-164 (bottleneck blocks).
        resnet164 = cifar(BlockKind::Bottleneck, 164);
        /// CIFAR SE-ResNet-20 (SE reduction exactly C/16, as the paper).
        se_resnet20 = resnet20().with_attention(paper_se());
        /// CIFAR SE-ResNet-32.
        se_resnet32 = resnet32().with_attention(paper_se());
        /// CIFAR SE-ResNet-44.
        se_resnet44 = resnet44().with_attention(paper_se());
        /// CIFAR SE-ResNet-56.
        se_resnet56 = resnet56().with_attention(paper_se());
        /// CIFAR SE-ResNet-110.
        se_resnet110 = resnet110().with_attention(paper_se());
        /// CIFAR SE-ResNet-164.
        se_resnet164 = resnet164().with_attention(paper_se());
    }
    ImageNet {
        eca_resnet18 = resnet18().with_attention(eca());
        eca_resnet34 = resnet34().with_attention(eca());
        eca_resnet50 = resnet50().with_attention(eca());
        eca_resnet101 = resnet101().with_attention(eca());
        sse_resnet18 = resnet18().with_attention(sse());
        sse_resnet34 = resnet34().with_attention(sse());
        sse_resnet50 = resnet50().with_attention(sse());
        sse_resnet101 = resnet101().with_attention(sse());
        scse_resnet18 = resnet18().with_attention(scse());
        scse_resnet34 = resnet34().with_attention(scse());
        scse_resnet50 = resnet50().with_attention(scse());
        scse_resnet101 = resnet101().with_attention(scse());
        cbam_resnet18 = resnet18().with_attention(cbam());
        cbam_resnet34 = resnet34().with_attention(cbam());
        cbam_resnet50 = resnet50().with_attention(cbam());
        cbam_resnet101 = resnet101().with_attention(cbam());
    }
    Cifar {
        eca_resnet20 = resnet20().with_attention(eca());
        eca_resnet32 = resnet32().with_attention(eca());
        eca_resnet56 = resnet56().with_attention(eca());
        eca_resnet110 = resnet110().with_attention(eca());
        sse_resnet20 = resnet20().with_attention(sse());
        sse_resnet32 = resnet32().with_attention(sse());
        sse_resnet56 = resnet56().with_attention(sse());
        sse_resnet110 = resnet110().with_attention(sse());
        scse_resnet20 = resnet20().with_attention(cifar_scse());
        scse_resnet32 = resnet32().with_attention(cifar_scse());
        scse_resnet56 = resnet56().with_attention(cifar_scse());
        scse_resnet110 = resnet110().with_attention(cifar_scse());
        cbam_resnet20 = resnet20().with_attention(cbam());
        cbam_resnet32 = resnet32().with_attention(cbam());
        cbam_resnet56 = resnet56().with_attention(cbam());
        cbam_resnet110 = resnet110().with_attention(cbam());
    }
}

/// A model name the registry does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown model `{name}`; known models: {}", known_names().join(", "))]
pub struct UnknownModel {
    /// The name asked for.
    pub name: String,
}

/// Names of every registered model.
pub fn known_names() -> Vec<&'static str> {
    MODELS.iter().map(|entry| entry.name).collect()
}

/// Finds a registered model. Names are matched case-insensitively, with `-` read as `_`.
pub fn lookup(name: &str) -> Result<&'static ModelEntry, UnknownModel> {
    let wanted = name.trim().to_ascii_lowercase().replace('-', "_");
    MODELS
        .iter()
        .find(|entry| entry.name == wanted)
        .ok_or_else(|| UnknownModel {
            name: name.to_string(),
        })
}

/// The configuration of a registered model.
pub fn config(name: &str) -> Result<ResNetConfig, UnknownModel> {
    lookup(name).map(|entry| (entry.config)())
}
