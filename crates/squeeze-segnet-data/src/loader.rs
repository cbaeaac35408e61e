//! The data pipeline: a seeded order per epoch ([`epoch_order`]), augmentations seeded per
//! (epoch, sample) ([`sample_rng`], the one seed derivation, which [`crate::TransformedDataset`]
//! uses too), decoding on worker threads ahead of the model ([`EpochStream`]), and an optional
//! in-memory cache of decoded images ([`CachedDataset`]). The trainer and the evaluation run on
//! it.
//!
//! Burn's multi-worker `DataLoader` splits the dataset between workers, so which images share a
//! batch depends on the worker count and on timing. Training here needs batches that are a pure
//! function of `(seed, epoch, batch index)` — that is what lets a run resume mid-epoch and
//! reproduce the uninterrupted run — so the order is computed here, the images of a batch are
//! decoded in parallel (rayon), and the batch is stacked with the data crate's Burn `Batcher`.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use rayon::prelude::*;

use crate::{
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
///
/// A failure of the producer thread (a panic in a transform, say) comes out as one
/// [`DataError::LoaderFailed`] item instead of a silently short epoch.
pub struct EpochStream {
    rx: Receiver<Result<Vec<SegmentationItem>, DataError>>,
    handle: Option<JoinHandle<()>>,
    expected: usize,
    produced: usize,
    failed: bool,
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
        let expected = batches.len();
        Self::spawn(expected, move |tx| {
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
    }

    /// A stream of `expected` batches sent by `produce` from a background thread.
    fn spawn(
        expected: usize,
        produce: impl FnOnce(SyncSender<Result<Vec<SegmentationItem>, DataError>>) + Send + 'static,
    ) -> Self {
        let (tx, rx) = sync_channel(2);
        let handle = std::thread::Builder::new()
            .name("squeeze-segnet-loader".into())
            .spawn(move || produce(tx))
            .expect("the loader thread starts");
        Self {
            rx,
            handle: Some(handle),
            expected,
            produced: 0,
            failed: false,
        }
    }
}

impl Iterator for EpochStream {
    type Item = Result<Vec<SegmentationItem>, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.rx.recv() {
            Ok(item) => {
                self.produced += 1;
                self.failed = item.is_err();
                Some(item)
            }
            Err(_) if self.produced < self.expected => {
                self.failed = true;
                let reason = match self.handle.take().map(JoinHandle::join) {
                    Some(Err(panic)) => panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "it panicked".into()),
                    _ => "it ended early".into(),
                };
                Some(Err(DataError::LoaderFailed {
                    produced: self.produced,
                    expected: self.expected,
                    reason,
                }))
            }
            Err(_) => None,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn item() -> SegmentationItem {
        SegmentationItem {
            image: vec![0.0; 3],
            size: [1, 1],
            mask: vec![0],
            mask_size: [1, 1],
        }
    }

    #[test]
    fn a_panicking_producer_is_an_error_not_a_short_epoch() {
        let stream = EpochStream::spawn(3, |tx| {
            tx.send(Ok(vec![item()])).unwrap();
            panic!("transform exploded");
        });
        let got: Vec<_> = stream.collect();
        assert_eq!(got.len(), 2, "one batch, then one error");
        assert!(got[0].is_ok());
        let err = got[1].as_ref().unwrap_err().to_string();
        assert!(
            err.contains("1 of 3") && err.contains("transform exploded"),
            "{err}"
        );
    }

    #[test]
    fn a_complete_stream_ends_without_an_error() {
        let stream = EpochStream::spawn(2, |tx| {
            for _ in 0..2 {
                tx.send(Ok(vec![item()])).unwrap();
            }
        });
        assert_eq!(stream.filter(Result::is_ok).count(), 2);
    }
}
