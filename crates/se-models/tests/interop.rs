//! PyTorch parity: checkpoints written by timm, torchvision and Cadene's `pretrainedmodels`
//! (small random models, `scripts/pytorch/make_interop_fixtures.py`) load into our models and
//! give PyTorch's logits; export gives back the same state dict; bad checkpoints are refused
//! with the offending keys.

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};
use se_models::interop::{
    InteropError, Layout, StateDict, export_state_dict, import_state_dict, load_pytorch,
    npy::read_npy, read_state_dict, write_safetensors,
};
use se_models::{ResNet, ResNetConfig};

type B = Flex;

/// PyTorch and Burn sum in different orders; f32 logits of these small nets agree to ~1e-6.
const TOLERANCE: f32 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/interop")
        .join(name)
}

fn small(config: ResNetConfig, widths: [usize; 4], stem_width: usize) -> ResNetConfig {
    ResNetConfig {
        layers: vec![2, 1, 1, 1],
        ..config
    }
    .with_widths(widths.to_vec())
    .with_stem_width(stem_width)
    .with_num_classes(10)
}

/// The fixtures: file stem, checkpoint file, layout, and our config for the same architecture
/// (the registry's config at the fixture's smaller sizes; timm's and torchvision's plain stem is
/// 64 channels whatever the stage widths).
fn fixtures() -> Vec<(&'static str, &'static str, Layout, ResNetConfig)> {
    vec![
        (
            "timm_se_resnet",
            "pth",
            Layout::Timm,
            small(se_models::zoo::se_resnet50(), [8, 16, 32, 64], 64),
        ),
        (
            "timm_se_resnext",
            "safetensors",
            Layout::Timm,
            small(se_models::zoo::se_resnext50_32x4d(), [16, 32, 64, 128], 64)
                .with_groups(4)
                .with_base_width(8),
        ),
        (
            "timm_eca_resnet",
            "safetensors",
            Layout::Timm,
            small(se_models::zoo::eca_resnet18(), [8, 16, 32, 64], 64),
        ),
        (
            "timm_cbam_resnet",
            "safetensors",
            Layout::Timm,
            small(se_models::zoo::cbam_resnet18(), [8, 16, 32, 64], 64),
        ),
        (
            "torchvision_resnet",
            "pth",
            Layout::Torchvision,
            small(se_models::zoo::resnet18(), [8, 16, 32, 64], 64),
        ),
        (
            "cadene_se_resnet",
            "pth",
            Layout::Cadene,
            small(se_models::zoo::legacy_se_resnet50(), [4, 8, 16, 32], 8),
        ),
        (
            "cadene_se_resnext",
            "pth",
            Layout::Cadene,
            small(
                se_models::zoo::legacy_se_resnext50_32x4d(),
                [16, 32, 64, 128],
                32,
            )
            .with_groups(4),
        ),
        (
            "cadene_senet154",
            "pth",
            Layout::Cadene,
            // SEBottleneck's 3x3 conv is 4·planes wide in 4 groups: base width 64.
            small(se_models::zoo::senet154(), [4, 8, 16, 32], 128)
                .with_groups(4)
                .with_base_width(64),
        ),
    ]
}

fn tensor(path: &Path) -> Tensor<B, 4> {
    let array = read_npy(path).unwrap();
    let shape: [usize; 4] = array.shape.clone().try_into().unwrap();
    Tensor::from_data(TensorData::new(array.values, shape), &Default::default())
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn load(name: &str, ext: &str, layout: Layout, config: &ResNetConfig) -> ResNet<B> {
    layout.check(config).unwrap();
    let model = config.init::<B>(&Default::default());
    let (model, report) = load_pytorch(model, &fixture(&format!("{name}.{ext}")), layout, false)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(report.skipped.is_empty());
    assert!(report.loaded > 0);
    model
}

#[test]
fn every_layout_gives_pytorchs_logits() {
    for (name, ext, layout, config) in fixtures() {
        let model = load(name, ext, layout, &config);
        let input = tensor(&fixture(&format!("{name}.input.npy")));
        let expected = read_npy(&fixture(&format!("{name}.logits.npy"))).unwrap();
        let logits = model.forward(input);
        assert_eq!(logits.dims().to_vec(), expected.shape, "{name}");
        let logits = logits.into_data().into_vec::<f32>().unwrap();
        let diff = max_abs_diff(&logits, &expected.values);
        assert!(
            diff <= TOLERANCE,
            "{name}: logits differ from PyTorch's by {diff}"
        );
        // The logits are not trivially small, so the tolerance means something.
        let scale = expected.values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(scale > 0.1, "{name}: logits too small to compare ({scale})");
    }
}

#[test]
fn export_gives_back_the_pytorch_state_dict_exactly() {
    for (name, ext, layout, config) in fixtures() {
        let original = read_state_dict(&fixture(&format!("{name}.{ext}"))).unwrap();
        let model = load(name, ext, layout, &config);
        let exported = export_state_dict(&model, layout);
        let keys = |s: &StateDict| s.keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&exported), keys(&original), "{name}: keys");
        for (key, data) in &original {
            assert_eq!(exported[key].shape, data.shape, "{name}: {key} shape");
            if key.ends_with("num_batches_tracked") {
                continue; // a step counter, not a weight
            }
            assert_eq!(
                exported[key],
                data.clone().convert::<f32>(),
                "{name}: {key}"
            );
        }
    }
}

#[test]
fn safetensors_round_trip_is_exact() {
    let (name, ext, layout, config) = fixtures().remove(0);
    let model = load(name, ext, layout, &config);
    let exported = export_state_dict(&model, layout);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    write_safetensors(&exported, &path).unwrap();
    assert_eq!(read_state_dict(&path).unwrap(), exported);

    let fresh = config.init::<B>(&Default::default());
    let (reloaded, _) = load_pytorch(fresh, &path, layout, false).unwrap();
    assert_eq!(export_state_dict(&reloaded, layout), exported);
}

#[test]
fn a_checkpoint_that_does_not_fit_lists_the_offending_keys() {
    let path = fixture("timm_se_resnet.pth");
    // Five classes instead of ten, and no SE: a head of the wrong shape, and SE tensors with no
    // place in the model.
    let config = small(se_models::zoo::resnet50(), [8, 16, 32, 64], 64).with_num_classes(5);
    let error = load_pytorch(
        config.init::<B>(&Default::default()),
        &path,
        Layout::Timm,
        false,
    )
    .expect_err("the checkpoint does not fit");
    let InteropError::Mismatch { mismatch, .. } = &error else {
        panic!("expected a mismatch, got {error}");
    };
    assert!(mismatch.missing.is_empty());
    assert_eq!(
        mismatch.unexpected.len(),
        5 * 4,
        "fc1/fc2 weight and bias in 5 blocks"
    );
    assert!(
        mismatch
            .unexpected
            .contains(&("layer1.0.se.fc1.weight".into(), vec![8, 32, 1, 1]))
    );
    assert_eq!(
        mismatch.wrong_shape,
        vec![
            ("fc.weight".to_string(), vec![10, 256], vec![5, 256]),
            ("fc.bias".to_string(), vec![10], vec![5]),
        ]
    );
    let message = error.to_string();
    assert!(message.starts_with(&format!("{}: the checkpoint does not fit", path.display())));
    assert!(
        message.contains("fc.weight: checkpoint [10, 256], model [5, 256]"),
        "{message}"
    );
    assert!(message.contains("layer4.0.se.fc2.bias [256]"), "{message}");

    // A partial load takes the rest and says what it left out.
    let (_, report) = load_pytorch(
        config.init::<B>(&Default::default()),
        &path,
        Layout::Timm,
        true,
    )
    .unwrap();
    assert_eq!(report.skipped.wrong_shape.len(), 2);
    assert_eq!(report.skipped.unexpected.len(), 20);
}

#[test]
fn missing_keys_are_listed_with_the_models_shapes() {
    let mut state = read_state_dict(&fixture("torchvision_resnet.pth")).unwrap();
    state.remove("layer2.0.downsample.1.running_var");
    let config = small(se_models::zoo::resnet18(), [8, 16, 32, 64], 64);
    let mismatch = import_state_dict(
        config.init::<B>(&Default::default()),
        &state,
        Layout::Torchvision,
        false,
    )
    .err()
    .unwrap();
    assert_eq!(
        mismatch.missing,
        vec![("layer2.0.downsample.1.running_var".to_string(), vec![16])]
    );
}

#[test]
fn keys_under_a_training_checkpoint_prefix_are_found() {
    let state = read_state_dict(&fixture("torchvision_resnet.pth")).unwrap();
    let wrapped: StateDict = state
        .into_iter()
        .map(|(k, v)| (format!("state_dict.module.{k}"), v))
        .collect();
    let config = small(se_models::zoo::resnet18(), [8, 16, 32, 64], 64);
    let (_, report) = import_state_dict(
        config.init::<B>(&Default::default()),
        &wrapped,
        Layout::Torchvision,
        false,
    )
    .unwrap();
    assert_eq!(report.prefix, "state_dict.module.");
}

#[test]
fn the_layout_must_match_the_architecture() {
    let message = Layout::Cadene
        .check(&se_models::zoo::se_resnet50())
        .unwrap_err()
        .to_string();
    assert!(message.contains("legacy_se_resnet50"), "{message}");
    assert!(
        Layout::Timm
            .check(&se_models::zoo::legacy_se_resnet50())
            .is_err()
    );
    assert!(
        Layout::Torchvision
            .check(&se_models::zoo::se_resnet50())
            .is_err()
    );
    assert!(
        Layout::Torchvision
            .check(&se_models::zoo::resnet50())
            .is_ok()
    );
    assert_eq!("cadene".parse::<Layout>(), Ok(Layout::Cadene));
    assert!(
        "keras"
            .parse::<Layout>()
            .unwrap_err()
            .to_string()
            .contains("timm, torchvision, cadene")
    );
}

#[test]
fn corrupt_checkpoints_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for (name, ext) in [
        ("timm_se_resnet", "pth"),
        ("timm_eca_resnet", "safetensors"),
    ] {
        let bytes = std::fs::read(fixture(&format!("{name}.{ext}"))).unwrap();
        let path = dir.path().join(format!("truncated.{ext}"));
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let error = read_state_dict(&path).unwrap_err();
        assert!(matches!(error, InteropError::Read { .. }), "{error}");
        assert!(
            error.to_string().starts_with(&path.display().to_string()),
            "{error}"
        );
    }
    let error = read_state_dict(&dir.path().join("weights.h5")).unwrap_err();
    assert!(error.to_string().contains("no such file"), "{error}");
}

/// A copy of a zip checkpoint with the records whose name ends in `record` changed by `change`
/// (`None`: left out of the archive).
fn rewrite_zip(from: &Path, to: &Path, record: &str, change: impl Fn(Vec<u8>) -> Option<Vec<u8>>) {
    use std::io::{Read, Write};
    let mut archive = zip::ZipArchive::new(std::fs::File::open(from).unwrap()).unwrap();
    let mut out = zip::ZipWriter::new(std::fs::File::create(to).unwrap());
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).unwrap();
        let name = entry.name().to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        let bytes = if name.ends_with(record) {
            change(bytes)
        } else {
            Some(bytes)
        };
        if let Some(bytes) = bytes {
            out.start_file(name, stored).unwrap();
            out.write_all(&bytes).unwrap();
        }
    }
    out.finish().unwrap();
}

/// A checkpoint whose archive lacks a tensor's record, or holds half of it, is refused naming the
/// tensor and the record (burn-store alone would load zeros), as `torch.load` refuses it.
#[test]
fn a_missing_or_short_tensor_record_is_an_error_not_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let original = fixture("torchvision_resnet.pth");
    assert!(read_state_dict(&original).is_ok());

    let missing = dir.path().join("missing.pth");
    rewrite_zip(&original, &missing, "/data/3", |_| None);
    let error = read_state_dict(&missing).unwrap_err().to_string();
    assert!(error.contains("missing.pth"), "{error}");
    assert!(
        error.contains(
            "tensor `bn1.running_mean`: its data record `torchvision_resnet/data/3` is missing"
        ),
        "{error}"
    );

    let short = dir.path().join("short.pth");
    rewrite_zip(&original, &short, "/data/0", |bytes| {
        Some(bytes[..bytes.len() / 2].to_vec())
    });
    let error = read_state_dict(&short).unwrap_err().to_string();
    assert!(
        error.contains("tensor `conv1.weight`: data record `torchvision_resnet/data/0` holds 18816 bytes, 37632 expected"),
        "{error}"
    );
}

/// Burn weights load strictly: a file of another architecture is refused with every parameter
/// whose shape differs (Burn's recorder alone would take the tensors as they are).
#[test]
fn burn_weights_of_another_shape_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let device = Default::default();
    let path = dir.path().join("w.mpk");
    let trained = se_models::zoo::se_resnet20().init::<Flex>(&device);
    se_models::weights::save(trained.clone(), &path).unwrap();
    let same = se_models::weights::load(
        se_models::zoo::se_resnet20().init::<Flex>(&device),
        &path,
        &device,
    );
    assert!(same.is_ok());
    let other = se_models::zoo::se_resnet20()
        .with_num_classes(5)
        .init::<Flex>(&device);
    let error = se_models::weights::load(other, &path, &device)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("w.mpk: the checkpoint does not fit the model"),
        "{error}"
    );
    assert!(
        error.contains("fc.weight: checkpoint [64, 10], model [64, 5]"),
        "{error}"
    );
    assert!(
        error.contains("fc.bias: checkpoint [10], model [5]"),
        "{error}"
    );
}

/// `pretrained` (timm's `create_model(pretrained=True, num_classes=n)`): the checkpoint's body
/// loads exactly and the classifier is re-created for another class count, from a PyTorch
/// checkpoint and from Burn weights alike; weights of another architecture are refused with
/// every offending key.
#[test]
fn pretrained_weights_with_a_new_classifier() {
    let device = Default::default();
    let config = small(se_models::zoo::se_resnet50(), [8, 16, 32, 64], 64);
    let path = fixture("timm_se_resnet.pth");
    let (reference, _) =
        load_pytorch(config.init::<B>(&device), &path, Layout::Timm, false).unwrap();
    let input: Tensor<B, 4> =
        Tensor::random([2, 3, 32, 32], burn::tensor::Distribution::Default, &device);
    let features = reference.features(input.clone()).into_data();

    let (model, report) =
        se_models::pretrained::<B>(&config, &path, Some(Layout::Timm), 4, &device).unwrap();
    assert_eq!(report.checkpoint_classes, 10);
    assert!(report.classifier_reset());
    assert!(
        report.to_string().ends_with(
            "(timm layout); classifier re-created for 4 classes (the checkpoint's has 10)"
        )
    );
    assert_eq!(model.forward(input.clone()).dims(), [2, 4]);
    model
        .features(input.clone())
        .into_data()
        .assert_eq(&features, true);

    // The same from Burn weights; with the checkpoint's own class count nothing is reset.
    let dir = tempfile::tempdir().unwrap();
    let burn_weights = dir.path().join("w.mpk");
    se_models::weights::save(reference.clone(), &burn_weights).unwrap();
    let (model, report) =
        se_models::pretrained::<B>(&config, &burn_weights, None, 3, &device).unwrap();
    assert_eq!((report.checkpoint_classes, report.layout), (10, None));
    model
        .features(input.clone())
        .into_data()
        .assert_eq(&features, true);
    assert_eq!(model.num_classes(), 3);
    let (same, report) =
        se_models::pretrained::<B>(&config, &burn_weights, None, 10, &device).unwrap();
    assert!(!report.classifier_reset());
    same.forward(input.clone())
        .into_data()
        .assert_eq(&reference.forward(input).into_data(), true);

    // Wider stages: every body tensor that differs is listed, the head's change is not the error.
    let wider = small(se_models::zoo::se_resnet50(), [8, 16, 32, 128], 64);
    let error = se_models::pretrained::<B>(&wider, &burn_weights, None, 3, &device).unwrap_err();
    let InteropError::Mismatch { mismatch, .. } = &error else {
        panic!("{error}")
    };
    assert!(
        mismatch
            .wrong_shape
            .iter()
            .any(|(key, ..)| key == "layer4.0.Bottleneck.conv1.weight"),
        "{mismatch}"
    );
    let error =
        se_models::pretrained::<B>(&wider, &path, Some(Layout::Timm), 3, &device).unwrap_err();
    assert!(
        error.to_string().contains("layer4.0.conv1.weight"),
        "{error}"
    );
}

/// ONNX export of every family (the fixtures' architectures with their PyTorch weights, plus
/// sSE, scSE, CBAM, every SE placement, max squeeze and the tanh gate with random weights): a
/// graph that parses back, with opset 17, a dynamic batch, every node reading only the input,
/// weights or earlier nodes, every tensor of the model stored once with its exact bytes, and one
/// node per layer. With `SE_ONNX_PARITY_DIR` set it also writes each graph, its input and our
/// logits there, for `scripts/pytorch/onnx_parity.py` to run in ONNX Runtime.
#[test]
fn onnx_export_is_a_valid_graph_of_every_family() {
    use burn_store::ModuleSnapshot;
    use onnx_protobuf::Message;
    use se_core::{AttentionConfig, BlockAttentionConfig, SePlacement, SqueezeExcitationConfig};
    use se_models::interop::npy::{Array, write_npy};
    use se_models::onnx;

    let device = Default::default();
    let out = std::env::var_os("SE_ONNX_PARITY_DIR").map(PathBuf::from);
    let se = |placement| {
        BlockAttentionConfig::of(AttentionConfig::Se(SqueezeExcitationConfig::paper(16)))
            .with_placement(placement)
    };
    let mut models: Vec<(String, ResNetConfig, ResNet<B>, Tensor<B, 4>)> = fixtures()
        .into_iter()
        .map(|(name, ext, layout, config)| {
            let model = load(name, ext, layout, &config);
            let input = tensor(&fixture(&format!("{name}.input.npy")));
            (name.to_string(), config, model, input)
        })
        .collect();
    let random = |config: ResNetConfig| {
        let input = Tensor::random([2, 3, 48, 48], burn::tensor::Distribution::Default, &device);
        (config.init::<B>(&device), input)
    };
    let resnet = || small(se_models::zoo::resnet18(), [8, 16, 32, 64], 16);
    let bottleneck = || small(se_models::zoo::resnet50(), [8, 16, 32, 64], 16);
    let mut extra = vec![
        (
            "sse",
            resnet().with_attention(se_models::zoo::sse_resnet18().attention),
        ),
        (
            "scse",
            bottleneck().with_attention(se_models::zoo::scse_resnet50().attention),
        ),
        (
            "cbam_bottleneck",
            bottleneck().with_attention(se_models::zoo::cbam_resnet50().attention),
        ),
        ("se_pre", bottleneck().with_attention(se(SePlacement::Pre))),
        ("se_post", resnet().with_attention(se(SePlacement::Post))),
        (
            "se_identity",
            bottleneck().with_attention(se(SePlacement::Identity)),
        ),
    ];
    let max_tanh = SqueezeExcitationConfig::paper(16)
        .with_squeeze(se_core::Squeeze::Max)
        .with_gate(se_core::Gate::Tanh);
    extra.push((
        "se_max_tanh",
        resnet().with_attention(BlockAttentionConfig::of(AttentionConfig::Se(max_tanh))),
    ));
    // The paper's NoSqueeze (the FCs at every position) with the ReLU gate.
    let no_squeeze_relu = SqueezeExcitationConfig::paper(16)
        .with_squeeze(se_core::Squeeze::None)
        .with_gate(se_core::Gate::Relu);
    extra.push((
        "se_nosqueeze_relu",
        resnet().with_attention(BlockAttentionConfig::of(AttentionConfig::Se(
            no_squeeze_relu,
        ))),
    ));
    for (name, config) in extra {
        let (model, input) = random(config.clone());
        models.push((name.to_string(), config, model, input));
    }

    for (name, config, model, input) in models {
        let bytes = onnx::to_onnx(&model, config.in_channels)
            .write_to_bytes()
            .unwrap();
        let proto = onnx_protobuf::ModelProto::parse_from_bytes(&bytes).unwrap();
        assert_eq!(proto.opset_import[0].version, 17, "{name}");
        let graph = proto.graph.as_ref().unwrap();
        let (input_info, output_info) = (&graph.input[0], &graph.output[0]);
        assert_eq!(
            (input_info.name.as_str(), output_info.name.as_str()),
            ("input", "logits")
        );
        let Some(onnx_protobuf::type_proto::Value::TensorType(input_type)) =
            &input_info.type_.value
        else {
            panic!("{name}: the input is not a tensor")
        };
        let batch = &input_type.shape.dim[0].value;
        assert_eq!(
            batch,
            &Some(onnx_protobuf::tensor_shape_proto::dimension::Value::DimParam("batch".into())),
            "{name}"
        );
        // Topological: every input of a node exists before it.
        let mut known: std::collections::HashSet<&str> =
            graph.initializer.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            known.len(),
            graph.initializer.len(),
            "{name}: a weight stored twice"
        );
        known.insert("input");
        for node in &graph.node {
            for input in &node.input {
                assert!(
                    known.contains(input.as_str()),
                    "{name}: {} reads {input}",
                    node.name
                );
            }
            known.extend(node.output.iter().map(String::as_str));
        }
        assert!(known.contains("logits"), "{name}");
        // Every tensor of the model, once, with its exact bytes.
        let snapshots = model.collect(None, None, false);
        let stored: usize = graph
            .initializer
            .iter()
            .filter(|t| t.data_type == 1)
            .map(|t| t.raw_data.len() / 4)
            .sum();
        let floats: usize = snapshots
            .iter()
            .map(|s| s.shape.iter().product::<usize>())
            .sum();
        assert_eq!(stored, floats, "{name}");
        let conv1 = graph
            .initializer
            .iter()
            .find(|t| t.name == "conv1.weight")
            .unwrap();
        assert_eq!(
            conv1.raw_data,
            model.conv1.weight.val().into_data().as_bytes(),
            "{name}"
        );
        let count = |op: &str| graph.node.iter().filter(|n| n.op_type == op).count();
        let norms = snapshots
            .iter()
            .filter(|s| s.full_path().ends_with("running_var"))
            .count();
        assert_eq!(count("BatchNormalization"), norms, "{name}");
        let convs = snapshots
            .iter()
            .filter(|s| s.full_path().ends_with("weight") && s.shape.len() >= 3)
            .count();
        assert_eq!(count("Conv"), convs, "{name}");

        if let Some(out) = &out {
            std::fs::create_dir_all(out).unwrap();
            std::fs::write(out.join(format!("{name}.onnx")), &bytes).unwrap();
            let array = |t: Tensor<B, 4>| Array {
                shape: t.dims().to_vec(),
                values: t.into_data().convert::<f32>().into_vec().unwrap(),
            };
            write_npy(
                &out.join(format!("{name}.input.npy")),
                &array(input.clone()),
            )
            .unwrap();
            let logits = model.forward(input);
            let logits = Array {
                shape: logits.dims().to_vec(),
                values: logits.into_data().into_vec().unwrap(),
            };
            write_npy(&out.join(format!("{name}.logits.npy")), &logits).unwrap();
        }
    }
}
