//! Every reader of outside files, fed thousands of mutated copies of a valid file (bytes flipped,
//! sizes overwritten with huge values, the file cut short or grown): each mutation gives a value
//! or an error naming the file, never a panic and never an allocation the file's size does not
//! justify (a huge allocation would abort the test process).

#[path = "support/peak_alloc.rs"]
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

use burn::config::Config;
use se_models::ResNetConfig;
use se_models::interop::{npy, read_state_dict};

/// Deterministic numbers (a 64-bit LCG).
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

/// The `i`-th mutation of `valid`.
fn mutate(valid: &[u8], numbers: &mut Numbers) -> Vec<u8> {
    let mut bytes = valid.to_vec();
    match numbers.below(4) {
        0 => {
            for _ in 0..1 + numbers.below(4) {
                let at = numbers.below(bytes.len());
                bytes[at] ^= 1 << numbers.below(8);
            }
        }
        1 => {
            // A size field made huge.
            let at = numbers.below(bytes.len().saturating_sub(4));
            bytes[at..at + 4].copy_from_slice(&[0xff, 0xff, 0xff, 0x7f]);
        }
        2 => bytes.truncate(numbers.below(bytes.len())),
        _ => {
            let at = numbers.below(bytes.len());
            let extra: Vec<u8> = (0..1 + numbers.below(16))
                .map(|_| numbers.below(256) as u8)
                .collect();
            bytes.splice(at..at, extra);
        }
    }
    bytes
}

/// Feeds `count` mutations of `valid`, written to `file`, to `read`; a panic fails the test
/// with the mutation's number.
fn never_panics(valid: &[u8], file: &Path, count: usize, read: impl Fn(&Path) -> bool) {
    peak_alloc::quiet_panics();
    let mut numbers = Numbers(17);
    let mut errors = 0;
    for i in 0..count {
        std::fs::write(file, mutate(valid, &mut numbers)).unwrap();
        let len = std::fs::metadata(file).unwrap().len() as usize;
        let (outcome, peak) = peak_alloc::peak_during(|| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read(file)))
        });
        assert!(
            peak <= allocation_bound(len),
            "mutation {i} of {}: {peak} bytes allocated for a {len}-byte file",
            file.display()
        );
        match outcome {
            Ok(ok) => errors += usize::from(!ok),
            Err(_) => panic!("mutation {i} of {} panicked the reader", file.display()),
        }
    }
    assert!(
        errors > 0,
        "no mutation was refused: the test mutates nothing"
    );
}

#[test]
fn the_npy_reader_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let valid = dir.path().join("valid.npy");
    let array = npy::Array {
        shape: vec![2, 3, 4],
        values: (0..24).map(|i| i as f32).collect(),
    };
    npy::write_npy(&valid, &array).unwrap();
    let bytes = std::fs::read(&valid).unwrap();
    never_panics(&bytes, &dir.path().join("m.npy"), 3000, |path| {
        npy::read_npy(path).is_ok()
    });
}

#[test]
fn the_checkpoint_readers_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/interop");
    for (name, count) in [
        ("torchvision_resnet.pth", 1500),
        ("timm_cbam_resnet.safetensors", 1500),
    ] {
        let path = fixtures.join(name);
        let bytes = std::fs::read(&path).unwrap();
        let extension = name.rsplit('.').next().unwrap();
        let file = dir.path().join(format!("m.{extension}"));
        never_panics(&bytes, &file, count, |path| read_state_dict(path).is_ok());
    }
}

#[test]
fn the_model_config_reader_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let valid = se_models::zoo::se_resnext50_32x4d()
        .to_string()
        .into_bytes();
    never_panics(&valid, &dir.path().join("model.json"), 3000, |path| {
        ResNetConfig::load(path).is_ok_and(|config| config.validate().is_ok())
    });
}

#[test]
fn the_burn_weights_reader_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let device = Default::default();
    let config = ResNetConfig {
        layers: vec![1, 1, 1],
        ..se_models::zoo::resnet20()
    };
    let valid = dir.path().join("valid.mpk");
    se_models::weights::save(config.init::<burn::backend::Flex>(&device), &valid).unwrap();
    let bytes = std::fs::read(&valid).unwrap();
    never_panics(&bytes, &dir.path().join("m.mpk"), 1500, |path| {
        se_models::weights::load(config.init::<burn::backend::Flex>(&device), path, &device).is_ok()
    });
}

/// The bound is measured, not assumed: an allocation the input does not justify exceeds it.
#[test]
fn the_allocation_bound_catches_a_size_taken_from_a_header() {
    let (buffer, peak) = peak_alloc::peak_during(|| vec![1u8; 64 << 20]);
    assert_eq!(buffer.len(), 64 << 20);
    assert!(peak >= 64 << 20 && peak > allocation_bound(1000), "{peak}");
    let (_, small) = peak_alloc::peak_during(|| vec![1u8; 100].len());
    assert!(small < 1000, "{small}");
}
