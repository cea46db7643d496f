//! Data sources behind one item type: an 8-bit image (height x width x channels, row-major) and its
//! label. Readers check every file they read and say which file is wrong and how.

pub mod augment;
pub mod batcher;
pub mod cifar;
pub mod folder;
pub mod mnist;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use burn::data::dataset::Dataset;

/// One labelled image: `pixels` are `height * width * channels` bytes, channels last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageItem {
    /// Pixel bytes, row-major, channels interleaved (HWC).
    pub pixels: Vec<u8>,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// 1 (gray) or 3 (RGB).
    pub channels: usize,
    /// Class index.
    pub label: usize,
}

impl ImageItem {
    /// The byte at row `y`, column `x`, channel `c`.
    pub fn at(&self, y: usize, x: usize, c: usize) -> u8 {
        self.pixels[(y * self.width + x) * self.channels + c]
    }
}

/// What went wrong reading data, always naming the file or folder.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file or folder could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file was read but its content is not what the format requires.
    #[error("{}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl DataError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The file and what is wrong with it.
    fn parts(&self) -> (PathBuf, String) {
        match self {
            DataError::Io { path, source } => (path.clone(), source.to_string()),
            DataError::Format { path, message } => (path.clone(), message.clone()),
        }
    }

    pub(crate) fn format(path: &Path, message: impl Into<String>) -> Self {
        Self::Format {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

/// A dataset of images, shared between data-loader workers.
pub type ImageDataset = Arc<dyn Dataset<ImageItem>>;

/// A training and a test split with what the model and the batcher need to know about them.
#[derive(Clone)]
pub struct DataSplits {
    /// Training images.
    pub train: ImageDataset,
    /// Held-out images.
    pub test: ImageDataset,
    /// What the images are.
    pub info: DatasetInfo,
    /// Images of these splits that fail to decode when read (files read lazily only).
    pub faults: DataFaults,
}

/// Images that failed to decode when a data loader read them: the first is kept, and the
/// training loop attached with [`DataFaults::stop_on_fault`] is told to stop. A loader thread
/// must not panic (the run would die with a trace instead of an error naming the file), and
/// skipping the image would silently change the epoch.
#[derive(Clone, Default)]
pub struct DataFaults {
    state: Arc<Mutex<FaultState>>,
}

#[derive(Default)]
struct FaultState {
    first: Option<(PathBuf, String)>,
    stop: Option<burn::train::Interrupter>,
}

impl DataFaults {
    /// Keeps `error` if it is the first, and stops the attached training loop.
    pub fn record(&self, error: &DataError) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.first.is_none() {
            state.first = Some(error.parts());
            if let Some(interrupter) = &state.stop {
                interrupter.stop(Some("an image failed to decode"));
            }
        }
    }

    /// Stops `interrupter`'s training loop at the first fault.
    pub fn stop_on_fault(&self, interrupter: burn::train::Interrupter) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).stop = Some(interrupter);
    }

    /// The first fault, if any.
    pub fn first(&self) -> Option<DataError> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (path, message) = state.first.clone()?;
        Some(DataError::Format { path, message })
    }
}

/// Facts about a dataset that travel with a trained model (saved in its run folder).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DatasetInfo {
    /// `mnist`, `cifar10`, `cifar100` or `folder`.
    pub kind: String,
    /// Channels of the images (and of the model input).
    pub channels: usize,
    /// Height and width the model sees.
    pub image_size: [usize; 2],
    /// Class names, index = label.
    pub class_names: Vec<String>,
    /// Per-channel mean of the pixel values in [0, 1], subtracted before the model.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation, divided by before the model.
    pub std: Vec<f32>,
}

impl DatasetInfo {
    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }
}

/// ImageNet's per-channel mean, as torchvision and timm normalise (image folders, and weights
/// pretrained on ImageNet).
pub(crate) const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet's per-channel standard deviation (see [`IMAGENET_MEAN`]).
pub(crate) const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// A normalisation's per-channel mean and standard deviation.
pub(crate) type MeanStd = (Vec<f32>, Vec<f32>);

/// Reads a whole file, or says which file could not be read.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|e| DataError::io(path, e))
}

/// The most a gzip file may decompress to (the MNIST training images are 47 MB): a bound on
/// what a corrupt or hostile file can make us allocate.
const GUNZIP_LIMIT: u64 = 1 << 30;

/// Decompresses gzip data (recognised by its magic bytes); other data is returned as is.
pub(crate) fn maybe_gunzip(path: &Path, bytes: Vec<u8>) -> Result<Vec<u8>, DataError> {
    use std::io::Read;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes.as_slice())
            .take(GUNZIP_LIMIT + 1)
            .read_to_end(&mut out)
            .map_err(|e| DataError::format(path, format!("corrupt gzip data: {e}")))?;
        if out.len() as u64 > GUNZIP_LIMIT {
            return Err(DataError::format(
                path,
                format!("decompresses to more than {GUNZIP_LIMIT} bytes"),
            ));
        }
        Ok(out)
    } else {
        Ok(bytes)
    }
}

/// Class names as decimal numbers, for datasets without a names file.
pub(crate) fn numbered_classes(count: usize) -> Vec<String> {
    (0..count).map(|i| i.to_string()).collect()
}
