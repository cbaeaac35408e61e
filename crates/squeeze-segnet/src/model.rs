//! Squeeze-SegNet: a SqueezeNet 1.1 encoder, a mirrored decoder of DFire modules, and SegNet's
//! max-unpooling with the encoder's pooling indices. Reads top-down like the paper's figure.

use burn::nn::{
    Initializer,
    conv::{ConvTranspose2d, ConvTranspose2dConfig},
};
use burn::prelude::*;

use crate::config::{
    CONTEXT_BINS, CONTEXT_BRANCH_CHANNELS, CONV1_CHANNELS, CONV10_CHANNELS, DECODER_DFIRES,
    DFireSize, ENCODER_FIRES, FireSize, POOL, SqueezeSegNetConfig,
};
use crate::context::{PyramidContext, PyramidContextConfig};
use crate::conv::{ConvBlock, ConvBlockConfig};
use crate::dfire::{DFire, DFireConfig};
use crate::fire::{Fire, FireConfig};
use crate::fold;
use crate::ops::{max_pool2d_with_indices_unchecked, max_unpool2d_unchecked};
use crate::{SegNetError, ops::PoolOptions};

/// The Squeeze-SegNet network (Nanfack et al.).
///
/// ```text
/// input [n, 3, H, W]
///  conv1 3×3/2 (64) ── pool1 3×3/2 ─ idx1        size1 = conv1's H×W
///  fire2 fire3 ─────── pool3 3×3/2 ─ idx3        size3 = fire3's H×W
///  fire4 fire5 ─────── pool5 3×3/2 ─ idx5        size5 = fire5's H×W
///  fire6 fire7 fire8 fire9 conv10 1×1 (512)
///  context: + pyramid pooling 1, 2, 3, 6 (residual), when configured
///  conv10_d 1×1 (512)
///  dfire9 dfire8 dfire7 dfire6 ── unpool(idx5 → size5)
///  dfire5 dfire4 ──────────────── unpool(idx3 → size3)
///  dfire3 dfire2 ──────────────── unpool(idx1 → size1)
///  refine 3×3 (64), when configured
///  deconv1 3×3/2 (num_classes), output padding 0 or 1 → logits [n, num_classes, H, W]
/// ```
#[derive(Module, Debug)]
pub struct SqueezeSegNet {
    /// 3×3 stride 2, no padding, input channels → 64.
    pub conv1: ConvBlock,
    /// Fire(64; 16, 64).
    pub fire2: Fire,
    /// Fire(128; 16, 64).
    pub fire3: Fire,
    /// Fire(128; 32, 128).
    pub fire4: Fire,
    /// Fire(256; 32, 128).
    pub fire5: Fire,
    /// Fire(256; 48, 192).
    pub fire6: Fire,
    /// Fire(384; 48, 192).
    pub fire7: Fire,
    /// Fire(384; 64, 256).
    pub fire8: Fire,
    /// Fire(512; 64, 256).
    pub fire9: Fire,
    /// 1×1, 512 → 512.
    pub conv10: ConvBlock,
    /// Pyramid pooling over the whole image, added to conv10's output (not in the paper; see
    /// [`SqueezeSegNetConfig::context`]).
    pub context: Option<PyramidContext>,
    /// 1×1, 512 → 512: conv10 inverted.
    pub conv10_d: ConvBlock,
    /// DFire(512; 64, 512).
    pub dfire9: DFire,
    /// DFire(512; 64, 384).
    pub dfire8: DFire,
    /// DFire(384; 48, 384).
    pub dfire7: DFire,
    /// DFire(384; 48, 256).
    pub dfire6: DFire,
    /// DFire(256; 32, 256).
    pub dfire5: DFire,
    /// DFire(256; 32, 128).
    pub dfire4: DFire,
    /// DFire(128; 16, 128).
    pub dfire3: DFire,
    /// DFire(128; 16, 64).
    pub dfire2: DFire,
    /// 3×3, 64 → 64, densifying the last unpooled map (not in the paper; see
    /// [`SqueezeSegNetConfig::refine`]).
    pub refine: Option<ConvBlock>,
    /// Transposed 3×3 stride 2, 64 → num_classes, no activation: the per-class logits.
    pub deconv1: ConvTranspose2d,
    /// Input channels the network was built for.
    pub input_channels: usize,
    /// Number of output classes.
    pub num_classes: usize,
}

impl SqueezeSegNetConfig {
    /// Builds the network with freshly initialised weights.
    ///
    /// # Errors
    /// [`SegNetError::Config`] when `num_classes` or `input_channels` is zero.
    pub fn init(&self, device: &Device) -> Result<SqueezeSegNet, SegNetError> {
        self.validate()?;
        let bn = self.batch_norm;
        // The Fire and DFire modules, named in the order of config.rs's tables.
        let fire = |s: FireSize| {
            FireConfig::new(s.input, s.squeeze, s.expand)
                .with_batch_norm(bn)
                .init(device)
        };
        let dfire = |s: DFireSize| {
            DFireConfig::new(s.input, s.expand, s.output)
                .with_batch_norm(bn)
                .init(device)
        };
        #[rustfmt::skip]
        let [fire2, fire3, fire4, fire5, fire6, fire7, fire8, fire9] = ENCODER_FIRES.map(fire);
        #[rustfmt::skip]
        let [dfire9, dfire8, dfire7, dfire6, dfire5, dfire4, dfire3, dfire2] = DECODER_DFIRES.map(dfire);
        let conv1x1 = |channels| {
            ConvBlockConfig::new(channels, 1)
                .with_batch_norm(bn)
                .init(device)
        };
        Ok(SqueezeSegNet {
            conv1: ConvBlockConfig::new([self.input_channels, CONV1_CHANNELS], 3)
                .with_stride(2)
                .with_batch_norm(bn)
                .init(device),
            fire2,
            fire3,
            fire4,
            fire5,
            fire6,
            fire7,
            fire8,
            fire9,
            conv10: conv1x1([CONV10_CHANNELS, CONV10_CHANNELS]),
            context: self.context.then(|| context_config().init(device)),
            conv10_d: conv1x1([CONV10_CHANNELS, CONV10_CHANNELS]),
            dfire9,
            dfire8,
            dfire7,
            dfire6,
            dfire5,
            dfire4,
            dfire3,
            dfire2,
            refine: self.refine.then(|| {
                ConvBlockConfig::new([CONV1_CHANNELS, CONV1_CHANNELS], 3)
                    .with_padding(1)
                    .with_batch_norm(bn)
                    .init(device)
            }),
            deconv1: ConvTranspose2dConfig::new([CONV1_CHANNELS, self.num_classes], [3, 3])
                .with_stride([2, 2])
                .with_initializer(Initializer::KaimingNormal {
                    gain: 1.0,
                    fan_out_only: false,
                })
                .init(device),
            input_channels: self.input_channels,
            num_classes: self.num_classes,
        })
    }
}

/// The [`PyramidContext`] of [`SqueezeSegNetConfig::context`].
pub(crate) fn context_config() -> PyramidContextConfig {
    PyramidContextConfig::new(CONV10_CHANNELS)
        .with_bins(CONTEXT_BINS.to_vec())
        .with_branch_channels(CONTEXT_BRANCH_CHANNELS)
}

/// Where the encoder's poolings came from: indices and the size to unpool back to.
struct Pooled {
    indices: Tensor<4, Int>,
    size: [usize; 2],
}

fn pool(x: Tensor<4>, options: PoolOptions) -> (Tensor<4>, Pooled) {
    let [_, _, h, w] = x.dims();
    let (y, indices) = max_pool2d_with_indices_unchecked(x, options);
    (
        y,
        Pooled {
            indices,
            size: [h, w],
        },
    )
}

fn unpool(x: Tensor<4>, pooled: Pooled) -> Tensor<4> {
    max_unpool2d_unchecked(x, pooled.indices, pooled.size)
}

impl SqueezeSegNet {
    /// Per-pixel class logits, at exactly the input's size.
    ///
    /// # Shapes
    /// - input: `[batch, input_channels, height, width]`, height and width at least
    ///   [`min_input_len`] (25)
    /// - output: `[batch, num_classes, height, width]`
    ///
    /// # Errors
    /// [`SegNetError::InputChannels`], [`SegNetError::InputTooSmall`], [`SegNetError::EmptyBatch`].
    pub fn forward(&self, x: Tensor<4>) -> Result<Tensor<4>, SegNetError> {
        self.check_input(x.dims())?;
        Ok(self.forward_unchecked(x))
    }

    /// The most likely class of every pixel.
    ///
    /// # Shapes
    /// - input: `[batch, input_channels, height, width]`
    /// - output: `[batch, height, width]`, values in `0..num_classes`
    pub fn segment(&self, x: Tensor<4>) -> Result<Tensor<3, Int>, SegNetError> {
        Ok(self.forward(x)?.argmax(1).squeeze_dim(1))
    }

    /// Checks an input shape against the network: channels, batch and minimum size.
    ///
    /// # Errors
    /// As [`forward`](Self::forward).
    pub fn check_input(&self, dims: [usize; 4]) -> Result<(), SegNetError> {
        crate::config::check_input(dims, self.input_channels).map(|_| ())
    }

    /// [`forward`](Self::forward) without the input checks; panics where `forward` returns an
    /// error.
    pub fn forward_unchecked(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, _, height, width] = x.dims();
        let (features, pools) = self.encode(x);
        self.decode(features, pools, [height, width])
    }

    /// The logits and the encoder's output (conv10's, after the context when configured): for an
    /// auxiliary loss on the encoder, as PSPNet's training uses.
    ///
    /// # Shapes
    /// - input: `[batch, input_channels, height, width]`
    /// - output: logits `[batch, num_classes, height, width]` and features `[batch, 512, h, w]`,
    ///   `h` and `w` the sizes after conv1 and three poolings (about a sixteenth of the input's)
    ///
    /// # Errors
    /// As [`forward`](Self::forward).
    pub fn forward_with_features(
        &self,
        x: Tensor<4>,
    ) -> Result<(Tensor<4>, Tensor<4>), SegNetError> {
        self.check_input(x.dims())?;
        let [_, _, height, width] = x.dims();
        let (features, pools) = self.encode(x);
        let logits = self.decode(features.clone(), pools, [height, width]);
        Ok((logits, features))
    }

    /// Encoder: SqueezeNet 1.1, keeping the pooling indices, then the context.
    fn encode(&self, x: Tensor<4>) -> (Tensor<4>, [Pooled; 3]) {
        let x = self.conv1.forward(x);
        let (x, pool1) = pool(x, POOL);
        let x = self.fire2.forward(x);
        let x = self.fire3.forward(x);
        let (x, pool3) = pool(x, POOL);
        let x = self.fire4.forward(x);
        let x = self.fire5.forward(x);
        let (x, pool5) = pool(x, POOL);
        let x = self.fire6.forward(x);
        let x = self.fire7.forward(x);
        let x = self.fire8.forward(x);
        let x = self.fire9.forward(x);
        let x = self.conv10.forward(x);
        let x = match &self.context {
            Some(context) => context.forward(x),
            None => x,
        };
        (x, [pool1, pool3, pool5])
    }

    /// Decoder: the mirror image, unpooling with the encoder's indices, then the logits at
    /// `size`.
    fn decode(
        &self,
        x: Tensor<4>,
        [pool1, pool3, pool5]: [Pooled; 3],
        size: [usize; 2],
    ) -> Tensor<4> {
        let x = self.conv10_d.forward(x);
        let x = self.dfire9.forward(x);
        let x = self.dfire8.forward(x);
        let x = self.dfire7.forward(x);
        let x = self.dfire6.forward(x);
        let x = unpool(x, pool5);
        let x = self.dfire5.forward(x);
        let x = self.dfire4.forward(x);
        let x = unpool(x, pool3);
        let x = self.dfire3.forward(x);
        let x = self.dfire2.forward(x);
        let x = unpool(x, pool1);
        let x = match &self.refine {
            Some(refine) => refine.forward(x),
            None => x,
        };
        self.deconv(x, size)
    }

    /// The configuration that builds this network's layers (read from them: batch norm is
    /// conv1's).
    ///
    /// ```
    /// use burn::prelude::*;
    /// use squeeze_segnet::SqueezeSegNetConfig;
    /// let config = SqueezeSegNetConfig::paper().with_num_classes(4);
    /// assert_eq!(config.init(&Device::flex())?.config(), config);
    /// # Ok::<(), squeeze_segnet::SegNetError>(())
    /// ```
    pub fn config(&self) -> SqueezeSegNetConfig {
        SqueezeSegNetConfig::new()
            .with_num_classes(self.num_classes)
            .with_input_channels(self.input_channels)
            .with_batch_norm(self.conv1.norm.is_some())
            .with_refine(self.refine.is_some())
            .with_context(self.context.is_some())
    }

    /// The encoder's Fire modules after conv1, fire2 to fire9, in order.
    pub fn encoder_fires(&self) -> [&Fire; 8] {
        [
            &self.fire2,
            &self.fire3,
            &self.fire4,
            &self.fire5,
            &self.fire6,
            &self.fire7,
            &self.fire8,
            &self.fire9,
        ]
    }

    /// [`encoder_fires`](Self::encoder_fires), mutable.
    pub(crate) fn encoder_fires_mut(&mut self) -> [&mut Fire; 8] {
        [
            &mut self.fire2,
            &mut self.fire3,
            &mut self.fire4,
            &mut self.fire5,
            &mut self.fire6,
            &mut self.fire7,
            &mut self.fire8,
            &mut self.fire9,
        ]
    }

    /// The network with the encoder's batch norms (conv1, fire2–fire9) frozen: in training they
    /// normalise with their running statistics and leave them as they are, while γ, β and the
    /// convolutions still learn — the usual way to fine-tune a pretrained encoder on small
    /// batches, whose own statistics are noisy (Burn's flag `BatchNorm::training`, disabled;
    /// flags are not part of weight files, so loading weights keeps it). The decoder's norms
    /// are untouched; a network without batch norm is returned as it is.
    ///
    /// ```
    /// use burn::prelude::*;
    /// use squeeze_segnet::SqueezeSegNetConfig;
    /// let net = SqueezeSegNetConfig::camvid().init(&Device::flex())?.with_encoder_norms_frozen();
    /// let norm = |block: &squeeze_segnet::ConvBlock| block.norm.as_ref().unwrap().training.is_enabled();
    /// assert!(!norm(&net.conv1) && !norm(&net.fire9.expand3x3));
    /// assert!(norm(&net.conv10) && norm(&net.dfire9.squeeze));
    /// # Ok::<(), squeeze_segnet::SegNetError>(())
    /// ```
    pub fn with_encoder_norms_frozen(mut self) -> Self {
        fn freeze(block: &mut ConvBlock) {
            if let Some(norm) = &mut block.norm {
                norm.training = norm.training.clone().with_value(false);
            }
        }
        freeze(&mut self.conv1);
        for fire in self.encoder_fires_mut() {
            freeze(&mut fire.squeeze);
            freeze(&mut fire.expand1x1);
            freeze(&mut fire.expand3x3);
        }
        self
    }

    /// The network for fast inference: in inference mode ([`Module::valid`]), rebuilt from its
    /// [`config`](Self::config) without batch norm, each batch norm folded into its convolution
    /// (by record path, the arithmetic of [`ConvBlock::fold_batch_norm`]) — the same logits up
    /// to float rounding, one pass over the activations fewer per convolution. The result
    /// cannot load weight files of the unfolded network: fold after loading.
    ///
    /// ```
    /// use burn::prelude::*;
    /// use squeeze_segnet::SqueezeSegNetConfig;
    /// let model = SqueezeSegNetConfig::paper_with_batch_norm().init(&Device::flex())?.for_inference();
    /// assert!(model.conv1.norm.is_none() && model.conv1.conv.bias.is_some());
    /// assert!(!model.config().batch_norm);
    /// # Ok::<(), squeeze_segnet::SegNetError>(())
    /// ```
    pub fn for_inference(&self) -> Self {
        let model = self.valid();
        let Some(epsilon) = model.conv1.norm.as_ref().map(|norm| norm.epsilon) else {
            return model;
        };
        let plain = model
            .config()
            .with_batch_norm(false)
            .init(&model.conv1.conv.weight.lazy_device())
            .expect("a built network's configuration is valid");
        let folded = fold::folded_tensors(&model, epsilon)
            .and_then(|t| crate::params::assign_float_params(plain, t));
        // Every block of a network `init` builds is a convolution + (batch norm) + ReLU, so
        // the network without batch norm has exactly the folded tensors.
        folded
            .expect("the network without batch norm holds the folded tensors")
            .valid()
    }

    /// The network with a [`PyramidContext`] after conv10 (`Some`), or without one (`None`),
    /// every other layer kept. A fresh context ([`SqueezeSegNetConfig::context`]'s, from
    /// [`SqueezeSegNetConfig::init`]) is the identity, so weights trained without it give the
    /// same logits with it until training moves it: how a network with context is fine-tuned from
    /// one without.
    pub fn with_context(self, context: Option<PyramidContext>) -> Self {
        SqueezeSegNet { context, ..self }
    }

    /// The network with `offsets[c]` added to every logit of class `c`, folded into the final
    /// transposed convolution's bias (free at inference). Used for post-hoc logit adjustment
    /// (Menon et al., 2021): a model trained with class weights `w` has its prior shifted by
    /// `ln w`; offsets `−τ·ln w` undo (`τ = 1`) or soften that shift.
    ///
    /// # Errors
    /// [`SegNetError::Config`] when there is not one finite offset per class.
    pub fn with_logit_offsets(mut self, offsets: &[f32]) -> Result<Self, SegNetError> {
        if offsets.len() != self.num_classes || offsets.iter().any(|o| !o.is_finite()) {
            return Err(SegNetError::Config(format!(
                "logit offsets {offsets:?}: expected {} finite values, one per class",
                self.num_classes
            )));
        }
        let device = self.deconv1.weight.device();
        let add =
            Tensor::<1>::from_data(TensorData::new(offsets.to_vec(), [offsets.len()]), &device);
        let bias = match self.deconv1.bias.take() {
            Some(b) => b.val() + add,
            None => add,
        };
        self.deconv1.bias = Some(burn::module::Param::from_tensor(bias));
        Ok(self)
    }

    /// The final transposed convolution, landing exactly on the input size (see
    /// [`crate::deconv::forward`]).
    fn deconv(&self, x: Tensor<4>, size: [usize; 2]) -> Tensor<4> {
        crate::deconv::forward(&self.deconv1, x, size)
    }
}
