//! Training SE-ResNets with Burn's Learner: data sources, augmentation, batching, the training
//! loop with metrics and checkpoints, evaluation and prediction.

pub mod data;
