//! The on-disk layout of a run directory (`checkpoints/<name>-<timestamp>/`):
//! - `config.toml`: the fully resolved config the run was started with
//! - `run.json`: model kind, label names and input sizes: what rebuilds the net
//! - `best.safetensors`, `last.safetensors`: weights of the best and the last epoch
//! - `resume-<epoch>.model.bpk`, `resume-<epoch>.optim.bpk`: the last epoch's burn records
//!   (parameter ids included, which the optimiser state is keyed by), for `--resume`
//! - `state.json`: progress; written last, so it always names a complete checkpoint
//! - `metrics.csv`, `metrics.jsonl`: one row per epoch; `report.json`: final metrics
//!
//! Every file is written to a temporary sibling and renamed into place.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use crate::base::config::ModelKind;
use crate::base::files::{read_json, write_json};
use crate::base::metrics::Metrics;

pub const CONFIG_FILE: &str = "config.toml";
pub const RUN_FILE: &str = "run.json";
pub const STATE_FILE: &str = "state.json";
pub const BEST_WEIGHTS: &str = "best.safetensors";
pub const LAST_WEIGHTS: &str = "last.safetensors";
pub const REPORT_FILE: &str = "report.json";
pub const METRICS_CSV: &str = "metrics.csv";
pub const METRICS_JSONL: &str = "metrics.jsonl";

/// What a trained model needs besides its weights: written at the start of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub kind: ModelKind,
    pub shopnet_version: String,
    /// Class names, in output order.
    pub labels: Vec<String>,
    /// The family's description of its input (sizes, vocabulary, encoder), typed by the
    /// family as its `Family::Input`.
    pub input: serde_json::Value,
    pub parameters: usize,
}

/// Training progress, rewritten after every epoch.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunState {
    pub epochs_done: usize,
    pub steps_done: usize,
    pub best_epoch: Option<usize>,
    pub best_value: Option<f64>,
    /// With several watched metrics: the best value of each so far, in config order.
    #[serde(default)]
    pub best_values: Vec<f64>,
    pub epochs_without_improvement: usize,
    pub finished: bool,
    /// The device (or devices) the run last trained on, as `--device` names them.
    #[serde(default)]
    pub device: Option<String>,
}

impl RunState {
    pub fn resume_files(&self) -> (String, String) {
        (
            format!("resume-{:06}.model.bpk", self.epochs_done),
            format!("resume-{:06}.optim.bpk", self.epochs_done),
        )
    }
}

/// `<out>/<name>-<timestamp>`, made unique if two runs start within the same second.
pub fn create_run_dir(out: &Path, name: &str) -> Result<PathBuf> {
    let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
    std::fs::create_dir_all(out)
        .map_err(|err| anyhow::anyhow!("{}: cannot create: {err}", out.display()))?;
    for attempt in 1..10_000 {
        let candidate = match attempt {
            1 => out.join(format!("{name}-{stamp}")),
            _ => out.join(format!("{name}-{stamp}-{attempt}")),
        };
        match std::fs::create_dir(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(err) => bail!("{}: cannot create: {err}", candidate.display()),
        }
    }
    bail!("{}: cannot find a free run directory name for {name}-{stamp}", out.display())
}

/// Writes `report.json`: the model kind, the best epoch and the final metrics.
pub fn write_report(
    dir: &Path,
    kind: ModelKind,
    best_epoch: Option<usize>,
    metrics: &Metrics,
) -> Result<()> {
    let report = serde_json::json!({
        "kind": kind,
        "best_epoch": best_epoch,
        "metrics": metrics.to_json(),
    });
    write_json(&dir.join(REPORT_FILE), &report)
}

/// Adds or replaces `metrics` in the run's report, keeping what else it holds (the other
/// split's metrics, the best epoch), as `shopnet eval` does.
pub fn update_report(dir: &Path, kind: ModelKind, metrics: &Metrics) -> Result<()> {
    let path = dir.join(REPORT_FILE);
    let mut report: serde_json::Value = if path.is_file() {
        read_json(&path)?
    } else {
        serde_json::json!({ "kind": kind, "best_epoch": null, "metrics": {} })
    };
    if let Some(existing) = report.get_mut("metrics").and_then(|m| m.as_object_mut()) {
        existing.extend(metrics.to_json());
    }
    write_json(&path, &report)
}
