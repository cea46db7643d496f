//! The `se` binary end to end: exit codes and messages for bad input, and a short training run
//! followed by eval and predict.

use std::path::Path;
use std::process::{Command, Output};

use burn::data::dataset::Dataset;

fn se(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_se"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("the se binary runs")
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The standard error of a run refused as bad input is: exit code 1 (a panic would exit 101).
fn error_text(output: &Output) -> String {
    let (_, stderr) = text(output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    stderr
}

#[test]
fn bad_model_name_and_missing_dataset_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let output = se(&["train", "--model", "se_resnet51"], dir.path());
    let stderr = error_text(&output);
    assert!(
        stderr.starts_with("error: unknown model `se_resnet51`; known models: resnet18,"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let output = se(
        &["train", "--dataset", "cifar10", "--data-dir", "nowhere"],
        dir.path(),
    );
    let stderr = error_text(&output);
    assert!(
        stderr.contains("nowhere: CIFAR folder not found"),
        "{stderr}"
    );

    let output = se(&["summary", "--model", "nope"], dir.path());
    error_text(&output);

    let output = se(
        &["eval", "--run-dir", "nowhere", "--limit", "0"],
        dir.path(),
    );
    let stderr = error_text(&output);
    assert!(
        stderr.starts_with("error: --limit 0: there is nothing"),
        "{stderr}"
    );

    // A CPU backend has one device: asking for two says so, before any run folder is made.
    let output = se(
        &["train", "--devices", "0,1", "--run-dir", "two"],
        dir.path(),
    );
    let stderr = error_text(&output);
    assert!(
        stderr.contains("the flex backend has no device 1: it runs on one device, the CPU"),
        "{stderr}"
    );
    assert!(!dir.path().join("two").exists());

    // Half precision is for GPU backends.
    let output = se(
        &["train", "--precision", "f16", "--run-dir", "half"],
        dir.path(),
    );
    let stderr = error_text(&output);
    assert!(
        stderr
            .contains("the flex backend computes in f32 only; --precision f16 needs a GPU backend"),
        "{stderr}"
    );
    assert!(!dir.path().join("half").exists());

    let output = se(
        &["predict", "--run-dir", "missing-run", "x.png"],
        dir.path(),
    );
    let stderr = error_text(&output);
    assert!(
        stderr.contains("missing-run: no best-model.mpk or model.mpk"),
        "{stderr}"
    );

    let output = se(&["--help"], dir.path());
    let (stdout, _) = text(&output);
    for command in ["train", "eval", "predict", "summary", "models"] {
        assert!(stdout.contains(command), "{stdout}");
    }
}

/// Values no run can start with are refused, naming the option, before any file is written.
#[test]
fn impossible_training_settings_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    for (option, value, message) in [
        ("--batch-size", "0", "--batch-size 0: must be at least 1"),
        ("--epochs", "0", "--epochs 0: must be at least 1"),
        ("--lr", "0", "--lr 0: a finite number above 0"),
        ("--lr", "NaN", "--lr NaN: a finite number above 0"),
        (
            "--label-smoothing",
            "1.5",
            "--label-smoothing 1.5: in [0, 1)",
        ),
        (
            "--train-limit",
            "0",
            "--train-limit 0: must be at least 1 image",
        ),
    ] {
        let output = se(&["train", option, value, "--run-dir", "run"], dir.path());
        let (_, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(1), "{option} {value}: {stderr}");
        assert!(stderr.contains(message), "{option} {value}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            !dir.path().join("run").exists(),
            "{option} {value} wrote the run folder"
        );
    }
    // Ablation options that do not fit the model.
    for (args, message) in [
        (
            "--reduction 0",
            "--reduction needs a ratio of at least 1; the model has SE",
        ),
        (
            "--se-stages 4",
            "--se-stages [4]: stage numbers from 1 to the number of stages",
        ),
        (
            "--model resnet20 --gate relu",
            "--gate needs an SE model; the model has no attention",
        ),
        (
            "--model eca_resnet20 --squeeze max",
            "--squeeze needs an SE model; the model has Eca",
        ),
    ] {
        let mut argv = vec!["train", "--run-dir", "run"];
        argv.extend(args.split_whitespace());
        let output = se(&argv, dir.path());
        let (_, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(1), "{args}: {stderr}");
        assert!(stderr.contains(message), "{args}: {stderr}");
        assert!(
            !dir.path().join("run").exists(),
            "{args} wrote the run folder"
        );
    }
}

/// The paper's ablations are options of `se train`: the run's model.json records them, and
/// summary.json the parameters, multiply-adds and throughput of what was trained.
#[test]
fn ablation_options_change_the_trained_model() {
    let dir = tempfile::tempdir().unwrap();
    let args = "train --epochs 1 --train-limit 256 --test-limit 64 --batch-size 32 --workers 1 \
                --squeeze none --gate tanh --reduction 4 --se-stages 2,3 --placement pre \
                --run-dir run";
    let output = se(&args.split_whitespace().collect::<Vec<_>>(), dir.path());
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let model: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("run/model.json")).unwrap())
            .unwrap();
    assert_eq!(model["attention_stages"], serde_json::json!([2, 3]));
    assert_eq!(model["attention"]["placement"], "Pre");
    let module = &model["attention"]["module"]["Se"];
    assert_eq!(
        (module["squeeze"].as_str(), module["gate"].as_str()),
        (Some("None"), Some("Tanh"))
    );
    assert_eq!(module["reduction"], 4.0);
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("run/summary.json")).unwrap(),
    )
    .unwrap();
    // The plain ResNet-20 for 1x28x28 digits plus SE-PRE over each block's input channels,
    // r = 4: stage 2 sees 16 then 32, 32 channels, stage 3 sees 32 then 64, 64.
    let plain = se_models::config("resnet20")
        .unwrap()
        .with_in_channels(1)
        .with_num_classes(10)
        .total_complexity([28, 28])
        .params;
    let se_params = |c: usize| 2 * c * (c / 4) + c / 4 + c;
    let expected = plain + se_params(16) + 2 * se_params(32) + se_params(32) + 2 * se_params(64);
    assert_eq!(summary["parameters"].as_u64(), Some(expected as u64));
    assert!(summary["macs"].as_u64().unwrap() > 0);
    assert!(summary["train_images_per_second"].as_f64().unwrap() > 0.0);
    // Evaluation rebuilds the same variant from model.json.
    let output = se(&["eval", "--run-dir", "run"], dir.path());
    assert!(output.status.success(), "{}", text(&output).1);
}

/// A learning rate that makes the loss explode: the run stops at the first non-finite loss,
/// names where, exits non-zero, and writes no final model (nothing NaN is left behind).
#[test]
fn a_diverging_run_stops_at_the_first_non_finite_loss() {
    let dir = tempfile::tempdir().unwrap();
    let args = "train --lr 1e8 --epochs 2 --train-limit 320 --test-limit 100 --batch-size 32 \
                --warmup-epochs 0 --workers 1 --run-dir run";
    let output = se(&args.split_whitespace().collect::<Vec<_>>(), dir.path());
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("the loss became"), "{stderr}");
    assert!(stderr.contains("at epoch 1, iteration "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let run = dir.path().join("run");
    assert!(!run.join("model.mpk").exists() && !run.join("summary.json").exists());
}

#[test]
fn train_then_eval_and_predict_digits() {
    let dir = tempfile::tempdir().unwrap();
    let args = "train --epochs 3 --train-limit 1280 --test-limit 200 --batch-size 32 --lr 0.05 \
                --warmup-epochs 0 --workers 1 --run-dir run";
    let output = se(&args.split_whitespace().collect::<Vec<_>>(), dir.path());
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("epoch 1/3 train"),
        "plain progress lines when not a terminal: {stdout}"
    );
    assert!(stdout.contains("test top-1"), "{stdout}");
    // The metrics table, without Burn's dump of the module tree above it.
    assert!(stdout.contains("Learner Summary"), "{stdout}");
    assert!(stdout.contains("| Train | Loss"), "{stdout}");
    assert!(
        !stdout.contains("Model:") && !stdout.contains("BatchNorm"),
        "{stdout}"
    );

    let output = se(&["eval", "--run-dir", "run"], dir.path());
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stdout.contains("2000 images") && stdout.contains("top-5 accuracy"),
        "{stdout}"
    );
    assert!(stdout.contains("confusion matrix"), "{stdout}");
    // `--limit`: that many test digits, spread over the set.
    let output = se(&["eval", "--run-dir", "run", "--limit", "100"], dir.path());
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains(": 100 images"), "{stdout}");

    // What the excitations learned, with the last stage's replaced by constants.
    let output = se(
        &[
            "analyze",
            "--run-dir",
            "run",
            "--ablate-late",
            "--classes",
            "3,7",
        ],
        dir.path(),
    );
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for file in [
        "excitations.csv",
        "fig6.svg",
        "fig6.png",
        "fig7.svg",
        "fig7.png",
        "report.md",
    ] {
        assert!(
            dir.path().join("run/analysis").join(file).is_file(),
            "{file}"
        );
    }
    assert!(stdout.contains("| layer3.2.se | 3 | 64 |"), "{stdout}");
    assert!(stdout.contains("| constant excitations |"), "{stdout}");
    let fig7 = std::fs::read_to_string(dir.path().join("run/analysis/fig7.svg")).unwrap();
    assert!(fig7.contains("3 (median, quartiles)") && fig7.contains("7 (median, quartiles)"));
    let output = se(
        &["analyze", "--run-dir", "run", "--classes", "3,x"],
        dir.path(),
    );
    let stderr = error_text(&output);
    assert!(stderr.contains("--classes: no class `x`"), "{stderr}");

    // Five held-out digits as PNG files; this short run (about 89% test accuracy) must get at
    // least three right.
    let test = se_train::data::mnist::embedded().test;
    let mut correct = 0;
    for index in [0usize, 450, 900, 1350, 1800] {
        let digit = test.get(index).unwrap();
        let path = dir.path().join(format!("digit-{index}.png"));
        image::GrayImage::from_raw(28, 28, digit.pixels)
            .unwrap()
            .save(&path)
            .unwrap();
        let output = se(
            &["predict", "--run-dir", "run", path.to_str().unwrap()],
            dir.path(),
        );
        let (stdout, stderr) = text(&output);
        assert!(output.status.success(), "{stderr}");
        let first = stdout
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        assert_eq!(stdout.lines().count(), 6, "name line + top 5: {stdout}");
        correct += (first == digit.label.to_string()) as usize;
    }
    assert!(correct >= 3, "{correct} of 5 digits right");

    let bad = dir.path().join("bad.png");
    std::fs::write(&bad, b"not an image at all").unwrap();
    let output = se(
        &["predict", "--run-dir", "run", bad.to_str().unwrap()],
        dir.path(),
    );
    let stderr = error_text(&output);
    assert!(stderr.contains("bad.png: cannot decode image"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The same `train` command on a CIFAR-10 binary folder and on an image folder (tiny generated
/// fixtures, one short epoch each).
#[test]
fn trains_on_cifar10_and_image_folders_given_on_the_command_line() {
    use se_train::data::cifar::{Cifar, encode_records};
    let dir = tempfile::tempdir().unwrap();

    let cifar = dir.path().join("cifar-10-batches-bin");
    std::fs::create_dir_all(&cifar).unwrap();
    let record = |i: usize| {
        let label = (i % 10) as u8;
        let mut planes = [0u8; 3072];
        planes[(label as usize) * 300..(label as usize) * 300 + 300].fill(255);
        (label, planes)
    };
    for batch in 1..=5 {
        let records: Vec<_> = (0..20).map(|i| record(i + batch)).collect();
        std::fs::write(
            cifar.join(format!("data_batch_{batch}.bin")),
            encode_records(Cifar::Ten, &records),
        )
        .unwrap();
    }
    let records: Vec<_> = (0..20).map(record).collect();
    std::fs::write(
        cifar.join("test_batch.bin"),
        encode_records(Cifar::Ten, &records),
    )
    .unwrap();
    let args = "train --dataset cifar10 --data-dir cifar-10-batches-bin --epochs 1 --batch-size 25 \
                --workers 1 --run-dir cifar-run";
    let output = se(&args.split_whitespace().collect::<Vec<_>>(), dir.path());
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("Cifar10") && stdout.contains("on 20 images"),
        "{stdout}"
    );

    let images = dir.path().join("images");
    for split in ["train", "val"] {
        for (label, class) in ["circle", "square"].iter().enumerate() {
            let class_dir = images.join(split).join(class);
            std::fs::create_dir_all(&class_dir).unwrap();
            for i in 0..6u32 {
                let picture = image::RgbImage::from_fn(40 + i, 36, |x, y| {
                    let on = if label == 0 {
                        (x as i32 - 20).pow(2) + (y as i32 - 18).pow(2) < 120
                    } else {
                        x > 10 && x < 30
                    };
                    image::Rgb(if on {
                        [250, 250, 250]
                    } else {
                        [10, 10 * i as u8, 10]
                    })
                });
                picture.save(class_dir.join(format!("{i}.png"))).unwrap();
            }
        }
    }
    let args = "train --dataset folder --data-dir images --image-size 32 --model se_resnet20 --epochs 1 \
                --batch-size 4 --workers 1 --run-dir folder-run";
    let output = se(&args.split_whitespace().collect::<Vec<_>>(), dir.path());
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("on 12 images"), "{stdout}");
    let dataset = std::fs::read_to_string(dir.path().join("folder-run/dataset.json")).unwrap();
    assert!(
        dataset.contains("\"circle\"") && dataset.contains("\"square\""),
        "{dataset}"
    );
    // The run's evaluation on a folder whose classes are named otherwise is refused.
    let renamed = dir.path().join("renamed");
    for split in ["train", "val"] {
        for (from, to) in [("circle", "circle"), ("square", "squares")] {
            let (from, to) = (images.join(split).join(from), renamed.join(split).join(to));
            std::fs::create_dir_all(&to).unwrap();
            for entry in std::fs::read_dir(&from).unwrap().flatten() {
                std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            }
        }
    }
    let args = "eval --run-dir folder-run --dataset folder --data-dir renamed --image-size 32";
    let output = se(&args.split_whitespace().collect::<Vec<_>>(), dir.path());
    let stderr = error_text(&output);
    assert!(
        stderr.contains("class 1 is `squares` in the data, `square` in the run"),
        "{stderr}"
    );

    // An image whose header reads but whose pixels do not decode stops the run with the file
    // named, not with a loader thread's panic.
    let broken = renamed.join("train/circle/0.png");
    let bytes = std::fs::read(&broken).unwrap();
    std::fs::write(&broken, &bytes[..bytes.len() - 20]).unwrap();
    let args = "train --dataset folder --data-dir renamed --image-size 32 --model se_resnet20 \
                --epochs 1 --batch-size 4 --workers 1 --run-dir broken-run";
    let output = se(&args.split_whitespace().collect::<Vec<_>>(), dir.path());
    let stderr = error_text(&output);
    assert!(stderr.contains("0.png: cannot decode image"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // A class folder without images is refused when the folder is opened.
    std::fs::create_dir_all(renamed.join("train/triangle")).unwrap();
    let args = "train --dataset folder --data-dir renamed --image-size 32 --run-dir empty-run";
    let output = se(&args.split_whitespace().collect::<Vec<_>>(), dir.path());
    let stderr = error_text(&output);
    assert!(
        stderr.contains("triangle: a class folder without images"),
        "{stderr}"
    );
    assert!(!dir.path().join("empty-run").exists());
}

#[test]
fn import_logits_and_export_round_trip_through_the_command_line() {
    use burn::backend::Flex;
    use burn::tensor::{Tensor, TensorData};
    use se_models::interop::{Layout, export_state_dict, npy, read_state_dict, write_safetensors};

    let dir = tempfile::tempdir().unwrap();
    let device = Default::default();
    // A timm-layout checkpoint of se_resnet20 with random weights, written by the library.
    let model = se_models::zoo::se_resnet20().init::<Flex>(&device);
    let checkpoint = export_state_dict(&model, Layout::Timm);
    write_safetensors(&checkpoint, &dir.path().join("w.safetensors")).unwrap();
    let values: Vec<f32> = (0..2 * 3 * 32 * 32)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
        .collect();
    let input = npy::Array {
        shape: vec![2, 3, 32, 32],
        values: values.clone(),
    };
    npy::write_npy(&dir.path().join("x.npy"), &input).unwrap();

    let args = [
        "import",
        "--model",
        "se_resnet20",
        "--weights",
        "w.safetensors",
        "--output",
        "m.mpk",
    ];
    let output = se(&args, dir.path());
    assert!(output.status.success(), "{:?}", text(&output));
    assert!(
        dir.path().join("m.json").is_file(),
        "the model config is written beside the weights"
    );

    // No --model: the config beside the weights says what to build.
    let args = [
        "logits",
        "--weights",
        "m.mpk",
        "--input",
        "x.npy",
        "--output",
        "y.npy",
    ];
    let output = se(&args, dir.path());
    assert!(output.status.success(), "{:?}", text(&output));
    let logits = npy::read_npy(&dir.path().join("y.npy")).unwrap();
    // `se logits` runs the inference form (BatchNorms folded): the same bits as the library's
    // folded model, and the eval-mode model's logits to float rounding.
    let x = Tensor::<Flex, 4>::from_data(TensorData::new(values, [2, 3, 32, 32]), &device);
    let logits_of = |t: Tensor<Flex, 2>| t.into_data().into_vec::<f32>().unwrap();
    let unfolded = logits_of(model.clone().forward(x.clone()));
    let expected = logits_of(model.clone().fold_batch_norms().forward(x));
    assert_eq!(logits.shape, vec![2, 10]);
    assert_eq!(logits.values, expected);
    for (folded, plain) in expected.iter().zip(&unfolded) {
        assert!(
            (folded - plain).abs() <= 1e-5 * plain.abs().max(1.0),
            "{folded} vs {plain}"
        );
    }

    let args = [
        "export",
        "--weights",
        "m.mpk",
        "--output",
        "back.safetensors",
    ];
    let output = se(&args, dir.path());
    assert!(output.status.success(), "{:?}", text(&output));
    assert_eq!(
        read_state_dict(&dir.path().join("back.safetensors")).unwrap(),
        checkpoint
    );

    // A checkpoint for another model: the offending keys, no output file.
    let args = [
        "import",
        "--model",
        "resnet20",
        "--weights",
        "w.safetensors",
        "--output",
        "bad.mpk",
    ];
    let output = se(&args, dir.path());
    let stderr = error_text(&output);
    assert!(
        stderr.contains("w.safetensors: the checkpoint does not fit the model"),
        "{stderr}"
    );
    assert!(
        stderr.contains("layer3.2.se.fc2.weight [64, 4, 1, 1]"),
        "{stderr}"
    );
    assert!(!dir.path().join("bad.mpk").exists());

    // An input of the wrong shape names the file.
    npy::write_npy(
        &dir.path().join("gray.npy"),
        &npy::Array {
            shape: vec![1, 1, 32, 32],
            values: vec![0.0; 1024],
        },
    )
    .unwrap();
    let args = [
        "logits",
        "--weights",
        "m.mpk",
        "--input",
        "gray.npy",
        "--output",
        "z.npy",
    ];
    let output = se(&args, dir.path());
    let stderr = error_text(&output);
    assert!(
        stderr.contains("gray.npy: expected shape [N, 3, H, W], found [1, 1, 32, 32]"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `se args` in `dir`, which must succeed, its standard output read as one JSON value a line.
fn json_lines(args: &[&str], dir: &Path) -> Vec<serde_json::Value> {
    let output = se(args, dir);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// `se bench --json`: one line per measurement, in the format `cargo xtask bench` reads.
#[test]
fn bench_prints_one_json_line_per_measurement() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "bench",
        "--json",
        "-m",
        "se_resnet20",
        "--batch",
        "2",
        "--train-batch",
        "2",
        "--repeat",
        "1",
    ];
    let rows = json_lines(&args, dir.path());
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (row, mode) in rows.iter().zip(["infer", "train"]) {
        assert_eq!(row["mode"], mode);
        assert_eq!(row["model"], "se_resnet20");
        assert_eq!(row["batch"], 2);
        assert_eq!(row["input_size"], 32);
        // The published SE-ResNet-20 (CIFAR, r = 16) size; PyTorch's twin in bench/pytorch too.
        assert_eq!(row["params"], 274_847);
        assert!(row["images_per_second"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["peak_rss_mb"].as_f64().unwrap() > 1.0, "{row}");
    }
}

/// `se bench --alternate`: the models timed in turn, each row with its time over the first
/// model's; fewer than two models is an error, not a panic.
#[test]
fn bench_alternates_models_and_compares_each_with_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "bench",
        "--alternate",
        "--json",
        "-m",
        "resnet20",
        "se_resnet20",
        "--batch",
        "1",
        "--repeat",
        "3",
    ];
    let rows = json_lines(&args, dir.path());
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (row, model) in rows.iter().zip(["resnet20", "se_resnet20"]) {
        assert_eq!(row["model"], model);
        assert_eq!(row["relative_to"], "resnet20");
        assert!(row["time_ratio"].as_f64().unwrap() > 0.0, "{row}");
    }
    assert_eq!(rows[0]["time_ratio"], 1.0, "the first against itself");

    let output = se(&["bench", "--alternate", "-m", "resnet20"], dir.path());
    let stderr = error_text(&output);
    assert!(stderr.contains("two or more models"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `se import` of a torchvision checkpoint whose archive lacks one tensor's record, or holds half
/// of it: an error naming the tensor, the record and the byte counts, exit 1, nothing written.
#[test]
fn import_refuses_a_checkpoint_with_a_missing_or_short_record() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../se-models/tests/fixtures/interop/torchvision_resnet.pth");
    let rewrite = |to: &str, record: &str, keep: fn(Vec<u8>) -> Option<Vec<u8>>| {
        let mut archive = zip::ZipArchive::new(std::fs::File::open(&fixture).unwrap()).unwrap();
        let file = std::fs::File::create(dir.path().join(to)).unwrap();
        let mut out = zip::ZipWriter::new(file);
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for i in 0..archive.len() {
            let mut entry = archive.by_index(i).unwrap();
            let name = entry.name().to_string();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            let bytes = if name.ends_with(record) {
                keep(bytes)
            } else {
                Some(bytes)
            };
            if let Some(bytes) = bytes {
                out.start_file(name, stored).unwrap();
                out.write_all(&bytes).unwrap();
            }
        }
        out.finish().unwrap();
    };
    rewrite("missing.pth", "/data/0", |_| None);
    rewrite("short.pth", "/data/0", |b| Some(b[..b.len() / 2].to_vec()));
    for (file, message) in [
        (
            "missing.pth",
            "tensor `conv1.weight`: its data record `torchvision_resnet/data/0` is missing",
        ),
        (
            "short.pth",
            "data record `torchvision_resnet/data/0` holds 18816 bytes, 37632 expected",
        ),
    ] {
        let args = [
            "import",
            "--layout",
            "torchvision",
            "--model",
            "resnet18",
            "--weights",
            file,
            "--output",
            "out.mpk",
        ];
        let output = se(&args, dir.path());
        let (_, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(1), "{file}: {stderr}");
        assert!(stderr.contains(message), "{file}: {stderr}");
        assert!(!dir.path().join("out.mpk").exists() && !dir.path().join("out.json").exists());
    }
}

/// A PyTorch zip checkpoint as `torch.save(state_dict)` writes it (pickle protocol 2,
/// `_rebuild_tensor_v2` over one float storage per tensor), for fixtures too large to commit.
fn write_pth(state: &se_models::interop::StateDict, path: &Path) {
    use std::io::Write;
    let mut pickle = vec![0x80, 2, b'}', b'('];
    let string = |pickle: &mut Vec<u8>, s: &str| {
        pickle.push(b'X');
        pickle.extend((s.len() as u32).to_le_bytes());
        pickle.extend(s.as_bytes());
    };
    let int = |pickle: &mut Vec<u8>, i: usize| {
        pickle.push(b'J');
        pickle.extend((i as i32).to_le_bytes());
    };
    let ints = |pickle: &mut Vec<u8>, values: &[usize]| {
        pickle.push(b'(');
        values.iter().for_each(|&v| int(pickle, v));
        pickle.push(b't');
    };
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (index, (key, data)) in state.iter().enumerate() {
        let data = data.clone().convert::<f32>();
        let shape = data.shape.to_vec();
        let strides: Vec<usize> = (0..shape.len())
            .map(|d| shape[d + 1..].iter().product())
            .collect();
        string(&mut pickle, key);
        pickle.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        pickle.push(b'(');
        string(&mut pickle, "storage");
        pickle.extend(b"ctorch\nFloatStorage\n");
        string(&mut pickle, &index.to_string());
        string(&mut pickle, "cpu");
        int(&mut pickle, shape.iter().product());
        pickle.extend(b"tQ");
        int(&mut pickle, 0);
        ints(&mut pickle, &shape);
        ints(&mut pickle, &strides);
        pickle.extend(b"\x89ccollections\nOrderedDict\n)RtR");
        zip.start_file(format!("w/data/{index}"), stored).unwrap();
        zip.write_all(data.as_bytes()).unwrap();
    }
    pickle.extend(b"u.");
    zip.start_file("w/data.pkl", stored).unwrap();
    zip.write_all(&pickle).unwrap();
    zip.start_file("w/version", stored).unwrap();
    zip.write_all(b"3\n").unwrap();
    zip.finish().unwrap();
}

/// Fine-tuning an ImageNet-shaped ResNet-18 checkpoint (torchvision layout, 1000 classes) on a
/// three-class image folder with the stem and layer1 frozen: the classifier is re-created, the
/// frozen tensors (BatchNorm statistics included) end bit-identical to the checkpoint's, also
/// after a resume, the rest trains, the run ends above chance, and it exports to ONNX. Checkpoints that do not fit and parts that are
/// not a prefix are refused before anything is written.
#[test]
fn fine_tunes_pretrained_weights_with_frozen_parts() {
    const SEED: u64 = 1;
    use burn::backend::Flex;
    use se_models::interop::{Layout, export_state_dict};
    let dir = tempfile::tempdir().unwrap();
    let device = Default::default();
    <Flex as burn::tensor::backend::Backend>::seed(&device, SEED);
    let pretrained = se_models::zoo::resnet18().init::<Flex>(&device);
    let original = export_state_dict(&pretrained, Layout::Torchvision);
    write_pth(&original, &dir.path().join("w.pth"));

    let colours = [[220u8, 30, 30], [30, 200, 40], [40, 40, 230]];
    for (split, count) in [("train", 20), ("val", 5)] {
        for (class, colour) in ["red", "green", "blue"].iter().zip(colours) {
            let class_dir = dir.path().join("images").join(split).join(class);
            std::fs::create_dir_all(&class_dir).unwrap();
            for i in 0..count {
                let picture = image::RgbImage::from_fn(64, 64, |x, y| {
                    let noise = ((x * 7 + y * 13 + i * 31) % 40) as u8;
                    image::Rgb(colour.map(|c| c.saturating_sub(noise)))
                });
                picture.save(class_dir.join(format!("{i}.png"))).unwrap();
            }
        }
    }
    let train = |extra: &str, run: &str| {
        let args = format!(
            "train --init w.pth --dataset folder --data-dir images \
             --image-size 64 --epochs 4 --batch-size 10 --lr 0.02 --warmup-epochs 0 \
             --workers 1 --run-dir {run} {extra}"
        );
        se(&args.split_whitespace().collect::<Vec<_>>(), dir.path())
    };

    let output = train(
        "--model resnet18 --layout torchvision --freeze stem,layer1",
        "ft",
    );
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(
            "w.pth: pretrained weights loaded (torchvision layout); classifier re-created for 3 \
             classes (the checkpoint's has 1000)"
        ),
        "{stderr}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("ft/summary.json")).unwrap())
            .unwrap();
    let top1 = summary["test"]["top1"].as_f64().unwrap();
    assert!(top1 > 0.6, "above chance (1/3): {summary}");

    // Resumed for two more epochs (the frozen parts come from the saved config): still frozen.
    let args = "train --resume --run-dir ft --epochs 6";
    let output = se(&args.split_whitespace().collect::<Vec<_>>(), dir.path());
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let trained = se_models::weights::load(
        se_models::zoo::resnet18()
            .with_num_classes(3)
            .init::<Flex>(&device),
        &dir.path().join("ft/model.mpk"),
        &device,
    )
    .unwrap();
    let after = export_state_dict(&trained, Layout::Torchvision);
    let frozen = |key: &str| {
        ["conv1.", "bn1.", "layer1."]
            .iter()
            .any(|p| key.starts_with(p))
    };
    let mut changed = 0;
    for (key, before) in &original {
        if key.ends_with("num_batches_tracked") || key.starts_with("fc.") {
            continue;
        }
        let same = after[key] == *before;
        assert!(!frozen(key) || same, "frozen `{key}` changed");
        changed += usize::from(!same);
    }
    assert!(changed > 20, "only {changed} trained tensors changed");

    // The fine-tuned run as an ONNX graph: three logits per image, any batch.
    let output = se(
        &["export", "--run-dir", "ft", "--output", "ft.onnx"],
        dir.path(),
    );
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("output `logits` [batch, 3]"), "{stdout}");
    use se_models::onnx::{Message, proto};
    let graph =
        proto::ModelProto::parse_from_bytes(&std::fs::read(dir.path().join("ft.onnx")).unwrap())
            .unwrap()
            .graph
            .unwrap();
    let fc = graph
        .initializer
        .iter()
        .find(|t| t.name == "fc.weight")
        .unwrap();
    assert_eq!(fc.dims, [512, 3]);

    // layer2 frozen without the stem, and weights of another architecture: refused, no folder.
    let output = train(
        "--model resnet18 --layout torchvision --freeze layer2",
        "not-a-prefix",
    );
    let stderr = error_text(&output);
    assert!(
        stderr.contains("--freeze layer2: the frozen parts are a prefix"),
        "{stderr}"
    );
    let output = train("--layout torchvision --model resnet34", "wrong-model");
    let stderr = error_text(&output);
    assert!(stderr.contains("missing from the checkpoint"), "{stderr}");
    assert!(stderr.contains("layer1.2.conv1.weight"), "{stderr}");
    let output = train("--model resnet18 --mean 0.5 --std 0.25", "one-channel-mean");
    let stderr = error_text(&output);
    assert!(stderr.contains("one value per channel"), "{stderr}");
    for run in ["not-a-prefix", "wrong-model", "one-channel-mean"] {
        assert!(!dir.path().join(run).exists(), "{run}");
    }
}

/// A run killed with SIGKILL and resumed ends as the uninterrupted run with the same seed and
/// one loader worker: the same weights, bit for bit, and one metrics row per epoch. Killed at
/// two points: in the middle of an epoch, and the moment an epoch's checkpoint starts to appear
/// (its other files not yet written, so the resume may have to fall back one epoch).
#[test]
fn a_run_killed_and_resumed_ends_as_the_uninterrupted_one() {
    use burn::backend::Flex;
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let args = "train --train-limit 512 --test-limit 64 --epochs 3 --batch-size 32 --workers 1 \
                --seed 7 --run-dir";
    let args: Vec<&str> = args.split_whitespace().collect();
    let output = se(&[&args[..], &["whole"]].concat(), dir.path());
    assert!(output.status.success(), "{}", text(&output).1);
    let weights = |run: &str| {
        let model = se_models::weights::load(
            se_models::zoo::se_resnet20()
                .with_in_channels(1)
                .init::<Flex>(&Default::default()),
            &dir.path().join(run).join("model.mpk"),
            &Default::default(),
        )
        .unwrap();
        se_models::interop::export_state_dict(&model, se_models::interop::Layout::Timm)
    };
    let metrics = |run: &str| std::fs::read_to_string(dir.path().join(run).join("metrics.csv"));

    for (run, appears, wait_fraction) in [("mid-epoch", 1, 0.5), ("at-checkpoint", 2, 0.0)] {
        let started = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_se"))
            .args([&args[..], &[run]].concat())
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let checkpoint = dir
            .path()
            .join(run)
            .join(format!("checkpoint/model-{appears}.mpk"));
        while !checkpoint.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "{run}: no checkpoint"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        // Half an epoch later (the epochs take about as long as the time to the first one).
        std::thread::sleep(started.elapsed().mul_f64(wait_fraction / appears as f64));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert!(
            !dir.path().join(run).join("model.mpk").exists(),
            "{run}: the run ended before the kill"
        );
        let output = se(&["train", "--resume", "--run-dir", run], dir.path());
        assert!(output.status.success(), "{run}: {}", text(&output).1);
        assert_eq!(metrics(run).unwrap(), metrics("whole").unwrap(), "{run}");
        assert!(weights(run) == weights("whole"), "{run}: weights differ");
    }
}
