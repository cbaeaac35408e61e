//! Saving and loading weights with Burn's records (burnpack files, written atomically).

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::store::{ModuleRecord, RecordError};

use crate::{SegNetError, SqueezeSegNet};

/// The file Burn writes for `path`: `.bpk` is appended when `path` has no extension.
pub fn weights_path(path: &Path) -> PathBuf {
    if path.extension().is_some() {
        path.to_path_buf()
    } else {
        path.with_extension("bpk")
    }
}

/// [`weights_path`] for a burnpack file, refusing a `.safetensors` name (which `load` would read
/// as safetensors).
pub(crate) fn burnpack_path(path: &Path) -> Result<PathBuf, SegNetError> {
    let path = weights_path(path);
    if path.extension().is_some_and(|e| e == "safetensors") {
        return Err(SegNetError::Save {
            path,
            reason: "a .safetensors name for a burnpack file: use save_pytorch, or .bpk".into(),
        });
    }
    Ok(path)
}

impl SqueezeSegNet {
    /// Writes the weights (parameters and batch-norm statistics) to `path`, atomically: a
    /// temporary file is written, synced, then renamed, so an interrupted save leaves any
    /// previous file intact. Returns the path written (`.bpk` appended when `path` has no
    /// extension).
    ///
    /// # Errors
    /// [`SegNetError::Save`] naming the file.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<PathBuf, SegNetError> {
        let path = burnpack_path(path.as_ref())?;
        // `valid()` first: batch norm's running statistics keep the last training step's update
        // pending until they are synchronised, and a plain record would miss it.
        self.valid()
            .into_record()
            .save(&path)
            .map_err(|e| SegNetError::Save {
                path: path.clone(),
                reason: record_reason(e),
            })?;
        Ok(path)
    }

    /// Replaces this network's weights by those in `path`, in any [`crate::Precision`] (f16 and
    /// int8 files are decoded to f32 on the host first); a `.safetensors` file is read in
    /// PyTorch's names (the [`pytorch`](crate::pytorch) module's rules).
    ///
    /// # Errors
    /// [`SegNetError::Load`] when the file is missing, truncated or not a weights file;
    /// [`SegNetError::WeightsMismatch`] when it holds another network (another number of
    /// classes, batch norm on one side only, ...).
    pub fn load(self, path: impl AsRef<Path>) -> Result<Self, SegNetError> {
        let path = path.as_ref().to_path_buf();
        if path.extension().is_some_and(|e| e == "safetensors") {
            return self.load_pytorch(path);
        }
        let expected = crate::precision::expected_tensors(&self);
        let bytes = crate::precision::decode_to_f32(&path, &expected)?;
        let record = ModuleRecord::from_bytes(bytes).map_err(|e| SegNetError::Load {
            path: path.clone(),
            reason: record_reason(e),
        })?;
        self.try_load_record(record).map_err(|e| match e {
            RecordError::Validation(reason) => SegNetError::WeightsMismatch {
                path: path.clone(),
                reason,
            },
            RecordError::Io(reason) => SegNetError::Load {
                path: path.clone(),
                reason,
            },
        })
    }
}

impl SqueezeSegNet {
    /// [`load`](Self::load), also from the weights of the same network without a
    /// [`PyramidContext`](crate::PyramidContext): this network's context is then kept as it is
    /// (a fresh one is the identity, see [`with_context`](Self::with_context)). How the trainer
    /// reads `--init` weights.
    ///
    /// # Errors
    /// As [`load`](Self::load); the error of loading the whole network when neither loads.
    pub fn load_adding_context(self, path: impl AsRef<Path>) -> Result<Self, SegNetError> {
        let path = path.as_ref();
        let Some(context) = self.context.clone() else {
            return self.load(path);
        };
        match self.clone().load(path) {
            Err(whole @ SegNetError::WeightsMismatch { .. }) => self
                .with_context(None)
                .load(path)
                .map(|m| m.with_context(Some(context)))
                .map_err(|_| whole),
            other => other,
        }
    }
}

/// The CamVid weights shipped with this crate (`weights/camvid/camvid.bpk` in its source
/// folder, next to `model.json` and `config.json`, the network's and the training run's options).
/// They are for [`crate::SqueezeSegNetConfig::camvid`] (11 classes, batch norm, context,
/// refinement); their training command and validation scores are in the README.
pub fn camvid_weights_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/camvid/camvid.bpk")
}

/// The same weights with their convolutions in int8 (`weights/camvid/camvid-int8.bpk`, a quarter
/// of the size; see [`crate::Precision`]), made from [`camvid_weights_path`] by the
/// `convert_weights` example.
pub fn camvid_int8_weights_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/camvid/camvid-int8.bpk")
}

impl SqueezeSegNet {
    /// The network of the shipped CamVid weights ([`camvid_weights_path`]), as described by the
    /// `model.json` beside them: [`crate::SavedModel::camvid`] built on `device`.
    ///
    /// ```no_run
    /// use burn::prelude::*;
    /// let model = squeeze_segnet::SqueezeSegNet::pretrained_camvid(&Device::flex())?;
    /// # Ok::<(), squeeze_segnet::SegNetError>(())
    /// ```
    ///
    /// # Errors
    /// [`SegNetError::Load`] naming the file when it is missing (e.g. a packaged crate without
    /// its `weights/` folder).
    pub fn pretrained_camvid(device: &Device) -> Result<SqueezeSegNet, SegNetError> {
        crate::SavedModel::camvid()?.init(device)
    }
}

fn record_reason(e: RecordError) -> String {
    match e {
        RecordError::Io(m) | RecordError::Validation(m) => m,
    }
}
