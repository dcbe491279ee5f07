//! Learning-rate schedules as pure functions of the optimiser step.
//!
//! Being stateless is what makes `--resume` exact without saving a scheduler: the rate
//! at step `s` is the same whether the run was interrupted or not.

use crate::base::config::{Schedule, TrainConfig};

pub struct LrSchedule {
    base: f64,
    schedule: Schedule,
    warmup_steps: usize,
    steps_per_epoch: usize,
    total_steps: usize,
    step_epochs: usize,
    gamma: f64,
    min_lr: f64,
}

impl LrSchedule {
    pub fn new(config: &TrainConfig, steps_per_epoch: usize) -> Self {
        let steps_per_epoch = steps_per_epoch.max(1);
        Self {
            base: config.lr,
            schedule: config.schedule,
            warmup_steps: config.warmup_steps,
            steps_per_epoch,
            total_steps: config.epochs.saturating_mul(steps_per_epoch).max(1),
            step_epochs: config.step_epochs.max(1),
            gamma: config.gamma,
            min_lr: config.min_lr,
        }
    }

    /// The rate for optimiser step `step` (0-based).
    pub fn at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.base * (step + 1) as f64 / self.warmup_steps as f64;
        }
        match self.schedule {
            Schedule::Constant => self.base,
            Schedule::Step => {
                let epoch = step / self.steps_per_epoch;
                self.base * self.gamma.powi((epoch / self.step_epochs) as i32)
            }
            Schedule::Cosine => {
                let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
                let progress = ((step - self.warmup_steps) as f64 / span as f64).min(1.0);
                self.min_lr
                    + 0.5
                        * (self.base - self.min_lr)
                        * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(schedule: Schedule, warmup_steps: usize) -> TrainConfig {
        TrainConfig {
            lr: 0.1,
            epochs: 10,
            schedule,
            warmup_steps,
            step_epochs: 3,
            gamma: 0.5,
            min_lr: 0.0,
            ..TrainConfig::default()
        }
    }

    #[test]
    fn constant_with_linear_warmup() {
        let s = LrSchedule::new(&config(Schedule::Constant, 4), 2);
        let got: Vec<f64> = (0..6).map(|i| s.at(i)).collect();
        let want = [0.025, 0.05, 0.075, 0.1, 0.1, 0.1];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{got:?}");
        }
    }

    #[test]
    fn step_decays_every_step_epochs() {
        let s = LrSchedule::new(&config(Schedule::Step, 0), 2);
        assert_eq!(s.at(0), 0.1); // epoch 0
        assert_eq!(s.at(5), 0.1); // epoch 2
        assert_eq!(s.at(6), 0.05); // epoch 3
        assert_eq!(s.at(12), 0.025); // epoch 6
    }

    #[test]
    fn cosine_runs_from_base_to_floor() {
        let s = LrSchedule::new(&config(Schedule::Cosine, 0), 1);
        assert!((s.at(0) - 0.1).abs() < 1e-12);
        assert!((s.at(5) - 0.05).abs() < 1e-12);
        assert!(s.at(10).abs() < 1e-12);
    }
}
