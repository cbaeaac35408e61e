//! The Fire module of SqueezeNet: squeeze 1×1, then expand 1×1 ‖ expand 3×3, concatenated.

use burn::prelude::*;

use crate::conv::{ConvBlock, ConvBlockConfig};

/// Configuration of a [`Fire`] module: `Fire(input; squeeze, expand)` outputs `2 × expand`
/// channels.
#[derive(Config, Debug)]
pub struct FireConfig {
    /// Input channels.
    pub input: usize,
    /// Channels of the 1×1 squeeze convolution.
    pub squeeze: usize,
    /// Channels of each expand branch (1×1 and 3×3).
    pub expand: usize,
    /// Batch norm after each convolution. Default: true.
    #[config(default = true)]
    pub batch_norm: bool,
}

/// SqueezeNet's Fire module.
///
/// ```text
/// x ─ squeeze 1×1 (input → s) ─┬─ expand 1×1 (s → e) ─┐
///                              └─ expand 3×3 (s → e) ─┴─ concat → 2e channels
/// ```
#[derive(Module, Debug)]
pub struct Fire {
    /// 1×1 squeeze convolution.
    pub squeeze: ConvBlock,
    /// 1×1 expand branch.
    pub expand1x1: ConvBlock,
    /// 3×3 expand branch (padding 1).
    pub expand3x3: ConvBlock,
}

impl FireConfig {
    /// Builds the module.
    pub fn init(&self, device: &Device) -> Fire {
        let block = |channels, kernel, padding| {
            ConvBlockConfig::new(channels, kernel)
                .with_padding(padding)
                .with_batch_norm(self.batch_norm)
                .init(device)
        };
        Fire {
            squeeze: block([self.input, self.squeeze], 1, 0),
            expand1x1: block([self.squeeze, self.expand], 1, 0),
            expand3x3: block([self.squeeze, self.expand], 3, 1),
        }
    }

    /// Output channels: `2 × expand`.
    pub fn output_channels(&self) -> usize {
        2 * self.expand
    }
}

impl Fire {
    /// # Shapes
    /// - input: `[batch, input, height, width]`
    /// - output: `[batch, 2 × expand, height, width]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let s = self.squeeze.forward(x);
        crate::conv::expand_pair(&self.expand1x1, &self.expand3x3, s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fire_doubles_expand_and_keeps_size() {
        let device = Device::flex();
        let fire = FireConfig::new(64, 16, 64).init(&device);
        let x = Tensor::<4>::ones([2, 64, 7, 9], &device);
        assert_eq!(fire.forward(x).dims(), [2, 128, 7, 9]);
        // 16·64 (squeeze) + 64·16 (1×1) + 64·16·9 (3×3) weights + 3 batch norms of 16, 64, 64
        assert_eq!(
            crate::num_trainable_params(&fire),
            1024 + 1024 + 9216 + 2 * (16 + 64 + 64)
        );
    }
}
