//! Learning-rate schedule: linear warmup, then cosine decay or step drops, per iteration.

use burn::optim::LearningRate;
use burn::optim::lr_scheduler::LrScheduler;
use burn::record::Record;
use burn::tensor::backend::Backend;

use crate::config::ScheduleKind;

/// Warmup from `peak / 10` to `peak` over `warmup_steps`, then `kind` over the remaining steps.
#[derive(Debug, Clone, PartialEq)]
pub struct LrSchedule {
    peak: f64,
    warmup_steps: usize,
    total_steps: usize,
    steps_per_epoch: usize,
    kind: ScheduleKind,
    /// Steps taken so far (the state saved in checkpoints).
    step: usize,
}

impl LrSchedule {
    /// A schedule over `epochs * steps_per_epoch` iterations.
    pub fn new(
        peak: f64,
        warmup_epochs: f64,
        epochs: usize,
        steps_per_epoch: usize,
        kind: ScheduleKind,
    ) -> Self {
        let total_steps = (epochs * steps_per_epoch).max(1);
        Self {
            peak,
            warmup_steps: ((warmup_epochs * steps_per_epoch as f64).round() as usize)
                .min(total_steps),
            total_steps,
            steps_per_epoch: steps_per_epoch.max(1),
            kind,
            step: 0,
        }
    }

    /// The learning rate at iteration `step` (0-based).
    pub fn at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            let start = self.peak / 10.0;
            return start + (self.peak - start) * step as f64 / self.warmup_steps as f64;
        }
        match &self.kind {
            ScheduleKind::Cosine => {
                let span = (self.total_steps - self.warmup_steps).max(1) as f64;
                let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
                0.5 * self.peak * (1.0 + (std::f64::consts::PI * progress).cos())
            }
            ScheduleKind::Step {
                every_epochs,
                gamma,
            } => {
                let drops = step / (self.steps_per_epoch * (*every_epochs).max(1));
                self.peak * gamma.powi(drops as i32)
            }
        }
    }
}

/// The saved state: the number of steps taken.
#[derive(Record, Clone)]
pub struct LrScheduleRecord {
    step: usize,
}

impl LrScheduler for LrSchedule {
    type Record<B: Backend> = LrScheduleRecord;

    fn step(&mut self) -> LearningRate {
        let lr = self.at(self.step);
        self.step += 1;
        lr
    }

    fn to_record<B: Backend>(&self) -> Self::Record<B> {
        LrScheduleRecord { step: self.step }
    }

    fn load_record<B: Backend>(mut self, record: Self::Record<B>) -> Self {
        self.step = record.step;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_to_zero() {
        let schedule = LrSchedule::new(0.1, 1.0, 3, 10, ScheduleKind::Cosine);
        assert!((schedule.at(0) - 0.01).abs() < 1e-12);
        assert!((schedule.at(5) - 0.055).abs() < 1e-12);
        assert!((schedule.at(10) - 0.1).abs() < 1e-12);
        assert!((schedule.at(20) - 0.05).abs() < 1e-12); // half way through the cosine
        assert!(schedule.at(30).abs() < 1e-12);
    }

    #[test]
    fn step_schedule_drops_every_n_epochs() {
        let kind = ScheduleKind::Step {
            every_epochs: 2,
            gamma: 0.1,
        };
        let schedule = LrSchedule::new(1.0, 0.0, 6, 5, kind);
        assert_eq!(schedule.at(9), 1.0);
        assert!((schedule.at(10) - 0.1).abs() < 1e-12);
        assert!((schedule.at(29) - 0.01).abs() < 1e-12);
    }

    #[test]
    fn state_survives_a_checkpoint() {
        type B = burn::backend::Flex;
        let mut schedule = LrSchedule::new(0.1, 0.5, 2, 4, ScheduleKind::Cosine);
        let taken: Vec<f64> = (0..3).map(|_| schedule.step()).collect();
        assert_eq!(taken[0], schedule.at(0));
        let record = LrScheduler::to_record::<B>(&schedule);
        let fresh = LrSchedule::new(0.1, 0.5, 2, 4, ScheduleKind::Cosine);
        let mut restored = LrScheduler::load_record::<B>(fresh, record);
        assert_eq!(restored.step(), schedule.step());
    }
}
