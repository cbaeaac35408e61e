//! `ConvBlock`: convolution, optional batch norm, ReLU — the unit every Fire and DFire is made of.

use burn::module::Param;
use burn::nn::{
    BatchNorm, BatchNormConfig, Initializer, PaddingConfig2d,
    conv::{Conv2d, Conv2dConfig},
};
use burn::prelude::*;

/// Configuration of a [`ConvBlock`].
#[derive(Config, Debug)]
pub struct ConvBlockConfig {
    /// Input and output channels.
    pub channels: [usize; 2],
    /// Square kernel size: 1 or 3 in this network.
    pub kernel: usize,
    /// Stride. Default: 1.
    #[config(default = 1)]
    pub stride: usize,
    /// Zero padding on every side. Default: 0.
    #[config(default = 0)]
    pub padding: usize,
    /// Batch norm after the convolution (the convolution then has no bias). Default: true.
    #[config(default = true)]
    pub batch_norm: bool,
}

/// Convolution → batch norm (optional) → ReLU.
#[derive(Module, Debug)]
pub struct ConvBlock {
    /// The convolution; no bias when followed by batch norm.
    pub conv: Conv2d,
    /// Batch norm, when configured.
    pub norm: Option<BatchNorm>,
}

impl ConvBlockConfig {
    /// Builds the block with He (Kaiming normal, gain √2) initialisation, suited to ReLU.
    pub fn init(&self, device: &Device) -> ConvBlock {
        let p = self.padding;
        let conv = Conv2dConfig::new(self.channels, [self.kernel, self.kernel])
            .with_stride([self.stride, self.stride])
            .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
            .with_bias(!self.batch_norm)
            .with_initializer(Initializer::KaimingNormal {
                gain: std::f64::consts::SQRT_2,
                fan_out_only: false,
            })
            .init(device);
        let norm = self
            .batch_norm
            .then(|| BatchNormConfig::new(self.channels[1]).init(device));
        ConvBlock { conv, norm }
    }
}

impl ConvBlock {
    /// # Shapes
    /// - input: `[batch, channels[0], height, width]`
    /// - output: `[batch, channels[1], (height + 2p - k) / s + 1, (width + 2p - k) / s + 1]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.conv.forward(x);
        let x = match &self.norm {
            Some(norm) => norm.forward(x),
            None => x,
        };
        burn::tensor::activation::relu(x)
    }
}

impl ConvBlock {
    /// The same function with batch norm folded into the convolution, for inference: with
    /// `s = γ / √(running_var + ε)`, the weights become `W·s` (per output channel) and the bias
    /// `(b − running_mean)·s + β`. One pass over the activations fewer per block, the same
    /// output up to float rounding. Blocks without batch norm are returned as they are.
    ///
    /// Call it on a model in inference mode ([`Module::valid`]); the folded block cannot load
    /// records of the unfolded one.
    pub fn fold_batch_norm(self) -> Self {
        let Some(norm) = self.norm else {
            return self;
        };
        let mut conv = self.conv;
        let weight = conv.weight.val();
        let [cout, ..] = weight.dims();
        let device = weight.device();
        // Running statistics may sit on another device (data-parallel training forks them).
        let var = norm.running_var.value_sync().to_device(&device);
        let mean = norm.running_mean.value_sync().to_device(&device);
        let scale = norm.gamma.val().div(var.add_scalar(norm.epsilon).sqrt());
        let bias = conv
            .bias
            .map(|b| b.val())
            .unwrap_or_else(|| Tensor::zeros([cout], &device));
        let bias = bias.sub(mean).mul(scale.clone()).add(norm.beta.val());
        conv.weight = Param::from_tensor(weight.mul(scale.reshape([cout, 1, 1, 1])));
        conv.bias = Some(Param::from_tensor(bias));
        ConvBlock { conv, norm: None }
    }
}
