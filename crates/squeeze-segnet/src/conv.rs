//! `ConvBlock`: convolution, optional batch norm, ReLU — the unit every Fire and DFire is made of.

use crate::fused;
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
    ///
    /// On the CPU backends at inference (see [`crate::fused`]) a block without batch norm runs
    /// as one fused convolution + bias + ReLU; otherwise the convolution on NdArray or Flex
    /// (training included) runs on [`fused::conv2d_train`], whose gradients are this crate's.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if let Some(f) = self.fused(&x) {
            return fused::conv2d_bias_relu(x, f.weight, f.bias, f.stride, f.padding);
        }
        let x = match self.training_conv(&x) {
            Some((weight, padding)) => {
                let y = fused::conv2d_train(x, weight, self.conv.stride, padding);
                match &self.conv.bias {
                    Some(b) => {
                        let c = b.dims()[0];
                        y + b.val().reshape([1, c, 1, 1])
                    }
                    None => y,
                }
            }
            None => self.conv.forward(x),
        };
        let x = match &self.norm {
            Some(norm) => norm.forward(x),
            None => x,
        };
        burn::tensor::activation::relu(x)
    }
}

/// A block's arguments for the fused CPU path.
pub(crate) struct FusedConv {
    pub weight: Tensor<4>,
    pub bias: Tensor<1>,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
}

impl ConvBlock {
    /// This block's arguments for the fused CPU path, when that path serves it on `x`: an
    /// inference device of a CPU backend for the input and the parameters ([`fused::applies`]),
    /// no batch norm, a bias, groups 1,
    /// dilation 1, symmetric padding and the input's dtype.
    pub(crate) fn fused(&self, x: &Tensor<4>) -> Option<FusedConv> {
        let conv = &self.conv;
        if self.norm.is_some() || conv.groups != 1 || conv.dilation != [1, 1] {
            return None;
        }
        let PaddingConfig2d::Explicit(top, left, bottom, right) = conv.padding else {
            return None;
        };
        let bias = conv.bias.as_ref()?.val();
        let weight = conv.weight.val();
        if top != bottom
            || left != right
            || weight.dtype() != x.dtype()
            || bias.dtype() != x.dtype()
            || weight.device() != x.device()
            || bias.device() != x.device()
            || weight.dims()[1] != x.dims()[1]
            || !fused::applies(x)
            || !fused::applies(&weight)
            || !fused::applies(&bias)
        {
            return None;
        }
        Some(FusedConv {
            weight,
            bias,
            kernel: conv.kernel_size,
            stride: conv.stride,
            padding: [top, left],
        })
    }
}

impl ConvBlock {
    /// The weight and padding for [`fused::conv2d_train`] when it serves this block's convolution
    /// on `x`: NdArray or Flex (autodiff or not, [`fused::trains`]), groups 1,
    /// dilation 1, symmetric padding, the input's dtype, device and channel count.
    fn training_conv(&self, x: &Tensor<4>) -> Option<(Tensor<4>, [usize; 2])> {
        let conv = &self.conv;
        if conv.groups != 1 || conv.dilation != [1, 1] {
            return None;
        }
        let PaddingConfig2d::Explicit(top, left, bottom, right) = conv.padding else {
            return None;
        };
        let weight = conv.weight.val();
        let fits = top == bottom
            && left == right
            && weight.dtype() == x.dtype()
            && weight.device() == x.device()
            && weight.dims()[1] == x.dims()[1]
            && fused::trains(x)
            && fused::trains(&weight);
        fits.then_some((weight, [top, left]))
    }
}

/// The fused arguments of a Fire/DFire expand pair: a 1×1 block and a padded 3×3 block.
fn fused_pair(e1: &ConvBlock, e3: &ConvBlock, x: &Tensor<4>) -> Option<(FusedConv, FusedConv)> {
    let (a, b) = (e1.fused(x)?, e3.fused(x)?);
    let pair = a.kernel == [1, 1]
        && a.stride == [1, 1]
        && a.padding == [0, 0]
        && b.kernel == [3, 3]
        && b.stride == [1, 1]
        && b.padding == [1, 1];
    pair.then_some((a, b))
}

/// `squeeze(cat([e1(x), e3(x)], 1))`: a DFire module, as one fused pass on the CPU backends at
/// inference, Burn's ops otherwise.
pub(crate) fn dfire(
    e1: &ConvBlock,
    e3: &ConvBlock,
    squeeze: &ConvBlock,
    x: Tensor<4>,
) -> Tensor<4> {
    if let Some((a, b)) = fused_pair(e1, e3, &x)
        && let Some(s) = squeeze.fused(&x)
        && s.kernel == [1, 1]
        && s.stride == [1, 1]
        && s.padding == [0, 0]
    {
        return fused::dfire(x, [a.weight, b.weight, s.weight], [a.bias, b.bias, s.bias]);
    }
    squeeze.forward(expand_pair(e1, e3, x))
}

/// `cat([e1(x), e3(x)], 1)` for a 1×1 and a padded 3×3 block (a Fire or DFire module's expand
/// stage): one fused pass writing both halves on the CPU backends at inference, Burn's ops
/// otherwise.
pub(crate) fn expand_pair(e1: &ConvBlock, e3: &ConvBlock, x: Tensor<4>) -> Tensor<4> {
    if let Some((a, b)) = fused_pair(e1, e3, &x) {
        return fused::fire_expand(x, a.weight, a.bias, b.weight, b.bias);
    }
    Tensor::cat(vec![e1.forward(x.clone()), e3.forward(x)], 1)
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
