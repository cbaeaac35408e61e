//! An auxiliary loss on the encoder (deep supervision, as in PSPNet's training): a 1×1
//! convolution from the encoder's output ([`SqueezeSegNet::forward_with_features`]) to class
//! logits at about a sixteenth of the input's size, scored by the same weighted cross-entropy
//! against the labels sampled at the centres of its cells. Only training uses it: the head is
//! not part of the network that is saved or published.
//!
//! [`SqueezeSegNet::forward_with_features`]: squeeze_segnet::SqueezeSegNet::forward_with_features

use std::path::Path;

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::prelude::*;
use burn::store::{ModuleRecord, RecordError};

use crate::{TrainError, segmentation_cross_entropy};

/// Configuration of an [`AuxHead`].
#[derive(Config, Debug)]
pub struct AuxHeadConfig {
    /// Channels of the encoder's output (512 in Squeeze-SegNet).
    pub channels: usize,
    /// Number of classes.
    pub num_classes: usize,
}

/// A 1×1 convolution (with bias) from encoder features to class logits.
#[derive(Module, Debug)]
pub struct AuxHead {
    /// `channels → num_classes`, 1×1.
    pub conv: Conv2d,
}

impl AuxHeadConfig {
    /// A head with Burn's default initialisation.
    pub fn init(&self, device: &Device) -> AuxHead {
        AuxHead {
            conv: Conv2dConfig::new([self.channels, self.num_classes], [1, 1]).init(device),
        }
    }
}

impl AuxHead {
    /// Class logits at the features' size.
    ///
    /// # Shapes
    /// - features: `[batch, channels, h, w]`
    /// - output: `[batch, num_classes, h, w]`
    pub fn forward(&self, features: Tensor<4>) -> Tensor<4> {
        self.conv.forward(features)
    }

    /// Writes the head to `path` (a checkpoint's `aux.bpk`).
    ///
    /// # Errors
    /// [`TrainError::Checkpoint`] naming the file.
    pub fn save(&self, path: &Path) -> Result<(), TrainError> {
        self.clone()
            .into_record()
            .save(path)
            .map_err(|e| checkpoint_error(path, "cannot write", e))
    }

    /// This head with the weights in `path`.
    ///
    /// # Errors
    /// [`TrainError::Checkpoint`] when the file is missing, unreadable or holds another head.
    pub fn load(self, path: &Path) -> Result<Self, TrainError> {
        let record =
            ModuleRecord::load(path).map_err(|e| checkpoint_error(path, "cannot read", e))?;
        self.try_load_record(record)
            .map_err(|e| checkpoint_error(path, "not this run's auxiliary head", e))
    }

    /// The weighted cross-entropy ([`segmentation_cross_entropy`]) of the head's logits for
    /// `features` against `targets` sampled at the centres of the logits' cells
    /// ([`cell_centres`]).
    ///
    /// # Shapes
    /// - features: `[batch, channels, h, w]`
    /// - targets: `[batch, height, width]`, any size at least `h × w`
    /// - weights: `[num_classes]`
    /// - output: `[1]`
    pub fn loss(
        &self,
        features: Tensor<4>,
        targets: Tensor<3, Int>,
        weights: Tensor<1>,
        ignore: usize,
    ) -> Tensor<1> {
        let logits = self.forward(features);
        let [_, _, h, w] = logits.dims();
        let targets = cell_centres(targets, [h, w]);
        segmentation_cross_entropy(logits, targets, weights, ignore)
    }
}

/// The labels at the centres of an `h × w` grid of cells over the label map: row `i` of the
/// result is label row `⌊(i + ½)·height / h⌋` (nearest-neighbour downsampling, so no class is
/// invented at a boundary and void stays void).
///
/// # Shapes
/// - targets: `[batch, height, width]`
/// - output: `[batch, h, w]`
pub fn cell_centres(targets: Tensor<3, Int>, [h, w]: [usize; 2]) -> Tensor<3, Int> {
    let [_, height, width] = targets.dims();
    let device = targets.device();
    let centres = |cells: usize, len: usize| {
        let at: Vec<i64> = (0..cells)
            .map(|i| (((2 * i + 1) * len) / (2 * cells)).min(len - 1) as i64)
            .collect();
        Tensor::<1, Int>::from_data(TensorData::new(at, [cells]), &device)
    };
    targets
        .select(1, centres(h, height))
        .select(2, centres(w, width))
}

fn checkpoint_error(path: &Path, what: &str, e: RecordError) -> TrainError {
    let (RecordError::Io(m) | RecordError::Validation(m)) = e;
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        reason: format!("{what}: {m}"),
    }
}
