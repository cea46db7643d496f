//! Training SE-ResNets with Burn's Learner: data sources, augmentation, batching, the training
//! loop with metrics and checkpoints, evaluation and prediction.

pub mod classifier;
pub mod config;
pub mod data;
pub mod distributed;
pub mod error;
pub mod evaluate;
pub mod progress;
pub mod report;
pub mod run;
pub mod schedule;
pub mod train;

pub use config::{DataSource, OptimizerKind, ScheduleKind, TrainConfig};
pub use error::TrainError;
pub use evaluate::{EvalReport, evaluate, load_image, predict};
pub use run::{RunFolder, TrainSummary};
pub use train::{TrainOptions, train};
