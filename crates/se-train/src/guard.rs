//! The finite-loss guard: the first training step whose loss is NaN or infinite stops the run
//! before its gradients touch the weights, so that the last checkpoint stays finite and the run
//! can be resumed (with a lower learning rate, say) instead of training on in NaNs.

use std::sync::{Arc, Mutex};

use burn::train::Interrupter;

/// A training step whose loss was not finite.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NonFiniteStep {
    /// The step's index among this invocation's steps (from 0; one per batch and device).
    pub step: usize,
    /// The loss it had.
    pub loss: f64,
}

/// Shared by every replica of the classifier; stops the Learner through its interrupter.
#[derive(Clone, Default)]
pub struct LossGuard {
    interrupter: Interrupter,
    state: Arc<Mutex<GuardState>>,
}

#[derive(Default)]
struct GuardState {
    steps: usize,
    first: Option<NonFiniteStep>,
}

impl std::fmt::Debug for LossGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LossGuard({:?})", self.tripped())
    }
}

impl LossGuard {
    /// A guard that stops the Learner holding `interrupter`.
    pub fn new(interrupter: Interrupter) -> Self {
        Self {
            interrupter,
            state: Arc::default(),
        }
    }

    /// Counts a step with `loss`; returns whether its gradients may be applied.
    pub fn check(&self, loss: f64) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let step = state.steps;
        state.steps += 1;
        if loss.is_finite() && state.first.is_none() {
            return true;
        }
        if state.first.is_none() {
            state.first = Some(NonFiniteStep { step, loss });
            self.interrupter.stop(Some("non-finite loss"));
        }
        false
    }

    /// The first non-finite step, if there was one.
    pub fn tripped(&self) -> Option<NonFiniteStep> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_non_finite_loss_stops_the_learner_and_blocks_every_later_step() {
        let interrupter = Interrupter::new();
        let guard = LossGuard::new(interrupter.clone());
        assert!(guard.check(2.3) && guard.check(1.9));
        assert!(!interrupter.should_stop() && guard.tripped().is_none());
        assert!(!guard.check(f64::NAN));
        assert!(interrupter.should_stop());
        // Steps already in flight on other devices apply nothing either.
        assert!(!guard.check(1.0) && !guard.check(f64::INFINITY));
        let first = guard.tripped().unwrap();
        assert_eq!(first.step, 2);
        assert!(first.loss.is_nan());
    }
}
