//! Data-parallel training over several processes (ranks): every rank trains a replica on its
//! shard of each epoch; after every backward pass the gradients are averaged over the ranks (one
//! flat buffer, one all-reduce) so that every rank applies the same optimizer step and the
//! replicas stay equal. BatchNorm statistics stay per rank, as in PyTorch's DDP by default.
//!
//! The transport is a [`Collective`]; `mpi::MpiCollective` (feature `mpi`) runs it over MPI
//! (`mpirun -np N se train --distributed mpi ...`). Everything here is independent of it; tests
//! use a fake two-rank collective (threads would share Burn's BatchNorm running state).

#[cfg(feature = "mpi")]
pub mod mpi;

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use burn::data::dataset::Dataset;
use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::data::ImageItem;

/// The collective operations data-parallel training needs, over `size` ranks.
pub trait Collective: Debug + Send + Sync {
    /// This process's rank, `0..size`.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn size(&self) -> usize;
    /// Sums `buffer` element-wise over all ranks, in place, on every rank.
    fn all_reduce_sum(&self, buffer: &mut [f32]);
    /// Overwrites `buffer` on every rank with rank 0's.
    fn broadcast_from_root(&self, buffer: &mut [f32]);
}

/// What every rank of a job must share before its first step: hashes of the training config
/// and of the data description, and the epoch the run starts after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunFingerprint {
    /// Hash of the training config (its JSON).
    pub config: u64,
    /// Hash of the data description (classes, image size, normalisation).
    pub data: u64,
    /// The epoch the run starts after (0 for a new run).
    pub start_epoch: usize,
}

impl RunFingerprint {
    /// The fingerprint of a run of `config` on data described by `data` (JSON), from `start_epoch`.
    pub fn new(config: &str, data: &str, start_epoch: usize) -> Self {
        use std::hash::{Hash, Hasher};
        // SipHash with fixed keys: the same value in every process of the same binary.
        let hash = |text: &str| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            text.hash(&mut hasher);
            hasher.finish()
        };
        Self {
            config: hash(config),
            data: hash(data),
            start_epoch,
        }
    }

    /// As floats that survive the collective exactly (16-bit pieces).
    fn encode(&self) -> [f32; 9] {
        let mut values = [0.0; 9];
        for (i, word) in [self.config, self.data].into_iter().enumerate() {
            for piece in 0..4 {
                values[4 * i + piece] = ((word >> (16 * piece)) & 0xffff) as f32;
            }
        }
        values[8] = self.start_epoch as f32;
        values
    }
}

/// The ranks of a job do not run the same thing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the ranks disagree on {}; every rank must run the same command on the same data and \
     resume from the same epoch (rank 0 starts after epoch {root_start_epoch})",
    what.join(", ")
)]
pub struct RanksDisagree {
    /// What differs: `the training config`, `the data`, `the start epoch`.
    pub what: Vec<&'static str>,
    /// The epoch rank 0 starts after.
    pub root_start_epoch: usize,
}

/// Checks that every rank has rank 0's fingerprint; all ranks return the same answer (rank 0's
/// fingerprint is broadcast, the differences summed over the ranks).
pub fn agree(collective: &dyn Collective, mine: &RunFingerprint) -> Result<(), RanksDisagree> {
    let mut root = mine.encode();
    collective.broadcast_from_root(&mut root);
    let own = mine.encode();
    let differs =
        |range: std::ops::Range<usize>| f32::from(u8::from(root[range.clone()] != own[range]));
    let mut differences = [differs(0..4), differs(4..8), differs(8..9)];
    collective.all_reduce_sum(&mut differences);
    let what: Vec<&'static str> = ["the training config", "the data", "the start epoch"]
        .into_iter()
        .zip(differences)
        .filter(|(_, count)| *count > 0.0)
        .map(|(what, _)| what)
        .collect();
    if what.is_empty() {
        Ok(())
    } else {
        Err(RanksDisagree {
            what,
            root_start_epoch: root[8] as usize,
        })
    }
}

/// Every float tensor of a module (parameters and BatchNorm statistics), flattened in visiting
/// order.
pub fn flatten<B: Backend, M: Module<B>>(module: &M) -> Vec<f32> {
    struct Flatten(Vec<f32>);
    impl<B: Backend> ModuleVisitor<B> for Flatten {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let data = param.val().into_data().convert::<f32>();
            self.0.extend(data.as_slice::<f32>().expect("f32"));
        }
    }
    let mut visitor = Flatten(Vec::new());
    module.visit(&mut visitor);
    visitor.0
}

/// The inverse of [`flatten`]: the module with its float tensors read from `values`.
pub fn unflatten<B: Backend, M: Module<B>>(module: M, values: &[f32]) -> M {
    struct Unflatten<'a> {
        values: &'a [f32],
        at: usize,
    }
    impl<B: Backend> ModuleMapper<B> for Unflatten<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (id, tensor, mapper) = param.consume();
            let shape = tensor.shape();
            let len = shape.num_elements();
            let data = TensorData::new(self.values[self.at..self.at + len].to_vec(), shape)
                .convert_dtype(tensor.dtype());
            self.at += len;
            // A fresh tensor does not track gradients; keep the parameter trainable.
            let trainable = tensor.is_require_grad();
            let tensor = Tensor::from_data(data, &tensor.device()).set_require_grad(trainable);
            Param::from_mapped_value(id, tensor, mapper)
        }
    }
    let mut mapper = Unflatten { values, at: 0 };
    let module = module.map(&mut mapper);
    assert_eq!(
        mapper.at,
        values.len(),
        "buffer size does not match the module"
    );
    module
}

/// Rank 0's weights on every rank (for replicas initialised with different random numbers, or
/// only rank 0 having loaded them).
pub fn broadcast_module<B: Backend, M: Module<B>>(module: M, collective: &dyn Collective) -> M {
    let mut values = flatten(&module);
    collective.broadcast_from_root(&mut values);
    unflatten(module, &values)
}

/// Averages the gradients of `module`'s parameters over all ranks: one flat buffer, one
/// all-reduce. Every rank must call it at the same step (the graphs are the same on every rank,
/// so every rank has gradients for the same parameters).
#[derive(Debug, Clone)]
pub struct GradientAverager {
    collective: Arc<dyn Collective>,
}

impl GradientAverager {
    /// Averages over the ranks of `collective`.
    pub fn new(collective: Arc<dyn Collective>) -> Self {
        Self { collective }
    }

    /// Replaces each gradient in `grads` by its mean over the ranks.
    pub fn average<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
        module: &M,
        grads: &mut GradientsParams,
    ) {
        struct Gather<'a> {
            grads: &'a mut GradientsParams,
            buffer: Vec<f32>,
        }
        impl<B: AutodiffBackend> ModuleVisitor<B> for Gather<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                if let Some(grad) = self.grads.get::<B::InnerBackend, D>(param.id) {
                    let data = grad.into_data().convert::<f32>();
                    self.buffer.extend(data.as_slice::<f32>().expect("f32"));
                }
            }
        }
        struct Scatter<'a> {
            grads: &'a mut GradientsParams,
            buffer: &'a [f32],
            at: usize,
            scale: f32,
        }
        impl<B: AutodiffBackend> ModuleVisitor<B> for Scatter<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                if let Some(grad) = self.grads.remove::<B::InnerBackend, D>(param.id) {
                    let shape = grad.shape();
                    let len = shape.num_elements();
                    let mean: Vec<f32> = self.buffer[self.at..self.at + len]
                        .iter()
                        .map(|v| v * self.scale)
                        .collect();
                    self.at += len;
                    let data = TensorData::new(mean, shape).convert_dtype(grad.dtype());
                    self.grads.register::<B::InnerBackend, D>(
                        param.id,
                        Tensor::from_data(data, &grad.device()),
                    );
                }
            }
        }
        let mut gather = Gather {
            grads,
            buffer: Vec::new(),
        };
        module.visit(&mut gather);
        let mut buffer = gather.buffer;
        self.collective.all_reduce_sum(&mut buffer);
        let scale = 1.0 / self.collective.size() as f32;
        module.visit(&mut Scatter {
            grads,
            buffer: &buffer,
            at: 0,
            scale,
        });
    }
}

/// One rank's share of every epoch (the whole epoch for a run of one process): the epoch's
/// images are permuted with a seed shared by all
/// ranks (a new permutation every epoch) and rank `r` of `n` takes positions `r, r + n, ...`.
/// Every rank gets `len / n` images (the remainder is left out of that epoch), so all ranks take
/// the same number of steps. Like the augmentation, the epoch is counted per item: the data
/// loader visits each index once per epoch.
pub struct Shard<D> {
    inner: D,
    rank: usize,
    ranks: usize,
    seed: u64,
    visits: Vec<AtomicU64>,
    permutations: Mutex<HashMap<u64, Arc<Vec<usize>>>>,
}

impl<D: Dataset<ImageItem>> Shard<D> {
    /// Rank `rank` of `ranks`; `first_epoch` is where a resumed run starts.
    pub fn new(inner: D, rank: usize, ranks: usize, seed: u64, first_epoch: u64) -> Self {
        assert!(rank < ranks, "rank {rank} of {ranks}");
        let len = inner.len() / ranks;
        Self {
            inner,
            rank,
            ranks,
            seed,
            visits: (0..len).map(|_| AtomicU64::new(first_epoch)).collect(),
            permutations: Mutex::new(HashMap::new()),
        }
    }

    /// The whole set's order in `epoch`, the same on every rank.
    fn permutation(&self, epoch: u64) -> Arc<Vec<usize>> {
        let mut cache = self.permutations.lock().unwrap();
        if let Some(order) = cache.get(&epoch) {
            return order.clone();
        }
        let mut order: Vec<usize> = (0..self.inner.len()).collect();
        order.shuffle(&mut StdRng::seed_from_u64(
            self.seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        ));
        let order = Arc::new(order);
        cache.retain(|&e, _| e + 1 >= epoch); // keep the current and the previous epoch
        cache.insert(epoch, order.clone());
        order
    }

    /// The index into the whole set that shard index `index` reads in `epoch`.
    pub fn source_index(&self, index: usize, epoch: u64) -> usize {
        self.permutation(epoch)[index * self.ranks + self.rank]
    }
}

impl<D: Dataset<ImageItem>> Dataset<ImageItem> for Shard<D> {
    fn get(&self, index: usize) -> Option<ImageItem> {
        let epoch = self.visits.get(index)?.fetch_add(1, Ordering::Relaxed);
        self.inner.get(self.source_index(index, epoch))
    }

    fn len(&self) -> usize {
        self.visits.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classifier::Classifier;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::Int;

    type B = Autodiff<Flex>;

    fn classifier(seed: u64) -> Classifier<B> {
        let device = Default::default();
        B::seed(&device, seed);
        let config = se_models::ResNetConfig {
            layers: vec![1, 1, 1],
            ..se_models::zoo::se_resnet20()
        };
        Classifier::new(config.init::<B>(&device), 0.0)
    }

    fn batch(part: usize) -> (Tensor<B, 4>, Tensor<B, 1, Int>) {
        let device = Default::default();
        let pixels: Vec<f32> = (0..4 * 3 * 16 * 16)
            .map(|i| (((i + part * 977) * 7919 % 1013) as f32 / 506.5) - 1.0)
            .collect();
        let labels: Vec<i64> = (0..4).map(|i| ((i + part) % 10) as i64).collect();
        (
            Tensor::from_data(TensorData::new(pixels, [4, 3, 16, 16]), &device),
            Tensor::from_data(TensorData::new(labels, [4]), &device),
        )
    }

    fn gradients(model: &Classifier<B>, part: usize) -> GradientsParams {
        let (x, y) = batch(part);
        GradientsParams::from_grads(model.forward_classification(x, y).loss.backward(), model)
    }

    #[test]
    fn flatten_and_unflatten_round_trip_and_keep_parameters_trainable() {
        let model = classifier(1);
        let values = flatten(&model);
        let other = unflatten(classifier(2), &values);
        assert_eq!(flatten(&other), values);
        let grads = gradients(&other, 0);
        assert!(!grads.is_empty(), "parameters lost their gradients");
    }

    /// Rank 0 of two, the other rank's contribution given (threads would share the
    /// BatchNorm running statistics of the cloned model, which Burn synchronises across threads).
    #[derive(Debug, Default)]
    struct TwoRanks {
        other: Option<Vec<f32>>,
        sent: Mutex<Vec<f32>>,
    }

    impl Collective for TwoRanks {
        fn rank(&self) -> usize {
            0
        }
        fn size(&self) -> usize {
            2
        }
        fn all_reduce_sum(&self, buffer: &mut [f32]) {
            *self.sent.lock().unwrap() = buffer.to_vec();
            let other = self.other.clone().unwrap_or_else(|| buffer.to_vec());
            buffer.iter_mut().zip(other).for_each(|(b, o)| *b += o);
        }
        fn broadcast_from_root(&self, _: &mut [f32]) {}
    }

    #[test]
    fn ranks_agree_on_the_same_run_and_name_what_differs() {
        let mine = RunFingerprint::new("{\"epochs\": 5}", "{\"kind\": \"mnist\"}", 2);
        assert_eq!(
            mine,
            RunFingerprint::new("{\"epochs\": 5}", "{\"kind\": \"mnist\"}", 2)
        );
        // The other rank agrees: its differences are zero.
        let agreeing = TwoRanks {
            other: Some(vec![0.0; 3]),
            ..Default::default()
        };
        assert_eq!(agree(&agreeing, &mine), Ok(()));
        // The other rank resumes from another epoch.
        let other_epoch = TwoRanks {
            other: Some(vec![0.0, 0.0, 1.0]),
            ..Default::default()
        };
        let error = agree(&other_epoch, &mine).unwrap_err();
        assert_eq!(error.what, ["the start epoch"]);
        assert_eq!(error.root_start_epoch, 2);
        assert!(
            error.to_string().contains("rank 0 starts after epoch 2"),
            "{error}"
        );
        assert_ne!(
            mine.config,
            RunFingerprint::new("{\"epochs\": 6}", "", 2).config
        );
    }

    fn conv1_gradient(model: &Classifier<B>, grads: &GradientsParams) -> Vec<f32> {
        let grad = grads.get::<Flex, 4>(model.model.conv1.weight.id).unwrap();
        grad.into_data().into_vec().unwrap()
    }

    #[test]
    fn averaged_gradients_of_two_ranks_equal_the_gradient_of_the_mean_loss() {
        let model = classifier(3);
        // What rank 1 sends: its gradients, flattened.
        let rank1 = Arc::new(TwoRanks::default());
        GradientAverager::new(rank1.clone()).average(&model, &mut gradients(&model, 1));
        let sent = rank1.sent.lock().unwrap().clone();
        assert!(!sent.is_empty());
        // Rank 0 averages its own with them.
        let rank0 = Arc::new(TwoRanks {
            other: Some(sent),
            ..Default::default()
        });
        let mut averaged = gradients(&model, 0);
        GradientAverager::new(rank0).average(&model, &mut averaged);

        let (x0, y0) = batch(0);
        let (x1, y1) = batch(1);
        let loss = (model.forward_classification(x0, y0).loss
            + model.forward_classification(x1, y1).loss)
            / 2.0;
        let expected = GradientsParams::from_grads(loss.backward(), &model);
        let (expected, averaged) = (
            conv1_gradient(&model, &expected),
            conv1_gradient(&model, &averaged),
        );
        let diff = expected
            .iter()
            .zip(&averaged)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        let scale = expected.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(
            scale > 0.0 && diff <= 1e-5 * scale,
            "difference {diff} (largest {scale})"
        );
    }

    #[test]
    fn shards_split_every_epoch_between_the_ranks() {
        use crate::data::ImageItem;
        struct Numbers(usize);
        impl Dataset<ImageItem> for Numbers {
            fn get(&self, index: usize) -> Option<ImageItem> {
                (index < self.0).then(|| ImageItem {
                    pixels: vec![index as u8],
                    height: 1,
                    width: 1,
                    channels: 1,
                    label: index,
                })
            }
            fn len(&self) -> usize {
                self.0
            }
        }
        let shards: Vec<_> = (0..3)
            .map(|rank| Shard::new(Numbers(10), rank, 3, 7, 0))
            .collect();
        let mut epochs = Vec::new();
        for _ in 0..2 {
            let mut seen: Vec<usize> = shards
                .iter()
                .flat_map(|shard| {
                    (0..shard.len())
                        .map(|i| shard.get(i).unwrap().label)
                        .collect::<Vec<_>>()
                })
                .collect();
            let order = seen.clone();
            seen.sort();
            seen.dedup();
            assert_eq!(seen.len(), 9, "3 ranks x 3 distinct images (one left out)");
            epochs.push(order);
        }
        assert_ne!(epochs[0], epochs[1], "a new order every epoch");
    }
}
