//! The training recipe: every option with its documented default, saved as `config.json` in the
//! run folder and checked when a run is resumed.

use burn::config::Config;
use serde::{Deserialize, Serialize};
use squeeze_segnet::SqueezeSegNetConfig;
use squeeze_segnet_data::{Balancing, ClassStats, SEGNET_TUTORIAL_WEIGHTS, TransformConfig};

use crate::TrainError;
use std::path::Path;

/// Which optimiser updates the weights (Burn's implementations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OptimizerKind {
    /// SGD with momentum `momentum` and weight decay.
    Sgd,
    /// Adam (β = 0.9, 0.999) with weight decay as an L2 term of the gradient (which Adam then
    /// normalises: a weight whose loss gradient vanishes, e.g. behind a dead ReLU, shrinks by
    /// about the learning rate every step).
    Adam,
    /// AdamW: Adam with decoupled weight decay (Loshchilov and Hutter, 2019): every step
    /// multiplies the weights by `1 − lr · weight_decay`, whatever their gradient.
    AdamW,
}

/// Where a run's encoder starts when no `init_weights` are given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EncoderInit {
    /// The network's own random initialisation (He normal), like the rest of the network.
    Random,
    /// SqueezeNet 1.1's ImageNet weights for conv1 and fire2–fire9 (the model crate's
    /// [`squeeze_segnet::imagenet`]), batch norms calibrated on a few training images.
    ImageNet,
}

/// How the learning rate moves over the run (after the linear warm-up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Schedule {
    /// Constant at `lr`.
    Constant,
    /// Half-cosine from `lr` down to `lr × min_lr_ratio` at the last step.
    Cosine,
    /// Polynomial decay `(1 − t)^0.9` from `lr` to `lr × min_lr_ratio` (DeepLab's "poly").
    Poly,
}

/// Where the class weights of the loss come from. The formulas computed from the training split
/// (its pixel counts cached in the run folder) are the data crate's [`Balancing`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum ClassWeighting {
    /// Median-frequency balancing (SegNet's; spread 59× on CamVid).
    MedianFrequency,
    /// The square root of median-frequency balancing (spread 7.7× on CamVid).
    SqrtMedianFrequency,
    /// ENet's `1 / ln(c + p)`, `p` the class's share of the split's pixels (ENet: `c` = 1.02,
    /// spread 13× on CamVid; ESPNet and CGNet: 1.10, spread 3.6×).
    InverseLog {
        /// The constant `c`, above 1.
        c: f64,
    },
    /// The weights published with SegNet-Tutorial's Caffe model (CamVid's 11 classes only).
    SegNetTutorial,
    /// Every class weighs 1.
    Uniform,
}

/// Training options. `TrainingConfig::new()` is the default recipe for a CPU.
#[derive(Config, Debug)]
pub struct TrainingConfig {
    /// The network. Default: [`SqueezeSegNetConfig::camvid`] (11 classes, batch norm, the
    /// pyramid context after conv10, the 3×3 refinement after the last unpooling).
    #[config(default = "SqueezeSegNetConfig::camvid()")]
    pub model: SqueezeSegNetConfig,
    /// Passes over the training split. Default: 30.
    #[config(default = 30)]
    pub epochs: usize,
    /// Images per optimiser step. Default: 4.
    #[config(default = 4)]
    pub batch_size: usize,
    /// Training resolution `[height, width]` (images are resized, then augmented). Default
    /// `[180, 240]`: half of CamVid's 360×480, four times cheaper on a CPU.
    #[config(default = "[180, 240]")]
    pub size: [usize; 2],
    /// Resolution the model runs at during validation; logits are upsampled to the labels' full
    /// resolution before scoring. Default: `None` (the training resolution).
    #[config(default = "None")]
    pub eval_size: Option<[usize; 2]>,
    /// Validate after every `eval_every`-th epoch (and after the last one). Default: 1.
    #[config(default = 1)]
    pub eval_every: usize,
    /// Optimiser. Default: Adam, which trains this network from scratch several times faster
    /// than SGD with momentum at the same budget (see the README).
    #[config(default = "OptimizerKind::Adam")]
    pub optimizer: OptimizerKind,
    /// Peak learning rate. Default: 0.003 (Adam; about 0.05 suits SGD with momentum).
    #[config(default = 0.003)]
    pub lr: f64,
    /// SGD momentum (SGD only). Default: 0.9.
    #[config(default = 0.9)]
    pub momentum: f64,
    /// L2 weight decay. Default: 1e-4.
    #[config(default = 1e-4)]
    pub weight_decay: f64,
    /// Learning-rate schedule after warm-up. Default: cosine.
    #[config(default = "Schedule::Cosine")]
    pub schedule: Schedule,
    /// Final learning rate as a fraction of `lr`. Default: 0.01.
    #[config(default = 0.01)]
    pub min_lr_ratio: f64,
    /// Epochs of linear warm-up from `lr / 10`. Default: 1.
    #[config(default = 1)]
    pub warmup_epochs: usize,
    /// Class weights of the loss. Default: median-frequency balancing.
    #[config(default = "ClassWeighting::MedianFrequency")]
    pub class_weighting: ClassWeighting,
    /// Weight `λ` of the soft-Jaccard term mixed into the loss: cross-entropy + `λ` × soft
    /// Jaccard ([`crate::soft_jaccard_loss`]); 0 is the plain cross-entropy. Single-device
    /// training only (the term does not split over devices). Default: 0.
    #[config(default = 0.0)]
    pub jaccard_weight: f64,
    /// Weight `μ` of the Lovász-softmax term mixed into the loss: `μ` ×
    /// [`crate::lovasz_softmax_loss`], a tighter surrogate of the IoU than the soft Jaccard.
    /// Single-device training only. Default: 0.
    #[config(default = 0.0)]
    pub lovasz_weight: f64,
    /// Weight `α` of an auxiliary cross-entropy on the encoder's output ([`crate::AuxHead`]:
    /// deep supervision, as in PSPNet's training): `α` × the same weighted cross-entropy of a
    /// 1×1 head's logits at a sixteenth of the size. The head is trained with the network and
    /// kept in the checkpoints, not in the published weights. Single-device training only.
    /// Default: 0 (off).
    #[config(default = 0.0)]
    pub aux_weight: f64,
    /// Probability that a training image gets half the classes of the next image in its batch
    /// pasted on ([`squeeze_segnet_data::class_mix`], ClassMix), after the augmentation. 0 turns
    /// it off. Default: 0.
    #[config(default = 0.0)]
    pub class_mix: f64,
    /// Decay per step of an exponential moving average of the weights ([`crate::Ema`]); the
    /// average is what gets validated and saved (`best.bpk`, `last.bpk`). 0 turns it off; 0.998
    /// averages over about 500 steps. Default: 0.
    #[config(default = 0.0)]
    pub ema_decay: f64,
    /// Random horizontal flips, scale-and-crop (scale 1–`max_scale`) and colour jitter while
    /// training. Default: true.
    #[config(default = true)]
    pub augment: bool,
    /// Largest random scale of the scale-and-crop augmentation, relative to `size`: the image is
    /// resized to `scale × size` and a `size` crop taken, so with `size` 180×240, scale 2 shows
    /// CamVid's objects at their native (360×480) size. Default: 1.5
    /// ([`squeeze_segnet_data::TRAIN_SCALE`]'s upper bound).
    #[config(default = "squeeze_segnet_data::TRAIN_SCALE[1]")]
    pub max_scale: f64,
    /// Smallest random scale of the scale-and-crop augmentation (at least 1). Default: 1
    /// ([`squeeze_segnet_data::TRAIN_SCALE`]'s lower bound).
    #[config(default = "squeeze_segnet_data::TRAIN_SCALE[0]")]
    pub min_scale: f64,
    /// Colour jitter strength (0 = off). Default: 0.2 ([`squeeze_segnet_data::TRAIN_JITTER`]).
    #[config(default = "squeeze_segnet_data::TRAIN_JITTER")]
    pub jitter: f32,
    /// Seed of the weights, data order and augmentations. Default: 42.
    #[config(default = 42)]
    pub seed: u64,
    /// Keep decoded images in memory after the first epoch (about 0.7 MB per CamVid pair).
    /// Default: true.
    #[config(default = true)]
    pub cache_images: bool,
    /// Checkpoints kept on disk (the newest ones). Default: 2.
    #[config(default = 2)]
    pub keep_checkpoints: usize,
    /// Weights to start from instead of a random initialisation (to fine-tune, e.g. at a higher
    /// resolution after a low-resolution run); must fit `model`. Default: None.
    #[config(default = "None")]
    pub init_weights: Option<String>,
    /// Where the encoder starts (without `init_weights`, which replace the whole network).
    /// Default: random.
    #[config(default = "EncoderInit::Random")]
    pub encoder: EncoderInit,
    /// The encoder's (conv1, fire2–fire9) learning rate as a fraction of the schedule's, for
    /// fine-tuning a pretrained encoder more gently than the decoder learns from scratch
    /// (0.1 is the usual ratio). Default: 1 (one learning rate for the whole network).
    #[config(default = 1.0)]
    pub encoder_lr_scale: f64,
    /// Freeze the encoder's batch norms: in training they normalise with their running
    /// statistics and never update them (γ and β still learn;
    /// [`SqueezeSegNet::with_encoder_norms_frozen`](squeeze_segnet::SqueezeSegNet::with_encoder_norms_frozen)),
    /// so a pretrained encoder keeps the statistics it started with instead of following batches
    /// of a few crops. Default: false.
    #[config(default = false)]
    pub freeze_encoder_norms: bool,
}

impl TrainingConfig {
    /// Reads a run's `config.json`, also one written before an option existed: a missing option
    /// takes the value runs had before it was added (no `init_weights`, a network without
    /// `refine` or `context`).
    ///
    /// # Errors
    /// [`TrainError::Io`] when the file cannot be read, [`TrainError::Config`] when it does not
    /// parse.
    pub fn load_compatible(path: impl AsRef<Path>) -> Result<Self, TrainError> {
        Ok(squeeze_segnet::load_json_with_defaults(
            path.as_ref(),
            &Self::legacy_defaults(),
        )?)
    }

    /// The values of options for runs written before those options existed.
    pub(crate) fn legacy_defaults() -> Self {
        Self::new().with_model(SqueezeSegNetConfig::paper_with_batch_norm())
    }

    /// Checks every option, naming the bad one.

    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::Config(m));
        self.model.validate()?;
        if self.epochs == 0 {
            return bad("epochs must be at least 1".into());
        }
        if self.eval_every == 0 {
            return bad("eval_every must be at least 1".into());
        }
        if self.batch_size == 0 {
            return bad("batch size must be at least 1".into());
        }
        if self.encoder == EncoderInit::ImageNet {
            if self.init_weights.is_some() {
                return bad(
                    "initial weights replace the whole network, the ImageNet encoder included: \
                     give one of the two"
                        .into(),
                );
            }
            if self.model.input_channels != 3 {
                return bad(format!(
                    "the ImageNet encoder takes 3 input channels, the model has {}",
                    self.model.input_channels
                ));
            }
        }
        let min = squeeze_segnet::min_input_len();
        for (what, s) in [
            ("training size", Some(self.size)),
            ("eval size", self.eval_size),
        ] {
            if let Some(s) = s
                && (s[0] < min || s[1] < min)
            {
                return bad(format!(
                    "{what} {}x{} is below the network's minimum of {min}x{min}",
                    s[0], s[1]
                ));
            }
        }
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr <= 10.0) {
            return bad(format!("learning rate {} must be in (0, 10]", self.lr));
        }
        if !(self.encoder_lr_scale > 0.0 && self.encoder_lr_scale <= 1.0) {
            return bad(format!(
                "encoder learning-rate scale {} must be in (0, 1]",
                self.encoder_lr_scale
            ));
        }
        if !(self.jaccard_weight >= 0.0 && self.jaccard_weight.is_finite()) {
            return bad(format!(
                "jaccard weight {} must be >= 0",
                self.jaccard_weight
            ));
        }
        if !(self.lovasz_weight >= 0.0 && self.lovasz_weight.is_finite()) {
            return bad(format!("lovasz weight {} must be >= 0", self.lovasz_weight));
        }
        if !(0.0..=1.0).contains(&self.class_mix) {
            return bad(format!(
                "ClassMix probability {} must be in [0, 1]",
                self.class_mix
            ));
        }
        if !(self.aux_weight >= 0.0 && self.aux_weight.is_finite()) {
            return bad(format!(
                "auxiliary loss weight {} must be >= 0",
                self.aux_weight
            ));
        }
        if !(0.0..1.0).contains(&self.ema_decay) {
            return bad(format!("EMA decay {} must be in [0, 1)", self.ema_decay));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return bad(format!("momentum {} must be in [0, 1)", self.momentum));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad(format!("weight decay {} must be >= 0", self.weight_decay));
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return bad(format!(
                "min_lr_ratio {} must be in [0, 1]",
                self.min_lr_ratio
            ));
        }
        if let ClassWeighting::InverseLog { c } = self.class_weighting
            && !(c > 1.0 && c.is_finite())
        {
            return bad(format!("the inverse-log class weights need c > 1, not {c}"));
        }
        if self.class_weighting == ClassWeighting::SegNetTutorial && self.model.num_classes != 11 {
            return bad(format!(
                "the SegNet-Tutorial class weights are for CamVid's 11 classes, not {}",
                self.model.num_classes
            ));
        }
        self.train_transform().validate()?;
        self.eval_transform().validate()?;
        Ok(())
    }

    /// The loss's class weights: from `stats` (the training split's pixel counts) for the
    /// weightings computed from data, fixed for the others.
    ///
    /// # Errors
    /// [`TrainError::Config`] when the weighting needs statistics and `stats` is `None`, or when
    /// they count another number of classes than the model has.
    pub fn class_weights(&self, stats: Option<&ClassStats>) -> Result<Vec<f32>, TrainError> {
        let k = self.model.num_classes;
        let balancing = match self.class_weighting {
            ClassWeighting::Uniform => return Ok(vec![1.0; k]),
            ClassWeighting::SegNetTutorial => return Ok(SEGNET_TUTORIAL_WEIGHTS.to_vec()),
            ClassWeighting::MedianFrequency => Balancing::MedianFrequency,
            ClassWeighting::SqrtMedianFrequency => Balancing::SqrtMedianFrequency,
            ClassWeighting::InverseLog { c } => Balancing::InverseLog { c },
        };
        let stats = stats.ok_or_else(|| {
            TrainError::Config(format!(
                "{balancing:?} class weights need the split's pixel counts"
            ))
        })?;
        if stats.pixels.len() != k {
            return Err(TrainError::Config(format!(
                "class statistics of {} classes for a model of {k}",
                stats.pixels.len()
            )));
        }
        Ok(stats.weights(balancing))
    }

    /// The transform applied to training samples.
    pub fn train_transform(&self) -> TransformConfig {
        if self.augment {
            // The data crate's training augmentation (its flips), at this run's scale range and
            // jitter.
            TransformConfig::train(self.size)
                .with_scale([self.min_scale, self.max_scale])
                .with_jitter(self.jitter)
        } else {
            TransformConfig::new(self.size)
        }
    }

    /// The transform applied to validation samples (labels kept at full resolution).
    pub fn eval_transform(&self) -> TransformConfig {
        TransformConfig::eval(self.eval_size.unwrap_or(self.size))
    }

    /// The learning rate at optimiser step `step` of a run of `total_steps`: linear warm-up from
    /// `lr / 10` over `warmup_steps`, then the schedule. A pure function of the step, so a resumed
    /// run needs no scheduler state.
    pub fn learning_rate(&self, step: usize, warmup_steps: usize, total_steps: usize) -> f64 {
        let min = self.lr * self.min_lr_ratio;
        if step < warmup_steps {
            let t = step as f64 / warmup_steps as f64;
            return self.lr * (0.1 + 0.9 * t);
        }
        let span = total_steps.saturating_sub(warmup_steps).max(1) as f64;
        let t = ((step - warmup_steps) as f64 / span).min(1.0);
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Cosine => {
                min + (self.lr - min) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
            Schedule::Poly => min + (self.lr - min) * (1.0 - t).powf(0.9),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_written_before_an_option_existed_still_load() {
        let dir = std::env::temp_dir().join(format!("ssn-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A run folder of the first release: no `refine`, no `context`, no `init_weights`.
        let mut old: serde_json::Value =
            serde_json::from_str(&TrainingConfig::new().with_lr(0.005).to_string()).unwrap();
        old["model"].as_object_mut().unwrap().remove("refine");
        old["model"].as_object_mut().unwrap().remove("context");
        old.as_object_mut().unwrap().remove("init_weights");
        old.as_object_mut().unwrap().remove("encoder");
        std::fs::write(dir.join("config.json"), old.to_string()).unwrap();
        std::fs::write(dir.join("model.json"), old["model"].to_string()).unwrap();
        assert!(
            TrainingConfig::load(dir.join("config.json")).is_err(),
            "Burn's own load fails"
        );
        let config = TrainingConfig::load_compatible(dir.join("config.json")).unwrap();
        assert_eq!(config.lr, 0.005, "stored values are kept");
        assert!(!config.model.refine, "those networks had no refinement");
        assert!(!config.model.context, "nor a context");
        assert_eq!(config.init_weights, None);
        assert_eq!(
            config.encoder,
            EncoderInit::Random,
            "nor an ImageNet encoder"
        );
        let model = SqueezeSegNetConfig::load_json(dir.join("model.json")).unwrap();
        assert_eq!(model, SqueezeSegNetConfig::paper_with_batch_norm());
        let err = TrainingConfig::load_compatible(dir.join("missing.json")).unwrap_err();
        assert!(err.to_string().contains("missing.json"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
