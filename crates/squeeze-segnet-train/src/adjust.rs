//! Post-hoc logit adjustment (Menon et al., "Long-tail learning via logit adjustment", ICLR 2021).
//!
//! A cross-entropy weighted by `w_c` is minimised by posteriors scaled by `w_c`: the trained model
//! predicts class `c` as if its prior were `w_c` times larger, so rare classes with large weights
//! are over-predicted. Adding `−τ·ln w_c` to the logits undoes that shift (`τ = 1`) or softens it
//! (`0 < τ < 1`); [`squeeze_segnet::SqueezeSegNet::with_logit_offsets`] folds the offsets into
//! the last layer's bias, so the adjusted model costs nothing more at inference.

/// The file in a run folder holding the training split's pixel counts, from which the class
/// weights of the loss are computed ([`squeeze_segnet_data::read_class_stats`] reads it).
pub const CLASS_STATS_FILE: &str = "class_weights.json";

/// The logit offsets `−τ·ln w_c` for a model trained with class weights `weights`, shifted so
/// that their mean is 0 (a common shift changes no prediction). A class of weight 0 (absent from
/// the training split) gets offset 0.
pub fn logit_adjustment(weights: &[f32], tau: f64) -> Vec<f32> {
    let raw: Vec<f64> = weights
        .iter()
        .map(|&w| if w > 0.0 { -tau * (w as f64).ln() } else { 0.0 })
        .collect();
    let mean = raw.iter().sum::<f64>() / raw.len().max(1) as f64;
    raw.iter().map(|o| (o - mean) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_by_hand() {
        // −0.5·ln [1, e, e²] = [0, −0.5, −1], mean −0.5 → [0.5, 0, −0.5].
        let e = std::f32::consts::E;
        let o = logit_adjustment(&[1.0, e, e * e], 0.5);
        for (a, b) in o.iter().zip([0.5, 0.0, -0.5]) {
            assert!((a - b).abs() < 1e-6, "{o:?}");
        }
        assert_eq!(logit_adjustment(&[2.0, 3.0], 0.0), vec![0.0, 0.0]);
        // Weight 0: offset 0 before centring. −ln 4 = −1.386; mean −0.693 → [0.693, −0.693].
        let o = logit_adjustment(&[0.0, 4.0], 1.0);
        assert!(
            (o[0] - 0.693_147).abs() < 1e-5 && (o[1] + 0.693_147).abs() < 1e-5,
            "{o:?}"
        );
    }
}
