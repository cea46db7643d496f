//! MNIST in IDX format (raw or gzipped), and the embedded 10,000-digit subset.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::data::dataset::InMemDataset;

use super::{
    DataError, DataFaults, DataSplits, DatasetInfo, ImageItem, maybe_gunzip, numbered_classes,
    read_file,
};

/// MNIST's pixel statistics (the usual 0.1307 / 0.3081).
const MEAN: f32 = 0.1307;
const STD: f32 = 0.3081;

const EMBEDDED_TRAIN_IMAGES: &[u8] =
    include_bytes!("../../../../datasets/mnist/train-images-idx3-ubyte.gz");
const EMBEDDED_TRAIN_LABELS: &[u8] =
    include_bytes!("../../../../datasets/mnist/train-labels-idx1-ubyte.gz");
const EMBEDDED_TEST_IMAGES: &[u8] =
    include_bytes!("../../../../datasets/mnist/t10k-images-idx3-ubyte.gz");
const EMBEDDED_TEST_LABELS: &[u8] =
    include_bytes!("../../../../datasets/mnist/t10k-labels-idx1-ubyte.gz");

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// Decompresses if needed and checks an IDX header: `magic`, then `dims` big-endian sizes.
/// Returns the data and the sizes.
fn idx_header(
    path: &Path,
    bytes: Vec<u8>,
    magic: u32,
    what: &str,
    dims: usize,
) -> Result<(Vec<u8>, Vec<usize>), DataError> {
    let bytes = maybe_gunzip(path, bytes)?;
    let header = 4 * (dims + 1);
    if bytes.len() < header {
        return Err(DataError::format(
            path,
            format!(
                "truncated IDX header: {} bytes, expected {header}",
                bytes.len()
            ),
        ));
    }
    let found = be_u32(&bytes, 0);
    if found != magic {
        return Err(DataError::format(
            path,
            format!("not an IDX {what} file: magic number {found:#010x}, expected {magic:#010x}"),
        ));
    }
    let sizes = (1..=dims).map(|i| be_u32(&bytes, 4 * i) as usize).collect();
    Ok((bytes, sizes))
}

/// Parses an IDX image file: magic 0x00000803, count, rows, columns, then the pixels.
pub fn parse_images(path: &Path, bytes: Vec<u8>) -> Result<Vec<ImageItem>, DataError> {
    let (bytes, sizes) = idx_header(path, bytes, 0x0803, "image", 3)?;
    let [count, rows, cols] = [sizes[0], sizes[1], sizes[2]];
    let size = rows.saturating_mul(cols);
    // Saturating: a header's sizes never overflow into a small, matching number.
    let expected = count.saturating_mul(size).saturating_add(16);
    if bytes.len() != expected {
        return Err(DataError::format(
            path,
            format!(
                "{} bytes for {count} images of {rows}x{cols}: expected {expected} (truncated or corrupt)",
                bytes.len()
            ),
        ));
    }
    Ok(bytes[16..]
        .chunks_exact(size.max(1))
        .map(|pixels| ImageItem {
            pixels: pixels.to_vec(),
            height: rows,
            width: cols,
            channels: 1,
            label: 0,
        })
        .collect())
}

/// Parses an IDX label file: magic 0x00000801, count, then one byte per label (0 to 9).
pub fn parse_labels(path: &Path, bytes: Vec<u8>) -> Result<Vec<usize>, DataError> {
    let (bytes, sizes) = idx_header(path, bytes, 0x0801, "label", 1)?;
    let count = sizes[0];
    if bytes.len() != count.saturating_add(8) {
        return Err(DataError::format(
            path,
            format!(
                "{} bytes for {count} labels: expected {} (truncated or corrupt)",
                bytes.len(),
                count.saturating_add(8)
            ),
        ));
    }
    if let Some((i, label)) = bytes[8..].iter().enumerate().find(|(_, label)| **label > 9) {
        return Err(DataError::format(
            path,
            format!("label {i} is {label}, outside 0..=9"),
        ));
    }
    Ok(bytes[8..].iter().map(|&label| label as usize).collect())
}

fn labelled(
    images_path: &Path,
    images: Vec<u8>,
    labels_path: &Path,
    labels: Vec<u8>,
) -> Result<Vec<ImageItem>, DataError> {
    let mut images = parse_images(images_path, images)?;
    let labels = parse_labels(labels_path, labels)?;
    if images.len() != labels.len() {
        return Err(DataError::format(
            labels_path,
            format!(
                "{} labels for {} images in {}",
                labels.len(),
                images.len(),
                images_path.display()
            ),
        ));
    }
    for (image, label) in images.iter_mut().zip(labels) {
        image.label = label;
    }
    Ok(images)
}

fn splits(train: Vec<ImageItem>, test: Vec<ImageItem>) -> DataSplits {
    let size = train
        .first()
        .map_or([28, 28], |item| [item.height, item.width]);
    DataSplits {
        train: Arc::new(InMemDataset::new(train)),
        test: Arc::new(InMemDataset::new(test)),
        info: DatasetInfo {
            kind: "mnist".into(),
            channels: 1,
            image_size: size,
            class_names: numbered_classes(10),
            mean: vec![MEAN],
            std: vec![STD],
        },
        faults: DataFaults::default(),
    }
}

/// Finds `<stem>` or `<stem>.gz` in `dir`.
fn find(dir: &Path, stem: &str) -> Result<PathBuf, DataError> {
    [dir.join(stem), dir.join(format!("{stem}.gz"))]
        .into_iter()
        .find(|path| path.is_file())
        .ok_or_else(|| {
            DataError::format(
                dir,
                format!("no `{stem}` or `{stem}.gz` in this MNIST folder"),
            )
        })
}

/// Reads `train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`, `t10k-images-idx3-ubyte[.gz]`
/// and `t10k-labels-idx1-ubyte[.gz]` from `dir`.
pub fn load_dir(dir: &Path) -> Result<DataSplits, DataError> {
    if !dir.is_dir() {
        return Err(DataError::format(dir, "MNIST folder not found"));
    }
    let read = |stem: &str| -> Result<(PathBuf, Vec<u8>), DataError> {
        let path = find(dir, stem)?;
        let bytes = read_file(&path)?;
        Ok((path, bytes))
    };
    let split = |prefix: &str| -> Result<Vec<ImageItem>, DataError> {
        let (images_path, images) = read(&format!("{prefix}-images-idx3-ubyte"))?;
        let (labels_path, labels) = read(&format!("{prefix}-labels-idx1-ubyte"))?;
        labelled(&images_path, images, &labels_path, labels)
    };
    Ok(splits(split("train")?, split("t10k")?))
}

/// The 10,000-digit subset compiled into the binary (8,000 train, 2,000 test; see
/// `datasets/README.md`).
pub fn embedded() -> DataSplits {
    let split = |name: &str, images: &[u8], labels: &[u8]| {
        let path = PathBuf::from(format!("<embedded {name}>"));
        labelled(&path, images.to_vec(), &path, labels.to_vec())
            .expect("the embedded MNIST files are valid (checked by tests)")
    };
    splits(
        split("train", EMBEDDED_TRAIN_IMAGES, EMBEDDED_TRAIN_LABELS),
        split("test", EMBEDDED_TEST_IMAGES, EMBEDDED_TEST_LABELS),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn idx_images(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for word in [0x0803, count, rows, cols] {
            bytes.extend(word.to_be_bytes());
        }
        bytes.extend(pixels);
        bytes
    }

    fn idx_labels(labels: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for word in [0x0801, labels.len() as u32] {
            bytes.extend(word.to_be_bytes());
        }
        bytes.extend(labels);
        bytes
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        out.write_all(bytes).unwrap();
        out.finish().unwrap()
    }

    fn write_dir(dir: &Path, train_images: Vec<u8>, gz: bool) {
        let put = |name: &str, bytes: Vec<u8>| {
            let (name, bytes) = if gz {
                (format!("{name}.gz"), gzip(&bytes))
            } else {
                (name.to_string(), bytes)
            };
            std::fs::write(dir.join(name), bytes).unwrap();
        };
        put("train-images-idx3-ubyte", train_images);
        put("train-labels-idx1-ubyte", idx_labels(&[3, 7]));
        put("t10k-images-idx3-ubyte", idx_images(1, 2, 2, &[9, 8, 7, 6]));
        put("t10k-labels-idx1-ubyte", idx_labels(&[1]));
    }

    #[test]
    fn reads_raw_and_gzipped_idx_folders() {
        for gz in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            write_dir(
                dir.path(),
                idx_images(2, 2, 2, &[1, 2, 3, 4, 5, 6, 7, 8]),
                gz,
            );
            let data = load_dir(dir.path()).unwrap();
            assert_eq!(data.train.len(), 2);
            let second = data.train.get(1).unwrap();
            assert_eq!(second.pixels, vec![5, 6, 7, 8]);
            assert_eq!(
                (second.height, second.width, second.channels, second.label),
                (2, 2, 1, 7)
            );
            assert_eq!(data.test.get(0).unwrap().label, 1);
        }
    }

    #[test]
    fn truncated_corrupt_and_missing_files_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        write_dir(dir.path(), idx_images(2, 2, 2, &[1, 2, 3, 4, 5]), false);
        let message = load_dir(dir.path()).err().unwrap().to_string();
        assert!(message.contains("train-images-idx3-ubyte"), "{message}");
        assert!(
            message.contains("expected 24 (truncated or corrupt)"),
            "{message}"
        );

        let mut wrong_magic = idx_images(2, 2, 2, &[0; 8]);
        wrong_magic[3] = 0x01;
        write_dir(dir.path(), wrong_magic, false);
        let message = load_dir(dir.path()).err().unwrap().to_string();
        assert!(message.contains("magic number 0x00000801"), "{message}");

        let mut broken_gzip = gzip(&idx_images(2, 2, 2, &[0; 8]));
        broken_gzip.truncate(broken_gzip.len() / 2);
        write_dir(dir.path(), vec![], false);
        std::fs::remove_file(dir.path().join("train-images-idx3-ubyte")).unwrap();
        std::fs::write(dir.path().join("train-images-idx3-ubyte.gz"), broken_gzip).unwrap();
        let message = load_dir(dir.path()).err().unwrap().to_string();
        assert!(
            message.contains("train-images-idx3-ubyte.gz: corrupt gzip data"),
            "{message}"
        );

        std::fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte")).unwrap();
        std::fs::write(
            dir.path().join("train-images-idx3-ubyte.gz"),
            gzip(&idx_images(2, 2, 2, &[0; 8])),
        )
        .unwrap();
        let message = load_dir(dir.path()).err().unwrap().to_string();
        assert!(
            message.contains("no `t10k-labels-idx1-ubyte` or `t10k-labels-idx1-ubyte.gz`"),
            "{message}"
        );

        let message = load_dir(&dir.path().join("nowhere"))
            .err()
            .unwrap()
            .to_string();
        assert!(message.contains("MNIST folder not found"), "{message}");
    }

    #[test]
    fn label_count_and_range_are_checked() {
        let path = Path::new("labels");
        let message = parse_labels(path, idx_labels(&[1, 12]))
            .unwrap_err()
            .to_string();
        assert_eq!(message, "labels: label 1 is 12, outside 0..=9");
        let dir = tempfile::tempdir().unwrap();
        write_dir(dir.path(), idx_images(3, 2, 2, &[0; 12]), false);
        let message = load_dir(dir.path()).err().unwrap().to_string();
        assert!(message.contains("2 labels for 3 images"), "{message}");
    }

    #[test]
    fn embedded_subset_has_the_documented_split() {
        let data = embedded();
        assert_eq!((data.train.len(), data.test.len()), (8000, 2000));
        let mut per_class = [0; 10];
        for i in 0..data.test.len() {
            per_class[data.test.get(i).unwrap().label] += 1;
        }
        assert_eq!(
            per_class,
            [200, 225, 198, 206, 196, 173, 203, 214, 189, 196]
        );
        let digit = data.train.get(0).unwrap();
        assert_eq!((digit.height, digit.width, digit.channels), (28, 28, 1));
        assert!(digit.pixels.iter().any(|&p| p > 200), "a digit has ink");
    }
}
