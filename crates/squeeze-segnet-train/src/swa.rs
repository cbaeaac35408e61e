//! Stochastic weight averaging (Izmailov et al., 2018): the equal-weight average of networks
//! taken along one training trajectory — the ends of successive learning-rate cycles, for
//! example — then its batch-norm statistics recomputed on training data, because the averaged
//! weights make the averaged running statistics stale (as PyTorch's
//! `torch.optim.swa_utils.update_bn` does).
//!
//! ```no_run
//! use std::sync::Arc;
//! use burn::prelude::*;
//! use squeeze_segnet::SavedModel;
//! use squeeze_segnet_data::{TransformConfig, camvid, camvid_sample_root, loader::CachedDataset};
//! use squeeze_segnet_train::{average_weights, update_batch_norm};
//!
//! let device = Device::flex();
//! let cycle_ends = ["runs/a/last.bpk", "runs/b/last.bpk"]
//!     .map(|path| SavedModel::open(path)?.init(&device));
//! let average = average_weights(&cycle_ends.into_iter().collect::<Result<Vec<_>, _>>()?)?;
//! let data = Arc::new(CachedDataset::new(camvid(&camvid_sample_root(), "train")?, true));
//! let average = update_batch_norm(&average, data, TransformConfig::train([180, 240]), 4, 42, &device)?;
//! average.save("runs/swa/averaged.bpk")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::module::Module;
use burn::prelude::*;
use squeeze_segnet::{SqueezeSegNet, map_float_params, visit_float_params};
use squeeze_segnet_data::loader::{CachedDataset, EpochStream, batches};
use squeeze_segnet_data::{SegmentationBatcher, TransformConfig};

use crate::{Ema, TrainError};

/// The equal-weight average of `models` (inference models of one network), every parameter and
/// running statistic: `(m₁ + … + mₖ) / k`. Recompute the batch-norm statistics afterwards
/// ([`update_batch_norm`]).
///
/// # Errors
/// [`TrainError::Config`] when `models` is empty, or when model `i` is another network than the
/// first (its description or a parameter's shape differs), naming `i`.
pub fn average_weights(models: &[SqueezeSegNet]) -> Result<SqueezeSegNet, TrainError> {
    let Some(first) = models.first() else {
        return Err(TrainError::Config(
            "weight averaging needs at least one model".into(),
        ));
    };
    let config = first.config();
    let mut average = Ema::new(&config, &first.valid(), 0.0)?;
    for (i, model) in models.iter().enumerate().skip(1) {
        let other = model.config();
        if other.to_string() != config.to_string() {
            return Err(TrainError::Config(format!(
                "weight averaging: model {i} is another network than model 0 (their model.json differ)"
            )));
        }
        // The running mean of i + 1 models: d = i / (i + 1) of the first i, 1 / (i + 1) of this.
        let d = i as f64 / (i + 1) as f64;
        average
            .blend(&model.valid(), d)
            .map_err(|e| TrainError::Config(format!("weight averaging: model {i}: {e}")))?;
    }
    Ok(average.model().clone())
}

/// `model` with every batch norm's running mean and variance replaced by the average of its
/// batch statistics over `data` (each batch weighted by its images), as the layers see them in
/// training: the network runs in training mode on `device`'s autodiff twin, on the samples of
/// `data` transformed by `transform` (with the per-sample random draws of
/// [`squeeze_segnet_data::sample_rng`]`(seed, 0, index)`), `batch_size` at a time. The weights
/// are unchanged; a network without batch norm is returned as it is.
///
/// # Errors
/// [`TrainError::Config`] for a `batch_size` of 0 or an empty `data`; the transform's and the
/// data's own errors; [`TrainError::ClassCount`] when `model` and `data` differ in classes.
pub fn update_batch_norm(
    model: &SqueezeSegNet,
    data: Arc<CachedDataset>,
    transform: TransformConfig,
    batch_size: usize,
    seed: u64,
    device: &Device,
) -> Result<SqueezeSegNet, TrainError> {
    transform.validate()?;
    let Some(momentum) = model.conv1.norm.as_ref().map(|norm| norm.momentum) else {
        return Ok(model.clone());
    };
    if batch_size == 0 || data.len() == 0 {
        return Err(TrainError::Config(format!(
            "batch-norm update: needs images and a batch size above 0 (got {} images, batch size {batch_size})",
            data.len()
        )));
    }
    let classes = data.dataset().num_classes();
    if model.num_classes != classes {
        return Err(TrainError::ClassCount {
            model: model.num_classes,
            data: classes,
        });
    }
    let ad = device.clone().autodiff();
    let mut net = model.valid().fork(&ad).train();
    let order: Vec<usize> = (0..data.len()).collect();
    let mut sums: HashMap<String, Tensor<1>> = HashMap::new();
    let mut images = 0usize;
    for items in EpochStream::start(data, transform, batches(&order, batch_size), seed, 0) {
        let items = items?;
        let count = items.len();
        // From zero, one step of the layer's update leaves exactly `momentum × batch statistic`.
        net = map_float_params(net, |path, shape| {
            is_statistic(path).then(|| Tensor::zeros([shape.iter().product::<usize>()], &ad))
        });
        let batch = SegmentationBatcher.batch(items, &ad);
        drop(net.forward(batch.images)?);
        let scale = count as f64 / momentum;
        for (path, value) in statistics(&net.valid()) {
            let value = value.mul_scalar(scale);
            let sum = match sums.remove(&path) {
                Some(sum) => sum + value,
                None => value,
            };
            sums.insert(path, sum);
        }
        images += count;
    }
    let mut means: HashMap<String, Tensor<1>> = sums
        .into_iter()
        .map(|(path, sum)| (path, sum.div_scalar(images as f64)))
        .collect();
    let mut missing = None;
    let updated = map_float_params(net.valid(), |path, _| {
        if !is_statistic(path) {
            return None;
        }
        let mean = means.remove(path);
        if mean.is_none() {
            missing.get_or_insert(path.to_string());
        }
        mean
    });
    match missing {
        Some(path) => Err(TrainError::Config(format!(
            "batch-norm update: no statistic was measured for '{path}'"
        ))),
        None => Ok(updated),
    }
}

/// Whether a record path names a batch norm's running statistic.
fn is_statistic(path: &str) -> bool {
    matches!(
        path.rsplit('.').next(),
        Some("running_mean" | "running_var")
    )
}

/// Every running statistic of `model` (an inference model, so the values are synchronised), by
/// record path.
fn statistics(model: &SqueezeSegNet) -> Vec<(String, Tensor<1>)> {
    let mut out = Vec::new();
    visit_float_params(model, |path, _, value| {
        if is_statistic(path) {
            out.push((path.to_string(), value()));
        }
    });
    out
}
