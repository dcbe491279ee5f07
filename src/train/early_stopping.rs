//! Which epoch is the best so far, and when to stop waiting for a better one.

use anyhow::{Result, anyhow, bail};

use crate::artifacts::run_dir::RunState;
use crate::base::config::{Direction, EarlyStoppingConfig};
use crate::base::metrics::Metrics;

pub struct EarlyStopping<'a> {
    config: &'a EarlyStoppingConfig,
}

impl<'a> EarlyStopping<'a> {
    /// Checks `early_stopping.metric` against the metrics an epoch row will hold
    /// (`train_loss` and `val_` + each of `validation_metrics`), before any work is done.
    pub fn new(config: &'a EarlyStoppingConfig, validation_metrics: &[String]) -> Result<Self> {
        let known: Vec<String> = std::iter::once("train_loss".to_string())
            .chain(validation_metrics.iter().map(|m| format!("val_{m}")))
            .collect();
        if !known.contains(&config.metric) {
            bail!(
                "train.early_stopping.metric: {:?} is not a metric of this model (have {})",
                config.metric,
                known.join(", ")
            );
        }
        Ok(Self { config })
    }

    pub fn metric(&self) -> &str {
        &self.config.metric
    }

    /// Records epoch `row` in `state`; returns whether it is the best epoch so far.
    pub fn update(&self, state: &mut RunState, row: &Metrics) -> Result<bool> {
        let name = &self.config.metric;
        let value = row.get(name).ok_or_else(|| {
            anyhow!(
                "train.early_stopping.metric: {name} is undefined at epoch {} (have {})",
                state.epochs_done,
                row.names().collect::<Vec<_>>().join(", ")
            )
        })?;
        let improved = match (state.best_value, self.config.direction) {
            (None, _) => true,
            (Some(best), Direction::Min) => value < best,
            (Some(best), Direction::Max) => value > best,
        };
        if improved {
            state.best_value = Some(value);
            state.best_epoch = Some(state.epochs_done);
            state.epochs_without_improvement = 0;
        } else {
            state.epochs_without_improvement += 1;
        }
        Ok(improved)
    }

    /// Whether patience has run out (never with `patience = 0`).
    pub fn should_stop(&self, state: &RunState) -> bool {
        self.config.patience > 0 && state.epochs_without_improvement >= self.config.patience
    }

    pub fn patience(&self) -> usize {
        self.config.patience
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(value: f64) -> Metrics {
        let mut row = Metrics::default();
        row.push("val_loss", value);
        row
    }

    #[test]
    fn tracks_the_best_epoch_and_runs_out_of_patience() {
        let config = EarlyStoppingConfig {
            metric: "val_loss".into(),
            direction: Direction::Min,
            patience: 2,
        };
        let stopping = EarlyStopping::new(&config, &["loss".into()]).unwrap();
        let mut state = RunState::default();
        let mut improved = Vec::new();
        for value in [1.0, 0.5, 0.7, 0.6] {
            state.epochs_done += 1;
            improved.push(stopping.update(&mut state, &row(value)).unwrap());
        }
        assert_eq!(improved, [true, true, false, false]);
        assert_eq!((state.best_epoch, state.best_value), (Some(2), Some(0.5)));
        assert!(stopping.should_stop(&state));
    }

    #[test]
    fn unknown_metric_is_refused_up_front() {
        let config = EarlyStoppingConfig {
            metric: "val_acc".into(),
            direction: Direction::Max,
            patience: 0,
        };
        let err = EarlyStopping::new(&config, &["loss".into(), "accuracy".into()])
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            err,
            "train.early_stopping.metric: \"val_acc\" is not a metric of this model (have train_loss, val_loss, val_accuracy)"
        );
    }
}
