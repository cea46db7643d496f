//! Per-epoch metrics: a `MetricLogger` that appends one CSV row per epoch to `metrics.csv`, and an
//! SVG picture of the training curves drawn from it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use burn::train::logger::MetricLogger;
use burn::train::metric::store::{EpochSummary, MetricsUpdate, Split};
use burn::train::metric::{MetricDefinition, MetricId, NumericEntry};

/// The CSV columns after `epoch`: `(split, Burn metric name, column)`.
const COLUMNS: [(&str, &str, &str); 7] = [
    ("train", "Loss", "train_loss"),
    ("train", "Accuracy", "train_accuracy"),
    ("train", "Top-K Accuracy @ TopK(5)", "train_top5_accuracy"),
    ("train", "Learning Rate", "learning_rate"),
    ("valid", "Loss", "valid_loss"),
    ("valid", "Accuracy", "valid_accuracy"),
    ("valid", "Top-K Accuracy @ TopK(5)", "valid_top5_accuracy"),
];

/// The CSV header line.
pub fn csv_header() -> String {
    std::iter::once("epoch")
        .chain(COLUMNS.iter().map(|(_, _, column)| *column))
        .collect::<Vec<_>>()
        .join(",")
}

/// One row of `metrics.csv`: the epoch's mean of each metric (accuracies in percent).
#[derive(Debug, Clone, PartialEq)]
pub struct EpochRow {
    /// 1-based epoch.
    pub epoch: usize,
    /// Values in [`COLUMNS`] order; NaN where a metric was not logged.
    pub values: [f64; COLUMNS.len()],
}

impl EpochRow {
    /// The value of a column by its CSV name.
    pub fn get(&self, column: &str) -> f64 {
        COLUMNS
            .iter()
            .position(|(_, _, name)| *name == column)
            .map_or(f64::NAN, |i| self.values[i])
    }
}

/// Reads `metrics.csv` (missing file: no rows).
pub fn read_csv(path: &Path) -> Result<Vec<EpochRow>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    text.lines()
        .skip(1)
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            let bad = || format!("{}: malformed row `{line}`", path.display());
            if fields.len() != COLUMNS.len() + 1 {
                return Err(bad());
            }
            let epoch = fields[0].parse().map_err(|_| bad())?;
            let mut values = [f64::NAN; COLUMNS.len()];
            for (value, field) in values.iter_mut().zip(&fields[1..]) {
                *value = if field.is_empty() {
                    f64::NAN
                } else {
                    field.parse().map_err(|_| bad())?
                };
            }
            Ok(EpochRow { epoch, values })
        })
        .collect()
}

/// Logs the mean of each metric per epoch and split, and appends a CSV row when an epoch's
/// validation ends. Burn's own file logger stays registered beside it for the per-iteration logs.
pub struct EpochCsvLogger {
    path: PathBuf,
    names: HashMap<MetricId, String>,
    /// (split, metric name) → (sum, count) for the current epoch.
    sums: HashMap<(String, String), (f64, usize)>,
}

impl EpochCsvLogger {
    /// Appends to `path`, writing the header if the file is new.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            names: HashMap::new(),
            sums: HashMap::new(),
        }
    }

    fn append_row(&mut self, epoch: usize) -> std::io::Result<()> {
        let mut line = epoch.to_string();
        for (split, name, _) in COLUMNS {
            line.push(',');
            if let Some((sum, count)) = self.sums.get(&(split.to_string(), name.to_string())) {
                write!(line, "{}", sum / *count as f64).unwrap();
            }
        }
        let new_file = !self.path.exists();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        if new_file {
            writeln!(file, "{}", csv_header())?;
        }
        writeln!(file, "{line}")
    }
}

impl MetricLogger for EpochCsvLogger {
    fn log(&mut self, update: MetricsUpdate, _epoch: usize, split: &Split) {
        for numeric in &update.entries_numeric {
            let Some(name) = self.names.get(&numeric.entry.metric_id) else {
                continue;
            };
            let (value, count) = match numeric.numeric_entry {
                NumericEntry::Value(v) => (v, 1),
                NumericEntry::Aggregated {
                    aggregated_value,
                    count,
                } => (aggregated_value * count as f64, count),
            };
            let slot = self
                .sums
                .entry((split.to_string(), name.clone()))
                .or_default();
            slot.0 += value;
            slot.1 += count;
        }
    }

    fn read_numeric(&mut self, _: &str, _: usize, _: &Split) -> Result<Vec<NumericEntry>, String> {
        Err("the CSV logger keeps epoch means only".into())
    }

    fn log_metric_definition(&mut self, definition: MetricDefinition) {
        self.names.insert(definition.metric_id, definition.name);
    }

    fn log_epoch_summary(&mut self, summary: EpochSummary) {
        if summary.split.to_string() == "valid" {
            if let Err(e) = self.append_row(summary.epoch_number) {
                eprintln!("warning: could not write {}: {e}", self.path.display());
            }
            self.sums.clear();
        }
    }
}

/// Draws loss and accuracy curves (train and valid) as a standalone SVG.
pub fn curves_svg(rows: &[EpochRow]) -> String {
    let panels = [
        ("loss", ["train_loss", "valid_loss"]),
        ("accuracy (%)", ["train_accuracy", "valid_accuracy"]),
    ];
    let (width, height, margin) = (440.0, 300.0, 48.0);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{height}" font-family="sans-serif" font-size="12">"#,
        2.0 * width
    );
    svg.push_str(r#"<rect width="100%" height="100%" fill="white"/>"#);
    let epochs: Vec<f64> = rows.iter().map(|r| r.epoch as f64).collect();
    let (x_min, x_max) = (
        epochs.first().copied().unwrap_or(0.0),
        epochs.last().copied().unwrap_or(1.0),
    );
    for (panel, (title, columns)) in panels.iter().enumerate() {
        let left = panel as f64 * width + margin;
        let (plot_w, plot_h) = (width - 1.5 * margin, height - 2.0 * margin);
        let values: Vec<f64> = columns
            .iter()
            .flat_map(|c| rows.iter().map(move |r| r.get(c)))
            .filter(|v| v.is_finite())
            .collect();
        let (mut lo, mut hi) = values
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
        if lo > hi {
            (lo, hi) = (0.0, 1.0);
        }
        if hi - lo < 1e-9 {
            hi = lo + 1.0;
        }
        let x = |e: f64| {
            left + if x_max > x_min {
                (e - x_min) / (x_max - x_min) * plot_w
            } else {
                plot_w / 2.0
            }
        };
        let y = |v: f64| margin + (hi - v) / (hi - lo) * plot_h;
        write!(
            svg,
            r##"<rect x="{left}" y="{margin}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/><text x="{}" y="{}" text-anchor="middle">{title}</text>"##,
            left + plot_w / 2.0,
            margin - 12.0
        )
        .unwrap();
        write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end">{hi:.3}</text><text x="{}" y="{}" text-anchor="end">{lo:.3}</text><text x="{}" y="{}" text-anchor="middle">epoch</text>"#,
            left - 4.0,
            margin + 4.0,
            left - 4.0,
            margin + plot_h,
            left + plot_w / 2.0,
            height - 12.0
        )
        .unwrap();
        for (column, color) in columns.iter().zip(["#1f77b4", "#d62728"]) {
            let points: Vec<String> = rows
                .iter()
                .filter(|r| r.get(column).is_finite())
                .map(|r| format!("{:.1},{:.1}", x(r.epoch as f64), y(r.get(column))))
                .collect();
            write!(
                svg,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                points.join(" ")
            )
            .unwrap();
            for point in &points {
                let (px, py) = point.split_once(',').unwrap();
                write!(svg, r#"<circle cx="{px}" cy="{py}" r="3" fill="{color}"/>"#).unwrap();
            }
        }
        for (i, (label, color)) in [("train", "#1f77b4"), ("valid", "#d62728")]
            .iter()
            .enumerate()
        {
            let ly = margin + 16.0 + 16.0 * i as f64;
            write!(
                svg,
                r#"<text x="{}" y="{ly}" fill="{color}">{label}</text>"#,
                left + plot_w - 40.0
            )
            .unwrap();
        }
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_round_trips_and_plots() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        let rows = vec![
            EpochRow {
                epoch: 1,
                values: [2.0, 30.0, 70.0, 0.1, 1.5, 50.0, 90.0],
            },
            EpochRow {
                epoch: 2,
                values: [1.0, 60.0, 95.0, 0.05, 0.5, 80.0, f64::NAN],
            },
        ];
        let mut text = csv_header() + "\n";
        for row in &rows {
            let fields: Vec<String> = row
                .values
                .iter()
                .map(|v| {
                    if v.is_nan() {
                        String::new()
                    } else {
                        v.to_string()
                    }
                })
                .collect();
            text += &format!("{},{}\n", row.epoch, fields.join(","));
        }
        std::fs::write(&path, text).unwrap();
        let read = read_csv(&path).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[1].get("valid_loss"), 0.5);
        assert!(read[1].get("valid_top5_accuracy").is_nan());
        let svg = curves_svg(&read);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 4);

        std::fs::write(&path, "epoch,x\n1,2\n").unwrap();
        assert!(read_csv(&path).unwrap_err().contains("malformed row `1,2`"));
    }
}
