use burn::backend::{Autodiff, Flex};
use burn::tensor::{Distribution, Tensor};
use std::time::Instant;
type B = Flex;
type AD = Autodiff<Flex>;
fn main() {
    let device = Default::default();
    for name in ["resnet20", "se_resnet20"] {
        let cfg = se_models::config(name).unwrap().with_in_channels(1);
        let m = cfg.init::<B>(&device);
        let x = Tensor::<B, 4>::random([64, 1, 28, 28], Distribution::Default, &device);
        let _ = m.forward(x.clone()).into_data();
        let t = Instant::now();
        for _ in 0..3 {
            let _ = m.forward(x.clone()).into_data();
        }
        println!("{name} fwd {:?}", t.elapsed() / 3);
        let m = cfg.init::<AD>(&device);
        let x = Tensor::<AD, 4>::random([64, 1, 28, 28], Distribution::Default, &device);
        let t = Instant::now();
        for _ in 0..3 {
            let y = m.forward(x.clone()).sum();
            let g = y.backward();
            drop(g);
        }
        println!("{name} fwd+bwd {:?}", t.elapsed() / 3);
    }
    // single conv
    let conv = burn::nn::conv::Conv2dConfig::new([16, 16], [3, 3])
        .with_padding(burn::nn::PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init::<B>(&device);
    let x = Tensor::<B, 4>::random([128, 16, 32, 32], Distribution::Default, &device);
    let _ = conv.forward(x.clone()).into_data();
    let t = Instant::now();
    for _ in 0..5 {
        let _ = conv.forward(x.clone()).into_data();
    }
    println!("conv [128,16,32,32] fwd {:?}", t.elapsed() / 5);
}
