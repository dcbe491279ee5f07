//! Helpers shared by the CLI integration tests: run the binary, read its output, check
//! the one-line user-error contract.
#![allow(dead_code)]

pub mod report_check;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub fn shopnet(args: &[&str], cwd: &Path) -> Output {
    shopnet_with_env(args, cwd, &[])
}

/// Runs the binary with extra environment variables (`HF_HOME`, ...).
pub fn shopnet_with_env(args: &[&str], cwd: &Path, env: &[(&str, &Path)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shopnet"));
    command.args(args).current_dir(cwd).env_remove("RUST_BACKTRACE");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("the shopnet binary runs")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn config(name: &str) -> String {
    repo().join("configs").join(name).display().to_string()
}

/// Whether `../shared/data` (the real data sets) lies beside this clone. Without it a test
/// that reads it says so in one line and skips, unless `CI` is set (CI runs with the data),
/// which makes that a failure.
pub fn shared_data_present() -> bool {
    let data = repo().join("../shared/data");
    if data.is_dir() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} is missing: CI runs with ../shared",
        data.display()
    );
    eprintln!("skipping: needs {} (../shared is not beside this clone)", data.display());
    false
}

/// Trains and returns the run directory, asserting success.
pub fn train(dir: &Path, args: &[&str]) -> PathBuf {
    let out = dir.join("runs");
    let mut full = vec!["train", "--out", out.to_str().unwrap()];
    full.extend_from_slice(args);
    let output = shopnet(&full, dir);
    assert!(output.status.success(), "train failed: {}", stderr(&output));
    run_dir_from(&stdout(&output))
}

/// Trains `recipe` (a config of configs/) on the log `events.csv` in `dir`, with `extra`
/// arguments (`--set`s), and returns the run directory.
pub fn train_on_events(dir: &Path, recipe: &str, extra: &[&str]) -> PathBuf {
    let recipe = config(recipe);
    let mut args = vec!["--config", recipe.as_str(), "--set", "data.events=\"events.csv\""];
    args.extend_from_slice(extra);
    train(dir, &args)
}

pub fn run_dir_from(stdout: &str) -> PathBuf {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("run "))
        .unwrap_or_else(|| panic!("no run line in {stdout}"));
    PathBuf::from(line.split_whitespace().nth(1).unwrap())
}

pub fn report_metric(run: &Path, name: &str) -> f64 {
    let report: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    report["metrics"][name].as_f64().unwrap_or_else(|| panic!("{name} missing in {report}"))
}

/// A user error: exit code 2, exactly one line on stderr containing `needle`, no panic.
pub fn assert_user_error(output: &Output, needle: &str) {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "expected one line, got: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
}

/// How long the wgpu probe may take: a first kernel on lavapipe compiles for seconds, a
/// machine that would fall back to a software OpenGL rasteriser takes minutes.
const WGPU_PROBE_LIMIT: Duration = Duration::from_secs(120);

/// Whether a wgpu device works here (lavapipe in CI), within `WGPU_PROBE_LIMIT`. Without
/// one a wgpu test skips, unless `SHOPNET_REQUIRE_WGPU` is set (as in CI), which makes
/// that a failure.
pub fn wgpu_usable(dir: &Path) -> bool {
    let args = ["bench", "--model", "gcn", "--device", "wgpu", "--epochs", "1", "--warmup", "0"];
    let mut child = Command::new(env!("CARGO_BIN_EXE_shopnet"))
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the shopnet binary runs");
    let verdict = match wait_within(&mut child, WGPU_PROBE_LIMIT) {
        Some((status, _)) if status.success() => Ok(()),
        Some((_, err)) => Err(err.trim().to_string()),
        None => Err(format!("no answer within {} s", WGPU_PROBE_LIMIT.as_secs())),
    };
    match verdict {
        Ok(()) => true,
        Err(reason) => {
            assert!(
                std::env::var_os("SHOPNET_REQUIRE_WGPU").is_none(),
                "wgpu required but unusable: {reason}"
            );
            eprintln!("skipping: no usable wgpu adapter ({reason})");
            false
        }
    }
}

/// Waits for `child` at most `limit`: its exit status and what it wrote to its piped
/// stderr, or `None` (the child killed) when it ran longer.
pub fn wait_within(child: &mut Child, limit: Duration) -> Option<(ExitStatus, String)> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("waiting for a child process") {
            let mut err = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                let _ = stderr.read_to_string(&mut err);
            }
            return Some((status, err));
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A generated Taobao-format log of `users` users at `dir/events.csv`.
pub fn synth_events(dir: &Path, users: usize, seed: u64) -> PathBuf {
    let log = dir.join("events.csv");
    let (users, seed) = (users.to_string(), seed.to_string());
    let args =
        ["synth", "events", "--users", &users, "--seed", &seed, "--out", log.to_str().unwrap()];
    let generated = shopnet(&args, dir);
    assert!(generated.status.success(), "{}", stderr(&generated));
    log
}
