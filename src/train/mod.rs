//! The one training loop every model family uses.
//!
//! Written here rather than on burn-train's `SupervisedTraining` because the run contract
//! needs things that learner does not give together: host-seeded randomness per epoch (so
//! a CPU and a GPU run with one seed are the same run, and `--resume` replays exactly),
//! checkpoints whose files are renamed into place with `state.json` as the commit point,
//! resumable optimiser state keyed by parameter id, and full-batch graph training where an
//! "epoch" is a single step. A family plugs in through [`Task`]: batches, a loss, metrics.
//!
//! Its parts, as burn-train splits its learner: [`step`] (one optimiser step, also timed by
//! `shopnet bench`), [`early_stopping`], [`checkpoint`], [`metrics_log`], [`optim`] and
//! [`schedule`].

pub mod checkpoint;
pub mod early_stopping;
pub mod metrics_log;
pub mod optim;
pub mod schedule;
pub mod step;

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::{Device, Tensor};

use crate::artifacts::findings::{self, Findings};
use crate::artifacts::run_dir::{self, BEST_WEIGHTS, RunState, STATE_FILE};
use crate::artifacts::weights::{load_weights, save_weights};
use crate::base::config::{ModelKind, TrainConfig};
use crate::base::files::write_json;
use crate::base::metrics::Metrics;
use crate::base::progress::Progress;
use crate::base::rng::HostRng;
use crate::base::split::Split;
use early_stopping::EarlyStopping;
use schedule::LrSchedule;

/// A model family's glue: its net, its batches, its loss and its metrics. Implemented
/// once per family, in this order of use by [`fit`].
pub trait Task {
    type Model: Module + Clone;
    /// A cheap description of one training batch (indices, not tensors).
    type Batch;

    fn kind(&self) -> ModelKind;

    /// A freshly initialised net on `device`, its random weights drawn from `seed`.
    fn init_model(&self, seed: u64, device: &Device) -> Result<Self::Model>;

    /// How many batches `train_batches` returns, without building them.
    fn batches_per_epoch(&self) -> usize;

    /// The training batches of one epoch, shuffled with `rng`.
    fn train_batches(&self, rng: &mut HostRng) -> Result<Vec<Self::Batch>>;

    /// The scalar training loss of one batch; `rng` drives dropout.
    fn train_loss(
        &self,
        model: &Self::Model,
        batch: &Self::Batch,
        rng: &mut HostRng,
    ) -> Result<Tensor<1>>;

    /// Metrics on a split, with the model in inference mode. The first is the loss.
    fn evaluate(&self, model: &Self::Model, split: Split) -> Result<Metrics>;

    /// What the model did on a split, example by example, for `shopnet report`: the same
    /// metrics as [`Task::evaluate`], computed from the same predictions.
    fn findings(&self, model: &Self::Model, split: Split) -> Result<Findings>;

    /// A batch cut into at most `parts` parts for data-parallel training, each with its
    /// share of the batch's examples; `train_loss` builds a part's tensors on the device
    /// of the model it is given. `None` (the default) for a task whose batch cannot be
    /// split: full-batch graph training, or data kept on one device.
    fn split_batch(&self, _batch: &Self::Batch, _parts: usize) -> Option<Vec<(Self::Batch, f64)>> {
        None
    }
}

/// Where and how a run trains.
pub struct Fit<'a> {
    pub run_dir: &'a Path,
    pub config: &'a TrainConfig,
    pub checkpoint_secs: f64,
    pub device: &'a Device,
    /// How the user named the device(s), for the run's record.
    pub device_label: &'a str,
    /// More devices for data-parallel training (each batch split across `device` and
    /// these); empty for one device.
    pub replicas: &'a [Device],
    /// Stop cleanly after this many epochs in this invocation (the run stays resumable).
    pub stop_after: Option<usize>,
    /// What `Task::evaluate` reports, for checking the early-stopping metric.
    pub validation_metrics: &'a [String],
}

pub enum FitOutcome {
    Finished { best_epoch: usize, epochs_done: usize, report: Metrics },
    Paused { epochs_done: usize },
}

/// The training state between epochs.
struct Session<M> {
    model: M,
    optimizer: ModuleOptimizer,
    state: RunState,
    /// The best weights since the last checkpoint, written together with it so that
    /// best.safetensors always matches state.json.
    unsaved_best: Option<M>,
    last_checkpoint: Instant,
    /// Whether the user was told that data-parallel training does not apply.
    noted_one_device: bool,
}

// long: the epoch loop reads best as one piece; its steps are the helpers below.
pub fn fit<T: Task>(task: &T, fit: &Fit<'_>, resume: bool) -> Result<FitOutcome> {
    let config = fit.config;
    let stopping = EarlyStopping::new(&config.early_stopping, fit.validation_metrics)?;
    let mut session = start(task, fit, resume)?;

    let schedule = LrSchedule::new(config, task.batches_per_epoch());
    let mut log = metrics_log::MetricsLog::open(fit.run_dir, session.state.epochs_done)?;
    let progress =
        Progress::new(Some(config.epochs as u64), session.state.epochs_done as u64, "epochs");
    let mut epochs_this_run = 0;
    while session.state.epochs_done < config.epochs && !stopping.should_stop(&session.state) {
        let row = train_epoch(task, fit, &schedule, &mut session)?;
        let improved = stopping.update(&mut session.state, &row)?;
        if improved {
            session.unsaved_best = Some(session.model.clone());
        }
        log.append(&row)?;
        metrics_log::show_epoch(&progress, &row, config.epochs, improved);
        epochs_this_run += 1;
        let stop = stopping.should_stop(&session.state);
        let more_epochs = session.state.epochs_done < config.epochs && !stop;
        let pause = more_epochs && fit.stop_after.is_some_and(|n| epochs_this_run >= n);
        if !more_epochs
            || pause
            || session.last_checkpoint.elapsed().as_secs_f64() >= fit.checkpoint_secs
        {
            save_checkpoint(task, fit, &mut session)?;
        }
        if stop {
            progress.note(&format!(
                "early stop: {} has not improved for {} epochs",
                stopping.metric(),
                stopping.patience()
            ));
        }
        if pause {
            progress.finish();
            return Ok(FitOutcome::Paused { epochs_done: session.state.epochs_done });
        }
    }
    progress.finish();
    finish(task, fit, session.state)
}

/// A new session (with a checkpoint of its initial state, so that a run killed in its
/// first epoch can resume) or the one the run directory's last checkpoint holds.
fn start<T: Task>(task: &T, fit: &Fit<'_>, resume: bool) -> Result<Session<T::Model>> {
    let train_device = fit.device.clone().autodiff();
    let fresh = task.init_model(fit.config.seed, &train_device)?;
    // A run killed before its first checkpoint landed has no state yet: it starts over
    // in its own directory.
    let resumable = resume && fit.run_dir.join(STATE_FILE).is_file();
    if resume {
        checkpoint::remove_stale_temporaries(fit.run_dir);
    }
    let (model, optimizer, mut state) = if resumable {
        checkpoint::restore(fit.run_dir, fresh, optim::build(fit.config))?
    } else {
        (fresh, optim::build(fit.config), RunState::default())
    };
    state.device = Some(fit.device_label.to_string());
    if state.finished {
        bail!(
            "{}: this run already finished ({} epochs); start a new run to train more",
            fit.run_dir.display(),
            state.epochs_done
        );
    }
    if task.batches_per_epoch() == 0 {
        bail!("no training examples (the train split is empty)");
    }
    eprintln!(
        "{} {} -> {}",
        if resume { "resuming" } else { "training" },
        task.kind(),
        fit.run_dir.display()
    );
    let mut session = Session {
        model,
        optimizer,
        state,
        unsaved_best: None,
        last_checkpoint: Instant::now(),
        noted_one_device: false,
    };
    if !resumable {
        save_checkpoint(task, fit, &mut session)?;
    }
    Ok(session)
}

/// Trains one epoch and evaluates it: the row of metrics.csv.
fn train_epoch<T: Task>(
    task: &T,
    fit: &Fit<'_>,
    schedule: &LrSchedule,
    session: &mut Session<T::Model>,
) -> Result<Metrics> {
    let epoch = session.state.epochs_done;
    let started = Instant::now();
    let mut rng = HostRng::for_epoch(fit.config.seed, epoch);
    for device in std::iter::once(fit.device).chain(fit.replicas) {
        device.seed(fit.config.seed.wrapping_add(epoch as u64));
    }
    let batches = task.train_batches(&mut rng)?;
    let mut loss_sum = 0.0;
    let mut lr = schedule.at(session.state.steps_done);
    for batch in &batches {
        lr = schedule.at(session.state.steps_done);
        let (model, value) = train_step(task, fit, session, batch, lr, &mut rng)?;
        if !value.is_finite() {
            bail!(
                "training diverged: the loss is {value} at epoch {} step {} (try a lower train.lr or set train.clip_grad_norm)",
                epoch + 1,
                session.state.steps_done + 1
            );
        }
        session.model = model;
        loss_sum += value;
        session.state.steps_done += 1;
    }
    let train_seconds = started.elapsed().as_secs_f64();
    let mut row = Metrics::default();
    row.push("epoch", (epoch + 1) as f64);
    row.push("lr", lr);
    row.push("train_loss", loss_sum / batches.len().max(1) as f64);
    row.extend(task.evaluate(&session.model.valid(), Split::Val)?.prefixed("val_"));
    row.push("train_seconds", train_seconds);
    row.push("seconds", started.elapsed().as_secs_f64());
    session.state.epochs_done = epoch + 1;
    Ok(row)
}

/// One optimiser step on `batch`: on the training device, or split across it and the
/// replicas.
fn train_step<T: Task>(
    task: &T,
    fit: &Fit<'_>,
    session: &mut Session<T::Model>,
    batch: &T::Batch,
    lr: f64,
    rng: &mut HostRng,
) -> Result<(T::Model, f64)> {
    let devices = 1 + fit.replicas.len();
    let parts = if devices > 1 { task.split_batch(batch, devices) } else { None };
    let Some(parts) = parts else {
        if devices > 1 && !session.noted_one_device {
            session.noted_one_device = true;
            eprintln!(
                "note: a {} batch cannot be split across devices (full-batch training, or data kept on one device): training on the first device only",
                task.kind()
            );
        }
        let loss = task.train_loss(&session.model, batch, rng)?;
        return Ok(step::optimizer_step(session.model.clone(), loss, &mut session.optimizer, lr));
    };
    let main = fit.device.clone().autodiff();
    let placed = std::iter::once(fit.device)
        .chain(fit.replicas)
        .zip(parts)
        .map(|(device, (part, share))| (device.clone().autodiff(), part, share))
        .collect();
    let (grads, value) =
        step::data_parallel_gradients(&session.model, &main, placed, |replica, part| {
            task.train_loss(replica, part, rng)
        })?;
    Ok((session.optimizer.step(lr, session.model.clone(), grads), value))
}

fn save_checkpoint<T: Task>(
    task: &T,
    fit: &Fit<'_>,
    session: &mut Session<T::Model>,
) -> Result<()> {
    if let Some(best) = session.unsaved_best.take() {
        save_weights(&best, task.kind(), &fit.run_dir.join(BEST_WEIGHTS))?;
    }
    checkpoint::save(fit.run_dir, &session.model, &session.optimizer, &session.state, task.kind())?;
    session.last_checkpoint = Instant::now();
    Ok(())
}

/// Evaluates the best epoch's weights on the validation and test splits and marks the
/// run finished. A run killed in here resumes straight back here.
fn finish<T: Task>(task: &T, fit: &Fit<'_>, mut state: RunState) -> Result<FitOutcome> {
    let best_epoch = state.best_epoch.context("no epoch was trained")?;
    let fresh = task.init_model(fit.config.seed, fit.device)?;
    let best = load_weights(fresh, task.kind(), &fit.run_dir.join(BEST_WEIGHTS))?;
    let mut report = task.evaluate(&best, Split::Val)?.prefixed("val_");
    // The test split's findings carry its metrics: one pass gives both the report's
    // numbers and what `shopnet report` draws.
    let test = task.findings(&best, Split::Test)?;
    report.extend(test.metrics.prefixed("test_"));
    findings::save(fit.run_dir, &test)?;
    run_dir::write_report(fit.run_dir, task.kind(), Some(best_epoch), &report)?;
    state.finished = true;
    write_json(&fit.run_dir.join(STATE_FILE), &state)?;
    Ok(FitOutcome::Finished { best_epoch, epochs_done: state.epochs_done, report })
}
