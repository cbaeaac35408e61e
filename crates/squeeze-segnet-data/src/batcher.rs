//! Burn batcher: transformed items → `[batch, 3, H, W]` images and `[batch, H, W]` label masks.

use burn::data::dataloader::batcher::Batcher;
use burn::prelude::*;

use crate::SegmentationItem;

/// A batch of images and label masks on one device.
#[derive(Debug, Clone)]
pub struct SegmentationBatch {
    /// Normalised images, `[batch, 3, height, width]`.
    pub images: Tensor<4>,
    /// Labels, `[batch, mask_height, mask_width]` (the ignore value marks unlabelled pixels).
    pub masks: Tensor<3, Int>,
}

/// Stacks [`SegmentationItem`]s of one size into a [`SegmentationBatch`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SegmentationBatcher;

impl Batcher<SegmentationItem, SegmentationBatch> for SegmentationBatcher {
    /// # Panics
    /// When the items differ in size: give the transform one output size (every
    /// [`TransformConfig`](crate::TransformConfig) does, except `full_mask` masks of a dataset
    /// whose files differ in size, which must be batched one at a time).
    fn batch(&self, items: Vec<SegmentationItem>, device: &Device) -> SegmentationBatch {
        let n = items.len();
        let [h, w] = items[0].size;
        let [mh, mw] = items[0].mask_size;
        let mut images = Vec::with_capacity(n * 3 * h * w);
        let mut masks = Vec::with_capacity(n * mh * mw);
        for item in &items {
            assert!(
                item.size == [h, w] && item.mask_size == [mh, mw],
                "items of one batch must share a size: {:?}/{:?} vs {:?}/{:?}",
                item.size,
                item.mask_size,
                [h, w],
                [mh, mw]
            );
            images.extend_from_slice(&item.image);
            masks.extend(item.mask.iter().map(|&l| l as i32));
        }
        SegmentationBatch {
            images: Tensor::from_data(TensorData::new(images, [n, 3, h, w]), device),
            masks: Tensor::from_data(TensorData::new(masks, [n, mh, mw]), device),
        }
    }
}
