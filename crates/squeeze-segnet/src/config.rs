//! The network's configuration and, in one place, every layer width of the paper.

use burn::prelude::*;

use crate::ops::{PoolOptions, pooled_len};

/// Widths of one encoder [`Fire`](crate::Fire): `Fire(input; squeeze, expand)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FireSize {
    /// Layer name, as in the paper and the weights file.
    pub name: &'static str,
    /// Input channels.
    pub input: usize,
    /// Squeeze channels.
    pub squeeze: usize,
    /// Channels of each expand branch; the module outputs twice this.
    pub expand: usize,
}

/// Widths of one decoder [`DFire`](crate::DFire): `DFire(input; expand, output)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DFireSize {
    /// Layer name, as in the paper and the weights file.
    pub name: &'static str,
    /// Input channels.
    pub input: usize,
    /// Channels of each expand branch.
    pub expand: usize,
    /// Output channels.
    pub output: usize,
}

const fn fire(name: &'static str, input: usize, squeeze: usize, expand: usize) -> FireSize {
    FireSize {
        name,
        input,
        squeeze,
        expand,
    }
}

const fn dfire(name: &'static str, input: usize, expand: usize, output: usize) -> DFireSize {
    DFireSize {
        name,
        input,
        expand,
        output,
    }
}

/// Output channels of conv1 (3×3, stride 2, no padding).
pub const CONV1_CHANNELS: usize = 64;
/// Channels of conv10 and of its decoder inverse conv10_d (both 1×1).
pub const CONV10_CHANNELS: usize = 512;
/// Grid sizes of the [`PyramidContext`](crate::PyramidContext) branches (PSPNet's).
pub const CONTEXT_BINS: [usize; 4] = [1, 2, 3, 6];
/// Output channels of each [`PyramidContext`](crate::PyramidContext) branch.
pub const CONTEXT_BRANCH_CHANNELS: usize = 64;
/// The three poolings (after conv1, fire3 and fire5): 3×3 windows, stride 2, ceil mode.
pub const POOL: PoolOptions = PoolOptions::new([3, 3], [2, 2]);

/// Encoder Fire modules, SqueezeNet 1.1 (pool1 before fire2, pool3 after fire3, pool5 after fire5).
pub const ENCODER_FIRES: [FireSize; 8] = [
    fire("fire2", 64, 16, 64),
    fire("fire3", 128, 16, 64),
    fire("fire4", 128, 32, 128),
    fire("fire5", 256, 32, 128),
    fire("fire6", 256, 48, 192),
    fire("fire7", 384, 48, 192),
    fire("fire8", 384, 64, 256),
    fire("fire9", 512, 64, 256),
];

/// The encoder's poolings (with indices) after conv1's `pool1`: the module each follows, and
/// its name.
pub const POOLED_AFTER: [(&str, &str); 2] = [("fire3", "pool3"), ("fire5", "pool5")];

/// The decoder's max-unpoolings: the module each follows, its name, and what it is (whose
/// indices it takes: pool5's, pool3's, then pool1's).
pub const UNPOOLED_AFTER: [(&str, &str, &str); 3] = [
    ("dfire6", "unpool5", "MaxUnpool (pool5)"),
    ("dfire4", "unpool3", "MaxUnpool (pool3)"),
    ("dfire2", "unpool1", "MaxUnpool (pool1)"),
];

/// Decoder DFire modules in execution order (unpool with pool5's indices after dfire6, with
/// pool3's after dfire4, with pool1's after dfire2).
pub const DECODER_DFIRES: [DFireSize; 8] = [
    dfire("dfire9", 512, 64, 512),
    dfire("dfire8", 512, 64, 384),
    dfire("dfire7", 384, 48, 384),
    dfire("dfire6", 384, 48, 256),
    dfire("dfire5", 256, 32, 256),
    dfire("dfire4", 256, 32, 128),
    dfire("dfire3", 128, 16, 128),
    dfire("dfire2", 128, 16, 64),
];

/// Configuration of [`SqueezeSegNet`](crate::SqueezeSegNet), with three named presets.
///
/// ```
/// use squeeze_segnet::SqueezeSegNetConfig;
/// let camvid = SqueezeSegNetConfig::camvid();    // the default: the shipped weights' network
/// let paper = SqueezeSegNetConfig::paper();      // exactly the paper's layers
/// let bn = SqueezeSegNetConfig::paper_with_batch_norm(); // the paper's layers + batch norm
/// let own = SqueezeSegNetConfig::camvid().with_num_classes(4);
/// assert_eq!(SqueezeSegNetConfig::new(), camvid);
/// assert_eq!((paper.batch_norm, paper.refine), (false, false));
/// assert_eq!((bn.batch_norm, bn.refine, bn.context), (true, false, false));
/// assert_eq!((camvid.refine, camvid.context, paper.context), (true, true, false));
/// assert_eq!(own.num_classes, 4);
/// ```
#[derive(Config, Debug, PartialEq)]
pub struct SqueezeSegNetConfig {
    /// Number of classes of the per-pixel output (CamVid: 11, void excluded). Default: 11.
    #[config(default = 11)]
    pub num_classes: usize,
    /// Channels of the input image. Default: 3 (RGB).
    #[config(default = 3)]
    pub input_channels: usize,
    /// Batch norm after every convolution but the last (those convolutions then drop their
    /// bias). Helps training from scratch on small data; folded away for inference
    /// ([`SqueezeSegNet::for_inference`](crate::SqueezeSegNet::for_inference)). Default: true.
    #[config(default = true)]
    pub batch_norm: bool,
    /// A 3×3 convolution (64 → 64, then batch norm and ReLU) between the last max-unpooling and
    /// the final transposed convolution. Not in the paper: there the final transposed
    /// convolution reads the unpooled map directly, in which each channel is non-zero only where
    /// its pooling window had its maximum (about one pixel in five), so every output pixel sees a
    /// different, sparse subset of the 64 channels and about one in ten sees none (only the
    /// bias). The refinement densifies that map (its effect on CamVid is in the README's
    /// ablations). Costs 36,992 parameters and 1.58 GMAC at 360×480 (+48 %). The CamVid
    /// training recipe and the shipped weights use it; [`paper`](Self::paper) and
    /// [`paper_with_batch_norm`](Self::paper_with_batch_norm) do not. Default: true.
    #[config(default = true)]
    pub refine: bool,
    /// Pyramid pooling context after conv10 ([`PyramidContext`](crate::PyramidContext), bins
    /// 1, 2, 3 and 6, 64 channels each), added as a residual that starts at zero: it lets the
    /// bottleneck see the whole image, where conv10 alone sees about 200 input pixels. Not in
    /// the paper. Costs 262,912 parameters and under 3 % more multiply-accumulates. The CamVid
    /// training recipe and the shipped weights use it; [`paper`](Self::paper) and
    /// [`paper_with_batch_norm`](Self::paper_with_batch_norm) do not. Default: true.
    #[config(default = true)]
    pub context: bool,
}

impl SqueezeSegNetConfig {
    /// The paper's network, exactly: no batch norm, no context, no refinement, 2,692,555
    /// parameters with 11 classes.
    pub fn paper() -> Self {
        Self::paper_with_batch_norm().with_batch_norm(false)
    }

    /// The paper's layers with batch norm after every convolution but the last (2,699,275
    /// parameters with 11 classes): what trains from scratch on small data. Folded for
    /// inference, it costs exactly what [`paper`](Self::paper) does.
    pub fn paper_with_batch_norm() -> Self {
        Self::new().with_refine(false).with_context(false)
    }

    /// The default ([`new`](Self::new)): the network of the shipped CamVid weights and of the
    /// training recipe: batch norm, the pyramid [`context`](Self::context) after conv10 and the
    /// 3×3 [`refine`](Self::refine)ment, 2,999,179 parameters with 11 classes.
    pub fn camvid() -> Self {
        Self::new()
    }

    /// Checks the values, naming the bad one.
    pub fn validate(&self) -> Result<(), crate::SegNetError> {
        if self.num_classes == 0 {
            return Err(crate::SegNetError::Config(
                "num_classes is 0: the network needs at least one class".into(),
            ));
        }
        if self.input_channels == 0 {
            return Err(crate::SegNetError::Config(
                "input_channels is 0: the network needs at least one input channel".into(),
            ));
        }
        Ok(())
    }
}

/// Spatial sizes through the encoder for one input side: conv1, pool1, pool3, pool5.
/// `None` when the input is too small for the three poolings.
pub fn encoder_sizes(len: usize) -> Option<[usize; 4]> {
    let conv1 = len.checked_sub(3)? / 2 + 1;
    let p1 = pooled_len(conv1, POOL.kernel[0], POOL.stride[0])?;
    let p3 = pooled_len(p1, POOL.kernel[0], POOL.stride[0])?;
    let p5 = pooled_len(p3, POOL.kernel[0], POOL.stride[0])?;
    Some([conv1, p1, p3, p5])
}

/// Checks an input shape `[batch, channels, height, width]` for a network of `input_channels`;
/// returns the spatial sizes through the encoder ([`encoder_sizes`]) of the height and width.
pub(crate) fn check_input(
    dims: [usize; 4],
    input_channels: usize,
) -> Result<[[usize; 4]; 2], crate::SegNetError> {
    let [n, c, h, w] = dims;
    if c != input_channels {
        return Err(crate::SegNetError::InputChannels {
            shape: dims,
            channels: input_channels,
        });
    }
    if n == 0 {
        return Err(crate::SegNetError::EmptyBatch);
    }
    match (encoder_sizes(h), encoder_sizes(w)) {
        (Some(hs), Some(ws)) => Ok([hs, ws]),
        _ => Err(crate::SegNetError::InputTooSmall {
            height: h,
            width: w,
            min_height: min_input_len(),
            min_width: min_input_len(),
        }),
    }
}

/// The smallest input height (and width) the network accepts: 25.
///
/// 25 → conv1 12 → pool1 6 → pool3 3 → pool5 1; at 24, pool3 gives 2, too small for pool5.
pub fn min_input_len() -> usize {
    (1..)
        .find(|&len| encoder_sizes(len).is_some())
        .expect("some size works")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoder_sizes_match_the_paper_at_360x480() {
        assert_eq!(encoder_sizes(360), Some([179, 89, 44, 22]));
        assert_eq!(encoder_sizes(480), Some([239, 119, 59, 29]));
    }

    #[test]
    fn minimum_input_is_25() {
        assert_eq!(min_input_len(), 25);
        assert_eq!(encoder_sizes(25), Some([12, 6, 3, 1]));
        assert_eq!(encoder_sizes(24), None);
    }

    #[test]
    fn widths_chain() {
        for pair in ENCODER_FIRES.windows(2) {
            assert_eq!(
                pair[0].expand * 2,
                pair[1].input,
                "{} → {}",
                pair[0].name,
                pair[1].name
            );
        }
        for pair in DECODER_DFIRES.windows(2) {
            assert_eq!(
                pair[0].output, pair[1].input,
                "{} → {}",
                pair[0].name, pair[1].name
            );
        }
        assert_eq!(ENCODER_FIRES[0].input, CONV1_CHANNELS);
        assert_eq!(ENCODER_FIRES[7].expand * 2, CONV10_CHANNELS);
        assert_eq!(DECODER_DFIRES[0].input, CONV10_CHANNELS);
        assert_eq!(DECODER_DFIRES[7].output, CONV1_CHANNELS);
    }
}
