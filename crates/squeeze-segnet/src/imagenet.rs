//! SqueezeNet 1.1's ImageNet weights as the encoder's starting point.
//!
//! The paper's encoder is SqueezeNet 1.1 up to fire9; SegNet-style networks start it from
//! ImageNet (the paper's SegNet from VGG16's). This crate ships DeepScale's SqueezeNet v1.1
//! weights (BSD-2-Clause; `weights/imagenet/` in the crate's source folder, with their
//! provenance and the script that wrote the file): conv1 and fire2–fire9, 722,496 values, in
//! Caffe's input convention (BGR pixels 0–255, minus [`IMAGENET_CAFFE_MEAN_BGR`]).
//! [`SqueezeSegNet::with_imagenet_encoder`] puts them into a network:
//!
//! - conv1 is rewritten for the network's own input normalisation (`(rgb / 255 − mean) / std`):
//!   its input channels reordered BGR → RGB and scaled by `255 · std`, the mean difference moved
//!   into its bias. Exact, since conv1 has no padding.
//! - With batch norm (whose convolutions have no bias), each norm is set from the data so that in
//!   inference mode convolution + norm computes the ImageNet convolution + bias exactly: over a
//!   calibration batch, with `m`, `v` the channel mean and (biased) variance of the
//!   convolution's output, `running_mean = m`, `running_var = v`, `γ = √(v + ε)`,
//!   `β = m + bias`. In training mode the batch's own statistics replace `m` and `v`, so the
//!   encoder starts close to ImageNet's function there too. Without batch norm the biases are
//!   copied.
//! - conv10 (ImageNet's 1000-class classifier) and everything after it keep their weights.
//!   Without batch norm, fire9's output keeps the ImageNet network's scale (activations in the
//!   tens), which a freshly initialised conv10 then takes as it is; the recipe measured in the
//!   README trains the batch-norm network `camvid()`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::module::{Param, RunningState};
use burn::nn::BatchNorm;
use burn::prelude::*;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use safetensors::SafeTensors;

use crate::config::{CONV1_CHANNELS, ENCODER_FIRES, POOL, POOLED_AFTER};
use crate::conv::ConvBlock;
use crate::ops::max_pool2d_with_indices_unchecked;
use crate::{SegNetError, SqueezeSegNet};

/// Caffe's per-channel mean (B, G, R; pixels 0–255) that the ImageNet weights' inputs had
/// subtracted.
pub const IMAGENET_CAFFE_MEAN_BGR: [f32; 3] = [104.006, 116.669, 122.679];

/// The shipped ImageNet weights (`weights/imagenet/squeezenet1_1.safetensors` in this crate's
/// source folder).
pub fn imagenet_encoder_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/imagenet/squeezenet1_1.safetensors")
}

/// One convolution of the ImageNet encoder: kernel `[out, in, kh, kw]` and bias `[out]`.
#[derive(Debug, Clone)]
struct Layer {
    shape: [usize; 4],
    kernel: Vec<f32>,
    bias: Vec<f32>,
}

/// SqueezeNet 1.1's ImageNet convolutions conv1 … fire9 (Caffe's input convention), read from a
/// safetensors file in this crate's names (`conv1.conv.weight`, `fire2.squeeze.conv.bias`, …).
#[derive(Debug, Clone)]
pub struct ImageNetEncoder {
    layers: HashMap<String, Layer>,
    path: PathBuf,
}

/// The encoder's convolutions in order with SqueezeNet 1.1's kernel shapes: conv1, then each
/// Fire's squeeze, expand1x1, expand3x3.
fn layer_shapes() -> Vec<(String, [usize; 4])> {
    let mut layers = vec![("conv1".to_string(), [CONV1_CHANNELS, 3, 3, 3])];
    for fire in ENCODER_FIRES {
        let (s, e) = (fire.squeeze, fire.expand);
        for (part, shape) in [
            ("squeeze", [s, fire.input, 1, 1]),
            ("expand1x1", [e, s, 1, 1]),
            ("expand3x3", [e, s, 3, 3]),
        ] {
            layers.push((format!("{}.{part}", fire.name), shape));
        }
    }
    layers
}

impl ImageNetEncoder {
    /// The shipped weights ([`imagenet_encoder_path`]).
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub fn shipped() -> Result<Self, SegNetError> {
        Self::load(imagenet_encoder_path())
    }

    /// Reads the encoder from a safetensors file: a `.conv.weight` and a `.conv.bias` for each
    /// of conv1 and fire2–fire9's squeeze, expand1x1 and expand3x3, as float tensors of
    /// SqueezeNet 1.1's shapes (conv1 `[64, 3, 3, 3]`, fire2's squeeze `[16, 64, 1, 1]`, …;
    /// biases `[out]`).
    ///
    /// # Errors
    /// [`SegNetError::Load`] when the file cannot be read or is not safetensors;
    /// [`SegNetError::WeightsMismatch`] naming the first tensor that is missing or of another
    /// shape.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, SegNetError> {
        let path = path.as_ref().to_path_buf();
        crate::pytorch::read_safetensors(&path, |file| Self::from_safetensors(&path, file))
    }

    fn from_safetensors(path: &Path, file: &SafeTensors<'_>) -> Result<Self, SegNetError> {
        let path = path.to_path_buf();
        let mismatch = |reason: String| SegNetError::WeightsMismatch {
            path: path.clone(),
            reason,
        };
        let mut layers = HashMap::new();
        for (name, shape) in layer_shapes() {
            let read = |suffix: &str, expected: &[usize]| {
                let key = format!("{name}.conv.{suffix}");
                let view = file
                    .tensor(&key)
                    .map_err(|_| mismatch(format!("tensor '{key}' is missing")))?;
                if view.shape() != expected {
                    return Err(mismatch(format!(
                        "tensor '{key}' has shape {:?}, SqueezeNet 1.1's is {expected:?}",
                        view.shape()
                    )));
                }
                crate::pytorch::to_f32(&key, &view).map_err(&mismatch)
            };
            let kernel = read("weight", &shape)?;
            let bias = read("bias", &shape[..1])?;
            layers.insert(
                name,
                Layer {
                    shape,
                    kernel,
                    bias,
                },
            );
        }
        Ok(Self { layers, path })
    }

    /// Shape `[out, in, kh, kw]`, kernel (row-major) and bias of the convolution `name`
    /// (`conv1`, `fire2.squeeze`, …, `fire9.expand3x3`) as the file holds them: Caffe's input
    /// convention. `None` for another name.
    pub fn layer(&self, name: &str) -> Option<([usize; 4], &[f32], &[f32])> {
        self.layers
            .get(name)
            .map(|l| (l.shape, l.kernel.as_slice(), l.bias.as_slice()))
    }

    /// The file the weights came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// conv1's kernel and bias for inputs normalised as `(rgb / 255 − mean) / std` per channel,
    /// where the ImageNet network took BGR pixels 0–255 minus [`IMAGENET_CAFFE_MEAN_BGR`]: the
    /// same function of the same pixels (conv1 has no padding).
    ///
    /// # Shapes
    /// - kernel: `[64, 3, 3, 3]` values, row-major
    /// - bias: `[64]`
    ///
    /// # Errors
    /// [`SegNetError::Config`] when a `std` value is not a positive number.
    pub fn conv1_for_input(
        &self,
        mean: [f32; 3],
        std: [f32; 3],
    ) -> Result<(Vec<f32>, Vec<f32>), SegNetError> {
        if let Some(s) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(SegNetError::Config(format!(
                "input standard deviation {s} is not a positive number"
            )));
        }
        let layer = &self.layers["conv1"];
        let [out, channels, kh, kw] = layer.shape;
        let plane = kh * kw;
        let mut kernel = vec![0.0; layer.kernel.len()];
        let mut bias = layer.bias.clone();
        for o in 0..out {
            for c in 0..channels {
                // RGB channel c is Caffe's channel 2 − c; its pixel is 255 · (std · x + mean).
                let from = (o * channels + (channels - 1 - c)) * plane;
                let to = (o * channels + c) * plane;
                let shift = 255.0 * mean[c] - IMAGENET_CAFFE_MEAN_BGR[channels - 1 - c];
                for k in 0..plane {
                    let w = layer.kernel[from + k];
                    kernel[to + k] = w * 255.0 * std[c];
                    bias[o] += w * shift;
                }
            }
        }
        Ok((kernel, bias))
    }
}

impl SqueezeSegNet {
    /// This network with its encoder (conv1, fire2–fire9) set to `encoder`'s ImageNet weights,
    /// for inputs normalised with `mean` and `std` (`(rgb / 255 − mean) / std`, as the data
    /// crate's transforms do); see the [module docs](self). A network with batch norm sets each
    /// norm from `calibration`, a batch of such inputs (a few training images: their statistics
    /// become the norms' running statistics); a network without ignores it.
    ///
    /// # Shapes
    /// - calibration: `[batch, 3, height, width]`, at least the network's minimum size
    ///
    /// # Errors
    /// [`SegNetError::WeightsMismatch`] when the network's encoder has other shapes than
    /// SqueezeNet 1.1's (for instance another number of input channels);
    /// [`SegNetError::Config`] for a `std` value that is not positive; the input errors of
    /// [`forward`](Self::forward) for a calibration batch it would refuse.
    pub fn with_imagenet_encoder(
        mut self,
        encoder: &ImageNetEncoder,
        mean: [f32; 3],
        std: [f32; 3],
        calibration: Tensor<4>,
    ) -> Result<Self, SegNetError> {
        let mismatch = |reason: String| SegNetError::WeightsMismatch {
            path: encoder.path.clone(),
            reason,
        };
        let device = self.conv1.conv.weight.lazy_device();
        let mut weights = Vec::new();
        let mut batch_norm = false;
        for (name, block) in self.encoder_blocks() {
            batch_norm |= block.norm.is_some();
            let layer = &encoder.layers[&name];
            let have = block.conv.weight.dims();
            if have != layer.shape {
                return Err(mismatch(format!(
                    "{name} is {have:?} in this network, {:?} in SqueezeNet 1.1",
                    layer.shape
                )));
            }
            if block.plain_padding().is_none() {
                return Err(mismatch(format!(
                    "{name} has groups, dilation or uneven padding, which SqueezeNet 1.1's has not"
                )));
            }
            let (kernel, bias) = if name == "conv1" {
                encoder.conv1_for_input(mean, std)?
            } else {
                (layer.kernel.clone(), layer.bias.clone())
            };
            let kernel = Tensor::<4>::from_data(TensorData::new(kernel, layer.shape), &device);
            let bias = Tensor::<1>::from_data(TensorData::new(bias, [layer.shape[0]]), &device);
            weights.push((kernel, bias));
        }
        let mut x = if batch_norm {
            self.check_input(calibration.dims())?;
            Some(calibration.to_device(&device))
        } else {
            None
        };
        let pooled_after: Vec<&str> = POOLED_AFTER.iter().map(|(module, _)| *module).collect();
        let mut weights = weights.into_iter();
        let mut next = || weights.next().expect("one kernel per encoder convolution");

        let pool = |x: Tensor<4>| max_pool2d_with_indices_unchecked(x, POOL).0;
        x = set_block(&mut self.conv1, next(), x).map(pool);
        for (size, fire) in ENCODER_FIRES.iter().zip(self.encoder_fires_mut()) {
            let s = set_block(&mut fire.squeeze, next(), x);
            let e1 = set_block(&mut fire.expand1x1, next(), s.clone());
            let e3 = set_block(&mut fire.expand3x3, next(), s);
            x = e1.zip(e3).map(|(a, b)| Tensor::cat(vec![a, b], 1));
            if pooled_after.contains(&size.name) {
                x = x.map(pool);
            }
        }
        Ok(self)
    }

    /// The encoder's convolution blocks by the names [`layer_shapes`] gives them.
    fn encoder_blocks(&self) -> Vec<(String, &ConvBlock)> {
        let mut blocks = vec![("conv1".to_string(), &self.conv1)];
        for (size, fire) in ENCODER_FIRES.iter().zip(self.encoder_fires()) {
            for (part, block) in [
                ("squeeze", &fire.squeeze),
                ("expand1x1", &fire.expand1x1),
                ("expand3x3", &fire.expand3x3),
            ] {
                blocks.push((format!("{}.{part}", size.name), block));
            }
        }
        blocks
    }
}

/// Sets `block` to `kernel` and `bias`; with batch norm, sets the norm from the convolution's
/// output on `x` (see the module docs). Returns the block's inference output on `x`,
/// `relu(conv(x) + bias)`, when `x` is given.
fn set_block(
    block: &mut ConvBlock,
    (kernel, bias): (Tensor<4>, Tensor<1>),
    x: Option<Tensor<4>>,
) -> Option<Tensor<4>> {
    // Plain padding: checked by the caller.
    let padding = block.plain_padding().unwrap_or_default();
    let options = ConvOptions::new(block.conv.stride, padding, [1, 1], 1);
    let channels = bias.dims()[0];
    let z = x.map(|x| conv2d(x, kernel.clone().detach(), None, options));
    block.conv.weight = Param::from_tensor(kernel);
    match (&mut block.norm, &z) {
        (Some(norm), Some(z)) => calibrate(norm, z.clone(), bias.clone()),
        (Some(_), None) => unreachable!("an encoder with a batch norm is calibrated"),
        (None, _) => block.conv.bias = Some(Param::from_tensor(bias.clone())),
    }
    z.map(|z| burn::tensor::activation::relu(z + bias.reshape([1, channels, 1, 1])).detach())
}

/// Sets `norm` so that `norm(z)` in inference mode is `z + bias`: running statistics from `z`,
/// `γ = √(variance + ε)`, `β = mean + bias`.
fn calibrate(norm: &mut BatchNorm, z: Tensor<4>, bias: Tensor<1>) {
    let [n, c, h, w] = z.dims();
    let flat = z.detach().swap_dims(0, 1).reshape([c, n * h * w]);
    let mean = flat.clone().mean_dim(1);
    let variance = (flat - mean.clone()).square().mean_dim(1).reshape([c]);
    let mean = mean.reshape([c]);
    norm.gamma = Param::from_tensor(variance.clone().add_scalar(norm.epsilon).sqrt().detach());
    norm.beta = Param::from_tensor((mean.clone() + bias).detach());
    norm.running_mean = RunningState::new(mean);
    norm.running_var = RunningState::new(variance);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-output conv1 with distinct values, as a file would hold it.
    fn encoder_with_conv1(kernel: Vec<f32>, bias: f32) -> ImageNetEncoder {
        let layers = HashMap::from([(
            "conv1".to_string(),
            Layer {
                shape: [1, 3, 1, 2],
                kernel,
                bias: vec![bias],
            },
        )]);
        ImageNetEncoder {
            layers,
            path: PathBuf::from("test"),
        }
    }

    #[test]
    fn conv1_takes_normalised_rgb_for_caffe_bgr() {
        // kernel [1, 3 (B, G, R), 1, 2]
        let kernel = vec![0.5, -1.0, 2.0, 0.25, -0.75, 1.5];
        let encoder = encoder_with_conv1(kernel.clone(), 0.3);
        let (mean, std) = ([0.4, 0.5, 0.6], [0.2, 0.25, 0.3]);
        let (ours, bias) = encoder.conv1_for_input(mean, std).unwrap();
        // Two pixels (the kernel's two taps), RGB 0-255.
        let pixels = [[30.0f32, 120.0, 250.0], [200.0, 10.0, 90.0]];
        let mut caffe = 0.3;
        let mut here = bias[0];
        for (tap, rgb) in pixels.iter().enumerate() {
            for c in 0..3 {
                // Caffe: BGR order, pixel minus its mean.
                let bgr = 2 - c;
                caffe += kernel[bgr * 2 + tap] * (rgb[c] - IMAGENET_CAFFE_MEAN_BGR[bgr]);
                here += ours[c * 2 + tap] * ((rgb[c] / 255.0 - mean[c]) / std[c]);
            }
        }
        assert!(
            (caffe - here).abs() < 1e-3 * caffe.abs().max(1.0),
            "{caffe} vs {here}"
        );
    }

    #[test]
    fn conv1_refuses_a_non_positive_std() {
        let encoder = encoder_with_conv1(vec![0.0; 6], 0.0);
        let err = encoder
            .conv1_for_input([0.5; 3], [0.2, 0.0, 0.2])
            .unwrap_err();
        assert!(err.to_string().contains("standard deviation 0"), "{err}");
    }

    #[test]
    fn layer_shapes_are_squeezenet_1_1s() {
        let layers = layer_shapes();
        assert_eq!(layers.len(), 1 + 3 * 8);
        assert_eq!(layers[0], ("conv1".to_string(), [64, 3, 3, 3]));
        assert_eq!(layers[1], ("fire2.squeeze".to_string(), [16, 64, 1, 1]));
        assert_eq!(layers[24], ("fire9.expand3x3".to_string(), [256, 64, 3, 3]));
        // 722,496 values with the biases: SqueezeNet 1.1's 1,235,496 less conv10's 513,000.
        let values: usize = layers
            .iter()
            .map(|(_, [o, i, h, w])| o * i * h * w + o)
            .sum();
        assert_eq!(values, 1_235_496 - (1000 * 512 + 1000));
    }
}
