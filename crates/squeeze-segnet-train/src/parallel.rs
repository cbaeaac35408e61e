//! Data-parallel training: each batch is split over several devices, every part runs forward and
//! backward on its own device (one long-lived worker thread per device), and the gradients are
//! added on the model's device before one optimiser step — what burn-train's multi-device
//! strategy does, in a form our loop (exact resume, its own data order) can drive.
//!
//! The loss is exact, not an average of per-device averages: each part divides its weighted sum
//! by the *whole* batch's label-weight sum ([`label_weight_sum`]), so the parts' gradients add
//! up to the single-device gradient. Batch norm is the one difference, as with PyTorch's
//! `DistributedDataParallel` without `SyncBatchNorm`: each device normalises with its own part's
//! statistics, and the running statistics are averaged over the devices (Burn's `RunningState`).

use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;

use burn::data::dataloader::batcher::Batcher;
use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use squeeze_segnet::SqueezeSegNet;
use squeeze_segnet_data::{SegmentationBatcher, SegmentationItem};

use crate::{TrainError, label_weight_sum, weighted_nll_sum};

/// What a worker computes for its part of a batch: gradients (on its device) and its share of
/// the loss.
type PartResult = Result<(GradientsParams, f32), TrainError>;

struct Job {
    model: SqueezeSegNet,
    items: Vec<SegmentationItem>,
    total_weight: f64,
}

struct Worker {
    jobs: Option<Sender<Job>>,
    results: Receiver<PartResult>,
    handle: Option<JoinHandle<()>>,
}

/// Splits batches over devices; see the [module documentation](self).
pub struct DataParallel {
    workers: Vec<Worker>,
    class_weights: Vec<f32>,
    ignore: usize,
}

impl DataParallel {
    /// One worker per device (autodiff is added to each). The same device may appear several
    /// times (several threads on one device: useful to test, rarely faster).
    ///
    /// # Errors
    /// [`TrainError::Config`] when `devices` is empty.
    pub fn new(
        devices: &[Device],
        class_weights: Vec<f32>,
        ignore: usize,
    ) -> Result<Self, TrainError> {
        if devices.is_empty() {
            return Err(TrainError::Config(
                "data-parallel training needs at least one device".into(),
            ));
        }
        let workers = devices
            .iter()
            .enumerate()
            .map(|(i, device)| {
                let (jobs, job_rx) = channel::<Job>();
                let (result_tx, results) = channel();
                let device = device.clone().autodiff();
                let weights = class_weights.clone();
                let handle = std::thread::Builder::new()
                    .name(format!("squeeze-segnet-device-{i}"))
                    .spawn(move || worker(device, weights, ignore, job_rx, result_tx))
                    .map_err(|e| TrainError::Config(format!("cannot start worker {i}: {e}")))?;
                Ok(Worker {
                    jobs: Some(jobs),
                    results,
                    handle: Some(handle),
                })
            })
            .collect::<Result<_, TrainError>>()?;
        Ok(Self {
            workers,
            class_weights,
            ignore,
        })
    }

    /// Number of devices a batch is split over.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Always false: there is at least one device.
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// The gradients of the batch's loss with respect to `model`'s parameters, on `model`'s
    /// device, and the loss. The batch is cut into consecutive parts, one per device (fewer
    /// when the batch is smaller than the device count).
    ///
    /// # Errors
    /// Whatever a part's forward pass or read-back returns.
    pub fn gradients(
        &self,
        model: &SqueezeSegNet,
        items: Vec<SegmentationItem>,
    ) -> Result<(GradientsParams, f32), TrainError> {
        let total_weight = label_weight_sum(
            items.iter().map(|i| i.mask.as_slice()),
            &self.class_weights,
            self.ignore,
        )
        .max(1e-12);
        let main = model
            .devices()
            .into_iter()
            .next()
            .expect("the model has parameters");
        let per_part = items.len().div_ceil(self.workers.len()).max(1);
        let mut items = items.into_iter().peekable();
        let mut busy = 0;
        for worker in &self.workers {
            if items.peek().is_none() {
                break;
            }
            let part: Vec<_> = items.by_ref().take(per_part).collect();
            let job = Job {
                model: model.clone(),
                items: part,
                total_weight,
            };
            worker
                .jobs
                .as_ref()
                .expect("workers live as long as self")
                .send(job)
                .map_err(|_| TrainError::Config("a data-parallel worker has stopped".into()))?;
            busy += 1;
        }
        let mut accumulator = GradientsAccumulator::new();
        let mut loss = 0.0;
        let mut first_error = None;
        for worker in &self.workers[..busy] {
            match worker.results.recv() {
                Ok(Ok((grads, value))) => {
                    loss += value;
                    accumulator.accumulate(model, grads.to_device(&main, model));
                }
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error.get_or_insert(TrainError::Config(
                        "a data-parallel worker stopped (it panicked)".into(),
                    ));
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok((accumulator.grads(), loss)),
        }
    }
}

impl Drop for DataParallel {
    fn drop(&mut self) {
        for w in &mut self.workers {
            drop(w.jobs.take());
        }
        for w in &mut self.workers {
            if let Some(h) = w.handle.take() {
                let _ = h.join();
            }
        }
    }
}

/// A worker's loop: one part of a batch per job, on its own device.
fn worker(
    device: Device,
    class_weights: Vec<f32>,
    ignore: usize,
    jobs: Receiver<Job>,
    results: Sender<PartResult>,
) {
    let weights = Tensor::<1>::from_floats(class_weights.as_slice(), &device);
    while let Ok(job) = jobs.recv() {
        let result = (|| {
            let model = job.model.fork(&device);
            let batch = SegmentationBatcher.batch(job.items, &device);
            let logits = model.forward(batch.images)?;
            let (sum, _) = weighted_nll_sum(logits, batch.masks, weights.clone(), ignore);
            let loss = sum.div_scalar(job.total_weight as f32);
            let value: f32 = loss
                .clone()
                .try_into_scalar()
                .map_err(|e| TrainError::Readback(format!("{e:?}")))?;
            Ok((GradientsParams::from_grads(loss.backward(), &model), value))
        })();
        if results.send(result).is_err() {
            return;
        }
    }
}
