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
//! Ignored pixels contribute nothing, to the loss or to the gradient. [`soft_jaccard_loss`] and
//! [`lovasz_softmax_loss`] are terms that can be mixed in: surrogates of the IoU that also punish
//! false positives.

use burn::prelude::*;
use burn::tensor::activation::{log_softmax, softmax};
use rayon::prelude::*;

use crate::TrainError;

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
    let valid = targets
        .clone()
        .not_equal_elem(ignore as i64)
        .float()
        .unsqueeze_dim::<4>(1)
        .expand([n, c, h, w]);
    let y = one_hot(targets, c); // void pixels match no class
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

/// One-hot labels `[batch, classes, height, width]` of `targets: [batch, height, width]`;
/// void (any value `>= classes`) matches no class.
fn one_hot(targets: Tensor<3, Int>, classes: usize) -> Tensor<4> {
    let [n, h, w] = targets.dims();
    let ids = Tensor::<1, Int>::arange(0..classes as i64, &targets.device())
        .reshape([1, classes, 1, 1])
        .expand([n, classes, h, w]);
    targets
        .unsqueeze_dim::<4>(1)
        .expand([n, classes, h, w])
        .equal(ids)
        .float()
}

/// Lovász-softmax loss (Berman, Rannen Triki and Blaschko, CVPR 2018): the tight convex
/// surrogate of the Jaccard loss `1 − IoU`, averaged over the classes present in the labels,
/// void ignored.
///
/// Per class `c`, with `e_p = |y_pc − softmax(z_p)_c|` over labelled pixels sorted so that
/// `e_(1) ≥ e_(2) ≥ …`, and `Δ(k)` the Jaccard loss of the class when the `k` pixels with the
/// largest errors are the mispredicted ones (`Δ(k) = |M_k| / |{y = c} ∪ M_k|`, `M_k` those
/// pixels):
///
/// ```text
/// loss_c = Σ_k e_(k) · (Δ(k) − Δ(k − 1)),        loss = mean over present classes of loss_c
/// ```
///
/// The weights `Δ(k) − Δ(k − 1)` depend only on the order of the errors and the labels, so they
/// are computed on the host (one sort per class) and the gradient flows through the errors alone,
/// as in the reference implementation. Like [`soft_jaccard_loss`], classes absent from the batch
/// are left out.
///
/// # Shapes
/// - `logits`: `[batch, classes, height, width]`
/// - `targets`: `[batch, height, width]`, values in `0..classes` or `ignore`
/// - output: `[1]` (0 when every pixel is ignored)
///
/// # Errors
/// [`TrainError::Readback`] when the errors or labels cannot be read back to the host.
pub fn lovasz_softmax_loss(
    logits: Tensor<4>,
    targets: Tensor<3, Int>,
    ignore: usize,
) -> Result<Tensor<1>, TrainError> {
    let [n, c, h, w] = logits.dims();
    let device = logits.device();
    let pixels = n * h * w;
    let readback = |e: burn::tensor::TensorReadError| TrainError::Readback(format!("{e:?}"));
    let labels: Vec<i64> = targets.clone().try_into_vec_as::<i64>().map_err(readback)?;
    let y = one_hot(targets, c);
    // [classes, pixels], pixels in (batch, row, column) order like `labels`.
    let errors = (y - softmax(logits, 1))
        .abs()
        .swap_dims(0, 1)
        .reshape([c, pixels]);
    let values: Vec<f32> = errors.clone().try_into_vec_as::<f32>().map_err(readback)?;
    let (weights, present) = lovasz_weights(&values, &labels, c, ignore);
    if present == 0 {
        return Ok(Tensor::zeros([1], &device));
    }
    let weights = Tensor::<2>::from_data(TensorData::new(weights, [c, pixels]), &device);
    Ok(errors.mul(weights).sum().div_scalar(present as f64))
}

/// The per-pixel weights `Δ(k) − Δ(k − 1)` of [`lovasz_softmax_loss`] (`[classes × pixels]`,
/// 0 for ignored pixels and absent classes), and the number of classes present.
fn lovasz_weights(
    errors: &[f32],
    labels: &[i64],
    classes: usize,
    ignore: usize,
) -> (Vec<f32>, usize) {
    let pixels = labels.len();
    let labelled: Vec<u32> = (0..pixels as u32)
        .filter(|&p| labels[p as usize] != ignore as i64)
        .collect();
    let mut weights = vec![0f32; classes * pixels];
    let present = weights
        .par_chunks_mut(pixels)
        .enumerate()
        .map(|(c, out)| {
            let is_c = |p: u32| labels[p as usize] == c as i64;
            let total = labelled.iter().filter(|&&p| is_c(p)).count();
            if total == 0 {
                return 0;
            }
            let e = &errors[c * pixels..(c + 1) * pixels];
            // Descending error, ties by pixel index: errors are in [0, 1], where the bits of a
            // non-negative f32 order like its value, so the complemented bits sort ascending.
            let mut order: Vec<(u32, u32)> = labelled
                .iter()
                .map(|&p| (!e[p as usize].to_bits(), p))
                .collect();
            radix_sort(&mut order);
            let (total, mut hits, mut previous) = (total as f64, 0f64, 0f64);
            for (k, &(_, p)) in order.iter().enumerate() {
                if is_c(p) {
                    hits += 1.0;
                }
                let intersection = total - hits;
                let union = total + (k as f64 + 1.0 - hits);
                let jaccard = 1.0 - intersection / union;
                out[p as usize] = (jaccard - previous) as f32;
                previous = jaccard;
            }
            1
        })
        .sum();
    (weights, present)
}

/// Stable least-significant-digit radix sort of `(key, value)` pairs by key, ascending: three
/// passes of 11 bits, several times faster than a comparison sort on the 10⁵–10⁶ pixels of a
/// batch. Equal keys keep their order.
fn radix_sort(items: &mut Vec<(u32, u32)>) {
    const BITS: u32 = 11;
    const BUCKETS: usize = 1 << BITS;
    let mut scratch = vec![(0u32, 0u32); items.len()];
    for pass in 0..3 {
        let shift = pass * BITS;
        let digit = |key: u32| ((key >> shift) as usize) & (BUCKETS - 1);
        let mut starts = vec![0usize; BUCKETS];
        for &(key, _) in items.iter() {
            starts[digit(key)] += 1;
        }
        if starts.contains(&items.len()) {
            continue; // every key has the same digit: nothing to move
        }
        let mut sum = 0;
        for start in starts.iter_mut() {
            (*start, sum) = (sum, sum + *start);
        }
        for &item in items.iter() {
            let d = digit(item.0);
            scratch[starts[d]] = item;
            starts[d] += 1;
        }
        std::mem::swap(items, &mut scratch);
    }
}

#[cfg(test)]
mod tests {
    use super::radix_sort;

    #[test]
    fn radix_sort_is_a_stable_sort_by_key() {
        // Keys spread over all 32 bits, with many repeats; values record the input order.
        let mut state = 12345u64;
        let mut items: Vec<(u32, u32)> = (0..20_000)
            .map(|i| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let key = (state >> 33) as u32;
                (if i % 3 == 0 { key & 0xff00_0000 } else { key }, i)
            })
            .collect();
        let mut expected = items.clone();
        expected.sort_by_key(|&(key, _)| key); // stable
        radix_sort(&mut items);
        assert_eq!(items, expected);
        let mut same = vec![(7u32, 2u32), (7, 0), (7, 1)];
        radix_sort(&mut same);
        assert_eq!(same, [(7, 2), (7, 0), (7, 1)]);
    }
}
