//! NumPy `.npy` arrays of `f32` (read: `<f4` or `<f8`, C order; write: `<f4`), the format in
//! which `se logits` exchanges inputs and outputs with PyTorch.

use std::fs;
use std::path::Path;

use super::error::InteropError;
use crate::files::write_atomically;

const MAGIC: &[u8] = b"\x93NUMPY";

/// An array read from or written to a `.npy` file.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    /// The shape, outermost dimension first.
    pub shape: Vec<usize>,
    /// The values in C (row-major) order.
    pub values: Vec<f32>,
}

/// Reads a `.npy` file of little-endian `f32` or `f64` values in C order.
pub fn read_npy(path: &Path) -> Result<Array, InteropError> {
    let bytes = fs::read(path).map_err(|e| InteropError::read(path, e))?;
    parse(&bytes).map_err(|message| InteropError::read(path, message))
}

fn parse(bytes: &[u8]) -> Result<Array, String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not a .npy file (no \\x93NUMPY magic)".into());
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        version => return Err(format!(".npy version {version} is not supported")),
    };
    let header = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or("truncated or unreadable .npy header")?;
    let descr = field(header, "descr")
        .and_then(|value| {
            let quote = value.chars().next()?;
            value[1..].split(quote).next()
        })
        .ok_or("no 'descr' in the .npy header")?;
    if field(header, "fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err("Fortran-ordered arrays are not supported (save with C order)".into());
    }
    let shape_text = field(header, "shape").ok_or("no 'shape' in the .npy header")?;
    let shape_text = shape_text
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or("unreadable 'shape' in the .npy header")?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad dimension `{s}` in the shape"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let count = shape
        .iter()
        .try_fold(1usize, |count, &d| count.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} is too large"))?;
    let body = &bytes[start + header_len..];
    let width = match descr {
        "<f4" => 4,
        "<f8" => 8,
        other => {
            return Err(format!(
                "dtype `{other}` is not supported (use float32 or float64)"
            ));
        }
    };
    // Checked against the file's real size before anything is allocated.
    let needed = count
        .checked_mul(width)
        .ok_or_else(|| format!("shape {shape:?} is too large"))?;
    if body.len() != needed {
        return Err(format!(
            "shape {shape:?} needs {needed} bytes of data, the file has {}",
            body.len()
        ));
    }
    let values = if width == 4 {
        body.chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    } else {
        body.chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32)
            .collect()
    };
    Ok(Array { shape, values })
}

/// The text after `'name':` in a .npy header dict.
fn field<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    let at = header.find(&format!("'{name}'"))?;
    let rest = &header[at + name.len() + 2..];
    Some(rest.trim_start().strip_prefix(':')?.trim_start())
}

/// Writes `array` as a version 1.0 `.npy` file of `<f4` values.
pub fn write_npy(path: &Path, array: &Array) -> Result<(), InteropError> {
    let count: usize = array.shape.iter().product();
    if count != array.values.len() {
        return Err(InteropError::write(
            path,
            format!(
                "shape {:?} does not hold {} values",
                array.shape,
                array.values.len()
            ),
        ));
    }
    let dims: Vec<String> = array.shape.iter().map(|d| d.to_string()).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad so that the data starts on a 64-byte boundary, ending the header with a newline.
    let unpadded = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut bytes = Vec::with_capacity(MAGIC.len() + 4 + header.len() + 4 * count);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&[1, 0]);
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for value in &array.values {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    write_atomically(path, &bytes).map_err(|e| InteropError::write(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_gives_the_same_array() {
        let dir = std::env::temp_dir().join(format!("se-npy-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.npy");
        let array = Array {
            shape: vec![2, 3],
            values: vec![1.0, -2.5, 3.0, 0.0, 1e-7, 65504.0],
        };
        write_npy(&path, &array).unwrap();
        let bytes = fs::read(&path).unwrap();
        assert_eq!(
            (bytes.len() - 24) % 64,
            0,
            "data starts on a 64-byte boundary"
        );
        assert_eq!(read_npy(&path).unwrap(), array);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn reads_numpy_float64_header() {
        let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }";
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[1, 0]);
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        for v in [0.5f64, -1.0, 2.0] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let array = parse(&bytes).unwrap();
        assert_eq!(array.shape, vec![3]);
        assert_eq!(array.values, vec![0.5, -1.0, 2.0]);
    }

    #[test]
    fn truncated_data_is_an_error_that_says_so() {
        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }";
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[1, 0]);
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&[0u8; 12]);
        assert_eq!(
            parse(&bytes).unwrap_err(),
            "shape [2, 2] needs 16 bytes of data, the file has 12"
        );
        assert!(
            parse(b"PK\x03\x04 not numpy")
                .unwrap_err()
                .contains("magic")
        );
    }
}
