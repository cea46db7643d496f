//! How each tensor of a [`ResNet`](crate::ResNet) is named and shaped in a PyTorch checkpoint.

use burn::tensor::{DType, TensorData};
use burn_store::TensorSnapshot;
use serde::{Deserialize, Serialize};

use crate::resnet::{ResNetConfig, Stem};

/// Key conventions of the PyTorch checkpoints we read and write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    /// timm's `ResNet` (`resnet50`, `seresnet50`, `seresnext50_32x4d`, `ecaresnet*`, CBAM):
    /// `conv1`, `bn1`, `layerN.i.*`, `downsample.0/1`, `se.fc1/fc2` as 1x1 convs, `fc`.
    Timm,
    /// torchvision's `ResNet` (`resnet18..152`, `resnext50_32x4d`): timm's names, without attention.
    Torchvision,
    /// Cadene's `pretrainedmodels` SENet (and timm's `legacy_se*` ports): `layer0.conv1`,
    /// `layer0.bn1`, `se_module.fc1/fc2`, `last_linear`, on the Caffe architecture.
    Cadene,
}

impl Layout {
    /// The layout whose architecture `config` reproduces: Cadene for the Caffe stem, else timm.
    pub fn native(config: &ResNetConfig) -> Self {
        match config.stem {
            Stem::Caffe | Stem::Deep => Layout::Cadene,
            _ => Layout::Timm,
        }
    }

    /// Whether `config` builds the architecture this layout's checkpoints were trained on; the
    /// key names alone would also match a model that computes something else.
    pub fn check(self, config: &ResNetConfig) -> Result<(), LayoutMismatch> {
        match (self, config.stem) {
            (Layout::Cadene, Stem::Caffe | Stem::Deep) => Ok(()),
            (Layout::Cadene, _) => Err(LayoutMismatch::CadeneNeedsCaffe),
            (_, Stem::Caffe | Stem::Deep) => Err(LayoutMismatch::CaffeNeedsCadene { layout: self }),
            (Layout::Torchvision, _) if config.attention.module.is_some() => {
                Err(LayoutMismatch::TorchvisionHasNoAttention)
            }
            _ => Ok(()),
        }
    }

    /// The layout's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Timm => "timm",
            Layout::Torchvision => "torchvision",
            Layout::Cadene => "cadene",
        }
    }
}

/// A layout whose checkpoints were trained on another architecture than the model's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LayoutMismatch {
    /// Cadene checkpoints on a model without the Caffe stem.
    #[error(
        "Cadene checkpoints need the Caffe architecture (stride on the first 1x1 conv, max pool \
         with ceil_mode): use a `legacy_*` model, e.g. legacy_se_resnet50"
    )]
    CadeneNeedsCaffe,
    /// A Caffe-architecture model with timm's or torchvision's checkpoints.
    #[error(
        "this model has the Caffe/Cadene architecture: its checkpoints use the cadene layout, not {}",
        layout.name()
    )]
    CaffeNeedsCadene {
        /// The layout asked for.
        layout: Layout,
    },
    /// An attention model with torchvision's checkpoints.
    #[error("torchvision has no attention blocks: SE/ECA/CBAM models use the timm layout")]
    TorchvisionHasNoAttention,
}

/// A layout name that is not one of timm, torchvision, cadene.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown layout `{0}`; known: timm, torchvision, cadene")]
pub struct UnknownLayout(pub String);

impl std::str::FromStr for Layout {
    type Err = UnknownLayout;

    fn from_str(name: &str) -> Result<Self, UnknownLayout> {
        match name.to_ascii_lowercase().as_str() {
            "timm" => Ok(Layout::Timm),
            "torchvision" => Ok(Layout::Torchvision),
            "cadene" | "pretrainedmodels" => Ok(Layout::Cadene),
            _ => Err(UnknownLayout(name.to_string())),
        }
    }
}

/// How a tensor's PyTorch layout differs from ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// Same shape and element order.
    Same,
    /// `nn.Linear` weight: PyTorch `[out, in]`, Burn `[in, out]`.
    Linear,
    /// A fully connected layer that PyTorch stores as a 1x1 `nn.Conv2d` (SE's fc1/fc2):
    /// `[out, in, 1, 1]` there, `[in, out]` here.
    Conv1x1,
}

impl Conversion {
    /// The PyTorch shape of a tensor whose Burn shape is `shape`.
    pub fn torch_shape(self, shape: &[usize]) -> Vec<usize> {
        match self {
            Conversion::Same => shape.to_vec(),
            Conversion::Linear => vec![shape[1], shape[0]],
            Conversion::Conv1x1 => vec![shape[1], shape[0], 1, 1],
        }
    }

    /// PyTorch data to Burn's layout (f32), given the PyTorch shape already checked.
    pub fn to_burn(self, data: TensorData) -> TensorData {
        let data = data.convert_dtype(DType::F32);
        match self {
            Conversion::Same => data,
            Conversion::Linear | Conversion::Conv1x1 => {
                let (rows, cols) = (data.shape[0], data.shape[1]);
                transpose(data, rows, cols)
            }
        }
    }

    /// Burn data to PyTorch's layout (f32).
    pub fn to_torch(self, data: TensorData) -> TensorData {
        let data = data.convert_dtype(DType::F32);
        match self {
            Conversion::Same => data,
            Conversion::Linear => {
                let (rows, cols) = (data.shape[0], data.shape[1]);
                transpose(data, rows, cols)
            }
            Conversion::Conv1x1 => {
                let (rows, cols) = (data.shape[0], data.shape[1]);
                let t = transpose(data, rows, cols);
                TensorData::new(t.into_vec::<f32>().unwrap(), [cols, rows, 1, 1])
            }
        }
    }
}

/// `[rows, cols, ...]` (trailing 1s ignored) to `[cols, rows]`.
fn transpose(data: TensorData, rows: usize, cols: usize) -> TensorData {
    let values = data.into_vec::<f32>().expect("converted to f32");
    let mut out = vec![0.0f32; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    TensorData::new(out, [cols, rows])
}

/// The PyTorch key and conversion of one model tensor, from its Burn path (enum variants
/// skipped, e.g. `layer1.0.downsample.bn.gamma`) and the module types around it.
pub fn torch_name(snapshot: &TensorSnapshot, layout: Layout) -> (String, Conversion) {
    let path = snapshot.full_path();
    let containers = snapshot.container_stack.clone().unwrap_or_default();
    let module = snapshot.module_type().unwrap_or_default();
    let inside = |name: &str| containers.iter().any(|c| c == name);

    let mut segments: Vec<String> = path.split('.').map(str::to_string).collect();
    let last = segments.len() - 1;

    if module == "Struct:BatchNorm2d" {
        match segments[last].as_str() {
            "gamma" => segments[last] = "weight".into(),
            "beta" => segments[last] = "bias".into(),
            _ => {}
        }
    }
    for i in 0..last {
        let previous = if i > 0 { segments[i - 1].as_str() } else { "" };
        let renamed = match (previous, segments[i].as_str()) {
            ("downsample", "conv") => "0",
            ("downsample", "bn") => "1",
            _ => continue,
        };
        segments[i] = renamed.into();
    }
    // timm's CbamModule: `channel.fc1/fc2` and `spatial.conv.{conv,bn}` (a ConvNormAct).
    if inside("Struct:Cbam") {
        let attention = segments.iter().position(|s| s == "se").unwrap_or(0);
        let inner: &[&str] = match segments[attention + 1].as_str() {
            "fc1" => &["channel", "fc1"],
            "fc2" => &["channel", "fc2"],
            "spatial_conv" => &["spatial", "conv", "conv"],
            "spatial_bn" => &["spatial", "conv", "bn"],
            _ => &[],
        };
        if !inner.is_empty() {
            segments.splice(
                attention + 1..attention + 2,
                inner.iter().map(|s| s.to_string()),
            );
        }
    }
    if layout == Layout::Cadene {
        match segments[0].as_str() {
            "conv1" | "bn1" | "conv2" | "bn2" | "conv3" | "bn3" => {
                segments.insert(0, "layer0".into())
            }
            "fc" => segments[0] = "last_linear".into(),
            _ => {}
        }
        for segment in segments.iter_mut() {
            if segment == "se" {
                *segment = "se_module".into();
            }
        }
    }

    let conversion = if module == "Struct:Linear" && segments[segments.len() - 1] == "weight" {
        // Only the classifier is an `nn.Linear` in PyTorch; attention FC layers are 1x1 convs.
        if path == "fc.weight" {
            Conversion::Linear
        } else {
            Conversion::Conv1x1
        }
    } else {
        Conversion::Same
    };
    (segments.join("."), conversion)
}

/// The key of the step counter PyTorch keeps beside a BatchNorm's running variance.
pub fn batches_tracked_key(running_var_key: &str) -> Option<String> {
    running_var_key
        .strip_suffix("running_var")
        .map(|prefix| format!("{prefix}num_batches_tracked"))
}
