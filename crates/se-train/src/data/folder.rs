//! ImageNet-style folders: `root/train/<class>/<image>` and `root/val/<class>/<image>` (PNG or JPEG).
//! Classes are the sub-folders of `train`, sorted by name; `val` may hold any subset of them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::data::dataset::Dataset;

use super::{
    DataError, DataFaults, DataSplits, DatasetInfo, IMAGENET_MEAN, IMAGENET_STD, ImageItem,
};

const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// Images listed from a folder; each is decoded (to RGB) when the data loader asks for it.
pub struct FolderDataset {
    files: Vec<(PathBuf, usize)>,
    faults: DataFaults,
}

impl FolderDataset {
    /// The image files and their labels.
    pub fn files(&self) -> &[(PathBuf, usize)] {
        &self.files
    }
}

/// Decodes an image file to 8-bit RGB.
pub fn decode_rgb(path: &Path) -> Result<image::RgbImage, DataError> {
    let reader = image::ImageReader::open(path)
        .map_err(|e| DataError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?;
    let image = reader
        .decode()
        .map_err(|e| DataError::format(path, format!("cannot decode image: {e}")))?;
    Ok(image.to_rgb8())
}

impl Dataset<ImageItem> for FolderDataset {
    fn get(&self, index: usize) -> Option<ImageItem> {
        let (path, label) = self.files.get(index)?;
        // Every header was checked when the folder was listed; a file that breaks later (changed
        // on disk, corrupt body) cannot be skipped without shifting the epoch, so it stops the
        // run (through `faults`) and a black pixel stands in until the loop stops.
        let image = decode_rgb(path).unwrap_or_else(|error| {
            self.faults.record(&error);
            image::RgbImage::new(1, 1)
        });
        let (width, height) = image.dimensions();
        Some(ImageItem {
            pixels: image.into_raw(),
            height: height as usize,
            width: width as usize,
            channels: 3,
            label: *label,
        })
    }

    fn len(&self) -> usize {
        self.files.len()
    }
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut entries = std::fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .map(|entry| entry.map(|e| e.path()).map_err(|e| DataError::io(dir, e)))
        .collect::<Result<Vec<_>, _>>()?;
    entries.sort();
    Ok(entries)
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|ext| ext.to_str())
        .is_some_and(|ext| EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()))
}

/// Lists `split/<class>/*` for the given classes, checking that every image's header decodes.
fn list_split(
    split: &Path,
    classes: &[String],
    every_class: bool,
    faults: &DataFaults,
) -> Result<FolderDataset, DataError> {
    let mut files = Vec::new();
    for dir in sorted_entries(split)?.into_iter().filter(|p| p.is_dir()) {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let label = classes.iter().position(|c| *c == name).ok_or_else(|| {
            DataError::format(
                &dir,
                format!("class `{name}` is not among the training classes"),
            )
        })?;
        let images: Vec<PathBuf> = sorted_entries(&dir)?
            .into_iter()
            .filter(|p| is_image(p))
            .collect();
        if every_class && images.is_empty() {
            return Err(DataError::format(
                &dir,
                "a class folder without images (.png, .jpg, .jpeg): add images or remove it",
            ));
        }
        for path in images {
            image::ImageReader::open(&path)
                .map_err(|e| DataError::io(&path, e))?
                .with_guessed_format()
                .map_err(|e| DataError::io(&path, e))?
                .into_dimensions()
                .map_err(|e| DataError::format(&path, format!("not a readable image: {e}")))?;
            files.push((path, label));
        }
    }
    if files.is_empty() {
        return Err(DataError::format(
            split,
            "no images (expected <class>/<image>.png|jpg below this folder)",
        ));
    }
    Ok(FolderDataset {
        files,
        faults: faults.clone(),
    })
}

/// Reads `root/train` and `root/val` (or `root/test`); images are shown to the model at
/// `image_size` (augmentation resizes them).
pub fn load_dir(root: &Path, image_size: usize) -> Result<DataSplits, DataError> {
    let train_dir = root.join("train");
    if !train_dir.is_dir() {
        return Err(DataError::format(
            root,
            "image folder needs a `train/<class>/` sub-folder",
        ));
    }
    let val_dir = ["val", "test"]
        .map(|name| root.join(name))
        .into_iter()
        .find(|dir| dir.is_dir())
        .ok_or_else(|| DataError::format(root, "image folder needs a `val/<class>/` sub-folder"))?;
    let classes: Vec<String> = sorted_entries(&train_dir)?
        .into_iter()
        .filter(|p| p.is_dir())
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    if classes.len() < 2 {
        return Err(DataError::format(
            &train_dir,
            format!("{} class folder(s), need at least 2", classes.len()),
        ));
    }
    let faults = DataFaults::default();
    let train = list_split(&train_dir, &classes, true, &faults)?;
    let test = list_split(&val_dir, &classes, false, &faults)?;
    Ok(DataSplits {
        train: Arc::new(train),
        test: Arc::new(test),
        info: DatasetInfo {
            kind: "folder".into(),
            channels: 3,
            image_size: [image_size, image_size],
            class_names: classes,
            mean: IMAGENET_MEAN.to_vec(),
            std: IMAGENET_STD.to_vec(),
        },
        faults,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes `root/<split>/<class>/<i>.png` images of `size` whose red channel is `10 * class`.
    pub fn write_folder(root: &Path, classes: &[&str], per_class: usize, size: u32) {
        for split in ["train", "val"] {
            for (label, class) in classes.iter().enumerate() {
                let dir = root.join(split).join(class);
                std::fs::create_dir_all(&dir).unwrap();
                for i in 0..per_class {
                    let image = image::RgbImage::from_fn(size, size + 2, |x, y| {
                        image::Rgb([10 * label as u8, (x + y) as u8, i as u8])
                    });
                    image.save(dir.join(format!("{i}.png"))).unwrap();
                }
            }
        }
    }

    #[test]
    fn lists_classes_and_decodes_images_lazily() {
        let dir = tempfile::tempdir().unwrap();
        write_folder(dir.path(), &["cat", "dog"], 2, 6);
        std::fs::write(dir.path().join("train/cat/notes.txt"), "ignored").unwrap();
        let data = load_dir(dir.path(), 8).unwrap();
        assert_eq!(data.info.class_names, ["cat", "dog"]);
        assert_eq!((data.train.len(), data.test.len()), (4, 4));
        let item = data.train.get(3).unwrap();
        assert_eq!(
            (item.label, item.width, item.height, item.channels),
            (1, 6, 8, 3)
        );
        assert_eq!(item.at(1, 2, 0), 10);
        assert_eq!(item.at(1, 2, 1), 3);
    }

    #[test]
    fn corrupt_images_and_bad_layouts_are_named() {
        let dir = tempfile::tempdir().unwrap();
        write_folder(dir.path(), &["cat", "dog"], 1, 4);
        std::fs::write(
            dir.path().join("train/dog/broken.png"),
            b"\x89PNG\r\n\x1a\nnot really",
        )
        .unwrap();
        let message = load_dir(dir.path(), 8).err().unwrap().to_string();
        assert!(
            message.contains("broken.png: not a readable image"),
            "{message}"
        );

        std::fs::remove_file(dir.path().join("train/dog/broken.png")).unwrap();
        std::fs::create_dir_all(dir.path().join("val/bird")).unwrap();
        let message = load_dir(dir.path(), 8).err().unwrap().to_string();
        assert!(
            message.contains("class `bird` is not among the training classes"),
            "{message}"
        );

        let message = load_dir(&dir.path().join("train"), 8)
            .err()
            .unwrap()
            .to_string();
        assert!(
            message.contains("needs a `train/<class>/` sub-folder"),
            "{message}"
        );
    }
}
