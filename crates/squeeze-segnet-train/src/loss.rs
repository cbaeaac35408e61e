//! Class-weighted pixel-wise cross-entropy with an ignored label.
//!
//! Burn's `CrossEntropyLoss` takes class weights but only `[batch, classes]` logits and no ignore
//! value; this is the segmentation form, equal to PyTorch's
//! `F.cross_entropy(logits, target, weight=w, ignore_index=void)` with `reduction="mean"`:
//!
//! ```text
//! loss = − Σ_p w[y_p] · log softmax(z_p)[y_p]  /  Σ_p w[y_p]     over pixels p with y_p ≠ ignore
//! ```
//!
//! Ignored pixels contribute nothing, to the loss or to the gradient. [`soft_jaccard_loss`] is a
//! second term that can be mixed in: a differentiable IoU that also punishes false positives.

use burn::prelude::*;
use burn::tensor::activation::{log_softmax, softmax};

/// Weighted cross-entropy over every labelled pixel.
///
/// # Shapes
/// - `logits`: `[batch, classes, height, width]`
/// - `targets`: `[batch, height, width]`, values in `0..classes` or `ignore`
/// - `weights`: `[classes]`
/// - output: `[1]` (0 when every pixel is ignored)
///
/// Targets other than `ignore` must be below `classes` (the data crate checks every mask).
pub fn segmentation_cross_entropy(
    logits: Tensor<4>,
    targets: Tensor<3, Int>,
    weights: Tensor<1>,
    ignore: usize,
) -> Tensor<1> {
    let (weighted, total) = weighted_nll_sum(logits, targets, weights, ignore);
    weighted.div(total.clamp_min(1e-12))
}

/// The two sums the loss is the ratio of: `(Σ_p w[y_p] · −log softmax(z_p)[y_p], Σ_p w[y_p])`
/// over pixels with `y_p ≠ ignore`, both `[1]`.
///
/// A batch split over several devices gets exactly the whole batch's loss and gradient by
/// dividing each part's first sum by the whole batch's weight sum ([`label_weight_sum`]) and
/// adding the gradients.
pub fn weighted_nll_sum(
    logits: Tensor<4>,
    targets: Tensor<3, Int>,
    weights: Tensor<1>,
    ignore: usize,
) -> (Tensor<1>, Tensor<1>) {
    let [n, c, h, w] = logits.dims();
    debug_assert_eq!(
        targets.dims(),
        [n, h, w],
        "targets must be [batch, height, width]"
    );
    debug_assert_eq!(weights.dims(), [c], "one weight per class");
    let valid = targets.clone().not_equal_elem(ignore as i64);
    // Ignored pixels point at class 0 with weight 0: no loss, no gradient.
    let safe = targets.mask_fill(valid.clone().bool_not(), 0);
    let log_p = log_softmax(logits, 1)
        .gather(1, safe.clone().unsqueeze_dim::<4>(1))
        .reshape([n, h, w]);
    let pixel_weight = weights
        .select(0, safe.reshape([n * h * w]))
        .reshape([n, h, w])
        .mul(valid.float());
    let total = pixel_weight.clone().sum();
    let weighted = log_p.mul(pixel_weight).sum().neg();
    (weighted, total)
}

/// `Σ_p w[y_p]` over the labels of a batch, computed on the host (the loss's denominator).
pub fn label_weight_sum<'a>(
    masks: impl IntoIterator<Item = &'a [u8]>,
    weights: &[f32],
    ignore: usize,
) -> f64 {
    masks
        .into_iter()
        .flatten()
        .filter(|&&l| l as usize != ignore)
        .map(|&l| weights.get(l as usize).copied().unwrap_or(0.0) as f64)
        .sum()
}

/// Soft-Jaccard (soft IoU) loss over the batch, void ignored: with `p = softmax(z)` and `y` the
/// one-hot labels over labelled pixels, per class `I_c = Σ p_c·y_c` and `U_c = Σ (p_c + y_c) − I_c`;
///
/// ```text
/// loss = 1 − mean over classes present in the labels of I_c / U_c
/// ```
///
/// Unlike cross-entropy it grows with false positives as much as with false negatives, and it
/// weighs every present class equally however many pixels it has. Mixed with the cross-entropy
/// (`TrainingConfig::jaccard_weight`). Classes absent from the batch's labels are left out (their
/// false positives are the cross-entropy's to punish).
///
/// # Shapes
/// - `logits`: `[batch, classes, height, width]`
/// - `targets`: `[batch, height, width]`, values in `0..classes` or `ignore`
/// - output: `[1]` (0 when every pixel is ignored)
pub fn soft_jaccard_loss(logits: Tensor<4>, targets: Tensor<3, Int>, ignore: usize) -> Tensor<1> {
    let [n, c, h, w] = logits.dims();
    let device = logits.device();
    let valid = targets
        .clone()
        .not_equal_elem(ignore as i64)
        .float()
        .unsqueeze_dim::<4>(1)
        .expand([n, c, h, w]);
    // One-hot labels: void pixels match no class.
    let classes = Tensor::<1, Int>::arange(0..c as i64, &device)
        .reshape([1, c, 1, 1])
        .expand([n, c, h, w]);
    let y = targets
        .unsqueeze_dim::<4>(1)
        .expand([n, c, h, w])
        .equal(classes)
        .float();
    let p = softmax(logits, 1).mul(valid);
    let sum = |t: Tensor<4>| t.sum_dim(0).sum_dim(2).sum_dim(3).reshape([c]);
    let intersection = sum(p.clone().mul(y.clone()));
    let labelled = sum(y);
    let union = sum(p) + labelled.clone() - intersection.clone();
    let present = labelled.greater_elem(0.0).float();
    let count = present.clone().sum();
    let iou = intersection.div(union.clamp_min(1e-6)).mul(present);
    let mean_iou = iou.sum().div(count.clone().clamp_min(1.0));
    // 0 when nothing is labelled: 1 − 0 masked by (count > 0).
    mean_iou
        .neg()
        .add_scalar(1.0)
        .mul(count.greater_elem(0.0).float())
}
