//! The data readers (IDX images and labels, gzip, CIFAR batches), fed thousands of mutated copies
//! of a valid file: each gives images or an error naming the file, never a panic, and never an
//! allocation the file's size does not justify.

#[path = "../../se-models/tests/support/peak_alloc.rs"]
mod peak_alloc;

#[global_allocator]
static ALLOCATOR: peak_alloc::Counting = peak_alloc::Counting;

/// The most a reader may allocate for an input of `len` bytes: a small multiple of the input
/// (copies, decoded tensors, the model being loaded) plus a fixed allowance. A size taken from
/// a corrupt header instead would be gigabytes.
fn allocation_bound(len: usize) -> usize {
    8 * len + (4 << 20)
}

use std::path::Path;

use se_train::data::cifar::{Cifar, encode_records, parse_batch};
use se_train::data::mnist::{parse_images, parse_labels};

struct Numbers(u64);

impl Numbers {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n.max(1)
    }
}

fn mutate(valid: &[u8], numbers: &mut Numbers) -> Vec<u8> {
    let mut bytes = valid.to_vec();
    match numbers.below(4) {
        0 => {
            let at = numbers.below(bytes.len());
            bytes[at] ^= 1 << numbers.below(8);
        }
        1 => {
            let at = numbers.below(bytes.len().saturating_sub(4));
            bytes[at..at + 4].copy_from_slice(&[0x7f, 0xff, 0xff, 0xff]);
        }
        2 => bytes.truncate(numbers.below(bytes.len())),
        _ => {
            let at = numbers.below(bytes.len());
            bytes.splice(at..at, [0u8; 3]);
        }
    }
    bytes
}

fn never_panics(valid: &[u8], count: usize, read: impl Fn(Vec<u8>) -> bool) {
    peak_alloc::quiet_panics();
    let mut numbers = Numbers(29);
    let mut refused = 0;
    for i in 0..count {
        let bytes = mutate(valid, &mut numbers);
        let len = bytes.len();
        let (outcome, peak) = peak_alloc::peak_during(|| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read(bytes)))
        });
        assert!(
            peak <= allocation_bound(len),
            "mutation {i}: {peak} bytes allocated for a {len}-byte input"
        );
        match outcome {
            Ok(ok) => refused += usize::from(!ok),
            Err(_) => panic!("mutation {i} panicked the reader"),
        }
    }
    assert!(
        refused > 0,
        "no mutation was refused: the test mutates nothing"
    );
}

fn idx(magic: u32, sizes: &[u32], body: &[u8]) -> Vec<u8> {
    let mut bytes: Vec<u8> = std::iter::once(magic)
        .chain(sizes.iter().copied())
        .flat_map(u32::to_be_bytes)
        .collect();
    bytes.extend_from_slice(body);
    bytes
}

#[test]
fn the_idx_readers_never_panic() {
    let path = Path::new("mutated-idx");
    let images = idx(0x0803, &[3, 4, 4], &[7; 48]);
    never_panics(&images, 3000, |bytes| parse_images(path, bytes).is_ok());
    // The same file gzipped: the decompressor's input mutated.
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gzip, &images).unwrap();
    let gzipped = gzip.finish().unwrap();
    never_panics(&gzipped, 3000, |bytes| parse_images(path, bytes).is_ok());
    let labels = idx(0x0801, &[5], &[0, 1, 2, 3, 9]);
    never_panics(&labels, 3000, |bytes| parse_labels(path, bytes).is_ok());
}

#[test]
fn the_cifar_reader_never_panics() {
    let path = Path::new("mutated-cifar");
    let records: Vec<(u8, [u8; 3072])> = (0..3).map(|i| (i, [i * 40; 3072])).collect();
    for kind in [Cifar::Ten, Cifar::Hundred] {
        let batch = encode_records(kind, &records);
        never_panics(&batch, 1000, |bytes| {
            parse_batch(path, &bytes, kind).is_ok()
        });
    }
}
