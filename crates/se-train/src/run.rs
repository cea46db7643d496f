//! A run folder: the files a run writes, and reading a trained model back from them.

use std::path::{Path, PathBuf};

use burn::config::Config;
use se_models::files::write_atomically;
use se_models::{ResNet, ResNetConfig, weights};

use crate::config::TrainConfig;
use crate::data::DatasetInfo;
use crate::error::{TrainError, run_error};
use crate::evaluate::EvalReport;
use crate::report::{EpochRow, read_csv, write_csv};

/// The files of a run folder.
#[derive(Debug, Clone)]
pub struct RunFolder(pub PathBuf);

impl RunFolder {
    /// `config.json`: the [`TrainConfig`].
    pub fn config(&self) -> PathBuf {
        self.0.join("config.json")
    }
    /// `model.json`: the model's [`ResNetConfig`] as trained (input channels, classes).
    pub fn model_config(&self) -> PathBuf {
        self.0.join("model.json")
    }
    /// `dataset.json`: the [`DatasetInfo`] (classes, input size, normalisation).
    pub fn dataset(&self) -> PathBuf {
        self.0.join("dataset.json")
    }
    /// `model.mpk`: the weights after the last epoch.
    pub fn final_model(&self) -> PathBuf {
        self.0.join("model.mpk")
    }
    /// `best-model.mpk`: the weights of the epoch with the lowest validation loss.
    pub fn best_model(&self) -> PathBuf {
        self.0.join("best-model.mpk")
    }
    /// `metrics.csv`: one row per epoch.
    pub fn metrics(&self) -> PathBuf {
        self.0.join("metrics.csv")
    }
    /// `curves.svg`: loss and accuracy per epoch.
    pub fn curves(&self) -> PathBuf {
        self.0.join("curves.svg")
    }
    /// `curves.png`: the same picture as PNG.
    pub fn curves_png(&self) -> PathBuf {
        self.0.join("curves.png")
    }
    /// `summary.json`: the final test evaluation.
    pub fn summary(&self) -> PathBuf {
        self.0.join("summary.json")
    }
    /// Burn's checkpoint folder.
    pub fn checkpoints(&self) -> PathBuf {
        self.0.join("checkpoint")
    }

    /// Writes `contents` to `path` (a file of this folder), atomically.
    pub(crate) fn write(&self, path: &Path, contents: impl AsRef<[u8]>) -> Result<(), TrainError> {
        write_atomically(path, contents.as_ref()).map_err(|e| run_error(path, e.to_string()))
    }

    /// Creates the folder and writes what a run knows before its first step: the training
    /// config, the model config and the dataset description.
    pub(crate) fn write_start(
        &self,
        config: &TrainConfig,
        model: &ResNetConfig,
        info: &DatasetInfo,
    ) -> Result<(), TrainError> {
        std::fs::create_dir_all(&self.0).map_err(|e| run_error(&self.0, e.to_string()))?;
        self.write(&self.config(), config.to_string())?;
        self.write(&self.model_config(), model.to_string())?;
        self.write(&self.dataset(), serde_json::to_string_pretty(info).unwrap())
    }

    /// Forgets the epochs from `epoch` on: deletes their checkpoints (model, optimizer,
    /// scheduler) and their `metrics.csv` rows (rewritten atomically).
    pub fn forget_from(&self, epoch: usize) -> Result<(), TrainError> {
        if let Ok(entries) = std::fs::read_dir(self.checkpoints()) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let number = name
                    .rsplit_once('-')
                    .and_then(|(_, rest)| rest.strip_suffix(".mpk"))
                    .and_then(|n| n.parse::<usize>().ok());
                if number.is_some_and(|n| n >= epoch) {
                    std::fs::remove_file(entry.path())
                        .map_err(|e| run_error(&entry.path(), e.to_string()))?;
                }
            }
        }
        let rows = read_csv(&self.metrics()).map_err(|e| run_error(&self.metrics(), e.message))?;
        if rows.iter().any(|row| row.epoch >= epoch) {
            let kept: Vec<EpochRow> = rows.into_iter().filter(|row| row.epoch < epoch).collect();
            write_csv(&self.metrics(), &kept).map_err(|e| run_error(&self.metrics(), e))?;
        }
        Ok(())
    }

    /// Checks that the epoch was committed whole: every file of its checkpoint (model,
    /// optimizer, scheduler) is there and decodes to its end (a run killed while Burn wrote
    /// them leaves one missing or torn), and its row is in `metrics.csv` (written after the
    /// checkpoint: a kill between the two leaves a checkpoint whose epoch the metrics never
    /// saw). Builds nothing.
    pub fn verify_checkpoint(&self, epoch: usize) -> Result<(), String> {
        use serde::Deserialize;
        for part in CHECKPOINT_PARTS {
            let path = self.checkpoints().join(format!("{part}-{epoch}.mpk"));
            let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let mut decoder = rmp_serde::Deserializer::new(std::io::Cursor::new(&bytes[..]));
            serde::de::IgnoredAny::deserialize(&mut decoder)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let read = decoder.into_inner().position() as usize;
            if read != bytes.len() {
                return Err(format!(
                    "{}: {} bytes after the record's end",
                    path.display(),
                    bytes.len() - read
                ));
            }
        }
        let rows = read_csv(&self.metrics()).map_err(|e| e.message)?;
        if !rows.iter().any(|row| row.epoch == epoch) {
            return Err(format!(
                "{}: no row for epoch {epoch} (killed between the checkpoint and its metrics)",
                self.metrics().display()
            ));
        }
        Ok(())
    }

    /// Sets the epoch's checkpoint files aside (renamed `*.mpk.torn`, nothing deleted) and
    /// forgets the epochs from it on, so that a resume starts from the one before.
    pub fn set_aside_checkpoint(&self, epoch: usize) -> Result<(), TrainError> {
        for part in CHECKPOINT_PARTS {
            let path = self.checkpoints().join(format!("{part}-{epoch}.mpk"));
            if path.exists() {
                let aside = path.with_extension("mpk.torn");
                std::fs::rename(&path, &aside).map_err(|e| run_error(&path, e.to_string()))?;
            }
        }
        self.forget_from(epoch)
    }

    /// The highest epoch with a saved model checkpoint.
    pub fn last_checkpoint(&self) -> Option<usize> {
        std::fs::read_dir(self.checkpoints())
            .ok()?
            .filter_map(|entry| {
                let name = entry.ok()?.file_name().into_string().ok()?;
                name.strip_prefix("model-")?
                    .strip_suffix(".mpk")?
                    .parse()
                    .ok()
            })
            .max()
    }

    /// Reads the model config and dataset info written at the start of a run.
    pub fn load_model_info(&self) -> Result<(ResNetConfig, DatasetInfo), TrainError> {
        let model = ResNetConfig::load(self.model_config()).map_err(|e| {
            run_error(
                &self.model_config(),
                format!("cannot read the model config: {e}"),
            )
        })?;
        model
            .validate()
            .map_err(|e| run_error(&self.model_config(), e.to_string()))?;
        let text = std::fs::read_to_string(self.dataset())
            .map_err(|e| run_error(&self.dataset(), e.to_string()))?;
        let info = serde_json::from_str(&text)
            .map_err(|e| run_error(&self.dataset(), format!("not a dataset description: {e}")))?;
        Ok((model, info))
    }

    /// Loads trained weights (`model.mpk` or `best-model.mpk`) into the run's model.
    pub fn load_model<B: burn::tensor::backend::Backend>(
        &self,
        path: &Path,
        device: &B::Device,
    ) -> Result<(ResNet<B>, DatasetInfo), TrainError> {
        let (config, info) = self.load_model_info()?;
        let model = weights::load(config.init::<B>(device), path, device)?;
        Ok((model, info))
    }
}

/// The files Burn's checkpointer writes per epoch: `checkpoint/<part>-<epoch>.mpk`.
const CHECKPOINT_PARTS: [&str; 3] = ["model", "optim", "scheduler"];

/// The outcome of a run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TrainSummary {
    /// The model name.
    pub model: String,
    /// Epochs trained in total (over resumes).
    pub epochs: usize,
    /// Evaluation of the final model on the test split.
    pub test: EvalReport,
    /// Wall time of this invocation, seconds.
    pub seconds: f64,
    /// Parameters of the model (absent from summaries written before it).
    #[serde(default)]
    pub parameters: Option<usize>,
    /// Multiply-adds per image at the data's image size.
    #[serde(default)]
    pub macs: Option<u64>,
    /// Training images per second of `fit` in this invocation (its validation passes included).
    #[serde(default)]
    pub train_images_per_second: Option<f64>,
}
