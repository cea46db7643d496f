//! Training SE-ResNets with Burn's Learner: data sources, augmentation, batching, the training
//! loop with metrics and checkpoints, evaluation and prediction.

pub mod classifier;
pub mod config;
pub mod data;
pub mod distributed;
pub mod evaluate;
pub mod progress;
pub mod report;
pub mod schedule;
pub mod train;

pub use config::{DataSource, OptimizerKind, ScheduleKind, TrainConfig};
pub use evaluate::{EvalReport, evaluate, load_image, predict};
pub use train::{RunFolder, TrainError, TrainSummary, train, train_distributed, train_on_devices};
