use super::*;
use crate::SqueezeExcitationConfig;
use crate::test_util::{TestBackend, assert_close, tensor, values};
use burn::module::{AutodiffModule, Param, RunningState};
use burn::tensor::Distribution;
use burn::tensor::activation::relu;

type B = TestBackend;

fn random_input(shape: [usize; 4]) -> Tensor<B, 4> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
}

#[test]
fn strided_pointwise_conv_is_subsampling_then_conv() {
    let device = Default::default();
    let conv = conv(6, 4, 1, 2, 1).with_bias(true).init::<B>(&device);
    let x = random_input([2, 6, 7, 7]);
    let direct = values(conv.forward(x.clone()));
    assert_eq!(conv_forward(&conv, x.clone()).dims(), [2, 4, 4, 4]);
    assert_close(conv_forward(&conv, x), &direct);
}

fn basic(
    in_channels: usize,
    planes: usize,
    stride: usize,
    placement: SePlacement,
) -> BasicBlock<B> {
    let se = AttentionConfig::Se(SqueezeExcitationConfig::paper(2));
    BasicBlockConfig::new(in_channels, planes)
        .with_stride(stride)
        .with_attention(BlockAttentionConfig::of(se).with_placement(placement))
        .init(&Default::default())
}

fn se_of(block: &BasicBlock<B>) -> &crate::SqueezeExcitation<B> {
    match block.se.as_ref().unwrap() {
        Attention::Se(se) => se,
        other => panic!("expected SE, got {other:?}"),
    }
}

/// Each placement wires the SE where the paper's Fig. 5 puts it: the block output equals the
/// same sub-modules composed by hand.
#[test]
fn every_placement_matches_its_hand_written_wiring() {
    for (in_channels, stride) in [(4, 1), (2, 2)] {
        let x = random_input([2, in_channels, 6, 6]);
        for placement in [
            SePlacement::Standard,
            SePlacement::Pre,
            SePlacement::Post,
            SePlacement::Identity,
        ] {
            let block = basic(in_channels, 4, stride, placement);
            let se = block.se.as_ref().unwrap();
            let branch = |x: Tensor<B, 4>| {
                let x = relu(block.bn1.forward(block.conv1.forward(x)));
                block.bn2.forward(block.conv2.forward(x))
            };
            let shortcut = match &block.downsample {
                Some(d) => d.bn.forward(d.conv.forward(x.clone())),
                None => x.clone(),
            };
            let expected = match placement {
                SePlacement::Standard => relu(se.forward(branch(x.clone())) + shortcut),
                SePlacement::Pre => relu(branch(se.forward(x.clone())) + shortcut),
                SePlacement::Post => se.forward(relu(branch(x.clone()) + shortcut)),
                SePlacement::Identity => relu(branch(x.clone()) + se.forward(shortcut)),
            };
            let out = block.forward(x.clone());
            assert_eq!(out.dims(), [2, 4, 6 / stride, 6 / stride]);
            assert_close(out, &values(expected));
        }
    }
}

/// The block applies BatchNorm and SE in one pass (`norm_attention_add_relu`); it must equal the
/// two steps, in training (batch statistics, gradients) and in inference (running statistics).
#[test]
fn fused_norm_and_se_equal_the_two_steps_in_training_and_inference() {
    type AD = burn::backend::Autodiff<B>;
    let device = Default::default();
    let se = AttentionConfig::Se(SqueezeExcitationConfig::paper(2));
    let mut block = BasicBlockConfig::new(4, 4)
        .with_attention(BlockAttentionConfig::of(se))
        .init::<AD>(&device);
    // A BatchNorm that is not the identity, in both modes.
    let random = |len| Tensor::<AD, 1>::random([len], Distribution::Uniform(0.5, 1.5), &device);
    block.bn2.gamma = Param::from_tensor(random(4));
    block.bn2.beta = Param::from_tensor(random(4) - 1.0);
    block.bn2.running_mean = RunningState::new(random(4) - 1.0);
    block.bn2.running_var = RunningState::new(random(4));

    let two_steps = |block: &BasicBlock<AD>, x: Tensor<AD, 4>| {
        let hidden = relu(block.bn1.forward(block.conv1.forward(x.clone())));
        let normed = block.bn2.forward(block.conv2.forward(hidden));
        relu(block.se.as_ref().unwrap().forward(normed) + x)
    };
    let x = Tensor::<AD, 4>::random([2, 4, 5, 5], Distribution::Normal(0.0, 1.0), &device)
        .require_grad();
    let gradients = |out: Tensor<AD, 4>| {
        let grads = (out.clone() * out).sum().backward();
        let fc1 = match block.se.as_ref().unwrap() {
            Attention::Se(se) => se.fc1.weight.grad(&grads).unwrap(),
            _ => unreachable!(),
        };
        (
            x.grad(&grads).unwrap(),
            fc1,
            block.bn2.gamma.grad(&grads).unwrap(),
        )
    };
    let fused = block.forward(x.clone());
    let expected = two_steps(&block, x.clone());
    assert_close(fused.clone().inner(), &values(expected.clone().inner()));
    let (dx, dfc1, dgamma) = gradients(fused);
    let (dx_expected, dfc1_expected, dgamma_expected) = gradients(expected);
    assert_close(dx, &values(dx_expected));
    assert_close(dfc1, &values(dfc1_expected));
    assert_close(dgamma, &values(dgamma_expected));

    let block = block.valid();
    let x = x.inner();
    let hidden = relu(block.bn1.forward(block.conv1.forward(x.clone())));
    let normed = block.bn2.forward(block.conv2.forward(hidden));
    let expected = relu(block.se.as_ref().unwrap().forward(normed) + x.clone());
    assert_close(block.forward(x), &values(expected));
}

#[test]
fn placements_give_different_outputs() {
    let x = random_input([1, 4, 5, 5]);
    let block = basic(4, 4, 1, SePlacement::Standard);
    let mut outputs: Vec<Vec<f32>> = Vec::new();
    for placement in [
        SePlacement::Standard,
        SePlacement::Pre,
        SePlacement::Post,
        SePlacement::Identity,
    ] {
        let moved = BasicBlock {
            placement,
            ..block.clone()
        };
        let out = values(moved.forward(x.clone()));
        for other in &outputs {
            let diff: f32 = out.iter().zip(other).map(|(a, b)| (a - b).abs()).sum();
            assert!(
                diff > 1e-3,
                "{placement:?} gives the same output as another placement"
            );
        }
        outputs.push(out);
    }
}

#[test]
fn se_pre_sees_the_block_input_channels() {
    let block = basic(2, 4, 2, SePlacement::Pre);
    assert_eq!(se_of(&block).fc1.weight.dims(), [2, 1]);
    let block = basic(2, 4, 2, SePlacement::Identity);
    assert_eq!(se_of(&block).fc1.weight.dims(), [4, 2]);
}

/// A basic block with every conv weight 1/9 (a 3x3 mean), fresh BatchNorms (identity in eval:
/// `x / sqrt(1 + eps)`) and no SE, on a constant input: every value is computed by hand.
#[test]
fn basic_block_on_a_constant_input_matches_hand_computation() {
    let device = Default::default();
    let mut block = BasicBlockConfig::new(1, 1).init::<B>(&device);
    let ninth =
        burn::module::Param::from_tensor(Tensor::<B, 4>::full([1, 1, 3, 3], 1.0 / 9.0, &device));
    block.conv1.weight = ninth.clone();
    block.conv2.weight = ninth;
    // Input: 3x3 of ones. conv1 (zero padding): corner 4/9, edge 6/9, centre 1.
    // bn1 divides by s = sqrt(1 + 1e-5); relu keeps it. conv2 of that map at the centre:
    // (4 * 4/9 + 4 * 6/9 + 1) / 9 / s = (49/9) / 9 / s; then bn2 (/ s) and + 1 (identity), relu.
    let x = tensor([1.0f32; 9], [1, 1, 3, 3]);
    let out = values(block.forward(x));
    let s = (1.0f32 + 1e-5).sqrt();
    let centre = (49.0 / 81.0) / (s * s) + 1.0;
    // corner of conv2: (4/9 + 2 * 6/9 + 1) / 9 = (25/9) / 9
    let corner = (25.0 / 81.0) / (s * s) + 1.0;
    assert!(
        (out[4] - centre).abs() < 1e-5,
        "centre {} vs {centre}",
        out[4]
    );
    assert!(
        (out[0] - corner).abs() < 1e-5,
        "corner {} vs {corner}",
        out[0]
    );
}

#[test]
fn bottleneck_width_and_strides_follow_torchvision_and_caffe_layouts() {
    let resnext = BottleneckConfig::new(256, 128)
        .with_groups(32)
        .with_base_width(4)
        .with_stride(2);
    assert_eq!(resnext.width(), 256);
    let block = resnext.init::<B>(&Default::default());
    assert_eq!(block.conv2.groups, 32);
    assert_eq!(block.conv2.stride, [2, 2]);
    assert_eq!(block.conv1.stride, [1, 1]);
    assert_eq!(block.conv2.weight.dims(), [256, 8, 3, 3]);
    let out = block.forward(random_input([1, 256, 8, 8]));
    assert_eq!(out.dims(), [1, 512, 4, 4]);

    let caffe = BottleneckConfig::new(64, 64)
        .with_stride(2)
        .with_stride_on_1x1(true);
    let block = caffe.init::<B>(&Default::default());
    assert_eq!(block.conv1.stride, [2, 2]);
    assert_eq!(block.conv2.stride, [1, 1]);
    assert_eq!(
        block.forward(random_input([1, 64, 8, 8])).dims(),
        [1, 256, 4, 4]
    );
}

#[test]
fn every_conv_has_its_own_batch_norm_and_shortcut_projects_when_shape_changes() {
    let block = BottleneckConfig::new(64, 64).init::<B>(&Default::default());
    assert_eq!(block.bn1.gamma.dims(), [64]);
    assert_eq!(block.bn2.gamma.dims(), [64]);
    assert_eq!(block.bn3.gamma.dims(), [256]);
    assert!(block.downsample.is_some());
    let block = BasicBlockConfig::new(64, 64).init::<B>(&Default::default());
    assert!(block.downsample.is_none());
    assert!(block.se.is_none());
}

#[test]
fn block_complexity_counts_the_built_parameters() {
    let device = Default::default();
    let se = BlockAttentionConfig::of(AttentionConfig::Se(SqueezeExcitationConfig::new()));
    for placement in [SePlacement::Standard, SePlacement::Pre] {
        let attention = se.clone().with_placement(placement);
        let basic = BasicBlockConfig::new(32, 64)
            .with_stride(2)
            .with_attention(attention.clone());
        let (cost, size) = basic.complexity([8, 8]);
        assert_eq!(size, [4, 4]);
        assert_eq!(
            cost.params,
            crate::trainable_params(&basic.init::<B>(&device))
        );
        let bottleneck = BottleneckConfig::new(64, 32)
            .with_groups(4)
            .with_base_width(16)
            .with_attention(attention);
        let (cost, _) = bottleneck.complexity([8, 8]);
        assert_eq!(
            cost.params,
            crate::trainable_params(&bottleneck.init::<B>(&device))
        );
    }
    // conv 3x3 64→64 on 8x8, stride 1: 64 * 64 * 9 weights, each used at 64 positions.
    let (cost, _) = BasicBlockConfig::new(64, 64).complexity([8, 8]);
    assert_eq!(cost.macs, 2 * 64 * 64 * 9 * 64);
    assert_eq!(cost.params, 2 * (64 * 64 * 9 + 2 * 64));
}

/// A hook that records the weights it sees and hands back `replace` (or the weights).
struct Probe {
    seen: Vec<Vec<f32>>,
    replace: Option<f32>,
}

impl crate::ExcitationHook<B> for Probe {
    fn excitation(&mut self, weights: Tensor<B, 2>) -> Tensor<B, 2> {
        self.seen.push(values(weights.clone()));
        match self.replace {
            Some(value) => weights.ones_like().mul_scalar(value),
            None => weights,
        }
    }
}

/// The hook sees each placement's SE weights, exactly once per forward pass, as `[N, C]`;
/// returning them unchanged changes nothing, and replacing them by ones gives the block
/// without its SE (a weight of 1 passes every channel as it is).
#[test]
fn the_excitation_hook_sees_and_replaces_the_weights_at_every_placement() {
    let x = random_input([2, 4, 6, 6]);
    for placement in [
        SePlacement::Standard,
        SePlacement::Pre,
        SePlacement::Post,
        SePlacement::Identity,
    ] {
        let block = basic(4, 4, 1, placement);
        let se = se_of(&block);
        let mut probe = Probe {
            seen: vec![],
            replace: None,
        };
        let out = block.forward_hooked(x.clone(), Some(&mut probe));
        assert_close(out, &values(block.forward(x.clone())));
        assert_eq!(probe.seen.len(), 1, "{placement:?}");
        assert_eq!(probe.seen[0].len(), 2 * 4);
        if placement == SePlacement::Pre {
            assert_close(se.excitation(x.clone()), &probe.seen[0]);
        }

        let mut ones = Probe {
            seen: vec![],
            replace: Some(1.0),
        };
        let mut plain = block.clone();
        plain.se = None;
        let out = block.forward_hooked(x.clone(), Some(&mut ones));
        assert_close(out, &values(plain.forward(x.clone())));
    }
}

/// The inference form of an SE bottleneck (BatchNorms folded) gives the unfolded block's
/// output, with and without a hook (which sees the same weights), at batch 1 (each layer split
/// over the threads) and 5 (images in parallel). Without a hook its 1x1 layer takes the SE
/// weights from its input's plane means; with one, from its own output's.
#[test]
fn a_folded_se_bottleneck_equals_the_unfolded_one_with_and_without_a_hook() {
    let device = Default::default();
    let se = AttentionConfig::Se(SqueezeExcitationConfig::paper(2));
    let mut block = BottleneckConfig::new(8, 4)
        .with_attention(BlockAttentionConfig::of(se))
        .init::<B>(&device);
    let random =
        |len, low, high| Tensor::<B, 1>::random([len], Distribution::Uniform(low, high), &device);
    for bn in block.batch_norms_mut() {
        let [c] = bn.gamma.dims();
        bn.gamma = Param::from_tensor(random(c, 0.5, 1.5));
        bn.beta = Param::from_tensor(random(c, -0.5, 0.5));
        bn.running_mean = RunningState::new(random(c, -0.5, 0.5));
        bn.running_var = RunningState::new(random(c, 0.5, 2.0));
    }
    let probe = || Probe {
        seen: vec![],
        replace: None,
    };
    // The unfolded block's outputs and weights first, then the same block folded: Burn
    // initialises parameters lazily, so a clone taken before their first use draws its own.
    let unfolded: Vec<_> = [1, 5]
        .into_iter()
        .map(|n| {
            let x = random_input([n, 8, 6, 6]);
            let mut seen = probe();
            let expected = values(block.forward_hooked(x.clone(), Some(&mut seen)));
            (x, expected, seen.seen)
        })
        .collect();
    block.fold_batch_norms();
    for (x, expected, seen) in unfolded {
        assert_close(block.forward(x.clone()), &expected);
        let mut seen_folded = probe();
        let out = block.forward_hooked(x, Some(&mut seen_folded));
        assert_close(out, &expected);
        assert_eq!(seen_folded.seen.len(), 1);
        let weights = Tensor::<B, 1>::from_floats(seen_folded.seen[0].as_slice(), &device);
        assert_close(weights, &seen[0]);
    }
}
