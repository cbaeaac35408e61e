//! Errors for everything a user can get wrong: input shapes, op arguments, weights files, devices.

use std::path::PathBuf;

/// Bad arguments to the checked pooling and unpooling functions in [`ops`](crate::ops).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// The input plane is smaller than the pooling window.
    #[error("input of {input:?} (height, width) is smaller than the pooling window {kernel:?}")]
    InputTooSmall {
        /// Input `[height, width]`.
        input: [usize; 2],
        /// Window `[height, width]`.
        kernel: [usize; 2],
    },
    /// A window or stride dimension is zero.
    #[error("pooling window {kernel:?} and stride {stride:?} must be at least 1")]
    ZeroWindow {
        /// Window `[height, width]`.
        kernel: [usize; 2],
        /// Stride `[height, width]`.
        stride: [usize; 2],
    },
    /// Values and indices of an unpooling differ in shape.
    #[error(
        "unpooling values of shape {values:?} with indices of shape {indices:?}: they must match"
    )]
    ShapeMismatch {
        /// Shape of the values.
        values: [usize; 4],
        /// Shape of the indices.
        indices: [usize; 4],
    },
    /// An index does not fit in the unpooled plane.
    #[error(
        "unpooling index {index} does not fit in an output plane of {output_size:?} \
         (valid: 0..{})",
        output_size[0] * output_size[1]
    )]
    IndexOutOfRange {
        /// The offending index (the smallest or largest one found).
        index: i64,
        /// Requested output `[height, width]`.
        output_size: [usize; 2],
    },
    /// The device could not run the index check (for example i64 indices on a WGPU adapter
    /// without 64-bit integer shaders).
    #[error("the device could not check the unpooling indices ({dtype}): {reason}")]
    Device {
        /// The indices' dtype, as Burn prints it.
        dtype: String,
        /// What the device reported.
        reason: String,
    },
    /// The tensor's float type has no CPU kernel (f32 and f64 do).
    #[error("unsupported float dtype {dtype}: use f32 or f64")]
    UnsupportedDType {
        /// The dtype, as Burn prints it.
        dtype: String,
    },
}

/// Errors of the model crate.
#[derive(Debug, thiserror::Error)]
pub enum SegNetError {
    /// The input tensor is not `[batch, channels, height, width]` with the configured channels.
    #[error("input of shape {shape:?}: expected [batch, {channels}, height, width]")]
    InputChannels {
        /// Shape received.
        shape: [usize; 4],
        /// Channels the model was configured for.
        channels: usize,
    },
    /// The input is below the network's minimum size.
    #[error(
        "input of {height}×{width} is too small: Squeeze-SegNet needs at least \
         {min_height}×{min_width} (three 3×3/2 poolings after a 3×3/2 convolution)"
    )]
    InputTooSmall {
        /// Input height.
        height: usize,
        /// Input width.
        width: usize,
        /// Smallest height accepted.
        min_height: usize,
        /// Smallest width accepted.
        min_width: usize,
    },
    /// The batch is empty.
    #[error("empty batch: the input has batch size 0")]
    EmptyBatch,
    /// An invalid configuration value.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A custom op rejected its arguments.
    #[error(transparent)]
    Op(#[from] OpError),
    /// A weights file could not be written.
    #[error("cannot save weights to {path}: {reason}")]
    Save {
        /// Target file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A weights file could not be read: missing, truncated or not a Burn record.
    #[error("cannot read weights from {path}: {reason}")]
    Load {
        /// Source file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A weights file does not fit this model (e.g. another number of classes).
    #[error("weights in {path} do not fit this model ({reason})")]
    WeightsMismatch {
        /// Source file.
        path: PathBuf,
        /// What did not fit.
        reason: String,
    },
    /// A network description or run configuration (`model.json`, `config.json`) that cannot be
    /// read or parsed.
    #[error("cannot read the configuration {path}: {reason}")]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Arguments whose sizes do not agree (e.g. a class map and its stated height × width).
    #[error("sizes do not agree: {0}")]
    SizeMismatch(String),
    /// A tensor could not be read back from the device.
    #[error("cannot read a tensor back from the device: {0}")]
    Readback(String),
    /// A backend name that is not one of the supported ones.
    #[error("unknown backend '{0}': expected one of ndarray, flex, wgpu")]
    UnknownBackend(String),
    /// The WGPU backend found no usable adapter (no GPU driver, no Vulkan/Metal/DX12/GL).
    #[error(
        "no WGPU adapter: {reason}. Install a GPU driver, or Mesa's software Vulkan \
         (Debian/Ubuntu: apt-get install mesa-vulkan-drivers), or use --backend flex"
    )]
    NoAdapter {
        /// What the runtime reported.
        reason: String,
    },
}
