//! Segmentation metrics from a confusion matrix: global accuracy, class-average accuracy (the
//! paper's headline: mean per-class recall), per-class accuracy and IoU, mean IoU.
//!
//! As in segmentation_models_pytorch, counts come first and every score is a pure function of
//! them. A class that never occurs in the labels has no accuracy (`None`) and is left out of the
//! class average; for IoU a class absent from both labels and predictions is left out of the mean,
//! while one that is only predicted scores 0. Ignored (void) pixels are never counted.

use std::fmt::Write as _;
use std::path::Path;

use burn::prelude::*;
use burn::tensor::TensorReadError;
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// A `classes × classes` confusion matrix: `counts[target * classes + prediction]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    classes: usize,
    counts: Vec<u64>,
}

/// The scores of a [`ConfusionMatrix`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentationScores {
    /// Correct labelled pixels / labelled pixels.
    pub global_accuracy: f64,
    /// Mean of the per-class accuracies of the classes present in the labels.
    pub class_average_accuracy: f64,
    /// Mean of the per-class IoUs of the classes present in labels or predictions.
    pub mean_iou: f64,
    /// Recall of each class (`None` when the class never occurs in the labels).
    pub class_accuracy: Vec<Option<f64>>,
    /// Intersection over union of each class (`None` when absent from labels and predictions).
    pub class_iou: Vec<Option<f64>>,
    /// Pixels predicted as each class ÷ pixels labelled with it, over labelled pixels: above 1 a
    /// class is over-predicted (`None` when the class never occurs in the labels).
    #[serde(default)]
    pub class_share_ratio: Vec<Option<f64>>,
}

impl ConfusionMatrix {
    /// An empty matrix for `classes` classes.
    pub fn new(classes: usize) -> Self {
        Self {
            classes,
            counts: vec![0; classes * classes],
        }
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Pixels labelled `target` and predicted `prediction`.
    pub fn count(&self, target: usize, prediction: usize) -> u64 {
        self.counts[target * self.classes + prediction]
    }

    /// Counts pairs of labels and predictions; labels equal to `ignore` (or otherwise out of
    /// range) are skipped. Predictions must be below the class count.
    pub fn add(&mut self, targets: &[i64], predictions: &[i64], ignore: usize) {
        assert_eq!(targets.len(), predictions.len(), "one prediction per label");
        let k = self.classes as i64;
        for (&t, &p) in targets.iter().zip(predictions) {
            if t < 0 || t >= k || t as usize == ignore {
                continue;
            }
            debug_assert!((0..k).contains(&p), "prediction {p} out of range");
            self.counts[(t * k + p.clamp(0, k - 1)) as usize] += 1;
        }
    }

    /// Counts a batch of tensors.
    ///
    /// # Shapes
    /// - `predictions`: `[batch, height, width]` class indices
    /// - `targets`: `[batch, height, width]` labels (`ignore` skipped)
    pub fn add_tensors(
        &mut self,
        predictions: Tensor<3, Int>,
        targets: Tensor<3, Int>,
        ignore: usize,
    ) -> Result<(), TrainError> {
        self.read_and_add(predictions, targets, ignore)
            .map_err(|e| TrainError::Readback(format!("{e:?}")))
    }

    /// [`add_tensors`](Self::add_tensors) with Burn's read-back error (for the burn-train metric).
    pub(crate) fn read_and_add(
        &mut self,
        predictions: Tensor<3, Int>,
        targets: Tensor<3, Int>,
        ignore: usize,
    ) -> Result<(), TensorReadError> {
        let read = |t: Tensor<3, Int>| -> Result<Vec<i64>, TensorReadError> {
            Ok(t.try_into_data_as::<i64>()?
                .try_into_vec::<i64>()
                .expect("converted to i64"))
        };
        let (p, t) = (read(predictions)?, read(targets)?);
        self.add(&t, &p, ignore);
        Ok(())
    }

    /// Adds another matrix of the same size.
    pub fn merge(&mut self, other: &ConfusionMatrix) {
        assert_eq!(self.classes, other.classes, "class counts differ");
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    /// Labelled pixels counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Every score.
    pub fn scores(&self) -> SegmentationScores {
        let k = self.classes;
        let row = |c: usize| (0..k).map(|p| self.count(c, p)).sum::<u64>();
        let col = |c: usize| (0..k).map(|t| self.count(t, c)).sum::<u64>();
        let diag: u64 = (0..k).map(|c| self.count(c, c)).sum();
        let total = self.total();
        let class_accuracy: Vec<Option<f64>> = (0..k)
            .map(|c| {
                let r = row(c);
                (r > 0).then(|| self.count(c, c) as f64 / r as f64)
            })
            .collect();
        let class_iou: Vec<Option<f64>> = (0..k)
            .map(|c| {
                let union = row(c) + col(c) - self.count(c, c);
                (union > 0).then(|| self.count(c, c) as f64 / union as f64)
            })
            .collect();
        let class_share_ratio: Vec<Option<f64>> = (0..k)
            .map(|c| {
                let r = row(c);
                (r > 0).then(|| col(c) as f64 / r as f64)
            })
            .collect();
        let mean = |v: &[Option<f64>]| {
            let present: Vec<f64> = v.iter().flatten().copied().collect();
            if present.is_empty() {
                0.0
            } else {
                present.iter().sum::<f64>() / present.len() as f64
            }
        };
        SegmentationScores {
            global_accuracy: if total == 0 {
                0.0
            } else {
                diag as f64 / total as f64
            },
            class_average_accuracy: mean(&class_accuracy),
            mean_iou: mean(&class_iou),
            class_accuracy,
            class_iou,
            class_share_ratio,
        }
    }

    /// The matrix as CSV: a header of predicted class names, then one row per labelled class.
    pub fn to_csv(&self, names: &[&str]) -> String {
        let name = |i: usize| {
            names
                .get(i)
                .map_or_else(|| i.to_string(), |s| s.to_string())
        };
        let mut s = String::from("label\\prediction");
        for p in 0..self.classes {
            let _ = write!(s, ",{}", name(p));
        }
        s.push('\n');
        for t in 0..self.classes {
            s.push_str(&name(t));
            for p in 0..self.classes {
                let _ = write!(s, ",{}", self.count(t, p));
            }
            s.push('\n');
        }
        s
    }

    /// Writes [`to_csv`](Self::to_csv) to `path`.
    pub fn write_csv(&self, path: impl AsRef<Path>, names: &[&str]) -> Result<(), TrainError> {
        let path = path.as_ref();
        crate::checkpoint::write_atomic(path, self.to_csv(names).as_bytes())
    }
}

impl SegmentationScores {
    /// A table of per-class accuracy, IoU and predicted ÷ true pixel share, then the three
    /// summary scores.
    pub fn table(&self, names: &[&str]) -> String {
        let fmt = |v: Option<f64>| v.map_or_else(|| "    -".to_string(), |x| format!("{x:.3}"));
        let mut s = format!(
            "{:<14} {:>8} {:>8} {:>12}\n",
            "class", "accuracy", "IoU", "pred/true"
        );
        for (i, (a, u)) in self.class_accuracy.iter().zip(&self.class_iou).enumerate() {
            let name = names
                .get(i)
                .map_or_else(|| i.to_string(), |s| s.to_string());
            let ratio = self.class_share_ratio.get(i).copied().flatten();
            let _ = writeln!(
                s,
                "{name:<14} {:>8} {:>8} {:>12}",
                fmt(*a),
                fmt(*u),
                fmt(ratio)
            );
        }
        let _ = writeln!(
            s,
            "{:<14} {:>8.3}\n{:<14} {:>8.3}\n{:<14} {:>8.3}",
            "class average",
            self.class_average_accuracy,
            "global",
            self.global_accuracy,
            "mean IoU",
            self.mean_iou
        );
        s
    }
}
