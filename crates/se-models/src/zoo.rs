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

/// Cadene/Caffe SE-ResNet-50 (`pretrainedmodels.se_resnet50`, timm `legacy_seresnet50`).
pub fn legacy_se_resnet50() -> ResNetConfig {
    legacy_se_resnet([3, 4, 6, 3])
}
/// Cadene/Caffe SE-ResNet-101.
pub fn legacy_se_resnet101() -> ResNetConfig {
    legacy_se_resnet([3, 4, 23, 3])
}
/// Cadene/Caffe SE-ResNet-152.
pub fn legacy_se_resnet152() -> ResNetConfig {
    legacy_se_resnet([3, 8, 36, 3])
}
/// Cadene/Caffe SE-ResNeXt-50 (32x4d) (`pretrainedmodels.se_resnext50_32x4d`).
pub fn legacy_se_resnext50_32x4d() -> ResNetConfig {
    legacy_se_resnext([3, 4, 6, 3])
}
/// Cadene/Caffe SE-ResNeXt-101 (32x4d).
pub fn legacy_se_resnext101_32x4d() -> ResNetConfig {
    legacy_se_resnext([3, 4, 23, 3])
}

pub fn resnet18() -> ResNetConfig {
    imagenet(BlockKind::Basic, [2, 2, 2, 2])
}
pub fn resnet34() -> ResNetConfig {
    imagenet(BlockKind::Basic, [3, 4, 6, 3])
}
pub fn resnet50() -> ResNetConfig {
    imagenet(BlockKind::Bottleneck, [3, 4, 6, 3])
}
pub fn resnet101() -> ResNetConfig {
    imagenet(BlockKind::Bottleneck, [3, 4, 23, 3])
}
pub fn resnet152() -> ResNetConfig {
    imagenet(BlockKind::Bottleneck, [3, 8, 36, 3])
}
pub fn resnext50_32x4d() -> ResNetConfig {
    resnext([3, 4, 6, 3])
}
pub fn resnext101_32x4d() -> ResNetConfig {
    resnext([3, 4, 23, 3])
}
pub fn se_resnet18() -> ResNetConfig {
    resnet18().with_attention(timm_se())
}
pub fn se_resnet34() -> ResNetConfig {
    resnet34().with_attention(timm_se())
}
pub fn se_resnet50() -> ResNetConfig {
    resnet50().with_attention(timm_se())
}
pub fn se_resnet101() -> ResNetConfig {
    resnet101().with_attention(timm_se())
}
pub fn se_resnet152() -> ResNetConfig {
    resnet152().with_attention(timm_se())
}
pub fn se_resnext50_32x4d() -> ResNetConfig {
    resnext50_32x4d().with_attention(timm_se())
}
pub fn se_resnext101_32x4d() -> ResNetConfig {
    resnext101_32x4d().with_attention(timm_se())
}
pub fn resnet20() -> ResNetConfig {
    cifar(BlockKind::Basic, 20)
}
pub fn resnet32() -> ResNetConfig {
    cifar(BlockKind::Basic, 32)
}
pub fn resnet44() -> ResNetConfig {
    cifar(BlockKind::Basic, 44)
}
pub fn resnet56() -> ResNetConfig {
    cifar(BlockKind::Basic, 56)
}
pub fn resnet110() -> ResNetConfig {
    cifar(BlockKind::Basic, 110)
}
pub fn resnet164() -> ResNetConfig {
    cifar(BlockKind::Bottleneck, 164)
}
pub fn se_resnet20() -> ResNetConfig {
    resnet20().with_attention(paper_se())
}
pub fn se_resnet32() -> ResNetConfig {
    resnet32().with_attention(paper_se())
}
pub fn se_resnet44() -> ResNetConfig {
    resnet44().with_attention(paper_se())
}
pub fn se_resnet56() -> ResNetConfig {
    resnet56().with_attention(paper_se())
}
pub fn se_resnet110() -> ResNetConfig {
    resnet110().with_attention(paper_se())
}
pub fn se_resnet164() -> ResNetConfig {
    resnet164().with_attention(paper_se())
}

/// Defines `name() = base().with_attention(attention())` for each line.
macro_rules! with_attention {
    ($($name:ident = $base:ident + $attention:ident;)+) => {
        $(
            #[doc = concat!("`", stringify!($base), "` with `", stringify!($attention), "` attention in every block.")]
            pub fn $name() -> ResNetConfig {
                $base().with_attention($attention())
            }
        )+
    };
}

with_attention! {
    eca_resnet18 = resnet18 + eca; eca_resnet34 = resnet34 + eca; eca_resnet50 = resnet50 + eca;
    eca_resnet101 = resnet101 + eca;
    sse_resnet18 = resnet18 + sse; sse_resnet34 = resnet34 + sse; sse_resnet50 = resnet50 + sse;
    sse_resnet101 = resnet101 + sse;
    scse_resnet18 = resnet18 + scse; scse_resnet34 = resnet34 + scse; scse_resnet50 = resnet50 + scse;
    scse_resnet101 = resnet101 + scse;
    cbam_resnet18 = resnet18 + cbam; cbam_resnet34 = resnet34 + cbam; cbam_resnet50 = resnet50 + cbam;
    cbam_resnet101 = resnet101 + cbam;
    eca_resnet20 = resnet20 + eca; eca_resnet32 = resnet32 + eca; eca_resnet56 = resnet56 + eca;
    eca_resnet110 = resnet110 + eca;
    sse_resnet20 = resnet20 + sse; sse_resnet32 = resnet32 + sse; sse_resnet56 = resnet56 + sse;
    sse_resnet110 = resnet110 + sse;
    scse_resnet20 = resnet20 + cifar_scse; scse_resnet32 = resnet32 + cifar_scse;
    scse_resnet56 = resnet56 + cifar_scse; scse_resnet110 = resnet110 + cifar_scse;
    cbam_resnet20 = resnet20 + cbam; cbam_resnet32 = resnet32 + cbam; cbam_resnet56 = resnet56 + cbam;
    cbam_resnet110 = resnet110 + cbam;
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

macro_rules! registry {
    ($($family:ident: $($name:ident),+;)+) => {
        /// Every registered model, in table order.
        pub const MODELS: &[ModelEntry] = &[
            $($(ModelEntry { name: stringify!($name), family: Family::$family, config: $name },)+)+
        ];
    };
}

registry! {
    ImageNet: resnet18, resnet34, resnet50, resnet101, resnet152, resnext50_32x4d, resnext101_32x4d,
        se_resnet18, se_resnet34, se_resnet50, se_resnet101, se_resnet152, se_resnext50_32x4d,
        se_resnext101_32x4d, legacy_se_resnet50, legacy_se_resnet101, legacy_se_resnet152,
        legacy_se_resnext50_32x4d, legacy_se_resnext101_32x4d;
    Cifar: resnet20, resnet32, resnet44, resnet56, resnet110, resnet164,
        se_resnet20, se_resnet32, se_resnet44, se_resnet56, se_resnet110, se_resnet164;
    ImageNet: eca_resnet18, eca_resnet34, eca_resnet50, eca_resnet101,
        sse_resnet18, sse_resnet34, sse_resnet50, sse_resnet101,
        scse_resnet18, scse_resnet34, scse_resnet50, scse_resnet101,
        cbam_resnet18, cbam_resnet34, cbam_resnet50, cbam_resnet101;
    Cifar: eca_resnet20, eca_resnet32, eca_resnet56, eca_resnet110,
        sse_resnet20, sse_resnet32, sse_resnet56, sse_resnet110,
        scse_resnet20, scse_resnet32, scse_resnet56, scse_resnet110,
        cbam_resnet20, cbam_resnet32, cbam_resnet56, cbam_resnet110;
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
