//! The segmentation scores as burn-train metrics, for users who train with Burn's `Learner`:
//! each accumulates a [`ConfusionMatrix`] over the epoch and reports one score of it.
//!
//! ```no_run
//! # use squeeze_segnet_train::{Score, SegmentationMetric};
//! // e.g. SupervisedTraining::new(..).metric_valid_numeric(SegmentationMetric::new(Score::MeanIou, 11, 11))
//! let metric = SegmentationMetric::new(Score::ClassAverageAccuracy, 11, 11);
//! ```
//! The model's output type provides the input through `Adaptor<SegmentationMetricInput>`.

use std::sync::Arc;

use burn::prelude::*;
use burn::tensor::TensorReadError;
use burn::train::metric::{
    Metric, MetricAttributes, MetricMetadata, MetricName, Numeric, NumericAttributes, NumericEntry,
    SerializedEntry,
};

use crate::ConfusionMatrix;

/// Which score a [`SegmentationMetric`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Score {
    /// Correct labelled pixels / labelled pixels.
    GlobalAccuracy,
    /// Mean per-class recall over the classes present (the paper's headline).
    ClassAverageAccuracy,
    /// Mean intersection over union.
    MeanIou,
}

/// Predicted classes and labels of a batch.
#[derive(Debug, Clone)]
pub struct SegmentationMetricInput {
    /// `[batch, height, width]` class indices.
    pub predictions: Tensor<3, Int>,
    /// `[batch, height, width]` labels (the ignore value is skipped).
    pub targets: Tensor<3, Int>,
}

/// A burn-train numeric metric over a confusion matrix accumulated through the epoch.
#[derive(Debug, Clone)]
pub struct SegmentationMetric {
    name: MetricName,
    score: Score,
    ignore: usize,
    matrix: ConfusionMatrix,
}

impl SegmentationMetric {
    /// A metric reporting `score` over `classes` classes, skipping label `ignore`.
    pub fn new(score: Score, classes: usize, ignore: usize) -> Self {
        let name = match score {
            Score::GlobalAccuracy => "Global Accuracy",
            Score::ClassAverageAccuracy => "Class-Average Accuracy",
            Score::MeanIou => "Mean IoU",
        };
        Self {
            name: Arc::new(name.to_string()),
            score,
            ignore,
            matrix: ConfusionMatrix::new(classes),
        }
    }

    /// The accumulated matrix.
    pub fn matrix(&self) -> &ConfusionMatrix {
        &self.matrix
    }

    fn current(&self) -> f64 {
        let s = self.matrix.scores();
        match self.score {
            Score::GlobalAccuracy => s.global_accuracy,
            Score::ClassAverageAccuracy => s.class_average_accuracy,
            Score::MeanIou => s.mean_iou,
        }
    }

    fn entry(&self) -> SerializedEntry {
        let v = self.current();
        SerializedEntry::new(format!("{}: {v:.4}", self.name), v.to_string())
    }
}

impl Metric for SegmentationMetric {
    type Input = SegmentationMetricInput;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes {
            unit: None,
            higher_is_better: true,
        }
        .into()
    }

    fn update(
        &mut self,
        input: &SegmentationMetricInput,
        _metadata: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        self.matrix.read_and_add(
            input.predictions.clone(),
            input.targets.clone(),
            self.ignore,
        )?;
        Ok(self.entry())
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        Ok(self.entry())
    }

    fn clear(&mut self) {
        self.matrix = ConfusionMatrix::new(self.matrix.classes());
    }
}

impl Numeric for SegmentationMetric {
    fn value(&self) -> Option<NumericEntry> {
        Some(NumericEntry::Value(self.current()))
    }

    fn running_value(&self) -> Option<NumericEntry> {
        Some(NumericEntry::Value(self.current()))
    }

    fn final_value(&self) -> NumericEntry {
        NumericEntry::Final(self.current())
    }
}
