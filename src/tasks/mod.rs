//! Model + data + loss + metrics glue, one module per kind of job.
//!
//! The CLI talks to a model family only through [`Family`], picked by `model.kind`, so
//! `train`, `eval`, `score` and `export` are the same commands for every net.

pub mod images;
pub mod node_classification;
pub mod purchase_intent;
pub mod recommendation;
pub mod sentiment;

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use burn::module::Module;
use burn::tensor::Device;

use crate::config::{ConfigDoc, ModelKind, RunConfig};
use crate::data::Split;
use crate::metrics::Metrics;
use crate::models::{gat::Gat, gcn::Gcn};
use crate::run_dir::{self, Artifacts, RunInfo};
use crate::train::{self, Fit, FitOutcome, Task};

/// A training job as the CLI resolved it.
pub struct TrainJob<'a> {
    pub config: &'a ConfigDoc,
    pub run_dir: &'a Path,
    pub device: &'a Device,
    pub resume: bool,
    pub stop_after: Option<usize>,
}

/// What a finished (or paused) training job reports back.
pub struct TrainSummary {
    pub run_dir: PathBuf,
    /// `None` when the job stopped early on `--stop-after` and can be resumed.
    pub best_epoch: Option<usize>,
    pub epochs_done: usize,
    pub report: Metrics,
}

pub trait Family {
    fn train(&self, job: TrainJob<'_>) -> Result<TrainSummary>;

    /// Metrics of a trained model on one split of its configured data.
    fn evaluate(&self, artifacts: &Artifacts, split: Split, device: &Device) -> Result<Metrics>;

    /// Scores `input` and writes one row per example to `output`; returns the row count.
    fn score(&self, artifacts: &Artifacts, input: &str, output: &Path, device: &Device) -> Result<usize>;

    /// Writes the top `k` items of each user (`users` is `all` or a file of user ids).
    fn recommend(&self, _artifacts: &Artifacts, _users: &str, _k: usize, _output: &Path, _device: &Device) -> Result<usize> {
        bail!("only recommender models (model.kind = \"recommender\") recommend items; use `shopnet score`")
    }

    /// Writes one L2-normalised embedding per input image to an index at `output`;
    /// returns the row count.
    fn embed(&self, _artifacts: &Artifacts, _input: &str, _output: &Path, _device: &Device) -> Result<usize> {
        bail!("only image models (model.kind = \"vgg\") make embeddings")
    }

    /// The input and output formats, for an export manifest.
    fn schema(&self, artifacts: &Artifacts) -> serde_json::Value;

    /// Files of the run besides weights and config that scoring needs (a vocabulary, a
    /// tokenizer): `export` copies them into the bundle.
    fn run_files(&self) -> &'static [&'static str] {
        &[]
    }
}

pub fn family(kind: ModelKind) -> Box<dyn Family> {
    match kind {
        ModelKind::Gcn => Box::new(node_classification::NodeFamily::<Gcn>::default()),
        ModelKind::Gat => Box::new(node_classification::NodeFamily::<Gat>::default()),
        ModelKind::Recommender => Box::new(recommendation::RecommenderFamily),
        ModelKind::Intent => Box::new(purchase_intent::IntentFamily),
        ModelKind::Vgg => Box::new(images::ImageFamily),
        ModelKind::Bert => Box::new(sentiment::SentimentFamily),
    }
}

/// Writes the run's files and trains `task` with the shared loop.
pub fn train_task<T: Task, M: serde::Serialize, D: serde::Serialize>(
    job: &TrainJob<'_>,
    config: &RunConfig<M, D>,
    task: &T,
    labels: Vec<String>,
    input: serde_json::Value,
) -> Result<TrainSummary> {
    let info = RunInfo {
        kind: task.kind(),
        shopnet_version: env!("CARGO_PKG_VERSION").into(),
        labels,
        input,
        parameters: task.init_model(config.train.seed, job.device).num_params(),
    };
    write_run_files(job.run_dir, config, &info, job.resume)?;
    let fit = Fit {
        run_dir: job.run_dir,
        config: &config.train,
        checkpoint_secs: config.runtime.checkpoint_secs,
        device: job.device,
        stop_after: job.stop_after,
    };
    Ok(summarize(job.run_dir, train::fit(task, &fit, job.resume)?))
}

/// What the trainer's outcome means to the CLI.
fn summarize(run_dir: &Path, outcome: FitOutcome) -> TrainSummary {
    match outcome {
        FitOutcome::Finished { best_epoch, report } => {
            TrainSummary { run_dir: run_dir.to_path_buf(), best_epoch: Some(best_epoch), epochs_done: 0, report }
        }
        FitOutcome::Paused { epochs_done } => {
            TrainSummary { run_dir: run_dir.to_path_buf(), best_epoch: None, epochs_done, report: Metrics::default() }
        }
    }
}

/// Writes the fully resolved config (defaults included) and, for a new run, `run.json`.
/// A resumed run must still describe the same net and classes.
fn write_run_files<M: serde::Serialize, D: serde::Serialize>(dir: &Path, config: &RunConfig<M, D>, info: &RunInfo, resume: bool) -> Result<()> {
    let resolved = toml::to_string_pretty(config)?;
    let text = format!("# Resolved by shopnet {}: every setting of this run, defaults included.\n{resolved}", env!("CARGO_PKG_VERSION"));
    let info_path = dir.join(run_dir::RUN_FILE);
    if resume {
        let existing: RunInfo = run_dir::read_json(&info_path)?;
        if existing.kind != info.kind || existing.labels != info.labels || existing.input != info.input {
            bail!("{}: the run was trained on other data or another net than its config now describes", info_path.display());
        }
    } else {
        run_dir::write_json(&info_path, info)?;
    }
    run_dir::write_atomic(&dir.join(run_dir::CONFIG_FILE), text.as_bytes())
}
