//! The model zoo: every registered model builds by name, has the reference parameter count, gives
//! the right shapes, trains (gradients everywhere) and switches BatchNorm between train and eval.

use burn::backend::{Autodiff, Flex};
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, ElementConversion, Tensor};
use se_core::trainable_params;
use se_models::{Family, MODELS, ResNetConfig, Stem};

type B = Flex;
type AD = Autodiff<Flex>;

/// A shallower copy of a config (fewer blocks per stage) for fast tests.
fn with_layers(config: ResNetConfig, layers: &[usize]) -> ResNetConfig {
    let widths = config.widths[..layers.len()].to_vec();
    ResNetConfig {
        layers: layers.to_vec(),
        widths,
        ..config
    }
}

fn random<Bk: Backend>(shape: [usize; 4]) -> Tensor<Bk, 4> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
}

/// Parameter counts of the reference implementations, 1000 classes, computed once with
/// torch 2.15.0 / torchvision 0.29.2 / timm 1.0.31 as `sum(p.numel() for p in model.parameters())`
/// (buffers excluded). torchvision for the plain ResNets and ResNeXt, timm (`seresnet*`,
/// `seresnext*`) for the SE models, Cadene's `pretrainedmodels` 0.7.4 (`se_resnet*`,
/// `se_resnext*`) for the `legacy_*` (Caffe-layout) models.
const REFERENCE_PARAMS: &[(&str, usize)] = &[
    ("resnet18", 11_689_512),
    ("resnet34", 21_797_672),
    ("resnet50", 25_557_032),
    ("resnet101", 44_549_160),
    ("resnet152", 60_192_808),
    ("resnext50_32x4d", 25_028_904),
    ("se_resnet18", 11_779_624),
    ("se_resnet34", 21_960_416),
    ("se_resnet50", 28_088_024),
    ("se_resnet101", 49_326_872),
    ("se_resnet152", 66_821_848),
    ("se_resnext50_32x4d", 27_559_896),
    ("se_resnext101_32x4d", 48_955_416),
    ("legacy_se_resnet50", 28_088_024),
    ("legacy_se_resnet101", 49_326_872),
    ("legacy_se_resnet152", 66_821_848),
    ("legacy_se_resnext50_32x4d", 27_559_896),
    ("legacy_se_resnext101_32x4d", 48_955_416),
    // Cadene `senet154` / timm `legacy_senet154` (the count issue #17 gives from timm).
    ("senet154", 115_088_984),
];

#[test]
fn parameter_counts_equal_torchvision_and_timm() {
    let device = Default::default();
    for &(name, expected) in REFERENCE_PARAMS {
        let config = se_models::config(name).unwrap();
        // Burn initialises parameters lazily: counting them allocates nothing.
        let model = config.init::<B>(&device);
        assert_eq!(trainable_params(&model), expected, "{name}: built model");
        let analytic = config.total_complexity([224, 224]).params;
        assert_eq!(analytic, expected, "{name}: computed from the config");
    }
}

/// He et al.'s CIFAR ResNets with zero-padding shortcuts (option A) have 269,722 / 464,154 /
/// 658,586 / 853,018 / 1,727,962 parameters (the "0.27M ... 1.7M" of the paper's Table 6, exact
/// figures from the widely used akamaster/pytorch_resnet_cifar10). Ours use 1x1-conv + BN
/// projections where the shape changes (option B), which adds 16*32 + 2*32 + 32*64 + 2*64 = 2,752.
#[test]
fn cifar_resnet_parameter_counts() {
    let device = Default::default();
    let projections = 16 * 32 + 2 * 32 + 32 * 64 + 2 * 64;
    for (name, option_a) in [
        ("resnet20", 269_722),
        ("resnet32", 464_154),
        ("resnet44", 658_586),
        ("resnet56", 853_018),
        ("resnet110", 1_727_962),
    ] {
        let model = se_models::config(name).unwrap().init::<B>(&device);
        assert_eq!(trainable_params(&model), option_a + projections, "{name}");
    }
}

#[test]
fn computed_parameter_counts_equal_the_built_models_for_every_registered_model() {
    let device = Default::default();
    for entry in MODELS {
        let config = (entry.config)();
        let model = config.init::<B>(&device);
        let analytic = config.total_complexity([32, 32]).params;
        assert_eq!(trainable_params(&model), analytic, "{}", entry.name);
    }
}

/// timm 1.0.31's `ResNet` class with `block_args=dict(attn_layer=...)` and the plain stem
/// (not a registered timm model; built with the same constructor as `seresnet*`).
#[test]
fn attention_resnets_match_timm_built_equivalents() {
    for (name, timm) in [
        ("eca_resnet18", 11_689_548),
        ("eca_resnet34", 21_797_746),
        ("eca_resnet50", 25_557_118),
        ("eca_resnet101", 44_549_331),
        ("cbam_resnet18", 11_777_352),
        ("cbam_resnet34", 21_956_456),
        ("cbam_resnet50", 28_073_576),
        ("cbam_resnet101", 49_295_628),
    ] {
        let params = se_models::config(name)
            .unwrap()
            .total_complexity([224, 224])
            .params;
        assert_eq!(params, timm, "{name}");
    }
}

#[test]
fn every_registered_model_builds_by_name_and_gives_logits_of_the_right_shape() {
    let device = Default::default();
    for entry in MODELS {
        let model = se_models::config(entry.name).unwrap().init::<B>(&device);
        let (input, classes) = match entry.family {
            // 64x64 instead of 224x224 keeps the test fast; the pooling adapts to any size.
            Family::ImageNet => ([1, 3, 64, 64], 1000),
            Family::Cifar => ([2, 3, 32, 32], 10),
        };
        let logits = model.forward(random(input));
        assert_eq!(logits.dims(), [input[0], classes], "{}", entry.name);
        let features = model.features(random(input));
        let channels = (entry.config)().feature_channels();
        assert_eq!(features.dims(), [input[0], channels], "{}", entry.name);
    }
}

#[test]
fn single_channel_28x28_inputs_work_for_cifar_and_imagenet_stems() {
    let device = Default::default();
    for name in ["se_resnet20", "resnet164", "se_resnet18"] {
        let model = se_models::config(name)
            .unwrap()
            .with_in_channels(1)
            .with_num_classes(10)
            .init::<B>(&device);
        let logits = model.forward(random([3, 1, 28, 28]));
        assert_eq!(logits.dims(), [3, 10], "{name}");
    }
}

#[test]
fn unknown_model_names_are_an_error_listing_the_known_ones() {
    let error = se_models::config("se_resnet51").unwrap_err();
    let message = error.to_string();
    assert!(message.contains("unknown model `se_resnet51`"), "{message}");
    for entry in MODELS {
        assert!(
            message.contains(entry.name),
            "{message} should list {}",
            entry.name
        );
    }
    // Case and dashes are forgiven.
    assert!(se_models::config("SE-ResNet50").is_ok());
}

/// torchvision's published GFLOPS (multiply-adds of convs and linears at 224x224); SE adds its two
/// small FCs plus one operation per element for pooling and one for scaling.
#[test]
fn multiply_adds_match_torchvision_published_figures() {
    for (name, gmacs) in [
        ("resnet18", 1.81),
        ("resnet34", 3.66),
        ("resnet50", 4.09),
        ("resnet101", 7.80),
        ("resnet152", 11.51),
        ("resnext50_32x4d", 4.23),
    ] {
        let macs = se_models::config(name)
            .unwrap()
            .total_complexity([224, 224])
            .macs;
        let ours = macs as f64 / 1e9;
        assert!((ours - gmacs).abs() < 0.01, "{name}: {ours:.3} vs {gmacs}");
    }
    let plain = se_models::zoo::resnet50().total_complexity([224, 224]).macs;
    let se = se_models::zoo::se_resnet50()
        .total_complexity([224, 224])
        .macs;
    // The paper: SE-ResNet-50 costs 3.87 vs 3.86 GFLOPs, i.e. about 0.01 G (0.26%) more.
    let extra = (se - plain) as f64 / 1e9;
    assert!((0.005..0.02).contains(&extra), "SE adds {extra} GMACs");
}

#[test]
fn stage_table_follows_the_feature_map_through_the_network() {
    let parts = se_models::zoo::se_resnet50().complexity([224, 224]);
    let names: Vec<_> = parts.iter().map(|part| part.name).collect();
    assert_eq!(
        names,
        ["stem", "layer1", "layer2", "layer3", "layer4", "fc"]
    );
    let shapes: Vec<_> = parts.iter().map(|part| part.output).collect();
    assert_eq!(
        shapes,
        [
            [64, 56, 56],
            [256, 56, 56],
            [512, 28, 28],
            [1024, 14, 14],
            [2048, 7, 7],
            [1000, 1, 1]
        ]
    );
    // The Caffe stem (Cadene's port) reaches the same 56x56 with an unpadded, ceil-mode pool.
    let caffe = se_models::zoo::se_resnet50()
        .with_stem(Stem::Caffe)
        .complexity([224, 224]);
    assert_eq!(caffe[0].output, [64, 56, 56]);
}

/// Collects the parameters a backward pass left without a gradient.
struct MissingGradients<'a, Bk: burn::tensor::backend::AutodiffBackend> {
    grads: &'a Bk::Gradients,
    path: Vec<String>,
    missing: Vec<String>,
    checked: usize,
}

impl<Bk: burn::tensor::backend::AutodiffBackend> ModuleVisitor<Bk> for MissingGradients<'_, Bk> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Bk, D>>) {
        let name = self.path.join(".");
        if name.ends_with("running_mean") || name.ends_with("running_var") {
            return;
        }
        self.checked += 1;
        let has_signal = param
            .val()
            .grad(self.grads)
            .is_some_and(|grad| grad.abs().sum().into_scalar().elem::<f32>() > 0.0);
        if !has_signal {
            self.missing.push(name);
        }
    }
}

fn assert_gradients_reach_every_parameter(config: ResNetConfig, input: [usize; 4]) {
    // A seeded run, and SE modules wide enough (reduction 2) that some ReLU unit is alive for the
    // batch: with one hidden unit, a dead ReLU legitimately leaves `fc1` without gradient.
    AD::seed(&Default::default(), 7);
    let mut config = config;
    use se_core::AttentionConfig as A;
    config.attention.module = config.attention.module.take().map(|module| match module {
        A::Se(se) => A::Se(se.with_reduction(2.0)),
        A::Scse(scse) => {
            let channel = scse.channel.clone().with_reduction(2.0);
            A::Scse(scse.with_channel(channel))
        }
        A::Cbam(cbam) => A::Cbam(cbam.with_reduction(2.0)),
        other => other,
    });
    let model = config.init::<AD>(&Default::default());
    let logits = model.forward(random(input));
    // A loss that depends on every logit unevenly.
    let weights = Tensor::<AD, 2>::random(
        logits.dims(),
        Distribution::Normal(0.0, 1.0),
        &Default::default(),
    );
    let grads = (logits * weights).sum().backward();
    let mut visitor = MissingGradients::<AD> {
        grads: &grads,
        path: Vec::new(),
        missing: Vec::new(),
        checked: 0,
    };
    model.visit(&mut visitor);
    assert!(visitor.checked > 0);
    assert!(
        visitor.missing.is_empty(),
        "no gradient for {:?}",
        visitor.missing
    );
}

#[test]
fn gradients_reach_every_parameter() {
    // Every block kind, SE placement and shortcut type, kept small.
    assert_gradients_reach_every_parameter(
        with_layers(se_models::zoo::se_resnet20(), &[1, 1, 1]).with_in_channels(1),
        [2, 1, 12, 12],
    );
    assert_gradients_reach_every_parameter(
        with_layers(se_models::zoo::se_resnext50_32x4d(), &[1, 1]).with_num_classes(5),
        [2, 3, 32, 32],
    );
    let mut pre = with_layers(se_models::zoo::se_resnet20(), &[1, 1, 1]);
    pre.attention.placement = se_core::SePlacement::Pre;
    assert_gradients_reach_every_parameter(pre, [2, 3, 8, 8]);
}

/// Every registry name with an attention other than SE trains: one block per stage keeps it fast.
#[test]
fn gradients_reach_every_parameter_of_every_attention_model() {
    let attention = |name: &str| {
        ["eca_", "sse_", "scse_", "cbam_"]
            .iter()
            .any(|p| name.starts_with(p))
    };
    for entry in MODELS.iter().filter(|entry| attention(entry.name)) {
        let config = (entry.config)();
        let stages = config.layers.len();
        let input = match entry.family {
            Family::ImageNet => [2, 3, 32, 32],
            Family::Cifar => [2, 3, 8, 8],
        };
        assert_gradients_reach_every_parameter(with_layers(config, &vec![1; stages]), input);
    }
}

#[test]
fn batch_norm_uses_batch_statistics_in_training_and_running_ones_in_eval() {
    let device = Default::default();
    let model = with_layers(se_models::zoo::se_resnet20(), &[1, 1, 1]).init::<AD>(&device);
    let x = random::<AD>([4, 3, 8, 8]).mul_scalar(3.0).add_scalar(2.0);

    let train = model.forward(x.clone());
    let eval = model.valid().forward(x.clone().inner());
    let diff = (train.inner() - eval.clone())
        .abs()
        .max()
        .into_scalar()
        .elem::<f32>();
    assert!(
        diff > 1e-3,
        "train and eval outputs should differ, max diff {diff}"
    );

    // A training forward pass updates the running statistics (momentum 0.1 from mean 0, var 1).
    let before = model.bn1.running_mean.value_sync().inner();
    let eval_again = model.valid().forward(x.inner());
    let after = model.bn1.running_mean.value_sync().inner();
    let moved = (after - before).abs().max().into_scalar().elem::<f32>();
    assert!(moved == 0.0, "eval must not touch running statistics");
    let drift = (eval - eval_again).abs().max().into_scalar().elem::<f32>();
    assert!(drift > 0.0 || moved == 0.0);
    let mean = model
        .bn1
        .running_mean
        .value()
        .inner()
        .abs()
        .sum()
        .into_scalar()
        .elem::<f32>();
    assert!(
        mean > 0.0,
        "training forward should have moved the running mean"
    );
}

/// Every registered model is a valid config; an impossible one (as a hand-edited `model.json`
/// could be) is refused with the field named, before any tensor is made.
#[test]
fn configs_are_validated_before_a_network_is_built() {
    for entry in MODELS {
        assert_eq!((entry.config)().validate(), Ok(()), "{}", entry.name);
    }
    let field = |config: ResNetConfig| config.validate().unwrap_err().field;
    let resnet = se_models::zoo::resnet50;
    assert_eq!(field(resnet().with_in_channels(0)), "in_channels");
    assert_eq!(field(resnet().with_num_classes(0)), "num_classes");
    assert_eq!(
        field(ResNetConfig {
            layers: vec![],
            ..resnet()
        }),
        "layers"
    );
    assert_eq!(
        field(ResNetConfig {
            layers: vec![3, 0, 6, 3],
            ..resnet()
        }),
        "layers"
    );
    assert_eq!(field(resnet().with_widths(vec![64, 128])), "widths");
    assert_eq!(field(resnet().with_dropout(1.0)), "dropout");
    assert_eq!(field(se_models::zoo::resnet18().with_groups(32)), "groups");
    let error = resnet().with_stem_width(0).validate().unwrap_err();
    assert_eq!(
        error.to_string(),
        "model config: stem_width = 0: must be at least 1"
    );
}

/// The smallest image side each stem takes: the Caffe stem's unpadded max pool needs a 3x3 map
/// after the 7x7/2 convolution; the others take any side.
#[test]
fn the_smallest_input_follows_the_stem() {
    assert_eq!(se_models::zoo::se_resnet50().min_input_size(), 1);
    assert_eq!(se_models::zoo::se_resnet20().min_input_size(), 1);
    assert_eq!(se_models::zoo::legacy_se_resnet50().min_input_size(), 5);
}

/// Gives every BatchNorm of `model` its own scale, shift and running statistics, so that
/// folding them has something to fold (fresh ones are the identity map).
fn randomize_batch_norms(model: &mut se_models::ResNet<B>) {
    let device = Default::default();
    let uniform = |c: usize, low: f64, high: f64| {
        Tensor::<B, 1>::random([c], Distribution::Uniform(low, high), &device)
    };
    let mut norms = vec![&mut model.bn1];
    norms.extend(model.bn2.as_mut());
    norms.extend(model.bn3.as_mut());
    for stage in [
        &mut model.layer1,
        &mut model.layer2,
        &mut model.layer3,
        &mut model.layer4,
    ] {
        for block in stage.iter_mut() {
            norms.extend(block.batch_norms_mut());
        }
    }
    for bn in norms {
        let [c] = bn.gamma.dims();
        bn.gamma = Param::from_tensor(uniform(c, 0.5, 1.5));
        bn.beta = Param::from_tensor(uniform(c, -0.5, 0.5));
        bn.running_mean = burn::module::RunningState::new(uniform(c, -0.5, 0.5));
        bn.running_var = burn::module::RunningState::new(uniform(c, 0.5, 2.0));
    }
}

/// Asserts that the inference form (BatchNorms folded into the convolutions, their epilogues
/// finishing the blocks) gives the logits of the model in evaluation mode, to 1e-4 of the
/// largest logit, on `input`.
fn assert_folding_keeps_the_logits(name: &str, config: ResNetConfig, input: [usize; 4]) {
    let device = Default::default();
    let mut model = config.init::<B>(&device);
    randomize_batch_norms(&mut model);
    let x = random::<B>(input);
    let plain = model.forward(x.clone());
    let folded = model.fold_batch_norms().forward(x);
    let scale = plain
        .clone()
        .abs()
        .max()
        .into_scalar()
        .elem::<f32>()
        .max(1.0);
    let diff = (plain - folded).abs().max().into_scalar().elem::<f32>();
    assert!(
        diff <= 1e-4 * scale,
        "{name}: folded logits differ by {diff} (largest logit {scale})"
    );
}

/// The inference form's weights are not the network's: writing them is refused, in every format.
#[test]
fn a_folded_model_is_not_written_as_the_network() {
    use se_models::interop::{Layout, export_state_dict};
    let device = Default::default();
    let model = with_layers(se_models::zoo::se_resnet20(), &[1, 1, 1]).init::<B>(&device);
    assert!(!model.is_folded());
    let folded = model.fold_batch_norms();
    assert!(folded.is_folded());
    let dir = std::env::temp_dir().join(format!("se-folded-{}", std::process::id()));
    let path = dir.join("model.mpk");
    // What each write is called, and the write.
    type Write<'a> = (&'static str, Box<dyn Fn() + 'a>);
    let writes: [Write; 3] = [
        (
            "state dict",
            Box::new(|| drop(export_state_dict(&folded, Layout::Timm))),
        ),
        (
            "onnx",
            Box::new(|| drop(se_models::onnx::to_onnx(&folded, 3))),
        ),
        (
            "mpk",
            Box::new(|| drop(se_models::weights::save(folded.clone(), &path))),
        ),
    ];
    for (format, write) in writes {
        let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(write));
        assert!(refused.is_err(), "{format}: a folded model was written");
    }
    assert!(!path.exists());
}

/// Every registered model (one block per stage, ImageNet widths halved to stay fast), every SE
/// placement and squeeze, at batch 1 (each convolution split across threads) and a batch large
/// enough for images in parallel.
#[test]
fn the_folded_inference_form_gives_the_same_logits_for_every_family() {
    use se_core::{AttentionConfig, SePlacement, Squeeze, SqueezeExcitationConfig};
    // Enough images for the convolutions' images-in-parallel split (rayon: a thread per core).
    let many = 2 * std::thread::available_parallelism().map_or(1, |n| n.get()) + 1;
    for entry in MODELS {
        let config = (entry.config)();
        let stages = config.layers.len();
        let (config, input) = match entry.family {
            Family::ImageNet => {
                let widths = config.widths.iter().map(|w| w / 2).collect();
                let config = ResNetConfig { widths, ..config };
                (config, [1, 3, 64, 64])
            }
            Family::Cifar => (config, [many, 3, 32, 32]),
        };
        assert_folding_keeps_the_logits(entry.name, with_layers(config, &vec![1; stages]), input);
    }
    let placements = [SePlacement::Pre, SePlacement::Post, SePlacement::Identity];
    for placement in placements {
        let mut config = with_layers(se_models::zoo::se_resnet20(), &[1, 1, 1]);
        config.attention.placement = placement;
        assert_folding_keeps_the_logits(&format!("{placement:?}"), config, [2, 3, 16, 16]);
    }
    for squeeze in [Squeeze::Max, Squeeze::None] {
        let se = SqueezeExcitationConfig::paper(16).with_squeeze(squeeze);
        let mut config = with_layers(se_models::zoo::se_resnet20(), &[1, 1, 1]);
        config.attention.module = Some(AttentionConfig::Se(se));
        assert_folding_keeps_the_logits(&format!("{squeeze:?}"), config, [2, 3, 16, 16]);
    }
}
