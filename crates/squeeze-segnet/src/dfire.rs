//! The DFire module of Squeeze-SegNet: Fire inverted — expand 1×1 ‖ expand 3×3, concatenated,
//! then squeeze 1×1 to the output width.

use burn::prelude::*;

use crate::conv::{ConvBlock, ConvBlockConfig};

/// Configuration of a [`DFire`] module: `DFire(input; expand, output)`.
#[derive(Config, Debug)]
pub struct DFireConfig {
    /// Input channels.
    pub input: usize,
    /// Channels of each expand branch (1×1 and 3×3).
    pub expand: usize,
    /// Output channels of the final 1×1 squeeze.
    pub output: usize,
    /// Batch norm after each convolution. Default: true.
    #[config(default = true)]
    pub batch_norm: bool,
}

/// Squeeze-SegNet's DFire (decoder Fire) module.
///
/// ```text
/// x ─┬─ expand 1×1 (input → e) ─┐
///    └─ expand 3×3 (input → e) ─┴─ concat (2e) ─ squeeze 1×1 (2e → output)
/// ```
#[derive(Module, Debug)]
pub struct DFire {
    /// 1×1 expand branch.
    pub expand1x1: ConvBlock,
    /// 3×3 expand branch (padding 1).
    pub expand3x3: ConvBlock,
    /// 1×1 squeeze convolution to the output width.
    pub squeeze: ConvBlock,
}

impl DFireConfig {
    /// Builds the module.
    pub fn init(&self, device: &Device) -> DFire {
        let block = |channels, kernel, padding| {
            ConvBlockConfig::new(channels, kernel)
                .with_padding(padding)
                .with_batch_norm(self.batch_norm)
                .init(device)
        };
        DFire {
            expand1x1: block([self.input, self.expand], 1, 0),
            expand3x3: block([self.input, self.expand], 3, 1),
            squeeze: block([2 * self.expand, self.output], 1, 0),
        }
    }
}

impl DFire {
    /// # Shapes
    /// - input: `[batch, input, height, width]`
    /// - output: `[batch, output, height, width]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        crate::conv::dfire(&self.expand1x1, &self.expand3x3, &self.squeeze, x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dfire_maps_input_to_output_channels() {
        let device = Device::flex();
        let dfire = DFireConfig::new(128, 16, 64)
            .with_batch_norm(false)
            .init(&device);
        let x = Tensor::<4>::ones([1, 128, 5, 6], &device);
        assert_eq!(dfire.forward(x).dims(), [1, 64, 5, 6]);
        // e(10·in + 2) + out(2e + 1) = 16·1282 + 64·33
        assert_eq!(crate::num_trainable_params(&dfire), 20512 + 2112);
    }
}
