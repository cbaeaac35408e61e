//! The training data stream: a seeded order per epoch, augmentations seeded per (epoch, sample),
//! decoding on worker threads ahead of the model, and an optional in-memory cache of decoded
//! images.
//!
//! Burn's multi-worker `DataLoader` splits the dataset between workers, so which images share a
//! batch depends on the worker count and on timing. Training here needs batches that are a pure
//! function of `(seed, epoch, batch index)` — that is what lets a run resume mid-epoch and
//! reproduce the uninterrupted run — so the order is computed here, the images of a batch are
//! decoded in parallel (rayon), and the batch is stacked with the data crate's Burn `Batcher`.

use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use rayon::prelude::*;
use squeeze_segnet_data::{
    DataError, SegmentationDataset, SegmentationItem, SegmentationSample, SplitMix64,
    TransformConfig,
};

/// A dataset with an optional cache of decoded samples, shared with the loader thread.
pub struct CachedDataset {
    dataset: SegmentationDataset,
    cache: Option<Vec<OnceLock<Arc<SegmentationSample>>>>,
}

impl CachedDataset {
    /// Wraps `dataset`; with `cache`, each sample is decoded once.
    pub fn new(dataset: SegmentationDataset, cache: bool) -> Self {
        let cache = cache.then(|| (0..dataset.len()).map(|_| OnceLock::new()).collect());
        Self { dataset, cache }
    }

    /// The wrapped dataset.
    pub fn dataset(&self) -> &SegmentationDataset {
        &self.dataset
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.dataset.len()
    }

    /// True when the dataset is empty.
    pub fn is_empty(&self) -> bool {
        self.dataset.is_empty()
    }

    /// Sample `index`, decoded (or from the cache).
    pub fn get(&self, index: usize) -> Result<Arc<SegmentationSample>, DataError> {
        match &self.cache {
            None => self.dataset.load(index).map(Arc::new),
            Some(cache) => {
                if let Some(s) = cache[index].get() {
                    return Ok(s.clone());
                }
                let s = Arc::new(self.dataset.load(index)?);
                Ok(cache[index].get_or_init(|| s).clone())
            }
        }
    }
}

/// The order of the samples in epoch `epoch` (Fisher–Yates with a generator seeded from
/// `(seed, epoch)`).
pub fn epoch_order(len: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut rng = SplitMix64::new(seed ^ (epoch as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
    let mut order: Vec<usize> = (0..len).collect();
    for i in (1..len).rev() {
        let j = rng.below(i + 1);
        order.swap(i, j);
    }
    order
}

/// The generator for sample `index` in epoch `epoch`.
pub fn sample_rng(seed: u64, epoch: usize, index: usize) -> SplitMix64 {
    let mut s = SplitMix64::new(
        seed ^ (index as u64).wrapping_mul(0xA24B_AED4_963E_E407)
            ^ (epoch as u64).wrapping_mul(0x9FB2_1C65_1E98_DF25),
    );
    SplitMix64::new(s.next_u64())
}

/// Batches of one epoch, produced on a background thread while the model trains.
pub struct EpochStream {
    rx: Receiver<Result<Vec<SegmentationItem>, DataError>>,
    handle: Option<JoinHandle<()>>,
}

impl EpochStream {
    /// Starts producing `batches` (lists of sample indices) of epoch `epoch`, each sample
    /// transformed with [`sample_rng`]`(seed, epoch, index)`.
    pub fn start(
        data: Arc<CachedDataset>,
        transform: TransformConfig,
        batches: Vec<Vec<usize>>,
        seed: u64,
        epoch: usize,
    ) -> Self {
        let (tx, rx) = sync_channel(2);
        let handle = std::thread::Builder::new()
            .name("squeeze-segnet-loader".into())
            .spawn(move || {
                for batch in batches {
                    let items: Result<Vec<_>, DataError> = batch
                        .par_iter()
                        .map(|&i| {
                            let sample = data.get(i)?;
                            let mut rng = sample_rng(seed, epoch, i);
                            Ok(transform.apply(&sample, &mut rng))
                        })
                        .collect();
                    let failed = items.is_err();
                    if tx.send(items).is_err() || failed {
                        return;
                    }
                }
            })
            .expect("the loader thread starts");
        Self {
            rx,
            handle: Some(handle),
        }
    }
}

impl Iterator for EpochStream {
    type Item = Result<Vec<SegmentationItem>, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.rx.recv().ok()
    }
}

impl Drop for EpochStream {
    fn drop(&mut self) {
        // Unblock the producer (its next send fails) and wait for it.
        let (_tx, rx) = sync_channel(1);
        drop(std::mem::replace(&mut self.rx, rx));
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Splits `order` into batches of `batch_size` (the last one may be smaller).
pub fn batches(order: &[usize], batch_size: usize) -> Vec<Vec<usize>> {
    order.chunks(batch_size).map(<[usize]>::to_vec).collect()
}
