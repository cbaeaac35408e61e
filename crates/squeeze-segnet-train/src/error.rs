//! Errors of the training crate: each names the bad value, file or run folder.

use std::path::PathBuf;

use squeeze_segnet::SegNetError;
use squeeze_segnet_data::DataError;

/// Everything that can go wrong while training, evaluating or predicting.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// An option is out of range; the message names it and the accepted values.
    #[error("invalid training option: {0}")]
    Config(String),

    /// A model and a dataset that do not have the same classes.
    #[error("the model predicts {model} classes but the data has {data}")]
    ClassCount {
        /// Classes of the model.
        model: usize,
        /// Classes of the dataset.
        data: usize,
    },

    /// The model could not be built, run, saved or loaded.
    #[error(transparent)]
    Model(#[from] SegNetError),

    /// The data could not be read.
    #[error(transparent)]
    Data(#[from] DataError),

    /// A file of the run folder could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },

    /// A checkpoint file is missing, truncated or does not belong to this run.
    #[error("checkpoint {path} cannot be used: {reason}")]
    Checkpoint {
        /// The checkpoint file or manifest.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// `--resume` was asked but the run folder holds no complete checkpoint.
    #[error("nothing to resume in {0}: no complete checkpoint (manifest latest.json) was found")]
    NothingToResume(PathBuf),

    /// Another trainer holds the run folder's lock.
    #[error(
        "another training run is using {0} (it holds {0}/.lock): wait for it to end, or choose another --out"
    )]
    Locked(PathBuf),

    /// The run folder already holds a run, and neither resume nor overwrite was asked.
    #[error(
        "{0} already holds a training run: pass --resume to continue it, or choose another --out"
    )]
    RunExists(PathBuf),

    /// The stored run was made with other options than the ones given to resume it.
    #[error("cannot resume {path}: its {field} is {stored}, but this run asks for {given}")]
    ResumeMismatch {
        /// The run's configuration file.
        path: PathBuf,
        /// The option that differs.
        field: String,
        /// The stored value.
        stored: String,
        /// The requested value.
        given: String,
    },

    /// The loss became NaN or infinite: the learning rate is probably too high.
    #[error("the loss diverged ({loss}) at epoch {epoch}, step {step}: lower the learning rate")]
    Diverged {
        /// The bad loss value.
        loss: f32,
        /// The epoch (1-based).
        epoch: usize,
        /// The global step.
        step: usize,
    },

    /// A tensor could not be read back from the device.
    #[error("cannot read a tensor back from the device: {0}")]
    Readback(String),
}

impl TrainError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.into(),
            source,
        }
    }
}
