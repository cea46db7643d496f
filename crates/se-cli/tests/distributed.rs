//! Data-parallel training over MPI (`--features mpi`; `cargo xtask test` runs this when OpenMPI
//! is installed): two ranks over loopback keep equal weights, equal to one process that
//! averages the gradients of the two ranks' batches; `se train --distributed mpi` trains and
//! resumes; a killed rank, and a rank that panics, end the job.
#![cfg(feature = "mpi")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use burn::backend::{Autodiff, Flex};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, Optimizer, SgdConfig};
use burn::tensor::Device;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use burn::train::TrainStep;
use se_models::ResNetConfig;
use se_train::classifier::Classifier;
use se_train::data::batcher::ImageBatch;
use se_train::distributed::{Collective, GradientAverager, broadcast_module};

type B = Autodiff<Flex>;

const STEPS: usize = 3;
const BATCH: usize = 4;

/// One MPI job at a time: two ranks already fill the 2-core machine CI runs on, and the
/// killed-rank test measures time.
static JOBS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `mpirun` as root on a 2-core machine: both flags are needed there and harmless elsewhere.
fn mpirun(ranks: usize) -> Command {
    let mut command = Command::new("mpirun");
    command.args([
        "--allow-run-as-root",
        "--oversubscribe",
        "-np",
        &ranks.to_string(),
    ]);
    command
}

fn model_config() -> ResNetConfig {
    ResNetConfig {
        layers: vec![1, 1, 1],
        ..se_models::zoo::se_resnet20()
    }
}

/// Rank `rank`'s batch at `step`: deterministic images and labels.
fn batch(step: usize, rank: usize, device: &Device<B>) -> ImageBatch<B> {
    let offset = (step * 2 + rank) * 1000;
    let len = BATCH * 3 * 32 * 32;
    let pixels: Vec<f32> = (0..len)
        .map(|i| (((i + offset) * 7919 % 1013) as f32 / 506.5) - 1.0)
        .collect();
    let labels: Vec<i64> = (0..BATCH)
        .map(|i| ((i + offset / 1000) % 10) as i64)
        .collect();
    ImageBatch {
        images: Tensor::from_data(TensorData::new(pixels, [BATCH, 3, 32, 32]), device),
        targets: Tensor::<B, 1, Int>::from_data(TensorData::new(labels, [BATCH]), device),
    }
}

/// The trainable parameters (not BatchNorm's running statistics, which are per rank).
fn parameters<M: Module<B>>(model: &M) -> Vec<f32> {
    struct Collect(Vec<f32>);
    impl ModuleVisitor<B> for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let tensor = param.val();
            if tensor.is_require_grad() {
                self.0.extend(
                    tensor
                        .into_data()
                        .convert::<f32>()
                        .into_vec::<f32>()
                        .unwrap(),
                );
            }
        }
    }
    let mut visitor = Collect(Vec::new());
    model.visit(&mut visitor);
    visitor.0
}

fn sgd() -> impl Optimizer<Classifier<B>, B> {
    SgdConfig::new()
        .with_momentum(Some(MomentumConfig {
            momentum: 0.9,
            dampening: 0.0,
            nesterov: false,
        }))
        .init()
}

/// Run by `two_ranks_keep_equal_weights...` under mpirun, never on its own.
#[test]
#[ignore = "an MPI rank, started by two_ranks_keep_equal_weights_equal_to_one_process"]
fn rank_of_the_equal_weights_job() {
    let Ok(out) = std::env::var("SE_MPI_TEST_OUT") else {
        return;
    };
    let (_universe, collective) = se_train::distributed::mpi::init().unwrap();
    let collective: std::sync::Arc<dyn Collective> = std::sync::Arc::new(collective);
    let rank = collective.rank();
    let device = Default::default();
    B::seed(&device, rank as u64); // different replicas, until rank 0's weights are broadcast
    let model = broadcast_module(model_config().init::<B>(&device), collective.as_ref());
    let mut classifier = Classifier::new(model, 0.0)
        .with_gradient_averager(Some(GradientAverager::new(collective.clone())));
    let mut optimizer = sgd();
    for step in 0..STEPS {
        let output = TrainStep::step(&classifier, batch(step, rank, &device));
        classifier = optimizer.step(0.1, classifier, output.grads);
    }
    let bytes: Vec<u8> = parameters(&classifier)
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    std::fs::write(Path::new(&out).join(format!("rank-{rank}.bin")), bytes).unwrap();
}

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

#[test]
fn two_ranks_keep_equal_weights_equal_to_one_process() {
    let _one_job = JOBS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let output = mpirun(2)
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "rank_of_the_equal_weights_job",
            "--ignored",
            "--test-threads",
            "1",
        ])
        .env("SE_MPI_TEST_OUT", dir.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rank0 = read_f32(&dir.path().join("rank-0.bin"));
    let rank1 = read_f32(&dir.path().join("rank-1.bin"));
    assert!(!rank0.is_empty());
    assert_eq!(rank0, rank1, "the replicas diverged");

    // One process, rank 0's initial weights, each step on both ranks' batches: the gradient of
    // the mean of the two batches' losses, each batch normalised by its own statistics (what
    // the ranks compute, as PyTorch DDP does without SyncBatchNorm).
    let device = Default::default();
    B::seed(&device, 0);
    let model = model_config().init::<B>(&device);
    // Burn initialises parameters lazily, on first use: draw them in visiting order, as rank 0's
    // broadcast did, so that both start from the same weights.
    se_train::distributed::flatten(&model);
    let mut classifier = Classifier::new(model, 0.0);
    let mut optimizer = sgd();
    for step in 0..STEPS {
        let losses: Vec<Tensor<B, 1>> = (0..2)
            .map(|rank| {
                let b = batch(step, rank, &device);
                classifier.forward_classification(b.images, b.targets).loss
            })
            .collect();
        let loss = (losses[0].clone() + losses[1].clone()) / 2.0;
        let grads = GradientsParams::from_grads(loss.backward(), &classifier);
        classifier = optimizer.step(0.1, classifier, grads);
    }
    let single = parameters(&classifier);
    assert_eq!(single.len(), rank0.len());
    let diff = single
        .iter()
        .zip(&rank0)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    let moved = single.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(
        diff <= 1e-5 * moved.max(1.0),
        "two ranks vs one process: max difference {diff}"
    );
}

fn se_train(ranks: usize, dir: &Path, extra: &str) -> Output {
    let args = format!(
        "train --distributed mpi --run-dir run --train-limit 1280 --test-limit 200 --batch-size 32 \
         --lr 0.05 --warmup-epochs 0 --workers 1 {extra}"
    );
    mpirun(ranks)
        .arg(env!("CARGO_BIN_EXE_se"))
        .args(args.split_whitespace())
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn se_train_distributed_trains_and_resumes_on_two_ranks() {
    let _one_job = JOBS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let output = se_train(2, dir.path(), "--epochs 1");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("distributed over 2 MPI ranks: batch 32 per rank, 64 per step"),
        "{stdout}"
    );
    let run = dir.path().join("run");
    assert!(run.join("summary.json").is_file());
    assert!(
        run.join("ranks/1/checkpoint").is_dir(),
        "rank 1 keeps its optimizer state"
    );
    assert!(
        !run.join("ranks/1/summary.json").exists(),
        "only rank 0 writes the run's results"
    );
    assert_eq!(
        stdout.matches("done in").count(),
        1,
        "rank 0 alone reports: {stdout}"
    );

    let output = se_train(2, dir.path(), "--epochs 2 --resume");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["epochs"], 2);
    let top1 = summary["test"]["top1"].as_f64().unwrap();
    assert!(
        top1 > 0.15,
        "test top-1 {top1} after two epochs (chance: 10%)"
    );
    // The resumed epoch continues the first: the training loss falls from one to the next.
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let losses: Vec<f64> = metrics
        .lines()
        .skip(1)
        .map(|row| row.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(losses.len(), 2, "{metrics}");
    assert!(
        losses[1] < losses[0],
        "training loss did not fall:\n{metrics}"
    );

    // Rank 1 loses its newest checkpoint: it would resume one epoch behind rank 0. Both ranks
    // find that out before the first step and stop, naming the difference.
    for part in ["model", "optim", "scheduler"] {
        std::fs::remove_file(run.join(format!("ranks/1/checkpoint/{part}-2.mpk"))).unwrap();
    }
    let output = se_train(2, dir.path(), "--epochs 3 --resume");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("the ranks disagree on the start epoch")
            && stderr.contains("rank 0 starts after epoch 2"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(run.join("metrics.csv")).unwrap(),
        metrics
    );
}

/// The process ids of `parent`'s children.
fn children(parent: u32) -> Vec<u32> {
    let tasks = PathBuf::from(format!("/proc/{parent}/task"));
    std::fs::read_dir(tasks)
        .into_iter()
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// How long the job may take to end after a rank dies.
const ABORT_BOUND: Duration = Duration::from_secs(30);

#[test]
fn a_killed_rank_ends_the_job_with_an_error_naming_it() {
    let _one_job = JOBS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut job = mpirun(2)
        .arg(env!("CARGO_BIN_EXE_se"))
        .args(
            "train --distributed mpi --run-dir run --epochs 50 --batch-size 16 --workers 1"
                .split_whitespace(),
        )
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until rank 0 reports training progress, then kill one rank.
    let stdout = BufReader::new(job.stdout.take().unwrap());
    let mut lines = stdout.lines();
    let started = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|line| line.contains("epoch 1/50 train"));
    assert!(started, "the job did not start training");
    let ranks = children(job.id());
    assert_eq!(ranks.len(), 2, "mpirun's children: {ranks:?}");
    let killed_at = Instant::now();
    Command::new("kill")
        .args(["-9", &ranks[1].to_string()])
        .status()
        .unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = loop {
        if let Some(status) = job.try_wait().unwrap() {
            break status;
        }
        if killed_at.elapsed() > ABORT_BOUND {
            let _ = job.kill();
            panic!("the job still runs {ABORT_BOUND:?} after a rank was killed");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let elapsed = killed_at.elapsed();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut job.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(elapsed < ABORT_BOUND);
    let all = format!("{}\n{stderr}", rest.join("\n"));
    assert!(
        all.contains("exited on signal 9") && all.contains("rank"),
        "mpirun names the dead rank:\n{all}"
    );
}

/// Run by `a_panicking_rank_aborts_the_job` under mpirun, never on its own: rank 1 panics
/// while rank 0 waits in an all-reduce that rank 1 never joins.
#[test]
#[ignore = "an MPI rank, started by a_panicking_rank_aborts_the_job"]
fn rank_of_the_panicking_job() {
    if std::env::var("SE_MPI_TEST_PANIC").is_err() {
        return;
    }
    let (_universe, collective) = se_train::distributed::mpi::init().unwrap();
    let collective = std::sync::Arc::new(collective);
    collective.abort_on_panic();
    let mut buffer = [1.0f32; 4];
    collective.all_reduce_sum(&mut buffer); // both ranks are up
    if collective.rank() == 1 {
        panic!("a bug on rank 1");
    }
    collective.all_reduce_sum(&mut buffer); // rank 1 never comes: only the abort ends this
    unreachable!("rank 0 passed an all-reduce its peer never joined");
}

/// A panic (not an error) on one rank ends the whole job through the panic hook, instead of
/// leaving the other ranks waiting in their next collective call.
#[test]
fn a_panicking_rank_aborts_the_job() {
    let _one_job = JOBS.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let mut job = mpirun(2)
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "rank_of_the_panicking_job",
            "--ignored",
            "--nocapture", // the messages of a process that aborts are never replayed
            "--test-threads",
            "1",
        ])
        .env("SE_MPI_TEST_PANIC", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(status) = job.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > ABORT_BOUND {
            let _ = job.kill();
            panic!("the job still runs {ABORT_BOUND:?} after a rank panicked");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut job.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("a bug on rank 1"), "{stderr}");
    assert!(
        stderr.contains("rank 1 of 2 panicked: aborting the MPI job"),
        "{stderr}"
    );
}
