//! The generic commands: `train`, `eval`, `score` and `export` written once for every
//! [`Family`].

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use burn::module::Module;
use burn::tensor::Device;

use super::family::{BatchJob, Config, Family, Net, Trained};
use super::online::Served;
use crate::artifacts::bundle;
use crate::artifacts::findings::{self, Findings};
use crate::artifacts::manifest::MANIFEST_FILE;
use crate::artifacts::opened::Artifacts;
use crate::artifacts::run_dir::{self, CONFIG_FILE, RUN_FILE, RunInfo, RunState, STATE_FILE};
use crate::artifacts::weights::load_weights;
use crate::base::config::ConfigDoc;
use crate::base::files::{read_json, write_atomic, write_json};
use crate::base::metrics::Metrics;
use crate::base::split::Split;
use crate::train::early_stopping::EarlyStopping;
use crate::train::{self, Fit, FitOutcome, Task};

/// Where a training job writes.
pub enum RunTarget {
    /// A new run directory `<out>/<name>-<timestamp>`, created once config and data are valid.
    New { out: PathBuf, name: String },
    /// An existing run directory to resume.
    Resume(PathBuf),
}

/// A training job as the CLI resolved it.
pub struct TrainJob<'a> {
    pub config: &'a ConfigDoc,
    pub target: RunTarget,
    pub device: &'a Device,
    /// How the user named the device(s).
    pub device_label: &'a str,
    /// More devices for data-parallel training.
    pub replicas: &'a [Device],
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

/// The config read and checked as family `F`'s, early-stopping metric included.
pub fn config<F: Family>(doc: &ConfigDoc) -> Result<Config<F>> {
    let config: Config<F> = doc.typed()?;
    F::validate(&config).map_err(|err| anyhow!("{}: {err:#}", doc.origin))?;
    EarlyStopping::new(&config.train.early_stopping, &F::metric_names(&config))
        .map_err(|err| anyhow!("{}: {err}", doc.origin))?;
    Ok(config)
}

pub fn train<F: Family>(job: TrainJob<'_>) -> Result<TrainSummary> {
    let config = config::<F>(job.config)?;
    let resume_from = match &job.target {
        RunTarget::Resume(dir) => Some(dir.clone()),
        RunTarget::New { .. } => None,
    };
    let prepared = F::prepare(&config, job.device, resume_from.as_deref())?;
    let info = RunInfo {
        kind: F::KIND,
        shopnet_version: env!("CARGO_PKG_VERSION").into(),
        labels: prepared.labels,
        input: serde_json::to_value(&prepared.input)?,
        parameters: prepared.task.init_model(config.train.seed, job.device)?.num_params(),
    };
    let run_dir = match job.target {
        RunTarget::Resume(dir) => {
            check_same_run(&dir, &info)?;
            dir
        }
        RunTarget::New { out, name } => {
            // run.json last: a directory that has it holds everything a resume needs.
            let dir = run_dir::create_run_dir(&out, &name)?;
            for (name, bytes) in &prepared.run_files {
                write_atomic(&dir.join(name), bytes)?;
            }
            write_resolved_config(&dir, &config)?;
            write_json(&dir.join(RUN_FILE), &info)?;
            dir
        }
    };
    let validation_metrics = F::metric_names(&config);
    let fit = Fit {
        run_dir: &run_dir,
        config: &config.train,
        checkpoint_secs: config.runtime.checkpoint_secs,
        device: job.device,
        device_label: job.device_label,
        replicas: job.replicas,
        stop_after: job.stop_after,
        validation_metrics: &validation_metrics,
    };
    let outcome = train::fit(&prepared.task, &fit, resume_from.is_some())?;
    Ok(summarize(run_dir, outcome))
}

/// A resumed run must still describe the same net, classes and input.
fn check_same_run(dir: &Path, info: &RunInfo) -> Result<()> {
    let path = dir.join(RUN_FILE);
    let existing: RunInfo = read_json(&path)?;
    if existing.kind != info.kind || existing.labels != info.labels || existing.input != info.input
    {
        bail!(
            "{}: the run was trained on other data or another net than its config now describes",
            path.display()
        );
    }
    Ok(())
}

/// Writes the fully resolved config (defaults included).
fn write_resolved_config<M: serde::Serialize, D: serde::Serialize>(
    dir: &Path,
    config: &crate::base::config::RunConfig<M, D>,
) -> Result<()> {
    let resolved = toml::to_string_pretty(config)?;
    let text = format!(
        "# Resolved by shopnet {}: every setting of this run, defaults included.\n{resolved}",
        env!("CARGO_PKG_VERSION")
    );
    write_atomic(&dir.join(CONFIG_FILE), text.as_bytes())
}

fn summarize(run_dir: PathBuf, outcome: FitOutcome) -> TrainSummary {
    match outcome {
        FitOutcome::Finished { best_epoch, epochs_done, report } => {
            TrainSummary { run_dir, best_epoch: Some(best_epoch), epochs_done, report }
        }
        FitOutcome::Paused { epochs_done } => {
            TrainSummary { run_dir, best_epoch: None, epochs_done, report: Metrics::default() }
        }
    }
}

/// A run or bundle read as family `F`'s: config checked, input typed, a bundle's own
/// files verified.
pub fn open<F: Family>(artifacts: Artifacts) -> Result<Trained<F>> {
    let config = config::<F>(&artifacts.config)?;
    let source = artifacts.dir.join(if artifacts.is_bundle() { MANIFEST_FILE } else { RUN_FILE });
    let input: F::Input = serde_json::from_value(artifacts.info.input.clone())
        .map_err(|err| anyhow!("{}: input: {err}", source.display()))?;
    if let Some(manifest) = &artifacts.manifest {
        manifest.require(&artifacts.dir, F::RUN_FILES)?;
    }
    Ok(Trained { artifacts, config, input })
}

/// The trained net, its weights loaded.
pub fn load_net<F: Family>(trained: &Trained<F>, device: &Device) -> Result<Net<F>> {
    load_weights(F::net(trained, device)?, F::KIND, &trained.artifacts.weights)
}

pub fn evaluate<F: Family>(artifacts: Artifacts, split: Split, device: &Device) -> Result<Metrics> {
    let dir = artifacts.dir.clone();
    let is_bundle = artifacts.is_bundle();
    let findings = findings::<F>(artifacts, split, device)?;
    if !is_bundle {
        run_dir::update_report(&dir, F::KIND, &findings.metrics.prefixed(&format!("{split}_")))?;
    }
    Ok(findings.metrics)
}

/// What the trained net does on `split`, example by example (its metrics included); kept
/// in a finished run for `shopnet report`.
pub fn findings<F: Family>(
    artifacts: Artifacts,
    split: Split,
    device: &Device,
) -> Result<Findings> {
    if !F::EVAL_SPLITS.contains(&split) {
        let accepted: Vec<String> = F::EVAL_SPLITS.iter().map(|s| format!("--split {s}")).collect();
        bail!(
            "{}: a {} model has no {split} split to evaluate (its test split picks the best epoch); use {}",
            artifacts.dir.display(),
            F::KIND,
            accepted.join(" or ")
        );
    }
    let trained = open::<F>(artifacts)?;
    let task = F::restore(&trained, device)?;
    let net = load_net(&trained, device)?;
    let findings = task.findings(&net, split)?;
    let dir = &trained.artifacts.dir;
    // An unfinished run's best weights may still change: its findings are not kept.
    let finished = !trained.artifacts.is_bundle()
        && read_json::<RunState>(&dir.join(STATE_FILE)).is_ok_and(|state| state.finished);
    if finished {
        findings::save(dir, &findings)?;
    }
    Ok(findings)
}

pub fn score<F: Family>(
    artifacts: Artifacts,
    job: &BatchJob<'_>,
    device: &Device,
) -> Result<usize> {
    let trained = open::<F>(artifacts)?;
    F::score(&trained, job, device)
}

pub fn export<F: Family>(artifacts: Artifacts, out: &Path) -> Result<()> {
    let trained = open::<F>(artifacts)?;
    bundle::export(&trained.artifacts, F::schema(&trained), F::RUN_FILES, out)
}

/// A bundle's model loaded for online inference.
pub fn online<F: Family>(artifacts: Artifacts, device: &Device) -> Result<Box<dyn Served>> {
    F::online(open::<F>(artifacts)?, device)
}
