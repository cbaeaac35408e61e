//! Scoring a model on a split at the labels' full resolution, whatever size the model runs at.

use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::prelude::*;
use squeeze_segnet::{SqueezeSegNet, TestTimeAugmentation, predict_at};
use squeeze_segnet_data::{SegmentationBatcher, SegmentationItem, TransformConfig};

use crate::{ConfusionMatrix, TrainError};
use squeeze_segnet_data::loader::{CachedDataset, EpochStream};

/// Scores `model` (in inference mode, batch norm folded: [`SqueezeSegNet::for_inference`]) on
/// `data`, running it at `transform.size` and comparing with the labels at their own resolution
/// (`transform.full_mask` should be set, as in [`TransformConfig::eval`]); `tta` as in
/// [`predict_at`] ([`TestTimeAugmentation::default`]: the model alone).
pub fn evaluate(
    model: &SqueezeSegNet,
    data: Arc<CachedDataset>,
    transform: TransformConfig,
    batch_size: usize,
    tta: &TestTimeAugmentation,
    device: &Device,
) -> Result<ConfusionMatrix, TrainError> {
    transform.validate()?;
    tta.validate()?;
    let classes = data.dataset().num_classes();
    if model.num_classes != classes {
        return Err(TrainError::ClassCount {
            model: model.num_classes,
            data: classes,
        });
    }
    let ignore = data.dataset().ignore() as usize;
    let order: Vec<usize> = (0..data.len()).collect();
    let batches = squeeze_segnet_data::loader::batches(&order, batch_size.max(1));
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
            score_batch(model, items, size, ignore, tta, device, &mut matrix)?;
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
    tta: &TestTimeAugmentation,
    device: &Device,
    matrix: &mut ConfusionMatrix,
) -> Result<(), TrainError> {
    let batch = SegmentationBatcher.batch(items, device);
    let predictions = predict_at(model, batch.images, mask_size, tta)?;
    matrix.add_tensors(predictions, batch.masks, ignore)
}
