//! # Squeeze-SegNet training
//!
//! Train and evaluate [`squeeze_segnet`] models on data from [`squeeze_segnet_data`]:
//!
//! - [`segmentation_cross_entropy`]: class-weighted pixel-wise cross-entropy, void ignored;
//! - [`ConfusionMatrix`] → [`SegmentationScores`]: global accuracy, class-average accuracy
//!   (the paper's headline), per-class accuracy and IoU, mean IoU;
//! - [`Trainer`]: the training loop on any backend, with validation at the labels' full
//!   resolution, a progress bar, a metrics log and chart, and checkpoints that survive `kill -9`
//!   ([`checkpoint`]) and resume exactly;
//! - [`evaluate()`]: scoring at the labels' resolution, whatever size the model runs at,
//!   optionally with test-time augmentation (rescaled and mirrored passes; inference itself is
//!   the model crate's: [`squeeze_segnet::predict_at`], [`squeeze_segnet::TestTimeAugmentation`]);
//! - [`logit_adjustment`]: post-hoc correction of the prior shift of class-weighted training;
//! - [`average_weights`] and [`update_batch_norm`]: stochastic weight averaging of several
//!   runs' weights (cycle ends), batch-norm statistics recomputed on training data;
//! - [`SegmentationMetric`]: the same scores as burn-train metrics, for Burn's `Learner`.
//!
//! What is Burn's: autodiff, the optimisers ([`burn::optim`]: SGD with momentum, Adam), the
//! model and optimiser records (burnpack files, each written atomically), the `Batcher`, and
//! bilinear interpolation. What is ours: the loop, its data order, the learning-rate schedule
//! ([`TrainingConfig::learning_rate`]), the checkpoint manifest, metrics, logs and chart.
//!
//! ```no_run
//! use burn::prelude::*;
//! use squeeze_segnet_data::{camvid, camvid_sample_root};
//! use squeeze_segnet_train::{RunOptions, Trainer, TrainingConfig};
//!
//! let root = camvid_sample_root();
//! let config = TrainingConfig::new().with_epochs(2);
//! let trainer = Trainer::new(config, Device::flex(), camvid(&root, "train")?, Some(camvid(&root, "val")?), "runs/demo")?;
//! let outcome = trainer.run(RunOptions { verbose: true, ..Default::default() })?;
//! println!("best class-average accuracy: {:?}", outcome.best);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

mod adjust;
mod aux;
mod burn_metric;
mod chart;
pub mod checkpoint;
mod config;
mod ema;
mod error;
mod evaluate;
mod lock;
mod loss;
mod metrics;
pub mod parallel;
mod param_groups;
mod progress;
mod swa;
mod trainer;

pub use adjust::{CLASS_STATS_FILE, logit_adjustment};
pub use aux::{AuxHead, AuxHeadConfig, cell_centres};
pub use burn_metric::{Score, SegmentationMetric, SegmentationMetricInput};
pub use chart::{render as render_chart, write_chart};
pub use config::{ClassWeighting, EncoderInit, OptimizerKind, Schedule, TrainingConfig};
pub use ema::Ema;
pub use error::TrainError;
pub use evaluate::evaluate;
pub use lock::LOCK_FILE;
pub use loss::{
    label_weight_sum, lovasz_softmax_loss, segmentation_cross_entropy, soft_jaccard_loss,
    weighted_nll_sum,
};
pub use metrics::{ConfusionMatrix, SegmentationScores};
pub use progress::{ProgressBar, clock};
pub use swa::{average_weights, update_batch_norm};
pub use trainer::{
    CALIBRATION_IMAGES, EpochRecord, RunOptions, Trainer, TrainingOutcome, summary_line,
};
