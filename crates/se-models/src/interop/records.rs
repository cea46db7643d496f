//! Strict loading of PyTorch zip checkpoints: every tensor storage the pickle refers to must be in
//! the archive with exactly the bytes its element count needs, as `torch.load` requires.
//! burn-store's reader fills a missing or short record with zeros instead, which would load
//! wrong weights without a word.
//!
//! The pickle is scanned, never executed: the scanner knows every opcode of protocols 0 to 5 by
//! its argument layout, keeps strings, integers, tuples and globals on a small stack, and only
//! reads the storage tuples (`('storage', torch.FloatStorage, key, location, numel)`) and the
//! name of the tensor each belongs to (the string read last before its `_rebuild_tensor`
//! function, written out or fetched from the memo: the state dict's key).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::error::InteropError;

/// A tensor storage the pickle refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StorageRef {
    /// The record's name in the archive's `data/` folder.
    pub key: String,
    /// Bytes the record must hold (`numel` × the element size).
    pub bytes: u64,
    /// The first tensor that uses it (for messages).
    pub tensor: String,
}

/// Checks every storage record of the zip checkpoint at `path`; `Ok` for files that are not zip
/// archives (the legacy format is read, and checked for its size, by burn-store).
pub(crate) fn check_zip_records(path: &Path) -> Result<(), InteropError> {
    let file = File::open(path).map_err(|e| InteropError::read(path, e))?;
    let Ok(mut archive) = zip::ZipArchive::new(file) else {
        return Ok(());
    };
    let pickle_name = (0..archive.len())
        .filter_map(|i| archive.name_for_index(i).map(str::to_string))
        .find(|name| name.ends_with("data.pkl"))
        .ok_or_else(|| InteropError::read(path, "a zip archive without data.pkl"))?;
    let prefix = pickle_name.trim_end_matches("data.pkl").to_string();
    let mut pickle = Vec::new();
    let entry = archive
        .by_name(&pickle_name)
        .map_err(|e| InteropError::read(path, format!("{pickle_name}: {e}")))?;
    // The pickle's size is the archive's word; bound the read by it.
    let size = entry.size();
    entry
        .take(size)
        .read_to_end(&mut pickle)
        .map_err(|e| InteropError::read(path, format!("{pickle_name}: {e}")))?;
    let storages = scan_storages(&pickle)
        .map_err(|e| InteropError::read(path, format!("{pickle_name}: {e}")))?;
    for storage in storages.values() {
        let record = format!("{prefix}data/{}", storage.key);
        let found = match archive.by_name(&record) {
            Ok(entry) => entry.size(),
            Err(_) => {
                return Err(InteropError::read(
                    path,
                    format!(
                        "tensor `{}`: its data record `{record}` is missing from the archive",
                        storage.tensor
                    ),
                ));
            }
        };
        if found < storage.bytes {
            return Err(InteropError::read(
                path,
                format!(
                    "tensor `{}`: data record `{record}` holds {found} bytes, {} expected",
                    storage.tensor, storage.bytes
                ),
            ));
        }
    }
    Ok(())
}

/// A value on the scanner's stack: what the storage tuples are made of, anything else opaque.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Str(String),
    Int(i64),
    Global(String, String),
    Tuple(Vec<Value>),
    Mark,
    Other,
}

/// Bytes of one element of a `torch.*Storage` class.
fn element_size(class: &str) -> Option<u64> {
    Some(match class {
        "DoubleStorage" | "LongStorage" | "ComplexFloatStorage" => 8,
        "FloatStorage" | "IntStorage" => 4,
        "HalfStorage" | "BFloat16Storage" | "ShortStorage" => 2,
        "ByteStorage" | "CharStorage" | "BoolStorage" | "UntypedStorage" => 1,
        "ComplexDoubleStorage" => 16,
        _ => return None,
    })
}

/// The storages a pickle refers to, by key.
pub(crate) fn scan_storages(pickle: &[u8]) -> Result<BTreeMap<String, StorageRef>, String> {
    let mut scanner = Scanner {
        bytes: pickle,
        at: 0,
    };
    let mut stack: Vec<Value> = Vec::new();
    let mut memo: BTreeMap<u64, Value> = BTreeMap::new();
    let mut storages = BTreeMap::new();
    // The last string pushed outside a storage tuple, and the tensor being rebuilt.
    let mut last_string = String::new();
    let mut tensor = String::new();
    let pop = |stack: &mut Vec<Value>| stack.pop().unwrap_or(Value::Other);
    let pop_mark = |stack: &mut Vec<Value>| -> Vec<Value> {
        let start = stack.iter().rposition(|v| *v == Value::Mark);
        match start {
            Some(start) => {
                let items = stack.split_off(start + 1);
                stack.pop();
                items
            }
            None => std::mem::take(stack),
        }
    };
    loop {
        let opcode = scanner.byte()?;
        match opcode {
            b'.' => break,
            0x80 => scanner.skip(1)?,
            0x95 => scanner.skip(8)?,
            b'(' => stack.push(Value::Mark),
            b'}' | b']' | 0x8f => stack.push(Value::Other),
            b')' => stack.push(Value::Tuple(Vec::new())),
            b't' => {
                let items = pop_mark(&mut stack);
                stack.push(Value::Tuple(items));
            }
            0x85..=0x87 => {
                let n = (opcode - 0x84) as usize;
                let at = stack.len().saturating_sub(n);
                let items = stack.split_off(at);
                stack.push(Value::Tuple(items));
            }
            // Dict and list fills, object builds: consume their operands.
            b'u' | b'e' | 0x90 => {
                pop_mark(&mut stack);
            }
            0x91 => {
                pop_mark(&mut stack);
                stack.push(Value::Other);
            }
            b's' => {
                stack.truncate(stack.len().saturating_sub(2));
            }
            b'a' | b'b' | b'0' => {
                pop(&mut stack);
            }
            b'1' => {
                pop_mark(&mut stack);
            }
            b'2' => {
                let top = stack.last().cloned().unwrap_or(Value::Other);
                stack.push(top);
            }
            b'R' | 0x81 => {
                stack.truncate(stack.len().saturating_sub(2));
                stack.push(Value::Other);
            }
            0x92 => {
                stack.truncate(stack.len().saturating_sub(3));
                stack.push(Value::Other);
            }
            b'Q' => {
                if let Value::Tuple(items) = pop(&mut stack) {
                    record_storage(&items, &tensor, &mut storages)?;
                }
                stack.push(Value::Other);
            }
            b'P' => {
                scanner.line()?;
                stack.push(Value::Other);
            }
            b'N' | 0x88 | 0x89 | 0x97 => stack.push(Value::Other),
            0x98 => {}
            // Memo.
            b'q' => {
                let key = scanner.uint(1)?;
                memo.insert(key, stack.last().cloned().unwrap_or(Value::Other));
            }
            b'r' => {
                let key = scanner.uint(4)?;
                memo.insert(key, stack.last().cloned().unwrap_or(Value::Other));
            }
            0x94 => {
                let key = memo.len() as u64;
                memo.insert(key, stack.last().cloned().unwrap_or(Value::Other));
            }
            b'p' => {
                let key = scanner.line()?.trim().parse().map_err(|_| "bad PUT")?;
                memo.insert(key, stack.last().cloned().unwrap_or(Value::Other));
            }
            b'h' | b'j' | b'g' => {
                let key = match opcode {
                    b'h' => scanner.uint(1)?,
                    b'j' => scanner.uint(4)?,
                    _ => scanner.line()?.trim().parse().map_err(|_| "bad GET")?,
                };
                let value = memo.get(&key).cloned().unwrap_or(Value::Other);
                // After the first tensor the rebuild function comes from the memo.
                if matches!(&value, Value::Global(_, name) if name.starts_with("_rebuild_")) {
                    tensor.clone_from(&last_string);
                }
                stack.push(value);
            }
            // Numbers.
            b'K' => stack.push(Value::Int(scanner.uint(1)? as i64)),
            b'M' => stack.push(Value::Int(scanner.uint(2)? as i64)),
            b'J' => stack.push(Value::Int(scanner.uint(4)? as u32 as i32 as i64)),
            0x8a | 0x8b => {
                let len = scanner.uint(if opcode == 0x8a { 1 } else { 4 })? as usize;
                let digits = scanner.take(len)?;
                let mut value: i64 = 0;
                for (i, byte) in digits.iter().enumerate().take(8) {
                    value |= (*byte as i64) << (8 * i);
                }
                if len < 8 && len > 0 && digits[len - 1] & 0x80 != 0 {
                    value -= 1i64 << (8 * len);
                }
                stack.push(Value::Int(value));
            }
            b'G' => {
                scanner.skip(8)?;
                stack.push(Value::Other);
            }
            b'I' | b'L' => {
                let line = scanner.line()?;
                let text = line.trim().trim_end_matches('L');
                stack.push(text.parse().map_or(Value::Other, Value::Int));
            }
            b'F' => {
                scanner.line()?;
                stack.push(Value::Other);
            }
            // Strings.
            b'X' | 0x8c | 0x8d | b'U' | b'T' => {
                let len = match opcode {
                    0x8c | b'U' => scanner.uint(1)?,
                    0x8d => scanner.uint(8)?,
                    _ => scanner.uint(4)?,
                };
                let bytes = scanner.take(len as usize)?;
                let text = String::from_utf8_lossy(bytes).into_owned();
                last_string.clone_from(&text);
                stack.push(Value::Str(text));
            }
            b'V' | b'S' => {
                let text = scanner.line()?.trim_matches('\'').to_string();
                last_string.clone_from(&text);
                stack.push(Value::Str(text));
            }
            b'C' | b'B' | 0x8e | 0x96 => {
                let len = match opcode {
                    b'C' => scanner.uint(1)?,
                    b'B' => scanner.uint(4)?,
                    _ => scanner.uint(8)?,
                };
                scanner.skip(len as usize)?;
                stack.push(Value::Other);
            }
            // Globals: a tensor's rebuild function follows its dictionary key.
            b'c' => {
                let module = scanner.line()?;
                let name = scanner.line()?;
                if name.starts_with("_rebuild_") {
                    tensor.clone_from(&last_string);
                }
                stack.push(Value::Global(module, name));
            }
            0x93 => {
                let name = pop(&mut stack);
                let module = pop(&mut stack);
                let (Value::Str(module), Value::Str(name)) = (module, name) else {
                    stack.push(Value::Other);
                    continue;
                };
                if name.starts_with("_rebuild_") {
                    // The key was pushed before the module and name strings.
                    if let Some(Value::Str(key)) =
                        stack.iter().rev().find(|v| matches!(v, Value::Str(_)))
                    {
                        tensor.clone_from(key);
                    }
                }
                stack.push(Value::Global(module, name));
            }
            other => {
                return Err(format!(
                    "unknown pickle opcode 0x{other:02x} at byte {}",
                    scanner.at - 1
                ));
            }
        }
    }
    Ok(storages)
}

/// Records `('storage', torch.<Type>Storage, key, location, numel)`.
fn record_storage(
    items: &[Value],
    tensor: &str,
    storages: &mut BTreeMap<String, StorageRef>,
) -> Result<(), String> {
    let [
        Value::Str(kind),
        Value::Global(_, class),
        Value::Str(key),
        _,
        Value::Int(numel),
    ] = items
    else {
        return Ok(());
    };
    if kind != "storage" {
        return Ok(());
    }
    let size = element_size(class).ok_or_else(|| format!("unknown storage type `{class}`"))?;
    let numel = u64::try_from(*numel).map_err(|_| format!("storage `{key}`: negative size"))?;
    let bytes = numel
        .checked_mul(size)
        .ok_or_else(|| format!("storage `{key}`: size overflows"))?;
    storages.entry(key.clone()).or_insert_with(|| StorageRef {
        key: key.clone(),
        bytes,
        tensor: tensor.to_string(),
    });
    Ok(())
}

/// A cursor over the pickle's bytes; every read is bounded by what is left.
struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(len)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| format!("the pickle ends inside an argument at byte {}", self.at))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn skip(&mut self, len: usize) -> Result<(), String> {
        self.take(len).map(|_| ())
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    /// A little-endian unsigned integer of `len` bytes.
    fn uint(&mut self, len: usize) -> Result<u64, String> {
        Ok(self
            .take(len)?
            .iter()
            .rev()
            .fold(0u64, |value, byte| (value << 8) | *byte as u64))
    }

    fn line(&mut self) -> Result<String, String> {
        let rest = &self.bytes[self.at..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("the pickle ends inside a text argument")?;
        let line = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.at += end + 1;
        Ok(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The start of a real `torch.save` pickle (torchvision's `conv1.weight`, protocol 2).
    #[test]
    fn finds_each_storage_with_its_tensor_and_byte_count() {
        let mut pickle = b"\x80\x02}q\x00(X\x0c\x00\x00\x00conv1.weightq\x01ctorch._utils\n\
            _rebuild_tensor_v2\nq\x02((X\x07\x00\x00\x00storageq\x03ctorch\nFloatStorage\nq\x04\
            X\x01\x00\x00\x000q\x05X\x03\x00\x00\x00cpuq\x06M\xc0$tq\x07QK\x00"
            .to_vec();
        pickle.extend_from_slice(b"ttq\x08Ru.");
        let storages = scan_storages(&pickle).unwrap();
        assert_eq!(
            storages["0"],
            StorageRef {
                key: "0".into(),
                bytes: 0x24c0 * 4,
                tensor: "conv1.weight".into(),
            }
        );
        assert!(
            scan_storages(&pickle[..40])
                .unwrap_err()
                .contains("ends inside")
        );
        assert!(
            scan_storages(b"\x80\x02\xff")
                .unwrap_err()
                .contains("unknown pickle opcode")
        );
    }
}
