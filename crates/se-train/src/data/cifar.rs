//! CIFAR-10 and CIFAR-100 in their binary formats.
//!
//! CIFAR-10 (`cifar-10-batches-bin/`): `data_batch_1.bin` .. `data_batch_5.bin` and `test_batch.bin`,
//! each record 1 label byte + 3,072 pixel bytes (the red, green and blue 32x32 planes).
//! CIFAR-100 (`cifar-100-binary/`): `train.bin` and `test.bin`, each record a coarse and a fine label
//! byte + 3,072 pixel bytes; the fine label (100 classes) is used.

use std::path::Path;
use std::sync::Arc;

use burn::data::dataset::InMemDataset;

use super::{
    DataError, DataFaults, DataSplits, DatasetInfo, ImageItem, numbered_classes, read_file,
};

const SIDE: usize = 32;
const PIXELS: usize = SIDE * SIDE * 3;

/// Which CIFAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cifar {
    /// 10 classes.
    Ten,
    /// 100 fine classes.
    Hundred,
}

impl Cifar {
    fn label_bytes(self) -> usize {
        match self {
            Cifar::Ten => 1,
            Cifar::Hundred => 2,
        }
    }

    fn classes(self) -> usize {
        match self {
            Cifar::Ten => 10,
            Cifar::Hundred => 100,
        }
    }

    fn files(self) -> (Vec<String>, &'static str) {
        match self {
            Cifar::Ten => (
                (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
                "test_batch.bin",
            ),
            Cifar::Hundred => (vec!["train.bin".into()], "test.bin"),
        }
    }

    fn names_file(self) -> &'static str {
        match self {
            Cifar::Ten => "batches.meta.txt",
            Cifar::Hundred => "fine_label_names.txt",
        }
    }
}

/// Parses one binary batch file into images (HWC) and labels.
pub fn parse_batch(path: &Path, bytes: &[u8], kind: Cifar) -> Result<Vec<ImageItem>, DataError> {
    let record = kind.label_bytes() + PIXELS;
    if bytes.is_empty() || !bytes.len().is_multiple_of(record) {
        return Err(DataError::format(
            path,
            format!(
                "{} bytes is not a whole number of {record}-byte CIFAR records (truncated or corrupt)",
                bytes.len()
            ),
        ));
    }
    bytes
        .chunks_exact(record)
        .enumerate()
        .map(|(i, chunk)| {
            let label = chunk[kind.label_bytes() - 1] as usize;
            if label >= kind.classes() {
                return Err(DataError::format(
                    path,
                    format!(
                        "record {i} has label {label}, outside 0..{}",
                        kind.classes()
                    ),
                ));
            }
            let planes = &chunk[kind.label_bytes()..];
            let mut pixels = Vec::with_capacity(PIXELS);
            for position in 0..SIDE * SIDE {
                pixels.extend((0..3).map(|c| planes[c * SIDE * SIDE + position]));
            }
            Ok(ImageItem {
                pixels,
                height: SIDE,
                width: SIDE,
                channels: 3,
                label,
            })
        })
        .collect()
}

fn read_batches(dir: &Path, names: &[String], kind: Cifar) -> Result<Vec<ImageItem>, DataError> {
    let mut items = Vec::new();
    for name in names {
        let path = dir.join(name);
        items.extend(parse_batch(&path, &read_file(&path)?, kind)?);
    }
    Ok(items)
}

/// Reads a CIFAR-10 or CIFAR-100 binary folder. Class names come from `batches.meta.txt` /
/// `fine_label_names.txt` when present.
pub fn load_dir(dir: &Path, kind: Cifar) -> Result<DataSplits, DataError> {
    if !dir.is_dir() {
        return Err(DataError::format(dir, "CIFAR folder not found"));
    }
    let (train_files, test_file) = kind.files();
    let train = read_batches(dir, &train_files, kind)?;
    let test = read_batches(dir, &[test_file.to_string()], kind)?;
    let names_path = dir.join(kind.names_file());
    let class_names = match std::fs::read_to_string(&names_path) {
        Ok(text) => {
            let names: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect();
            if names.len() != kind.classes() {
                return Err(DataError::format(
                    &names_path,
                    format!("{} class names, expected {}", names.len(), kind.classes()),
                ));
            }
            names
        }
        Err(_) => numbered_classes(kind.classes()),
    };
    // The usual per-channel statistics of the training sets.
    let (mean, std) = match kind {
        Cifar::Ten => (vec![0.4914, 0.4822, 0.4465], vec![0.2470, 0.2435, 0.2616]),
        Cifar::Hundred => (vec![0.5071, 0.4865, 0.4409], vec![0.2673, 0.2564, 0.2762]),
    };
    Ok(DataSplits {
        train: Arc::new(InMemDataset::new(train)),
        test: Arc::new(InMemDataset::new(test)),
        info: DatasetInfo {
            kind: match kind {
                Cifar::Ten => "cifar10".into(),
                Cifar::Hundred => "cifar100".into(),
            },
            channels: 3,
            image_size: [SIDE, SIDE],
            class_names,
            mean,
            std,
        },
        faults: DataFaults::default(),
    })
}

/// Encodes `(fine label, planes)` records in the binary format (CIFAR-100's coarse label is written
/// as `label / 5`), for tests and fixtures.
pub fn encode_records(kind: Cifar, records: &[(u8, [u8; PIXELS])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (label, planes) in records {
        if kind == Cifar::Hundred {
            out.push(label / 5);
        }
        out.push(*label);
        out.extend_from_slice(planes);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planes(r: u8, g: u8, b: u8) -> [u8; PIXELS] {
        let mut planes = [0u8; PIXELS];
        planes[..1024].fill(r);
        planes[1024..2048].fill(g);
        planes[2048..].fill(b);
        planes[1] = 200; // red of pixel (0, 1)
        planes
    }

    fn write_cifar10(dir: &Path, test_label: u8) {
        for i in 1..=5 {
            let bytes = encode_records(Cifar::Ten, &[(i, planes(i, 2 * i, 3 * i))]);
            std::fs::write(dir.join(format!("data_batch_{i}.bin")), bytes).unwrap();
        }
        let bytes = encode_records(Cifar::Ten, &[(test_label, planes(9, 9, 9))]);
        std::fs::write(dir.join("test_batch.bin"), bytes).unwrap();
    }

    #[test]
    fn reads_cifar10_batches_into_hwc_images() {
        let dir = tempfile::tempdir().unwrap();
        write_cifar10(dir.path(), 0);
        std::fs::write(
            dir.path().join("batches.meta.txt"),
            "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n",
        )
        .unwrap();
        let data = load_dir(dir.path(), Cifar::Ten).unwrap();
        assert_eq!((data.train.len(), data.test.len()), (5, 1));
        let item = data.train.get(2).unwrap();
        assert_eq!(item.label, 3);
        assert_eq!(&item.pixels[..6], &[3, 6, 9, 200, 6, 9]);
        assert_eq!(data.info.class_names[9], "truck");
    }

    #[test]
    fn reads_cifar100_fine_labels() {
        let dir = tempfile::tempdir().unwrap();
        let train = encode_records(
            Cifar::Hundred,
            &[(57, planes(1, 2, 3)), (99, planes(4, 5, 6))],
        );
        std::fs::write(dir.path().join("train.bin"), train).unwrap();
        std::fs::write(
            dir.path().join("test.bin"),
            encode_records(Cifar::Hundred, &[(3, planes(0, 0, 0))]),
        )
        .unwrap();
        let data = load_dir(dir.path(), Cifar::Hundred).unwrap();
        assert_eq!(data.train.get(0).unwrap().label, 57);
        assert_eq!(data.train.get(1).unwrap().label, 99);
        assert_eq!(data.info.num_classes(), 100);
    }

    #[test]
    fn bad_files_are_named_with_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        write_cifar10(dir.path(), 0);
        let path = dir.path().join("data_batch_3.bin");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(1000);
        std::fs::write(&path, bytes).unwrap();
        let message = load_dir(dir.path(), Cifar::Ten).err().unwrap().to_string();
        assert!(
            message.contains("data_batch_3.bin: 1000 bytes is not a whole number of 3073-byte"),
            "{message}"
        );

        write_cifar10(dir.path(), 10);
        let message = load_dir(dir.path(), Cifar::Ten).err().unwrap().to_string();
        assert!(
            message.contains("test_batch.bin: record 0 has label 10, outside 0..10"),
            "{message}"
        );

        std::fs::remove_file(dir.path().join("data_batch_5.bin")).unwrap();
        let message = load_dir(dir.path(), Cifar::Ten).err().unwrap().to_string();
        assert!(message.contains("data_batch_5.bin"), "{message}");

        let message = load_dir(&dir.path().join("missing"), Cifar::Hundred)
            .err()
            .unwrap()
            .to_string();
        assert!(message.contains("CIFAR folder not found"), "{message}");
    }
}
