//! `ConvBlock`: convolution, optional batch norm, ReLU — the unit every Fire and DFire is made of.

use crate::fold::{NormStats, fold};
use crate::fused;
use burn::module::{Param, RunningState};
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
    /// A block without batch norm is [`fused::conv2d_bias_relu`] (one fused pass at inference on
    /// the CPU backends); with batch norm, the convolution is [`fused::conv2d_train`] and, in
    /// training, batch norm + ReLU is [`fused::batch_norm_relu_train`] (this crate's kernels and
    /// gradients on NdArray and Flex). Each picks its path itself.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let Some(padding) = self.plain_padding() else {
            // Built by hand with groups, dilation or uneven padding: Burn's layer as it is.
            let x = self.conv.forward(x);
            let x = match &self.norm {
                Some(norm) => norm.forward(x),
                None => x,
            };
            return burn::tensor::activation::relu(x);
        };
        let (weight, stride) = (self.conv.weight.val(), self.conv.stride);
        if let (None, Some(bias)) = (&self.norm, &self.conv.bias) {
            return fused::conv2d_bias_relu(x, weight, bias.val(), stride, padding);
        }
        let mut y = fused::conv2d_train(x, weight, stride, padding);
        if let Some(b) = &self.conv.bias {
            let c = b.dims()[0];
            y = y + b.val().reshape([1, c, 1, 1]);
        }
        match &self.norm {
            Some(norm) => batch_norm_relu(norm, y),
            None => burn::tensor::activation::relu(y),
        }
    }

    /// The `[vertical, horizontal]` padding of a convolution with groups 1, dilation 1 and the
    /// same padding on opposite sides (every block [`ConvBlockConfig`] builds).
    pub(crate) fn plain_padding(&self) -> Option<[usize; 2]> {
        let conv = &self.conv;
        let PaddingConfig2d::Explicit(top, left, bottom, right) = conv.padding else {
            return None;
        };
        let plain = conv.groups == 1 && conv.dilation == [1, 1] && top == bottom && left == right;
        plain.then_some([top, left])
    }

    /// Weight, bias and padding of a block that is one convolution + bias + ReLU (no batch norm,
    /// as [`SqueezeSegNet::for_inference`](crate::SqueezeSegNet::for_inference) leaves them), for
    /// the fused Fire and DFire kernels.
    fn conv_bias_relu(&self) -> Option<(Tensor<4>, Tensor<1>, [usize; 2])> {
        if self.norm.is_some() || self.conv.stride != [1, 1] {
            return None;
        }
        let bias = self.conv.bias.as_ref()?.val();
        Some((self.conv.weight.val(), bias, self.plain_padding()?))
    }
}

/// `relu(norm(y))`, the same function as Burn's `BatchNorm::forward` then ReLU, running
/// statistics included. In training (an autodiff device and a batch norm not frozen, as Burn
/// decides) it is [`fused::batch_norm_relu_train`], one op with one backward, and the running
/// statistics move by the layer's momentum towards the batch's mean and biased variance, as
/// Burn's layer does.
fn batch_norm_relu(norm: &BatchNorm, y: Tensor<4>) -> Tensor<4> {
    if !(y.device().is_autodiff() && norm.training.is_enabled()) {
        return burn::tensor::activation::relu(norm.forward(y));
    }
    let device = y.device();
    let (out, mean, variance) =
        fused::batch_norm_relu_train(y, norm.gamma.val(), norm.beta.val(), norm.epsilon);
    let step = |state: &RunningState<Tensor<1>>, batch: Tensor<1>| {
        let running = state.value_sync().to_device(&device);
        let moved = running
            .mul_scalar(1.0 - norm.momentum)
            .add(batch.detach().mul_scalar(norm.momentum));
        state.update(moved.detach());
    };
    step(&norm.running_mean, mean);
    step(&norm.running_var, variance);
    out
}

/// A 1×1 and a padded 3×3 block without batch norm: the weights and biases for
/// [`fused::fire_expand`].
fn expand_operands(e1: &ConvBlock, e3: &ConvBlock) -> Option<[(Tensor<4>, Tensor<1>); 2]> {
    let (w1, b1, p1) = e1.conv_bias_relu()?;
    let (w3, b3, p3) = e3.conv_bias_relu()?;
    let shapes = e1.conv.kernel_size == [1, 1] && e3.conv.kernel_size == [3, 3];
    (shapes && p1 == [0, 0] && p3 == [1, 1]).then_some([(w1, b1), (w3, b3)])
}

/// `squeeze(cat([e1(x), e3(x)], 1))`: a DFire module, [`fused::dfire`] for blocks without batch
/// norm, Burn's ops around batch norm.
pub(crate) fn dfire(
    e1: &ConvBlock,
    e3: &ConvBlock,
    squeeze: &ConvBlock,
    x: Tensor<4>,
) -> Tensor<4> {
    if let Some([(w1, b1), (w3, b3)]) = expand_operands(e1, e3)
        && let Some((ws, bs, [0, 0])) = squeeze.conv_bias_relu()
        && squeeze.conv.kernel_size == [1, 1]
    {
        return fused::dfire(x, [w1, w3, ws], [b1, b3, bs]);
    }
    squeeze.forward(expand_pair(e1, e3, x))
}

/// `cat([e1(x), e3(x)], 1)` for a 1×1 and a padded 3×3 block (a Fire or DFire module's expand
/// stage): [`fused::fire_expand`] for blocks without batch norm, Burn's ops around batch norm.
pub(crate) fn expand_pair(e1: &ConvBlock, e3: &ConvBlock, x: Tensor<4>) -> Tensor<4> {
    if let Some([(w1, b1), (w3, b3)]) = expand_operands(e1, e3) {
        return fused::fire_expand(x, w1, b1, w3, b3);
    }
    Tensor::cat(vec![e1.forward(x.clone()), e3.forward(x)], 1)
}

impl ConvBlock {
    /// The same function with batch norm folded into the convolution, for inference: with
    /// `s = γ / √(running_var + ε)`, the weights become `W·s` (per output channel) and the bias
    /// `(b − running_mean)·s + β` (the arithmetic of
    /// [`SqueezeSegNet::for_inference`](crate::SqueezeSegNet::for_inference) too). One pass over
    /// the activations fewer per block, the same output up to float rounding. Blocks without
    /// batch norm are returned as they are.
    ///
    /// Call it on a model in inference mode ([`Module::valid`]); the folded block cannot load
    /// records of the unfolded one.
    pub fn fold_batch_norm(self) -> Self {
        let Some(norm) = self.norm else {
            return self;
        };
        let mut conv = self.conv;
        let stats = NormStats {
            gamma: norm.gamma.val(),
            beta: norm.beta.val(),
            mean: norm.running_mean.value_sync(),
            var: norm.running_var.value_sync(),
            epsilon: norm.epsilon,
        };
        let (weight, bias) = fold(conv.weight.val(), conv.bias.map(|b| b.val()), stats);
        conv.weight = Param::from_tensor(weight);
        conv.bias = Some(Param::from_tensor(bias));
        ConvBlock { conv, norm: None }
    }
}
