//! PyTorch interoperability: read timm, torchvision and Cadene state dicts into our models, write
//! them back in timm's (or Cadene's) names, and exchange plain arrays as NumPy `.npy`.
//!
//! The model's own field names already follow timm (`conv1`, `bn1`, `layer1.0.conv1`, `se.fc1`,
//! `fc`); [`names`] holds the few differences (BatchNorm `weight/bias` for our `gamma/beta`,
//! `downsample.0/1`, the SE FC layers stored as 1x1 convolutions, Cadene's `layer0`, `se_module`
//! and `last_linear`). Import and export are the same mapping run in the two directions, so a
//! round trip is exact.

mod error;
mod import;
pub mod names;
pub mod npy;
mod records;
mod state_dict;

pub use error::{InteropError, Mismatch};
pub use import::{
    ImportReport, checkpoint_classes, export_state_dict, import_state_dict, load_pytorch,
};
pub use names::{Layout, LayoutMismatch, UnknownLayout};
pub use state_dict::{CheckpointFormat, StateDict, read_state_dict, write_safetensors};
