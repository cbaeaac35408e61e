//! ClassMix (Olsson et al., WACV 2021) for supervised training: an image of a batch gets the
//! pixels of half the classes of another image of the batch pasted on, labels with them. Objects
//! then appear on streets and backgrounds they were not photographed in, and the rarer classes
//! in more images.

use crate::{SegmentationItem, SplitMix64};

/// Mixes a batch in place: with probability `probability`, item `i` gets the pixels of a random
/// half (rounded up) of the classes present in item `i + 1` (the last item takes from the first),
/// image and labels, as the items were before any mixing. Labels `ignore` are never pasted.
/// Items of other sizes than their partner's, items whose labels are not at the image's size
/// (full-resolution evaluation masks), and batches of one are left as they are.
///
/// The result depends only on the items and on `rng`'s state, so a run that derives `rng` from
/// its seed, epoch and batch mixes the same way when resumed.
pub fn class_mix(
    items: &mut [SegmentationItem],
    probability: f64,
    ignore: u8,
    rng: &mut SplitMix64,
) {
    let n = items.len();
    if n < 2 || probability <= 0.0 {
        return;
    }
    let sources: Vec<SegmentationItem> = items.to_vec();
    for (i, target) in items.iter_mut().enumerate() {
        // Draw for every item, so one item's choice does not shift the next one's draws.
        let mix = rng.uniform() < probability;
        let pick = rng.next_u64();
        let source = &sources[(i + 1) % n];
        if !mix || !same_grid(target, source) {
            continue;
        }
        let chosen = half_of_the_classes(&source.mask, ignore, &mut SplitMix64::new(pick));
        let plane = source.mask.len();
        for (p, &label) in source.mask.iter().enumerate() {
            if chosen[label as usize] {
                target.mask[p] = label;
                for c in 0..target.image.len() / plane {
                    target.image[c * plane + p] = source.image[c * plane + p];
                }
            }
        }
    }
}

/// Whether two items have images and labels of one size, pixel for pixel.
fn same_grid(a: &SegmentationItem, b: &SegmentationItem) -> bool {
    a.size == b.size
        && a.mask_size == a.size
        && b.mask_size == b.size
        && a.image.len() == b.image.len()
        && a.mask.len() == b.mask.len()
}

/// A random half (rounded up) of the labels present in `mask`, `ignore` left out, as a lookup
/// table over all 256 label values.
fn half_of_the_classes(mask: &[u8], ignore: u8, rng: &mut SplitMix64) -> [bool; 256] {
    let mut present = [false; 256];
    for &label in mask {
        present[label as usize] = true;
    }
    present[ignore as usize] = false;
    let mut classes: Vec<usize> = (0..256).filter(|&c| present[c]).collect();
    // Fisher-Yates, then the first half.
    for k in (1..classes.len()).rev() {
        classes.swap(k, rng.below(k + 1));
    }
    let mut chosen = [false; 256];
    for &c in &classes[..classes.len().div_ceil(2)] {
        chosen[c] = true;
    }
    chosen
}
