//! `cargo xtask test`: the workspace's tests, the convolution tests again on each narrower ISA
//! (forced), the README's library snippet in a crate outside the workspace, then the suites that need a system library (run when it is installed, reported as
//! skipped with the apt line otherwise), then `cargo check` of the CUDA build (which needs no
//! CUDA toolkit). One total line at the end.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use crate::{cargo, fail, readme};

/// A step of the test command.
struct Step {
    /// What the summary calls it.
    name: &'static str,
    /// Cargo arguments.
    args: Vec<String>,
    /// Extra environment.
    env: Vec<(&'static str, String)>,
    /// `Err(why)` when a system library it needs is missing.
    available: Result<(), String>,
    /// Writes what the step builds, before it runs.
    prepare: Option<Prepare>,
}

/// A step's preparation: writes what it builds under the repository's root, or says why not.
type Prepare = fn(&Path) -> Result<(), String>;

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// Whether the dynamic loader can find `library` (e.g. `libvulkan.so.1`).
fn has_library(library: &str) -> bool {
    Command::new("ldconfig")
        .arg("-p")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(library))
        || [
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib64",
            "/usr/lib",
            "/usr/local/lib",
        ]
        .iter()
        .any(|dir| Path::new(dir).join(library).exists())
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// A Vulkan loader and at least one driver (lavapipe on a machine without a GPU).
fn vulkan() -> Result<(), String> {
    let drivers = ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"]
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flatten()
        .count();
    if has_library("libvulkan.so.1") && drivers > 0 {
        Ok(())
    } else {
        Err(
            "no Vulkan loader or driver; install: apt-get install mesa-vulkan-drivers libvulkan1"
                .into(),
        )
    }
}

/// OpenMPI's launcher and headers, and libclang for the `mpi` crate's bindings.
fn openmpi() -> Result<(), String> {
    if on_path("mpirun") && on_path("mpicc") && has_library("libclang") {
        Ok(())
    } else {
        Err("OpenMPI or libclang not found; install: apt-get install libopenmpi-dev openmpi-bin libclang-dev".into())
    }
}

fn steps(extra: &[String]) -> Vec<Step> {
    let mut workspace = strings(&["test", "--workspace"]);
    workspace.extend(extra.iter().cloned());
    let readme_crate = root().join("target").join("readme-crate");
    vec![
        Step {
            name: "workspace",
            args: workspace,
            env: vec![],
            available: Ok(()),
            prepare: None,
        },
        forced_isa("avx2", extra),
        forced_isa("scalar", extra),
        Step {
            name: "readme (the library snippet in a crate outside the workspace)",
            args: vec![
                "run".into(),
                "--manifest-path".into(),
                readme_crate.join("Cargo.toml").display().to_string(),
            ],
            env: vec![(
                "CARGO_TARGET_DIR",
                root().join("target").display().to_string(),
            )],
            available: Ok(()),
            prepare: Some(|root| readme::write_crate(root).map(|_| ())),
        },
        Step {
            name: "wgpu (backend parity and a training run on Vulkan)",
            args: strings(&[
                "test",
                "-p",
                "se-cli",
                "--features",
                "wgpu",
                "--test",
                "backends",
                "--test",
                "wgpu_train",
                // Only the wgpu tests: the CPU ones ran in the workspace step.
                "--",
                "wgpu",
            ]),
            // Software Vulkan unless the caller picked a device.
            env: vec![(
                "SE_DEVICE",
                std::env::var("SE_DEVICE").unwrap_or_else(|_| "cpu".into()),
            )],
            available: vulkan(),
            prepare: None,
        },
        Step {
            name: "mpi (two ranks over loopback)",
            args: strings(&[
                "test",
                "-p",
                "se-cli",
                "--features",
                "mpi",
                "--test",
                "distributed",
            ]),
            env: vec![],
            available: openmpi(),
            prepare: None,
        },
        Step {
            name: "cuda build (cargo check, no toolkit needed)",
            args: strings(&[
                "check",
                "-p",
                "se-cli",
                "--no-default-features",
                "--features",
                "cuda",
                "--tests",
            ]),
            env: vec![(
                "CUDARC_CUDA_VERSION",
                std::env::var("CUDARC_CUDA_VERSION").unwrap_or_else(|_| "13000".into()),
            )],
            available: Ok(()),
            prepare: None,
        },
    ]
}

/// The convolution tests again with the direct kernels forced onto a narrower ISA than this
/// CPU's widest (`SE_KERNELS_ISA`; the GEMM crate keeps its own choice), so that the fallbacks
/// run through the whole convolution, not only in the kernels' own every-ISA tests. The
/// workspace step's test binaries, filtered: no build.
fn forced_isa(isa: &'static str, extra: &[String]) -> Step {
    // The caller's cargo options (a profile, features) but not its test filters, so that the
    // workspace step's binaries are the ones run.
    let mut args = strings(&["test", "--workspace", "--lib"]);
    args.extend(extra.iter().take_while(|a| *a != "--").cloned());
    args.extend(strings(&["--", "convolution", "box_filter"]));
    Step {
        name: match isa {
            "avx2" => "convolutions forced onto AVX2 (SE_KERNELS_ISA=avx2)",
            _ => "convolutions forced onto scalar code (SE_KERNELS_ISA=scalar)",
        },
        args,
        env: vec![("SE_KERNELS_ISA", isa.to_string())],
        available: if isa == "avx2" { avx2() } else { Ok(()) },
        prepare: None,
    }
}

/// Whether this CPU runs the kernels' AVX2 code (forcing it elsewhere would only repeat the
/// workspace step).
fn avx2() -> Result<(), String> {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        return Ok(());
    }
    Err("this CPU has no AVX2 + FMA".into())
}

/// Runs one cargo command, echoing its output; returns (success, passed, failed).
fn run(step: &Step) -> (bool, usize, usize) {
    if let Some(prepare) = step.prepare
        && let Err(message) = prepare(&root())
    {
        eprintln!("{}: {message}", step.name);
        return (false, 0, 0);
    }
    let mut command = cargo();
    command.args(&step.args).stdout(Stdio::piped());
    for (key, value) in &step.env {
        command.env(key, value);
    }
    println!("== {}: cargo {}", step.name, step.args.join(" "));
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            eprintln!("could not run cargo: {error}");
            return (false, 0, 0);
        }
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
    (success, passed, failed)
}

/// `cargo xtask readme`: the README step alone.
pub fn readme() -> ExitCode {
    let step = steps(&[])
        .into_iter()
        .find(|step| step.name.starts_with("readme"));
    match step.map(|step| run(&step)) {
        Some((true, _, _)) => ExitCode::SUCCESS,
        _ => fail("the README's library snippet failed"),
    }
}

pub fn test(extra: &[String]) -> ExitCode {
    let (mut passed, mut failed, mut all_ok) = (0, 0, true);
    let mut report = Vec::new();
    for step in steps(extra) {
        if let Err(why) = &step.available {
            report.push(format!("  {}: SKIPPED: {why}", step.name));
            continue;
        }
        let (ok, p, f) = run(&step);
        passed += p;
        failed += f;
        all_ok &= ok;
        report.push(format!(
            "  {}: {}",
            step.name,
            if ok { "ok" } else { "FAILED" }
        ));
    }
    println!("suites:");
    for line in &report {
        println!("{line}");
    }
    println!("tests: {passed} passed, {failed} failed");
    if all_ok {
        ExitCode::SUCCESS
    } else {
        fail("some suites failed")
    }
}
