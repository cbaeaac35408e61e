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
//! Ignored pixels contribute nothing, to the loss or to the gradient.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

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
