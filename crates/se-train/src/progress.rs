//! Plain progress lines for when stdout is not a terminal (CI, pipes, log files); in a terminal
//! Burn's TUI dashboard is used instead.

use std::collections::HashMap;
use std::time::Instant;

use burn::train::metric::{MetricDefinition, MetricId};
use burn::train::renderer::{
    EvaluationName, EvaluationProgress, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining, ProgressType, TrainingProgress,
};

/// Prints about ten lines per training epoch and one per validation pass.
pub struct PlainProgress {
    names: HashMap<MetricId, String>,
    train: Vec<(String, String)>,
    valid: Vec<(String, String)>,
    last_printed: Option<(usize, usize)>,
    started: Instant,
    /// Prints nothing (ranks other than 0 of a data-parallel job).
    silent: bool,
}

impl PlainProgress {
    /// A renderer that prints nothing.
    pub fn silent() -> Self {
        Self {
            silent: true,
            ..Self::default()
        }
    }
}

impl Default for PlainProgress {
    fn default() -> Self {
        Self {
            names: HashMap::new(),
            train: Vec::new(),
            valid: Vec::new(),
            last_printed: None,
            started: Instant::now(),
            silent: false,
        }
    }
}

/// Short labels for the metrics worth a progress line.
fn short_name(name: &str) -> Option<&'static str> {
    Some(match name {
        "Loss" => "loss",
        "Accuracy" => "acc",
        "Top-K Accuracy @ TopK(5)" => "top5",
        "Learning Rate" => "lr",
        "Iteration Speed" => "speed",
        "CPU Memory" => "mem",
        _ => return None,
    })
}

fn remember(
    values: &mut Vec<(String, String)>,
    names: &HashMap<MetricId, String>,
    state: MetricState,
) {
    let entry = match state {
        MetricState::Generic(entry) | MetricState::Numeric(entry, _) => entry,
    };
    let Some(label) = names.get(&entry.metric_id).and_then(|n| short_name(n)) else {
        return;
    };
    let value = entry.serialized_entry.formatted.clone();
    match values.iter_mut().find(|(l, _)| l == label) {
        Some(slot) => slot.1 = value,
        None => values.push((label.to_string(), value)),
    }
}

fn line(values: &[(String, String)]) -> String {
    values
        .iter()
        .map(|(l, v)| format!("{l} {v}"))
        .collect::<Vec<_>>()
        .join(" | ")
}

impl MetricsRendererTraining for PlainProgress {
    fn update_train(&mut self, state: MetricState) {
        remember(&mut self.train, &self.names, state);
    }

    fn update_valid(&mut self, state: MetricState) {
        remember(&mut self.valid, &self.names, state);
    }

    fn render_train(&mut self, item: TrainingProgress, _: Vec<ProgressType>) {
        let Some(progress) = item.progress.filter(|_| !self.silent) else {
            return;
        };
        let epoch = item.global_progress.items_processed;
        let tenth = progress.items_processed * 10 / progress.items_total.max(1);
        if tenth == 0 || self.last_printed == Some((epoch, tenth)) {
            return;
        }
        self.last_printed = Some((epoch, tenth));
        println!(
            "[{:>6.0}s] epoch {epoch}/{} train {:>6}/{} | {}",
            self.started.elapsed().as_secs_f64(),
            item.global_progress.items_total,
            progress.items_processed,
            progress.items_total,
            line(&self.train)
        );
    }

    fn render_valid(&mut self, item: TrainingProgress, _: Vec<ProgressType>) {
        let Some(progress) = item.progress.filter(|_| !self.silent) else {
            return;
        };
        if progress.items_processed >= progress.items_total {
            println!(
                "[{:>6.0}s] epoch {}/{} valid {} images | {}",
                self.started.elapsed().as_secs_f64(),
                item.global_progress.items_processed,
                item.global_progress.items_total,
                progress.items_total,
                line(&self.valid)
            );
        }
    }
}

impl MetricsRendererEvaluation for PlainProgress {
    fn render_test(&mut self, _: EvaluationProgress, _: Vec<ProgressType>) {}

    fn update_test(&mut self, _: EvaluationName, _: MetricState) {}
}

impl MetricsRenderer for PlainProgress {
    fn manual_close(&mut self) {}

    fn register_metric(&mut self, definition: MetricDefinition) {
        self.names.insert(definition.metric_id, definition.name);
    }
}
