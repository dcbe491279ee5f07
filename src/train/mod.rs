//! The one training loop every model family uses.
//!
//! Written here rather than on burn-train's `SupervisedTraining` because the run contract
//! needs things that learner does not give together: host-seeded randomness per epoch (so
//! a CPU and a GPU run with one seed are the same run, and `--resume` replays exactly),
//! checkpoints whose files are renamed into place with `state.json` as the commit point,
//! resumable optimiser state keyed by parameter id, and full-batch graph training where an
//! "epoch" is a single step. A family plugs in through [`Task`]: batches, a loss, metrics.

pub mod optim;
pub mod schedule;

use std::fs;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device, Tensor};
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::{Direction, ModelKind, TrainConfig};
use crate::data::Split;
use crate::metrics::Metrics;
use crate::models::random::HostRng;
use crate::run_dir::{self, RunState};
use schedule::LrSchedule;

/// A model family's glue: its net, its batches, its loss and its metrics.
pub trait Task {
    type Model: Module + Clone;
    /// A cheap description of one training batch (indices, not tensors).
    type Batch;

    fn kind(&self) -> ModelKind;

    /// A freshly initialised net on `device`, its random weights drawn from `seed`.
    fn init_model(&self, seed: u64, device: &Device) -> Self::Model;

    /// How many batches `train_batches` returns, without building them.
    fn batches_per_epoch(&self) -> usize;

    /// The training batches of one epoch, shuffled with `rng`.
    fn train_batches(&self, rng: &mut HostRng) -> Vec<Self::Batch>;

    /// The scalar training loss of one batch; `rng` drives dropout.
    fn train_loss(&self, model: &Self::Model, batch: &Self::Batch, rng: &mut HostRng) -> Tensor<1>;

    /// Metrics on a split, with the model in inference mode. The first is the loss.
    fn evaluate(&self, model: &Self::Model, split: Split) -> Result<Metrics>;
}

/// Where and how a run trains.
pub struct Fit<'a> {
    pub run_dir: &'a Path,
    pub config: &'a TrainConfig,
    pub checkpoint_secs: f64,
    pub device: &'a Device,
    /// Stop cleanly after this many epochs in this invocation (the run stays resumable).
    pub stop_after: Option<usize>,
}

pub enum FitOutcome {
    Finished { best_epoch: usize, report: Metrics },
    Paused { epochs_done: usize },
}

pub fn fit<T: Task>(task: &T, fit: &Fit<'_>, resume: bool) -> Result<FitOutcome> {
    let config = fit.config;
    let train_device = fit.device.clone().autodiff();
    let (mut model, mut optimizer, mut state) = if resume {
        restore(task, fit.run_dir, config, &train_device)?
    } else {
        (task.init_model(config.seed, &train_device), optim::build(config), RunState::default())
    };
    if state.finished {
        bail!("{}: this run already finished ({} epochs); start a new run to train more", fit.run_dir.display(), state.epochs_done);
    }
    eprintln!("{} {} -> {}", if resume { "resuming" } else { "training" }, task.kind(), fit.run_dir.display());
    let batches_per_epoch = task.batches_per_epoch();
    if batches_per_epoch == 0 {
        bail!("no training examples (the train split is empty)");
    }
    let schedule = LrSchedule::new(config, batches_per_epoch);
    let mut log = MetricsLog::open(fit.run_dir, state.epochs_done)?;
    let progress = Progress::new(config.epochs, state.epochs_done);
    let mut epochs_this_run = 0;
    let mut last_checkpoint = Instant::now();
    // The best weights since the last checkpoint, written together with it so that
    // best.safetensors always matches state.json.
    let mut unsaved_best: Option<T::Model> = None;

    while state.epochs_done < config.epochs {
        let epoch = state.epochs_done;
        let started = Instant::now();
        let mut rng = HostRng::for_epoch(config.seed, epoch);
        fit.device.seed(config.seed.wrapping_add(epoch as u64));
        let mut loss_sum = 0.0;
        let batches = task.train_batches(&mut rng);
        let mut lr = schedule.at(state.steps_done);
        for batch in &batches {
            lr = schedule.at(state.steps_done);
            let loss = task.train_loss(&model, batch, &mut rng);
            let value: f64 = loss.clone().into_scalar::<f32>().into();
            if !value.is_finite() {
                bail!("training diverged: the loss is {value} at epoch {} step {} (try a lower train.lr or set train.clip_grad_norm)", epoch + 1, state.steps_done + 1);
            }
            loss_sum += value;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(lr, model, grads);
            state.steps_done += 1;
        }

        let train_seconds = started.elapsed().as_secs_f64();
        let mut row = Metrics::default();
        row.push("epoch", (epoch + 1) as f64);
        row.push("lr", lr);
        row.push("train_loss", loss_sum / batches.len() as f64);
        row.extend(task.evaluate(&model.valid(), Split::Val)?.prefixed("val_"));
        row.push("train_seconds", train_seconds);
        row.push("seconds", started.elapsed().as_secs_f64());

        let monitored_name = &config.early_stopping.metric;
        let monitored = row.get(monitored_name).ok_or_else(|| {
            anyhow!("train.early_stopping.metric: {monitored_name:?} is not a metric of this run (have {})", row.names().collect::<Vec<_>>().join(", "))
        })?;
        let improved = match (state.best_value, config.early_stopping.direction) {
            (None, _) => true,
            (Some(best), Direction::Min) => monitored < best,
            (Some(best), Direction::Max) => monitored > best,
        };
        state.epochs_done = epoch + 1;
        if improved {
            state.best_value = Some(monitored);
            state.best_epoch = Some(epoch + 1);
            state.epochs_without_improvement = 0;
            unsaved_best = Some(model.clone());
        } else {
            state.epochs_without_improvement += 1;
        }
        log.append(&row)?;
        progress.epoch(&row, improved);

        epochs_this_run += 1;
        let patience = config.early_stopping.patience;
        let early_stop = patience > 0 && state.epochs_without_improvement >= patience;
        let pause = fit.stop_after.is_some_and(|n| epochs_this_run >= n) && state.epochs_done < config.epochs;
        let last_epoch = early_stop || pause || state.epochs_done == config.epochs;
        if last_epoch || last_checkpoint.elapsed().as_secs_f64() >= fit.checkpoint_secs {
            if let Some(best) = unsaved_best.take() {
                run_dir::save_weights(&best, task.kind(), &fit.run_dir.join(run_dir::BEST_WEIGHTS))?;
            }
            save_checkpoint(fit.run_dir, &model, &optimizer, &state, task.kind())?;
            last_checkpoint = Instant::now();
        }
        if early_stop {
            progress.note(&format!("early stop: {monitored_name} has not improved for {patience} epochs"));
            break;
        }
        if pause {
            progress.finish();
            return Ok(FitOutcome::Paused { epochs_done: state.epochs_done });
        }
    }
    progress.finish();

    let best_epoch = state.best_epoch.expect("at least one epoch ran");
    let best = run_dir::load_weights(task.init_model(config.seed, fit.device), task.kind(), &fit.run_dir.join(run_dir::BEST_WEIGHTS))?;
    let mut report = task.evaluate(&best, Split::Val)?.prefixed("val_");
    report.extend(task.evaluate(&best, Split::Test)?.prefixed("test_"));
    write_report(fit.run_dir, task.kind(), Some(best_epoch), &report)?;
    state.finished = true;
    run_dir::write_json(&fit.run_dir.join(run_dir::STATE_FILE), &state)?;
    Ok(FitOutcome::Finished { best_epoch, report })
}

fn write_report(dir: &Path, kind: ModelKind, best_epoch: Option<usize>, metrics: &Metrics) -> Result<()> {
    let report = serde_json::json!({
        "kind": kind,
        "best_epoch": best_epoch,
        "metrics": metrics.to_json(),
    });
    run_dir::write_json(&dir.join(run_dir::REPORT_FILE), &report)
}

/// Adds or replaces `metrics` in the run's report, keeping what else it holds (the other
/// split's metrics, the best epoch), as `shopnet eval` does.
pub fn update_report(dir: &Path, kind: ModelKind, metrics: &Metrics) -> Result<()> {
    let path = dir.join(run_dir::REPORT_FILE);
    let mut report: serde_json::Value = if path.is_file() {
        run_dir::read_json(&path)?
    } else {
        serde_json::json!({ "kind": kind, "best_epoch": null, "metrics": {} })
    };
    if let Some(existing) = report.get_mut("metrics").and_then(|m| m.as_object_mut()) {
        existing.extend(metrics.to_json());
    }
    run_dir::write_json(&path, &report)
}

fn restore<T: Task>(task: &T, dir: &Path, config: &TrainConfig, device: &Device) -> Result<(T::Model, ModuleOptimizer, RunState)> {
    let state: RunState = run_dir::read_json(&dir.join(run_dir::STATE_FILE))?;
    let (model_file, optim_file) = state.resume_files();
    let read = |name: &str| -> Result<Bytes> {
        let path = dir.join(name);
        let bytes = fs::read(&path).with_context(|| format!("{}: cannot read the resume checkpoint", path.display()))?;
        Ok(Bytes::from_bytes_vec(bytes))
    };
    let record = ModuleRecord::from_bytes(read(&model_file)?).map_err(|err| anyhow!("{}: {err:?}", dir.join(&model_file).display()))?;
    let model = task.init_model(config.seed, device).load_record(record);
    let optimizer = optim::build(config)
        .from_bytes(read(&optim_file)?)
        .map_err(|err| anyhow!("{}: {err:?}", dir.join(&optim_file).display()))?;
    Ok((model, optimizer, state))
}

/// Writes the last epoch's weights and resume records, then `state.json` naming them:
/// until that rename the previous checkpoint stays the valid one.
fn save_checkpoint<M: Module + Clone>(dir: &Path, model: &M, optimizer: &ModuleOptimizer, state: &RunState, kind: ModelKind) -> Result<()> {
    let (model_file, optim_file) = state.resume_files();
    let model_bytes = model.clone().into_record().into_bytes().map_err(|err| anyhow!("cannot serialise the model: {err:?}"))?;
    run_dir::write_atomic(&dir.join(&model_file), &model_bytes)?;
    let optim_bytes = optimizer.into_bytes().map_err(|err| anyhow!("cannot serialise the optimiser: {err:?}"))?;
    run_dir::write_atomic(&dir.join(&optim_file), &optim_bytes)?;
    run_dir::save_weights(model, kind, &dir.join(run_dir::LAST_WEIGHTS))?;
    run_dir::write_json(&dir.join(run_dir::STATE_FILE), state)?;
    for entry in fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("resume-") && name != model_file && name != optim_file {
            let _ = fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// `metrics.csv` and `metrics.jsonl`, one row per epoch. On resume, rows past the last
/// checkpoint (written by an epoch whose checkpoint never landed) are dropped.
struct MetricsLog {
    csv: fs::File,
    jsonl: fs::File,
    has_header: bool,
}

impl MetricsLog {
    fn open(dir: &Path, epochs_done: usize) -> Result<Self> {
        let csv_path = dir.join(run_dir::METRICS_CSV);
        let jsonl_path = dir.join(run_dir::METRICS_JSONL);
        let keep = |path: &Path, is_header: &dyn Fn(&str) -> bool, epoch_of: &dyn Fn(&str) -> Option<usize>| -> Result<String> {
            let text = fs::read_to_string(path).unwrap_or_default();
            Ok(text
                .lines()
                .filter(|line| is_header(line) || epoch_of(line).is_some_and(|e| e <= epochs_done))
                .map(|line| format!("{line}\n"))
                .collect())
        };
        let csv_text = keep(&csv_path, &|l| l.starts_with("epoch,"), &|l| l.split(',').next()?.parse().ok())?;
        let jsonl_text = keep(&jsonl_path, &|_| false, &|l| serde_json::from_str::<serde_json::Value>(l).ok()?.get("epoch")?.as_u64().map(|e| e as usize))?;
        run_dir::write_atomic(&csv_path, csv_text.as_bytes())?;
        run_dir::write_atomic(&jsonl_path, jsonl_text.as_bytes())?;
        let append = |path: &Path| fs::OpenOptions::new().append(true).open(path).with_context(|| format!("{}: cannot open", path.display()));
        Ok(Self { csv: append(&csv_path)?, jsonl: append(&jsonl_path)?, has_header: !csv_text.is_empty() })
    }

    fn append(&mut self, row: &Metrics) -> Result<()> {
        if !self.has_header {
            writeln!(self.csv, "{}", row.names().collect::<Vec<_>>().join(","))?;
            self.has_header = true;
        }
        let values: Vec<String> = row.0.iter().map(|(n, v)| if n == "epoch" { format!("{v}") } else { format!("{v:.6}") }).collect();
        writeln!(self.csv, "{}", values.join(","))?;
        let mut json = row.to_json();
        json.insert("epoch".into(), serde_json::json!(row.get("epoch").unwrap_or_default() as u64));
        writeln!(self.jsonl, "{}", serde_json::Value::Object(json))?;
        Ok(())
    }
}

/// A progress bar on a terminal; one concise line per epoch otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    total: usize,
}

impl Progress {
    fn new(total: usize, done: usize) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total as u64).with_position(done as u64);
            bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} epochs [{elapsed} < {eta}] {msg}").expect("static template"));
            bar
        });
        Self { bar, total }
    }

    fn epoch(&self, row: &Metrics, improved: bool) {
        let summary: Vec<String> = row
            .0
            .iter()
            .filter(|(n, _)| n != "epoch" && !n.ends_with("seconds"))
            .map(|(n, v)| if n == "lr" { format!("{n} {v:.2e}") } else { format!("{n} {v:.4}") })
            .collect();
        let summary = summary.join("  ");
        let mark = if improved { " *" } else { "" };
        match &self.bar {
            Some(bar) => {
                bar.inc(1);
                bar.set_message(format!("{summary}{mark}"));
            }
            None => {
                let epoch = row.get("epoch").unwrap_or_default() as usize;
                let seconds = row.get("seconds").unwrap_or_default();
                eprintln!("epoch {epoch:>4}/{}  {summary}  {seconds:.2}s{mark}", self.total);
            }
        }
    }

    fn note(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.println(message),
            None => eprintln!("{message}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}
