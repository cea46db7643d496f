//! Training SE-ResNets with Burn's Learner: data sources, augmentation, batching, the training
//! loop with metrics and checkpoints, evaluation and prediction.
//!
//! - [`TrainConfig`]: everything a run needs (model, data, optimizer, schedule, ...), saved as
//!   `config.json` in the run folder; [`DataSource`] names the data.
//! - [`train()`]: one run into a [`RunFolder`], on one or several devices or as one rank of an MPI
//!   job ([`TrainOptions`]), fresh or resumed from its last checkpoint.
//! - [`FineTuneConfig`]: start from pretrained weights, freeze a prefix, slow the body down.
//! - [`evaluate()`] and [`predict()`]: a trained model on a test split or on images.
//!
//! ```no_run
//! use burn::backend::{Autodiff, Flex};
//! use se_train::{DataSource, RunFolder, TrainConfig, TrainOptions, train};
//!
//! // Two epochs of SE-ResNet-20 on the embedded MNIST digits.
//! let config = TrainConfig::new()
//!     .with_model("se_resnet20".into())
//!     .with_data(DataSource::EmbeddedMnist)
//!     .with_epochs(2);
//! let run_dir = std::path::Path::new("runs/digits");
//! let summary = train(&config, run_dir, TrainOptions::<Autodiff<Flex>>::new(Default::default()))?;
//! println!("top-1 {:.2}%", 100.0 * summary.test.top1);
//!
//! // The trained model, back from its run folder.
//! let run = RunFolder(run_dir.to_path_buf());
//! let (model, info) = run.load_model::<Flex>(&run.final_model(), &Default::default())?;
//! # let _ = (model, info);
//! # Ok::<(), se_train::TrainError>(())
//! ```

#![warn(missing_docs)]

pub mod analysis;
pub mod classifier;
pub mod config;
pub mod data;
pub mod distributed;
pub mod error;
pub mod evaluate;
pub mod finetune;
pub mod guard;
mod learner;
pub mod plot;
pub mod progress;
pub mod report;
pub mod run;
pub mod schedule;
pub mod train;

pub use config::{DataSource, InvalidTrainConfig, OptimizerKind, ScheduleKind, TrainConfig};
pub use error::TrainError;
pub use evaluate::{BatchHook, EvalReport, evaluate, evaluate_hooked, load_image, predict};
pub use finetune::FineTuneConfig;
pub use run::{RunFolder, TrainSummary};
pub use train::{TrainOptions, train};
