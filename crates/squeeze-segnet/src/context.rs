//! `PyramidContext`: pyramid pooling (Zhao et al., PSPNet, 2017) at the bottleneck, added as a
//! residual so that a network without it is the same network with it switched off.
//!
//! The bottleneck (conv10, stride 16) sees about 200 input pixels around each position: at
//! CamVid's native 360×480 a facade or a car fills more than that, and the decoder has nothing
//! else to go on. Each branch averages the bottleneck over a `b × b` grid of the whole image
//! (`b` = 1, 2, 3, 6), reduces it with a 1×1 convolution and stretches it back; a 1×1 convolution
//! turns the concatenated branches into a correction of the bottleneck:
//!
//! ```text
//! x ─┬──────────────────────────────────────────────────────────────── + ─ out
//!    ├ avgpool b×b ─ conv 1×1 + ReLU (branch) ─ bilinear to x's size ┐  │
//!    ├ …  one branch per bin                                         ├ concat ─ fuse 1×1
//! ```
//!
//! `fuse` starts at zero, so the module starts as the identity: weights trained without it load
//! into a network with it ([`SqueezeSegNet::with_context`](crate::SqueezeSegNet::with_context))
//! and give the same logits until training moves `fuse`.

use burn::module::Param;
use burn::nn::{
    Initializer,
    conv::{Conv2d, Conv2dConfig},
};
use burn::prelude::*;
use burn::tensor::module::adaptive_avg_pool2d;

use crate::conv::{ConvBlock, ConvBlockConfig};
use crate::predict::aligned_taps;

/// Configuration of a [`PyramidContext`].
#[derive(Config, Debug)]
pub struct PyramidContextConfig {
    /// Channels of the input, and of the output. 512 at conv10.
    pub channels: usize,
    /// Grid sizes of the pooling branches. Default: `[1, 2, 3, 6]` (PSPNet's).
    #[config(default = "vec![1, 2, 3, 6]")]
    pub bins: Vec<usize>,
    /// Output channels of each branch. Default: 64.
    #[config(default = 64)]
    pub branch_channels: usize,
}

/// Pyramid pooling context, residual: `x + fuse(concat(branch_b(x) for b in bins))`.
#[derive(Module, Debug)]
pub struct PyramidContext {
    /// One 1×1 convolution + bias + ReLU per bin (no batch norm: the 1×1 bin holds one value per
    /// image, too few for batch statistics).
    pub branches: Vec<ConvBlock>,
    /// 1×1, `bins × branch_channels` → `channels`, with bias, no activation; zero at
    /// initialisation.
    pub fuse: Conv2d,
    /// Grid size of each branch.
    #[module(skip)]
    pub bins: Vec<usize>,
}

impl PyramidContextConfig {
    /// Builds the module: branches He-initialised, `fuse` zero, so the module starts as the
    /// identity.
    pub fn init(&self, device: &Device) -> PyramidContext {
        let branches = self
            .bins
            .iter()
            .map(|_| {
                ConvBlockConfig::new([self.channels, self.branch_channels], 1)
                    .with_batch_norm(false)
                    .init(device)
            })
            .collect();
        let fuse = Conv2dConfig::new(
            [self.bins.len() * self.branch_channels, self.channels],
            [1, 1],
        )
        .with_initializer(Initializer::Zeros)
        .init(device);
        PyramidContext {
            branches,
            fuse,
            bins: self.bins.clone(),
        }
    }

    /// Parameters of the module: what [`init`](Self::init) builds.
    pub fn num_params(&self) -> usize {
        let (c, b) = (self.channels, self.branch_channels);
        self.bins.len() * (c * b + b) + self.bins.len() * b * c + c
    }
}

impl PyramidContext {
    /// # Shapes
    /// - input: `[batch, channels, height, width]`
    /// - output: `[batch, channels, height, width]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [n, _, h, w] = x.dims();
        let parts = self
            .bins
            .iter()
            .zip(&self.branches)
            .map(|(&bin, branch)| {
                let pooled = branch.forward(adaptive_avg_pool2d(x.clone(), [bin, bin]));
                stretch(pooled, [n, h, w])
            })
            .collect();
        x + self.fuse.forward(Tensor::cat(parts, 1))
    }

    /// The module with `fuse` set to zero: the identity again (used by the tests).
    pub fn zeroed(mut self) -> Self {
        self.fuse.weight = Param::from_tensor(self.fuse.weight.val().zeros_like());
        self.fuse.bias = self
            .fuse
            .bias
            .map(|b| Param::from_tensor(b.val().zeros_like()));
        self
    }
}

/// A `[n, c, b, b]` grid stretched to `[n, c, h, w]`: bilinear with aligned corners (PSPNet's),
/// written as two products with interpolation matrices, `A_h · grid · A_wᵀ`, so that it is
/// differentiable on every backend (NdArray has no bilinear `interpolate` backward).
fn stretch(grid: Tensor<4>, [n, h, w]: [usize; 3]) -> Tensor<4> {
    let [_, c, gh, gw] = grid.dims();
    if [gh, gw] == [h, w] {
        return grid;
    }
    if [gh, gw] == [1, 1] {
        return grid.expand([n, c, h, w]);
    }
    let (device, dtype) = (grid.device(), grid.dtype());
    let rows = bilinear_matrix(h, gh, &device)
        .cast(dtype)
        .expand([n, c, h, gh]);
    let cols = bilinear_matrix(w, gw, &device)
        .cast(dtype)
        .swap_dims(2, 3)
        .expand([n, c, gw, w]);
    rows.matmul(grid).matmul(cols)
}

/// `[1, 1, out, len]`: row `i` holds the weights of 1-D linear interpolation with aligned
/// corners at output position `i` (f32; the caller casts it to the grid's float type).
fn bilinear_matrix(out: usize, len: usize, device: &Device) -> Tensor<4> {
    let mut m = vec![0f32; out * len];
    for (i, (lo, hi, frac)) in aligned_taps(out, len).into_iter().enumerate() {
        m[i * len + lo] += 1.0 - frac;
        m[i * len + hi] += frac;
    }
    Tensor::<4>::from_data(TensorData::new(m, [1, 1, out, len]), device)
}
