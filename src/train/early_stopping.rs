//! Which epoch is the best so far, and when to stop waiting for a better one: by one
//! validation metric, or by several as the GAT reference implementation does (patience
//! resets when any of them reaches its best so far, the checkpoint is kept when all do).

use anyhow::{Result, anyhow, bail};

use crate::artifacts::run_dir::RunState;
use crate::base::config::{Direction, EarlyStoppingConfig, WatchedMetric};
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
        let watched = std::iter::once((&config.metric, "metric"))
            .chain(config.also.iter().map(|w| (&w.metric, "also")));
        for (at, (metric, key)) in watched.enumerate() {
            if !known.contains(metric) {
                bail!(
                    "train.early_stopping.{key}: {metric:?} is not a metric of this model (have {})",
                    known.join(", ")
                );
            }
            if config.also[..at.saturating_sub(1)].iter().any(|w| &w.metric == metric)
                || (at > 0 && metric == &config.metric)
            {
                bail!("train.early_stopping.also: {metric:?} is watched twice");
            }
        }
        Ok(Self { config })
    }

    /// Every watched metric, `metric` first.
    fn watched(&self) -> Vec<WatchedMetric> {
        let first =
            WatchedMetric { metric: self.config.metric.clone(), direction: self.config.direction };
        std::iter::once(first).chain(self.config.also.iter().cloned()).collect()
    }

    fn value(&self, state: &RunState, row: &Metrics, name: &str) -> Result<f64> {
        row.get(name).ok_or_else(|| {
            anyhow!(
                "train.early_stopping: {name} is undefined at epoch {} (have {})",
                state.epochs_done,
                row.names().collect::<Vec<_>>().join(", ")
            )
        })
    }

    pub fn metric(&self) -> &str {
        &self.config.metric
    }

    /// Records epoch `row` in `state`; returns whether it is the best epoch so far.
    pub fn update(&self, state: &mut RunState, row: &Metrics) -> Result<bool> {
        if !self.config.also.is_empty() {
            return self.update_watching_several(state, row);
        }
        let value = self.value(state, row, &self.config.metric)?;
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

    /// The reference rule over several metrics; ties count as reaching the best, as there.
    fn update_watching_several(&self, state: &mut RunState, row: &Metrics) -> Result<bool> {
        let watched = self.watched();
        let values = watched
            .iter()
            .map(|w| self.value(state, row, &w.metric))
            .collect::<Result<Vec<f64>>>()?;
        let reached: Vec<bool> = if state.best_values.len() == values.len() {
            let pairs = watched.iter().zip(values.iter().zip(&state.best_values));
            pairs
                .map(|(w, (&value, &best))| match w.direction {
                    Direction::Min => value <= best,
                    Direction::Max => value >= best,
                })
                .collect()
        } else {
            vec![true; values.len()]
        };
        let bests = watched.iter().zip(values.iter().zip(&state.best_values));
        state.best_values = if state.best_values.len() == values.len() {
            bests
                .map(|(w, (&value, &best))| match w.direction {
                    Direction::Min => value.min(best),
                    Direction::Max => value.max(best),
                })
                .collect()
        } else {
            values.clone()
        };
        if reached.iter().any(|&r| r) {
            state.epochs_without_improvement = 0;
        } else {
            state.epochs_without_improvement += 1;
        }
        let keep = reached.iter().all(|&r| r);
        if keep {
            state.best_epoch = Some(state.epochs_done);
            state.best_value = Some(values[0]);
        }
        Ok(keep)
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
            also: Vec::new(),
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
    fn several_metrics_follow_the_gat_reference_rule() {
        let config = EarlyStoppingConfig {
            metric: "val_accuracy".into(),
            direction: Direction::Max,
            patience: 2,
            also: vec![WatchedMetric { metric: "val_loss".into(), direction: Direction::Min }],
        };
        let stopping = EarlyStopping::new(&config, &["loss".into(), "accuracy".into()]).unwrap();
        let mut state = RunState::default();
        let mut kept = Vec::new();
        let mut waited = Vec::new();
        // (accuracy, loss): both reach their best; only loss; a tie on both; only
        // accuracy; neither; neither: patience out.
        for (accuracy, loss) in
            [(0.5, 1.0), (0.4, 0.9), (0.5, 0.9), (0.6, 0.95), (0.55, 0.92), (0.58, 0.91)]
        {
            state.epochs_done += 1;
            let mut row = Metrics::default();
            row.push("val_loss", loss);
            row.push("val_accuracy", accuracy);
            kept.push(stopping.update(&mut state, &row).unwrap());
            waited.push(state.epochs_without_improvement);
        }
        assert_eq!(kept, [true, false, true, false, false, false]);
        assert_eq!(waited, [0, 0, 0, 0, 1, 2]);
        assert_eq!((state.best_epoch, state.best_value), (Some(3), Some(0.5)));
        assert_eq!(state.best_values, [0.6, 0.9]);
        assert!(stopping.should_stop(&state));
    }

    #[test]
    fn unknown_metric_is_refused_up_front() {
        let config = EarlyStoppingConfig {
            metric: "val_acc".into(),
            direction: Direction::Max,
            patience: 0,
            also: Vec::new(),
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
