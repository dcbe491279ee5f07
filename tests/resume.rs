//! A run SIGKILLed at 20 moments spread over its whole life (starting up, training,
//! writing checkpoints, the final evaluation) resumes each time to the metrics.csv and
//! report.json of the run that was never interrupted, and leaves no temporary files.
//! Reads the built-in Cora graph only.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{config, run_dir_from, shopnet, stderr, stdout};
use tempfile::TempDir;

const KILLS: usize = 20;

/// GCN on Cora, checkpointing after every epoch so that many kills land inside a write.
fn train_args(out: &Path) -> Vec<String> {
    let gcn = config("gcn_cora.toml");
    let sets = ["train.epochs=40", "runtime.checkpoint_secs=0", "runtime.threads=2"];
    let mut args = vec![
        "train".to_string(),
        "--config".into(),
        gcn,
        "--out".into(),
        out.display().to_string(),
    ];
    for set in sets {
        args.extend(["--set".to_string(), set.to_string()]);
    }
    args
}

/// metrics.csv without its timing columns (`train_seconds`, `seconds`: the last two).
fn history(run: &Path) -> Vec<String> {
    let text = fs::read_to_string(run.join("metrics.csv")).unwrap();
    text.lines().map(|line| line.rsplitn(3, ',').nth(2).unwrap_or(line).to_string()).collect()
}

fn report(run: &Path) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(run.join("report.json")).unwrap()).unwrap()
}

/// Starts `args`, kills it (SIGKILL) after `delay`; returns whether it was still running.
fn run_and_kill(args: &[String], dir: &Path, delay: Duration) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shopnet"))
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    running
}

/// The one run directory under `out` that a resume can continue, if the kill came late
/// enough for one to exist.
fn resumable_run(out: &Path) -> Option<PathBuf> {
    let entries = fs::read_dir(out).ok()?;
    entries.flatten().map(|e| e.path()).find(|p| p.join("run.json").is_file())
}

/// Kills one fresh run at `delay`, then resumes it to the end (starting over only if the
/// kill came before the run directory was complete). Returns the finished run and whether
/// the kill hit a running process.
fn killed_and_resumed(dir: &Path, chain: usize, delay: Duration) -> (PathBuf, bool) {
    let out = dir.join(format!("chain{chain}"));
    let killed = run_and_kill(&train_args(&out), dir, delay);
    let args: Vec<String> = match resumable_run(&out) {
        Some(run) if run.join("report.json").is_file() => return (run, killed),
        Some(run) => vec!["train".into(), "--resume".into(), run.display().to_string()],
        None => train_args(&out),
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = shopnet(&args, dir);
    assert!(output.status.success(), "chain {chain} (killed after {delay:?}): {}", stderr(&output));
    (run_dir_from(&stdout(&output)), killed)
}

#[test]
fn killed_runs_resume_to_the_uninterrupted_result() {
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    let started = Instant::now();
    let args = train_args(&d.join("whole"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = shopnet(&args, d);
    assert!(output.status.success(), "{}", stderr(&output));
    let whole = run_dir_from(&stdout(&output));
    let duration = started.elapsed();

    // Kill moments stratified over the whole run, start-up to final evaluation, so every
    // phase is hit; a kill that came after the end does not count.
    let mut kills = 0;
    for chain in 0..3 * KILLS {
        if kills == KILLS {
            break;
        }
        let fraction = (chain % KILLS) as f64 / KILLS as f64 + 0.5 / KILLS as f64;
        let (run, killed) = killed_and_resumed(d, chain, duration.mul_f64(fraction));
        kills += usize::from(killed);
        assert_eq!(
            history(&run),
            history(&whole),
            "chain {chain} (killed at {fraction:.3} of the run)"
        );
        assert_eq!(
            report(&run),
            report(&whole),
            "chain {chain} (killed at {fraction:.3} of the run)"
        );
        let leftovers: Vec<String> = fs::read_dir(&run)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "chain {chain}: temporary files left: {leftovers:?}");
    }
    assert_eq!(kills, KILLS, "only {kills} kills hit a running process");
}
