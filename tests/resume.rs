//! A run SIGKILLed at 20 moments spread over its whole life (starting up, training,
//! writing checkpoints, the final evaluation) resumes each time to the metrics.csv and
//! report.json of the run that was never interrupted, and leaves no temporary files.
//! Reads the built-in Cora graph only.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{config, run_dir_from, shopnet, stderr, stdout};
use tempfile::TempDir;

const KILLS: usize = 20;
const EPOCHS: usize = 40;

/// GCN on Cora, checkpointing after every epoch so that many kills land inside a write.
fn train_args(out: &Path) -> Vec<String> {
    let gcn = config("gcn_cora.toml");
    let epochs = format!("train.epochs={EPOCHS}");
    let sets = [epochs.as_str(), "runtime.checkpoint_secs=0", "runtime.threads=2"];
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

/// When a kill comes: a delay after the start, or as soon as the run has logged an epoch.
#[derive(Debug, Clone, Copy)]
enum Moment {
    After(Duration),
    /// Once metrics.csv holds this many epochs (the last one: during the final evaluation).
    Epoch(usize),
}

/// Epochs logged so far by the one run under `out`.
fn epochs_logged(out: &Path) -> usize {
    let Some(run) = fs::read_dir(out).ok().and_then(|mut e| e.next()).and_then(|e| e.ok()) else {
        return 0;
    };
    fs::read_to_string(run.path().join("metrics.csv"))
        .map_or(0, |text| text.lines().count().saturating_sub(1))
}

/// Starts `args`, kills it (SIGKILL) at `moment`; returns whether it was still running.
fn run_and_kill(args: &[String], dir: &Path, out: &Path, moment: Moment) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shopnet"))
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    match moment {
        Moment::After(delay) => std::thread::sleep(delay),
        Moment::Epoch(epochs) => {
            while child.try_wait().unwrap().is_none() && epochs_logged(out) < epochs {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
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

/// Kills one fresh run at `moment`, then resumes it to the end (starting over only if the
/// kill came before the run directory was complete). Returns the finished run and whether
/// the kill hit a running process.
fn killed_and_resumed(dir: &Path, chain: usize, moment: Moment) -> (PathBuf, bool) {
    let out = dir.join(format!("chain{chain}"));
    let killed = run_and_kill(&train_args(&out), dir, &out, moment);
    let args: Vec<String> = match resumable_run(&out) {
        Some(run) if run.join("report.json").is_file() => return (run, killed),
        Some(run) => vec!["train".into(), "--resume".into(), run.display().to_string()],
        None => train_args(&out),
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = shopnet(&args, dir);
    assert!(output.status.success(), "chain {chain} (killed at {moment:?}): {}", stderr(&output));
    (run_dir_from(&stdout(&output)), killed)
}

#[test]
fn killed_runs_resume_to_the_uninterrupted_result() {
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    let args = train_args(&d.join("whole"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = shopnet(&args, d);
    assert!(output.status.success(), "{}", stderr(&output));
    let whole = run_dir_from(&stdout(&output));

    // Moments over the whole life of a run: starting up (before the run directory is
    // complete), after each of many epochs (every epoch writes a checkpoint, so kills land
    // inside writes too), and after the last epoch, in the final evaluation.
    let mut moments: Vec<Moment> =
        [0, 20, 60].map(|ms| Moment::After(Duration::from_millis(ms))).to_vec();
    moments.extend((0..15).map(|i| Moment::Epoch(1 + i * 39 / 14)));
    moments.extend([Moment::Epoch(EPOCHS), Moment::Epoch(EPOCHS)]);
    let mut kills = 0;
    for chain in 0..3 * KILLS {
        if kills == KILLS {
            break;
        }
        let moment = moments[chain % moments.len()];
        let (run, killed) = killed_and_resumed(d, chain, moment);
        kills += usize::from(killed);
        assert_eq!(history(&run), history(&whole), "chain {chain} (killed at {moment:?})");
        assert_eq!(report(&run), report(&whole), "chain {chain} (killed at {moment:?})");
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
