//! Scoring a model on a split at the labels' full resolution, whatever size the model runs at.

use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::prelude::*;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use squeeze_segnet::SqueezeSegNet;
use squeeze_segnet_data::{SegmentationBatcher, SegmentationItem, TransformConfig};

use crate::loader::{CachedDataset, EpochStream};
use crate::{ConfusionMatrix, TrainError};

/// Class indices for `images` at `output_size`: the logits are upsampled bilinearly (when the
/// model runs at another size), then the best class is taken per pixel. With `flip`, the logits
/// are averaged with those of the horizontally mirrored images, mirrored back (flip test-time
/// augmentation: two forward passes).
///
/// # Shapes
/// - `images`: `[batch, 3, height, width]`
/// - output: `[batch, output_size[0], output_size[1]]`
pub fn predict_at(
    model: &SqueezeSegNet,
    images: Tensor<4>,
    output_size: [usize; 2],
    flip: bool,
) -> Result<Tensor<3, Int>, TrainError> {
    let logits = upsample_logits(logits(model, images, flip)?, output_size);
    let [n, _, h, w] = logits.dims();
    Ok(logits.argmax(1).reshape([n, h, w]))
}

/// The model's logits for `images`; with `flip`, the sum of the logits of the images and of
/// their mirror images, mirrored back (the argmax of a sum is that of the mean).
///
/// # Shapes
/// - `images`: `[batch, 3, height, width]`
/// - output: `[batch, classes, height, width]`
pub fn logits(
    model: &SqueezeSegNet,
    images: Tensor<4>,
    flip: bool,
) -> Result<Tensor<4>, TrainError> {
    if !flip {
        return Ok(model.forward(images)?);
    }
    let mirrored = model.forward(images.clone().flip([3]))?.flip([3]);
    Ok(model.forward(images)? + mirrored)
}

/// Bilinear resize of `[batch, classes, h, w]` logits to `output_size` (a no-op at that size).
pub fn upsample_logits(logits: Tensor<4>, output_size: [usize; 2]) -> Tensor<4> {
    let [_, _, h, w] = logits.dims();
    if [h, w] == output_size {
        return logits;
    }
    interpolate(
        logits,
        InterpolateOptions::new(InterpolateMode::Bilinear).with_output_size(output_size),
    )
}

/// Scores `model` (in inference mode, batch norm folded: [`SqueezeSegNet::for_inference`]) on
/// `data`, running it at `transform.size` and comparing with the labels at their own resolution
/// (`transform.full_mask` should be set, as in [`TransformConfig::eval`]); `flip` as in
/// [`predict_at`].
pub fn evaluate(
    model: &SqueezeSegNet,
    data: Arc<CachedDataset>,
    transform: TransformConfig,
    batch_size: usize,
    flip: bool,
    device: &Device,
) -> Result<ConfusionMatrix, TrainError> {
    let classes = data.dataset().num_classes();
    if model.num_classes != classes {
        return Err(TrainError::ClassCount {
            model: model.num_classes,
            data: classes,
        });
    }
    let ignore = data.dataset().ignore() as usize;
    let order: Vec<usize> = (0..data.len()).collect();
    let batches = crate::loader::batches(&order, batch_size.max(1));
    let mut matrix = ConfusionMatrix::new(classes);
    let model = &model.for_inference();
    for items in EpochStream::start(data, transform, batches, 0, 0) {
        // Labels of different sizes cannot share a batch: score them in runs of equal size.
        let mut items = items?;
        while !items.is_empty() {
            let size = items[0].mask_size;
            let split = items
                .iter()
                .position(|i| i.mask_size != size)
                .unwrap_or(items.len());
            let rest = items.split_off(split);
            score_batch(model, items, size, ignore, flip, device, &mut matrix)?;
            items = rest;
        }
    }
    Ok(matrix)
}

fn score_batch(
    model: &SqueezeSegNet,
    items: Vec<SegmentationItem>,
    mask_size: [usize; 2],
    ignore: usize,
    flip: bool,
    device: &Device,
    matrix: &mut ConfusionMatrix,
) -> Result<(), TrainError> {
    let batch = SegmentationBatcher.batch(items, device);
    let predictions = predict_at(model, batch.images, mask_size, flip)?;
    matrix.add_tensors(predictions, batch.masks, ignore)
}
