//! Per-epoch metrics: a `MetricLogger` that appends one CSV row per epoch to `metrics.csv` (the
//! `csv` crate), and the training curves drawn from it as SVG and PNG (`plotters`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::plot::{self, DrawResult, Picture, value_range};

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
    /// Values in the CSV's column order (after `epoch`); NaN where a metric was not logged.
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

/// A `metrics.csv` that cannot be read back.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct MetricsCsvError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong, with the row where there is one.
    pub message: String,
}

/// Reads `metrics.csv` (missing file: no rows).
pub fn read_csv(path: &Path) -> Result<Vec<EpochRow>, MetricsCsvError> {
    let error = |message: String| MetricsCsvError {
        path: path.to_path_buf(),
        message,
    };
    let mut reader = match csv::Reader::from_path(path) {
        Ok(reader) => reader,
        Err(e) => match e.kind() {
            csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Vec::new());
            }
            _ => return Err(error(e.to_string())),
        },
    };
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| error(e.to_string()))?;
        let bad = || {
            error(format!(
                "malformed row `{}`",
                record.iter().collect::<Vec<_>>().join(",")
            ))
        };
        if record.len() != COLUMNS.len() + 1 {
            return Err(bad());
        }
        let epoch = record[0].parse().map_err(|_| bad())?;
        let mut values = [f64::NAN; COLUMNS.len()];
        for (value, field) in values.iter_mut().zip(record.iter().skip(1)) {
            if !field.is_empty() {
                *value = field.parse().map_err(|_| bad())?;
            }
        }
        rows.push(EpochRow { epoch, values });
    }
    Ok(rows)
}

/// Writes `rows` as a whole `metrics.csv`, atomically (see `se_models::files`).
pub fn write_csv(path: &Path, rows: &[EpochRow]) -> Result<(), String> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let mut records = rows
        .iter()
        .map(|row| row_record(row.epoch, row.values.iter().copied()));
    let bytes = writer
        .write_record(csv_header().split(','))
        .and_then(|()| records.try_for_each(|record| writer.write_record(record)))
        .map_err(|e| e.to_string())
        .and_then(|()| writer.into_inner().map_err(|e| e.to_string()))?;
    se_models::files::write_atomically(path, &bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// A CSV record: the epoch, then each value (empty where NaN: not logged).
fn row_record(epoch: usize, values: impl Iterator<Item = f64>) -> Vec<String> {
    std::iter::once(epoch.to_string())
        .chain(values.map(|v| {
            if v.is_nan() {
                String::new()
            } else {
                v.to_string()
            }
        }))
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

    fn append_row(&mut self, epoch: usize) -> Result<(), csv::Error> {
        let means = COLUMNS.iter().map(|(split, name, _)| {
            let slot = self.sums.get(&(split.to_string(), name.to_string()));
            slot.map_or(f64::NAN, |(sum, count)| sum / *count as f64)
        });
        let record = row_record(epoch, means);
        let new_file = !self.path.exists();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let mut writer = csv::Writer::from_writer(file);
        if new_file {
            writer.write_record(csv_header().split(','))?;
        }
        writer.write_record(&record)?;
        writer.flush()?;
        Ok(())
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

/// The two panels of the curves: a title and the train and valid columns.
const PANELS: [(&str, [&str; 2]); 2] = [
    ("loss", ["train_loss", "valid_loss"]),
    ("accuracy (%)", ["train_accuracy", "valid_accuracy"]),
];

/// Size of the curves picture in pixels.
const CURVES_SIZE: (u32, u32) = (880, 300);

/// The loss and accuracy curves (train and valid, per epoch).
struct Curves<'a>(&'a [EpochRow]);

impl Picture for Curves<'_> {
    fn size(&self) -> (u32, u32) {
        CURVES_SIZE
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        draw_curves(area, self.0)
    }
}

/// Draws the loss and accuracy curves (train and valid, per epoch) on `area`.
fn draw_curves<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    rows: &[EpochRow],
) -> DrawResult<DB> {
    area.fill(&WHITE)?;
    let (first, last) = match (rows.first(), rows.last()) {
        (Some(first), Some(last)) => (first.epoch as f64, last.epoch as f64),
        _ => (0.0, 1.0),
    };
    let epochs = if last > first {
        first..last
    } else {
        first - 0.5..first + 0.5
    };
    for (panel, (title, columns)) in area.split_evenly((1, 2)).iter().zip(PANELS) {
        let values = columns
            .iter()
            .flat_map(|column| rows.iter().map(|row| row.get(column)));
        let range = value_range(values);
        let mut chart = ChartBuilder::on(panel)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(epochs.clone(), range)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .x_labels(rows.len().clamp(2, 10))
            .draw()?;
        for (column, color) in columns.into_iter().zip([BLUE, RED]) {
            let points: Vec<(f64, f64)> = rows
                .iter()
                .filter(|row| row.get(column).is_finite())
                .map(|row| (row.epoch as f64, row.get(column)))
                .collect();
            let label = column.split('_').next().unwrap_or(column);
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
                .label(label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color));
            chart.draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, color.filled())),
            )?;
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()?;
    }
    area.present()
}

/// The loss and accuracy curves as a standalone SVG document.
pub fn curves_svg(rows: &[EpochRow]) -> String {
    // Drawing into a string fails only on a plotters bug; the picture is a by-product.
    plot::svg(&Curves(rows)).unwrap_or_else(|e| {
        eprintln!("warning: training curves not drawn: {e}");
        String::new()
    })
}

/// The loss and accuracy curves as a PNG image.
pub fn curves_png(rows: &[EpochRow]) -> Result<Vec<u8>, String> {
    plot::png(&Curves(rows))
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
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        // Two panels, each a train (blue) and a valid (red) line with a legend entry, and a
        // marker per epoch on each line.
        for color in ["#0000FF", "#FF0000"] {
            let lines = format!(r#"<polyline fill="none" opacity="1" stroke="{color}""#);
            assert_eq!(svg.matches(&lines).count(), 4, "{color}: {svg}");
        }
        assert_eq!(svg.matches("<circle").count(), 8, "{svg}");
        assert!(
            svg.contains("\nloss\n") && svg.contains("\naccuracy (%)\n"),
            "{svg}"
        );
        let png = curves_png(&read).unwrap();
        let picture = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(picture.dimensions(), CURVES_SIZE);
        // Lines were drawn: some pixels are blue, some red.
        let has = |rgb: [u8; 3]| picture.pixels().any(|p| p.0 == rgb);
        assert!(has([0, 0, 255]) && has([255, 0, 0]));

        std::fs::write(&path, "epoch,x\n1,2\n").unwrap();
        let error = read_csv(&path).unwrap_err().to_string();
        assert!(error.contains("malformed row `1,2`"), "{error}");
    }
}
