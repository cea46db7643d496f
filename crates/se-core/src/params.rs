//! Counting learnable parameters the way PyTorch does.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// Names of the BatchNorm running statistics: buffers in PyTorch, not parameters.
const RUNNING_STATISTICS: [&str; 2] = ["running_mean", "running_var"];

/// Counts learnable parameters, as PyTorch's `sum(p.numel() for p in model.parameters())`.
///
/// Burn's `Module::num_params` also counts BatchNorm's running mean and variance, which PyTorch keeps
/// as buffers; published parameter counts exclude them, so this does too.
pub fn trainable_params<B: Backend, M: Module<B>>(module: &M) -> usize {
    let mut counter = TrainableCounter::default();
    module.visit(&mut counter);
    counter.count
}

#[derive(Default)]
struct TrainableCounter {
    path: Vec<String>,
    count: usize,
}

impl<B: Backend> ModuleVisitor<B> for TrainableCounter {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let is_statistic = self
            .path
            .last()
            .is_some_and(|name| RUNNING_STATISTICS.contains(&name.as_str()));
        if !is_statistic {
            self.count += param.lazy_shape().num_elements();
        }
    }
}
