//! ONNX export: a [`ResNet`] in evaluation mode as an ONNX graph (opset 17, dynamic batch and
//! image size) that ONNX Runtime and other ONNX tools load. The protobuf messages are the
//! `onnx-protobuf` crate's (generated from `onnx.proto` by rust-protobuf).
//!
//! The graph follows the model's own forward pass operator by operator: each BatchNorm is a
//! `BatchNormalization` node with its running statistics (ONNX Runtime folds it into the
//! convolution before it), every attention module and placement is spelled out, dropout is
//! absent (evaluation). Tensor names follow the module paths (`layer1.0.conv1.weight`).
//!
//! ```no_run
//! use burn::backend::Flex;
//!
//! let model = se_models::zoo::se_resnet50().init::<Flex>(&Default::default());
//! se_models::onnx::save(&model, 3, "se_resnet50.onnx".as_ref())?;
//! # Ok::<(), se_models::interop::InteropError>(())
//! ```

use std::path::Path;

use burn::module::Param;
use burn::nn::conv::{Conv1d, Conv2d};
use burn::nn::pool::MaxPool2d;
use burn::nn::{Linear, PaddingConfig1d, PaddingConfig2d};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::tensor_shape_proto::{Dimension, dimension};
use onnx_protobuf::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, type_proto,
};
use protobuf::{EnumOrUnknown, MessageField};
use se_core::{
    Attention, BatchNorm2d, Cbam, Eca, Gate, ResidualBlock, Scse, ScseMerge, SePlacement,
    SpatialSe, Squeeze, SqueezeExcitation,
};

use crate::files::write_atomically;
use crate::interop::InteropError;
use crate::resnet::ResNet;

/// The protobuf messages (`ModelProto`, ...), to read or amend an exported graph.
pub use onnx_protobuf as proto;
/// Encoding and decoding of the messages (`write_to_bytes`, `parse_from_bytes`).
pub use onnx_protobuf::Message;

/// The ONNX operator set the graphs use.
pub const OPSET: i64 = 17;
/// Name of the graph's input, `[batch, channels, height, width]` float32.
pub const INPUT: &str = "input";
/// Name of the graph's output, `[batch, classes]` float32 logits.
pub const OUTPUT: &str = "logits";

/// Writes `model` (taking `in_channels`-channel images) as an ONNX file, atomically.
pub fn save<B: Backend>(
    model: &ResNet<B>,
    in_channels: usize,
    path: &Path,
) -> Result<(), InteropError> {
    let bytes = to_onnx(model, in_channels)
        .write_to_bytes()
        .map_err(|e| InteropError::write(path, e))?;
    write_atomically(path, &bytes).map_err(|e| InteropError::write(path, e))
}

/// The ONNX model of `model` in evaluation mode.
///
/// # Panics
/// If `model` is the folded inference form (ONNX Runtime folds the BatchNorms itself).
pub fn to_onnx<B: Backend>(model: &ResNet<B>, in_channels: usize) -> ModelProto {
    model.assert_not_folded("ONNX export");
    let mut graph = Graph::default();
    let x = graph.resnet(model);
    let dims = |fixed: &[Option<usize>], names: &[&str]| -> Vec<Dimension> {
        fixed
            .iter()
            .zip(names)
            .map(|(size, name)| Dimension {
                value: Some(match size {
                    Some(size) => dimension::Value::DimValue(*size as i64),
                    None => dimension::Value::DimParam(name.to_string()),
                }),
                ..Default::default()
            })
            .collect()
    };
    let input = value_info(
        INPUT,
        dims(
            &[None, Some(in_channels), None, None],
            &["batch", "", "height", "width"],
        ),
    );
    let output = value_info(
        OUTPUT,
        dims(&[None, Some(model.num_classes())], &["batch", ""]),
    );
    graph.rename(&x, OUTPUT);
    ModelProto {
        ir_version: 8, // ONNX 1.13+, the IR of opset 17
        producer_name: "se-models".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
            ..Default::default()
        }],
        graph: MessageField::some(GraphProto {
            name: "resnet".into(),
            node: graph.nodes,
            initializer: graph.initializers,
            input: vec![input],
            output: vec![output],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn value_info(name: &str, dim: Vec<Dimension>) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        type_: MessageField::some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::FLOAT as i32,
                shape: MessageField::some(TensorShapeProto {
                    dim,
                    ..Default::default()
                }),
                ..Default::default()
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A list of sizes as an `INTS` attribute.
fn ints(values: &[usize]) -> Attr {
    Attr::Ints(values.iter().map(|&v| v as i64).collect())
}

/// An attribute of a node.
enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
}

/// The graph under construction: nodes in execution order and the weights they read.
#[derive(Default)]
struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    count: usize,
}

impl Graph {
    /// Adds a node and returns the name of its output.
    fn node(&mut self, op: &str, inputs: &[&str], attributes: Vec<(&str, Attr)>) -> String {
        self.count += 1;
        let output = format!("{}_{}", op.to_lowercase(), self.count);
        let attribute = attributes
            .into_iter()
            .map(|(name, value)| {
                let mut attribute = AttributeProto {
                    name: name.into(),
                    ..Default::default()
                };
                let kind = match value {
                    Attr::Int(i) => {
                        attribute.i = i;
                        AttributeType::INT
                    }
                    Attr::Ints(ints) => {
                        attribute.ints = ints;
                        AttributeType::INTS
                    }
                    Attr::Float(f) => {
                        attribute.f = f;
                        AttributeType::FLOAT
                    }
                };
                attribute.type_ = EnumOrUnknown::new(kind);
                attribute
            })
            .collect();
        self.nodes.push(NodeProto {
            name: output.clone(),
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.clone()],
            attribute,
            ..Default::default()
        });
        output
    }

    /// Renames the output of the last node (the graph's result).
    fn rename(&mut self, from: &str, to: &str) {
        for node in &mut self.nodes {
            for output in &mut node.output {
                if output == from {
                    *output = to.into();
                }
            }
        }
    }

    /// Adds a float32 weight and returns its name.
    fn weight<B: Backend, const D: usize>(&mut self, name: &str, tensor: Tensor<B, D>) -> String {
        let data = tensor.into_data().convert::<f32>();
        self.initializers.push(TensorProto {
            name: name.into(),
            dims: data.shape.iter().map(|&d| d as i64).collect(),
            data_type: DataType::FLOAT as i32,
            raw_data: data.as_bytes().to_vec(), // little-endian, as ONNX stores raw data
            ..Default::default()
        });
        name.into()
    }

    /// Adds an int64 constant (a shape) and returns its name.
    fn shape(&mut self, values: &[i64]) -> String {
        self.count += 1;
        let name = format!("shape_{}", self.count);
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims: vec![values.len() as i64],
            data_type: DataType::INT64 as i32,
            int64_data: values.to_vec(),
            ..Default::default()
        });
        name
    }

    fn param<B: Backend, const D: usize>(&mut self, name: &str, p: &Param<Tensor<B, D>>) -> String {
        self.weight(name, p.val())
    }

    /// The weight and optional bias of a layer named `name`, as initialisers.
    fn weight_and_bias<B: Backend, const D: usize>(
        &mut self,
        name: &str,
        weight: &Param<Tensor<B, D>>,
        bias: &Option<Param<Tensor<B, 1>>>,
    ) -> (String, Option<String>) {
        let weight = self.param(&format!("{name}.weight"), weight);
        let bias = bias
            .as_ref()
            .map(|b| self.param(&format!("{name}.bias"), b));
        (weight, bias)
    }

    /// A `Conv` node of any dimensionality; `pads` are the begins of every axis, then the ends.
    fn conv_node(
        &mut self,
        x: &str,
        (weight, bias): (String, Option<String>),
        [kernel, stride, dilation, pads]: [&[usize]; 4],
        groups: usize,
    ) -> String {
        let mut inputs = vec![x, weight.as_str()];
        inputs.extend(bias.as_deref());
        self.node(
            "Conv",
            &inputs,
            vec![
                ("kernel_shape", ints(kernel)),
                ("strides", ints(stride)),
                ("dilations", ints(dilation)),
                ("pads", ints(pads)),
                ("group", Attr::Int(groups as i64)),
            ],
        )
    }

    fn conv2d<B: Backend>(&mut self, name: &str, conv: &Conv2d<B>, x: &str) -> String {
        let params = self.weight_and_bias(name, &conv.weight, &conv.bias);
        let pads = match conv.padding {
            PaddingConfig2d::Valid => [0; 4],
            PaddingConfig2d::Explicit(top, left, bottom, right) => [top, left, bottom, right],
            PaddingConfig2d::Same => {
                let [kh, kw] = conv.kernel_size;
                [kh / 2, kw / 2, (kh - 1) / 2, (kw - 1) / 2]
            }
        };
        let geometry = [&conv.kernel_size[..], &conv.stride, &conv.dilation, &pads];
        self.conv_node(x, params, geometry, conv.groups)
    }

    fn conv1d<B: Backend>(&mut self, name: &str, conv: &Conv1d<B>, x: &str) -> String {
        let params = self.weight_and_bias(name, &conv.weight, &conv.bias);
        let pads = match conv.padding {
            PaddingConfig1d::Valid => [0, 0],
            PaddingConfig1d::Explicit(left, right) => [left, right],
            PaddingConfig1d::Same => [conv.kernel_size / 2, (conv.kernel_size - 1) / 2],
        };
        let geometry = [
            &[conv.kernel_size][..],
            &[conv.stride],
            &[conv.dilation],
            &pads,
        ];
        self.conv_node(x, params, geometry, conv.groups)
    }

    fn batch_norm<B: Backend>(&mut self, name: &str, bn: &BatchNorm2d<B>, x: &str) -> String {
        let scale = self.param(&format!("{name}.weight"), &bn.gamma);
        let bias = self.param(&format!("{name}.bias"), &bn.beta);
        let mean = self.weight(&format!("{name}.running_mean"), bn.running_mean.value());
        let var = self.weight(&format!("{name}.running_var"), bn.running_var.value());
        self.node(
            "BatchNormalization",
            &[x, &scale, &bias, &mean, &var],
            vec![("epsilon", Attr::Float(bn.epsilon as f32))],
        )
    }

    /// `x · W + b` on `[N, in]` (Burn's weight is `[in, out]`, as Gemm's `B`).
    fn linear<B: Backend>(&mut self, name: &str, linear: &Linear<B>, x: &str) -> String {
        let params = self.weight_and_bias(name, &linear.weight, &linear.bias);
        self.gemm(x, &params)
    }

    /// `x · W (+ b)`: `Gemm` with a bias, `MatMul` without.
    fn gemm(&mut self, x: &str, (weight, bias): &(String, Option<String>)) -> String {
        match bias {
            Some(bias) => self.node("Gemm", &[x, weight, bias], vec![]),
            None => self.node("MatMul", &[x, weight], vec![]),
        }
    }

    fn unary(&mut self, op: &str, x: &str) -> String {
        self.node(op, &[x], vec![])
    }

    fn binary(&mut self, op: &str, a: &str, b: &str) -> String {
        self.node(op, &[a, b], vec![])
    }

    fn reshape(&mut self, x: &str, shape: &[i64]) -> String {
        let shape = self.shape(shape);
        self.node("Reshape", &[x, &shape], vec![])
    }

    fn max_pool(&mut self, pool: &MaxPool2d, x: &str) -> String {
        let pads = match pool.padding {
            PaddingConfig2d::Explicit(top, left, bottom, right) => [top, left, bottom, right],
            _ => [0; 4],
        };
        self.node(
            "MaxPool",
            &[x],
            vec![
                ("kernel_shape", ints(&pool.kernel_size)),
                ("strides", ints(&pool.stride)),
                ("dilations", ints(&pool.dilation)),
                ("pads", ints(&pads)),
                ("ceil_mode", Attr::Int(pool.ceil_mode as i64)),
            ],
        )
    }

    /// The whole network; returns the logits' name.
    fn resnet<B: Backend>(&mut self, model: &ResNet<B>) -> String {
        let x = self.conv2d("conv1", &model.conv1, INPUT);
        let x = self.batch_norm("bn1", &model.bn1, &x);
        let mut x = self.unary("Relu", &x);
        let deep = [(2, &model.conv2, &model.bn2), (3, &model.conv3, &model.bn3)];
        for (i, conv, bn) in deep {
            if let (Some(conv), Some(bn)) = (conv, bn) {
                let y = self.conv2d(&format!("conv{i}"), conv, &x);
                let y = self.batch_norm(&format!("bn{i}"), bn, &y);
                x = self.unary("Relu", &y);
            }
        }
        if let Some(pool) = &model.maxpool {
            x = self.max_pool(pool, &x);
        }
        let stages = [&model.layer1, &model.layer2, &model.layer3, &model.layer4];
        for (stage, blocks) in stages.into_iter().enumerate() {
            for (index, block) in blocks.iter().enumerate() {
                x = self.block(&format!("layer{}.{index}", stage + 1), block, &x);
            }
        }
        let pooled = self.unary("GlobalAveragePool", &x);
        let flat = self.node("Flatten", &[&pooled], vec![("axis", Attr::Int(1))]);
        self.linear("fc", &model.fc, &flat)
    }

    /// One residual block: `se_post(relu(se(bn(branch(se_pre(x)))) + se_identity(shortcut(x))))`
    /// with the attention where its placement says (as `se_core::block::residual_forward`).
    fn block<B: Backend>(&mut self, name: &str, block: &ResidualBlock<B>, x: &str) -> String {
        let (se, placement, downsample) = match block {
            ResidualBlock::Basic(b) => (&b.se, b.placement, &b.downsample),
            ResidualBlock::Bottleneck(b) => (&b.se, b.placement, &b.downsample),
        };
        let se_name = format!("{name}.se");
        let at = |graph: &mut Graph, here: SePlacement, x: String| match se {
            Some(se) if placement == here => graph.attention(&se_name, se, &x),
            _ => x,
        };
        let shortcut = match downsample {
            Some(d) => {
                let y = self.conv2d(&format!("{name}.downsample.0"), &d.conv, x);
                self.batch_norm(&format!("{name}.downsample.1"), &d.bn, &y)
            }
            None => x.to_string(),
        };
        let shortcut = at(self, SePlacement::Identity, shortcut);
        let input = at(self, SePlacement::Pre, x.to_string());
        let conv_bn = |graph: &mut Graph, i: usize, conv: &Conv2d<B>, bn, y: &str| {
            let y = graph.conv2d(&format!("{name}.conv{i}"), conv, y);
            graph.batch_norm(&format!("{name}.bn{i}"), bn, &y)
        };
        let branch = match block {
            ResidualBlock::Basic(b) => {
                let y = conv_bn(self, 1, &b.conv1, &b.bn1, &input);
                let y = self.unary("Relu", &y);
                conv_bn(self, 2, &b.conv2, &b.bn2, &y)
            }
            ResidualBlock::Bottleneck(b) => {
                let y = conv_bn(self, 1, &b.conv1, &b.bn1, &input);
                let y = self.unary("Relu", &y);
                let y = conv_bn(self, 2, &b.conv2, &b.bn2, &y);
                let y = self.unary("Relu", &y);
                conv_bn(self, 3, &b.conv3, &b.bn3, &y)
            }
        };
        let branch = at(self, SePlacement::Standard, branch);
        let sum = self.binary("Add", &branch, &shortcut);
        let out = self.unary("Relu", &sum);
        at(self, SePlacement::Post, out)
    }

    fn attention<B: Backend>(&mut self, name: &str, attention: &Attention<B>, x: &str) -> String {
        match attention {
            Attention::Se(se) => self.squeeze_excitation(name, se, x),
            Attention::Eca(eca) => self.eca(name, eca, x),
            Attention::Sse(sse) => self.spatial_se(name, sse, x),
            Attention::Scse(scse) => self.scse(name, scse, x),
            Attention::Cbam(cbam) => self.cbam(name, cbam, x),
        }
    }

    /// `x · w`, the channel weights `w` `[N, C]` broadcast over every plane.
    fn scale_channels(&mut self, x: &str, weights: &str) -> String {
        let weights = self.reshape(weights, &[0, -1, 1, 1]);
        self.binary("Mul", x, &weights)
    }

    /// Global pooling of every plane to `[N, C]`.
    fn pool_planes(&mut self, op: &str, x: &str) -> String {
        let pooled = self.unary(op, x);
        self.node("Flatten", &[&pooled], vec![("axis", Attr::Int(1))])
    }

    fn squeeze_excitation<B: Backend>(
        &mut self,
        name: &str,
        se: &SqueezeExcitation<B>,
        x: &str,
    ) -> String {
        let op = match se.squeeze {
            Squeeze::Avg => "GlobalAveragePool",
            Squeeze::Max => "GlobalMaxPool",
            Squeeze::None => return self.no_squeeze_excitation(name, se, x),
        };
        let squeezed = self.pool_planes(op, x);
        let hidden = self.linear(&format!("{name}.fc1"), &se.fc1, &squeezed);
        let hidden = self.unary("Relu", &hidden);
        let logits = self.linear(&format!("{name}.fc2"), &se.fc2, &hidden);
        let weights = self.gate(se.gate, &logits);
        self.scale_channels(x, &weights)
    }

    /// NoSqueeze: the FC layers at every position, on the map turned channels-last.
    fn no_squeeze_excitation<B: Backend>(
        &mut self,
        name: &str,
        se: &SqueezeExcitation<B>,
        x: &str,
    ) -> String {
        let channels_last = self.transpose(x, &[0, 2, 3, 1]);
        let hidden = self.linear_per_position(&format!("{name}.fc1"), &se.fc1, &channels_last);
        let hidden = self.unary("Relu", &hidden);
        let logits = self.linear_per_position(&format!("{name}.fc2"), &se.fc2, &hidden);
        let weights = self.gate(se.gate, &logits);
        let weights = self.transpose(&weights, &[0, 3, 1, 2]);
        self.binary("Mul", x, &weights)
    }

    /// `x · W (+ b)` over the last axis of a tensor of any rank (`MatMul` broadcasts, `Gemm`
    /// does not).
    fn linear_per_position<B: Backend>(
        &mut self,
        name: &str,
        linear: &Linear<B>,
        x: &str,
    ) -> String {
        let (weight, bias) = self.weight_and_bias(name, &linear.weight, &linear.bias);
        let product = self.binary("MatMul", x, &weight);
        match bias {
            Some(bias) => self.binary("Add", &product, &bias),
            None => product,
        }
    }

    fn transpose(&mut self, x: &str, perm: &[i64]) -> String {
        self.node("Transpose", &[x], vec![("perm", Attr::Ints(perm.to_vec()))])
    }

    /// The excitation's gate on `logits`.
    fn gate(&mut self, gate: Gate, logits: &str) -> String {
        match gate {
            Gate::Sigmoid => self.unary("Sigmoid", logits),
            Gate::Tanh => self.unary("Tanh", logits),
            Gate::Relu => self.unary("Relu", logits),
            // relu6(x + 3) / 6 = clamp(x / 6 + 1/2, 0, 1)
            Gate::HardSigmoid => self.node(
                "HardSigmoid",
                &[logits],
                vec![
                    ("alpha", Attr::Float(1.0 / 6.0)),
                    ("beta", Attr::Float(0.5)),
                ],
            ),
        }
    }

    fn eca<B: Backend>(&mut self, name: &str, eca: &Eca<B>, x: &str) -> String {
        let pooled = self.unary("GlobalAveragePool", x);
        let row = self.reshape(&pooled, &[0, 1, -1]); // [N, 1, C]
        let conv = self.conv1d(&format!("{name}.conv"), &eca.conv, &row);
        let weights = self.unary("Sigmoid", &conv);
        self.scale_channels(x, &weights)
    }

    fn spatial_se<B: Backend>(&mut self, name: &str, sse: &SpatialSe<B>, x: &str) -> String {
        let map = self.conv2d(&format!("{name}.conv"), &sse.conv, x);
        let map = self.unary("Sigmoid", &map);
        self.binary("Mul", x, &map)
    }

    fn scse<B: Backend>(&mut self, name: &str, scse: &Scse<B>, x: &str) -> String {
        let channel = self.squeeze_excitation(&format!("{name}.cse"), &scse.cse, x);
        let spatial = self.spatial_se(&format!("{name}.sse"), &scse.sse, x);
        let op = match scse.merge {
            ScseMerge::Sum => "Add",
            ScseMerge::Max => "Max",
        };
        self.binary(op, &channel, &spatial)
    }

    fn cbam<B: Backend>(&mut self, name: &str, cbam: &Cbam<B>, x: &str) -> String {
        // Channel attention: one MLP (its weights stored once) on the average and the max.
        let fc1 = self.weight_and_bias(&format!("{name}.fc1"), &cbam.fc1.weight, &cbam.fc1.bias);
        let fc2 = self.weight_and_bias(&format!("{name}.fc2"), &cbam.fc2.weight, &cbam.fc2.bias);
        let mlp = |graph: &mut Graph, v: &str| {
            let hidden = graph.gemm(v, &fc1);
            let hidden = graph.unary("Relu", &hidden);
            graph.gemm(&hidden, &fc2)
        };
        let avg = self.pool_planes("GlobalAveragePool", x);
        let max = self.pool_planes("GlobalMaxPool", x);
        let (avg, max) = (mlp(self, &avg), mlp(self, &max));
        let logits = self.binary("Add", &avg, &max);
        let weights = self.unary("Sigmoid", &logits);
        let x = self.scale_channels(x, &weights);
        // Spatial attention from the channel-wise mean and max.
        let axes = |keep| vec![("axes", Attr::Ints(vec![1])), ("keepdims", Attr::Int(keep))];
        let mean = self.node("ReduceMean", &[&x], axes(1));
        let max = self.node("ReduceMax", &[&x], axes(1));
        let both = self.node("Concat", &[&mean, &max], vec![("axis", Attr::Int(1))]);
        let map = self.conv2d(&format!("{name}.spatial_conv"), &cbam.spatial_conv, &both);
        let map = self.batch_norm(&format!("{name}.spatial_bn"), &cbam.spatial_bn, &map);
        let map = self.unary("Sigmoid", &map);
        self.binary("Mul", &x, &map)
    }
}
