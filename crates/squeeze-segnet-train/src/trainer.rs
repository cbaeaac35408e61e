//! The training loop: Burn's autodiff, optimisers and records, driven by a loop that owns the
//! data order, the learning-rate schedule, validation, logs, the chart and checkpoints — so that a
//! run can stop anywhere (Ctrl-C, `kill -9`) and resume to the same result.
//!
//! Run folder:
//! ```text
//! <run>/config.json      the TrainingConfig        <run>/model.json   the network's config
//! <run>/metrics.jsonl    one JSON record per epoch <run>/metrics.csv  the same, as a table
//! <run>/chart.png        loss and validation scores over epochs
//! <run>/best.bpk         weights with the best validation class-average accuracy so far
//! <run>/last.bpk         weights after the last finished epoch
//! <run>/class_weights.json   the training split's pixel counts, for the class weights (cached)
//! <run>/checkpoints/     see [`crate::checkpoint`]
//! <run>/.lock            held while a trainer runs (see [`crate::LOCK_FILE`])
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::data::dataloader::batcher::Batcher;
use burn::module::Module;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{
    AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig, decay::WeightDecayConfig,
};
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use squeeze_segnet::{ImageNetEncoder, SqueezeSegNet, TestTimeAugmentation};
use squeeze_segnet_data::{SegmentationBatcher, SegmentationDataset, TransformConfig, class_stats};

use crate::checkpoint::{CheckpointDir, RunFingerprint, TrainState, write_atomic};
use crate::parallel::DataParallel;
use crate::param_groups::split_encoder;
use crate::progress::ProgressBar;
use crate::{
    AuxHead, AuxHeadConfig, CLASS_STATS_FILE, ClassWeighting, Ema, EncoderInit, OptimizerKind,
    SegmentationScores, TrainError, TrainingConfig, lovasz_softmax_loss,
    segmentation_cross_entropy, soft_jaccard_loss,
};
use squeeze_segnet_data::class_mix;
use squeeze_segnet_data::loader::{CachedDataset, EpochStream, batches, epoch_order, sample_rng};

/// Training images whose statistics set the ImageNet encoder's batch norms
/// ([`EncoderInit::ImageNet`]), evenly spaced through the training split.
pub const CALIBRATION_IMAGES: usize = 16;

/// Separates the ClassMix draws of batch `b` from the augmentation draws of sample `b`.
const CLASS_MIX_SALT: u64 = 0xC1A5_5A11_0F0B_A7C4;

/// What happened in one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Optimiser steps done at the end of the epoch.
    pub step: usize,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    /// Mean training loss over the epoch's images.
    pub train_loss: f64,
    /// Training throughput (images per second, data loading included).
    pub images_per_sec: f64,
    /// Validation scores, when a validation split was given.
    pub val: Option<SegmentationScores>,
}

/// How [`Trainer::run`] treats the run folder.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Continue from the folder's latest checkpoint (an error when there is none).
    pub resume: bool,
    /// Stop (with a checkpoint) once this many epochs are done, even if the config asks for more:
    /// to split a long run over several sittings.
    pub stop_after_epochs: Option<usize>,
    /// Print the progress bar and a summary line per epoch on stderr.
    pub verbose: bool,
}

/// The result of [`Trainer::run`].
#[derive(Debug)]
pub struct TrainingOutcome {
    /// The model after the last step (its moving average when the run keeps one), in inference
    /// mode.
    pub model: SqueezeSegNet,
    /// One record per finished epoch (resumed epochs included).
    pub history: Vec<EpochRecord>,
    /// Best validation class-average accuracy and its epoch.
    pub best: Option<(f64, usize)>,
    /// True when the run was stopped early (stop flag or `stop_after_epochs`) after saving a
    /// checkpoint; `--resume` continues it.
    pub interrupted: bool,
}

/// Trains a Squeeze-SegNet on a split, validating on another, in a run folder.
pub struct Trainer {
    config: TrainingConfig,
    device: Device,
    train: Arc<CachedDataset>,
    val: Option<Arc<CachedDataset>>,
    dir: PathBuf,
    stop: Arc<AtomicBool>,
    parallel: Vec<Device>,
}

impl Trainer {
    /// A trainer for `config` on `device` (a plain device; autodiff is added here).
    ///
    /// # Errors
    /// [`TrainError::Config`] for a bad option, an empty split, or splits whose class counts
    /// differ from the model's.
    pub fn new(
        config: TrainingConfig,
        device: Device,
        train: SegmentationDataset,
        val: Option<SegmentationDataset>,
        dir: impl Into<PathBuf>,
    ) -> Result<Self, TrainError> {
        config.validate()?;
        for (name, split) in [("training", Some(&train)), ("validation", val.as_ref())] {
            let Some(split) = split else { continue };
            if split.is_empty() {
                return Err(TrainError::Config(format!("the {name} split is empty")));
            }
            if split.num_classes() != config.model.num_classes {
                return Err(TrainError::Config(format!(
                    "the {name} split has {} classes but the model {}",
                    split.num_classes(),
                    config.model.num_classes
                )));
            }
        }
        let dir: PathBuf = dir.into();
        let fresh = !dir.join("checkpoints").join("latest.json").exists();
        if let Some(path) = &config.init_weights
            && fresh
            && !Path::new(path).is_file()
        {
            return Err(TrainError::Config(format!(
                "initial weights {path}: no such file"
            )));
        }
        let cache = config.cache_images;
        Ok(Self {
            train: Arc::new(CachedDataset::new(train, cache)),
            val: val.map(|v| Arc::new(CachedDataset::new(v, cache))),
            config,
            device: device.without_autodiff(),
            dir,
            stop: Arc::new(AtomicBool::new(false)),
            parallel: Vec::new(),
        })
    }

    /// Splits every batch over `devices` (data parallelism, see [`crate::parallel`]): each
    /// computes forward and backward for its part, the gradients are added on the trainer's
    /// device, which keeps the model and the optimiser. The same data order, schedule and
    /// checkpoints as on one device; without batch norm the steps are the single-device steps
    /// (up to float rounding). A run may resume on a different set of devices.
    ///
    /// # Errors
    /// [`TrainError::Config`] when `devices` is empty.
    pub fn with_data_parallel(mut self, devices: Vec<Device>) -> Result<Self, TrainError> {
        if devices.is_empty() {
            return Err(TrainError::Config(
                "data-parallel training needs at least one device".into(),
            ));
        }
        if self.config.jaccard_weight > 0.0
            || self.config.lovasz_weight > 0.0
            || self.config.aux_weight > 0.0
        {
            return Err(TrainError::Config(
                "the soft-Jaccard, Lovász and auxiliary terms (jaccard_weight, lovasz_weight, \
                 aux_weight > 0) need single-device training"
                    .into(),
            ));
        }
        self.parallel = devices;
        Ok(self)
    }

    /// A flag that, once set (e.g. from a Ctrl-C handler), makes the run save a checkpoint after
    /// the current batch and return with `interrupted`.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// The run folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The options.
    pub fn config(&self) -> &TrainingConfig {
        &self.config
    }

    /// Trains until the configured number of epochs, a stop request, or `stop_after_epochs`.
    pub fn run(&self, options: RunOptions) -> Result<TrainingOutcome, TrainError> {
        let cfg = &self.config;
        // Burn loads optimiser state on its default device, which reads BURN_DEVICE.
        squeeze_segnet::check_burn_device_env()?;
        let _lock = crate::lock::RunLock::acquire(&self.dir)?;
        let ckpts = CheckpointDir::new(&self.dir, cfg.keep_checkpoints);
        let latest = ckpts.latest()?;
        let ad = self.device.clone().autodiff();
        self.device.seed(cfg.seed);
        let mut model = cfg.model.init(&ad)?;
        if cfg.freeze_encoder_norms {
            // Before any weights are loaded: loading keeps the flag (weight files hold no flags).
            model = model.with_encoder_norms_frozen();
        }
        initialize_now(&model);
        let aux = (cfg.aux_weight > 0.0).then(|| {
            // The encoder's output channels: conv10's.
            let channels = model.conv10.conv.weight.dims()[0];
            let head = AuxHeadConfig::new(channels, cfg.model.num_classes).init(&ad);
            initialize_now(&head);
            head
        });
        let optim = self.optimizer();
        let ema_of = |m: &SqueezeSegNet| -> Result<Option<Ema>, TrainError> {
            (cfg.ema_decay > 0.0)
                .then(|| Ema::new(&cfg.model, &m.valid(), cfg.ema_decay))
                .transpose()
        };
        let (mut model, mut aux, mut optim, mut state, mut ema) = match (options.resume, latest) {
            (true, Some((files, mut state))) => {
                self.check_resume_dependencies(&state)?;
                self.check_resume_config()?;
                // config.json may have been rewritten (a new epoch count): fingerprint it anew.
                state.depends_on = Some(self.run_fingerprint()?);
                let model = model.load(&files.model)?;
                let ema = if cfg.ema_decay > 0.0 {
                    if !files.ema.is_file() {
                        return Err(TrainError::Checkpoint {
                            path: files.ema.clone(),
                            reason: "missing (the run averages its weights)".into(),
                        });
                    }
                    let average = cfg.model.init(&self.device)?.load(&files.ema)?;
                    Some(Ema::new(&cfg.model, &average, cfg.ema_decay)?)
                } else {
                    None
                };
                let aux = match aux {
                    Some(_) if !files.aux.is_file() => {
                        return Err(TrainError::Checkpoint {
                            path: files.aux.clone(),
                            reason: "missing (the run has an auxiliary loss)".into(),
                        });
                    }
                    Some(head) => Some(head.load(&files.aux)?),
                    None => None,
                };
                let optim = optim
                    .load(&files.optim)
                    .map_err(|e| TrainError::Checkpoint {
                        path: files.optim.clone(),
                        reason: format!("{e:?}"),
                    })?;
                (model, aux, optim, state, ema)
            }
            (true, None) => return Err(TrainError::NothingToResume(self.dir.clone())),
            (false, Some(_)) => return Err(TrainError::RunExists(self.dir.clone())),
            (false, None) => {
                let model = match (&cfg.init_weights, cfg.encoder) {
                    (Some(path), _) => model.load_adding_context(path)?,
                    (None, EncoderInit::ImageNet) => self.with_imagenet_encoder(model, &ad)?,
                    (None, EncoderInit::Random) => model,
                };
                self.write_run_files()?;
                let state = TrainState {
                    epoch: 0,
                    batch: 0,
                    step: 0,
                    seed: cfg.seed,
                    epoch_loss_sum: 0.0,
                    epoch_images: 0,
                    best: None,
                    history: Vec::new(),
                    depends_on: Some(RunFingerprint::new(&cfg.to_string(), self.train.dataset())?),
                };
                let ema = ema_of(&model)?;
                (model, aux, optim, state, ema)
            }
        };
        let class_weights = self.class_weights()?;
        let weights = Tensor::<1>::from_floats(class_weights.as_slice(), &ad);
        let ignore = self.train.dataset().ignore() as usize;
        let parallel = (!self.parallel.is_empty())
            .then(|| DataParallel::new(&self.parallel, class_weights.clone(), ignore))
            .transpose()?;
        let n = self.train.len();
        let per_epoch = n.div_ceil(cfg.batch_size);
        let total_steps = per_epoch * cfg.epochs;
        let warmup = per_epoch * cfg.warmup_epochs;
        let last_epoch = options
            .stop_after_epochs
            .map_or(cfg.epochs, |e| e.min(cfg.epochs));
        let mut interrupted = false;

        while state.epoch < last_epoch {
            let epoch = state.epoch;
            let all = batches(&epoch_order(n, state.seed, epoch), cfg.batch_size);
            let todo = all[state.batch..].to_vec();
            let label = format!("epoch {}/{}", epoch + 1, cfg.epochs);
            let mut bar = ProgressBar::new(label, all.len(), options.verbose);
            let start = Instant::now();
            let mut images_now = 0usize;
            let stream = EpochStream::start(
                self.train.clone(),
                cfg.train_transform(),
                todo,
                state.seed,
                epoch,
            );
            let mut lr = cfg.learning_rate(state.step, warmup, total_steps);
            for items in stream {
                let mut items = items?;
                let count = items.len();
                if cfg.class_mix > 0.0 {
                    // A pure function of (seed, epoch, batch): a resumed run mixes alike.
                    let mut rng = sample_rng(state.seed ^ CLASS_MIX_SALT, epoch, state.batch);
                    class_mix(&mut items, cfg.class_mix, ignore as u8, &mut rng);
                }
                let (mut grads, value) = match &parallel {
                    Some(parallel) => parallel.gradients(&model, items)?,
                    None => {
                        let batch = SegmentationBatcher.batch(items, &ad);
                        let (logits, features) = model.forward_with_features(batch.images)?;
                        let mut loss = segmentation_cross_entropy(
                            logits.clone(),
                            batch.masks.clone(),
                            weights.clone(),
                            ignore,
                        );
                        if let Some(head) = &aux {
                            loss = loss
                                + head
                                    .loss(features, batch.masks.clone(), weights.clone(), ignore)
                                    .mul_scalar(cfg.aux_weight);
                        }
                        if cfg.jaccard_weight > 0.0 {
                            loss = loss
                                + soft_jaccard_loss(logits.clone(), batch.masks.clone(), ignore)
                                    .mul_scalar(cfg.jaccard_weight);
                        }
                        if cfg.lovasz_weight > 0.0 {
                            loss = loss
                                + lovasz_softmax_loss(logits, batch.masks, ignore)?
                                    .mul_scalar(cfg.lovasz_weight);
                        }
                        let value: f32 = loss
                            .clone()
                            .try_into_scalar()
                            .map_err(|e| TrainError::Readback(format!("{e:?}")))?;
                        let mut grads = loss.backward();
                        if let Some(head) = aux.take() {
                            let head_grads = GradientsParams::from_module(&mut grads, &head);
                            aux = Some(optim.step(
                                cfg.learning_rate(state.step, warmup, total_steps),
                                head,
                                head_grads,
                            ));
                        }
                        (GradientsParams::from_grads(grads, &model), value)
                    }
                };
                if !value.is_finite() {
                    return Err(TrainError::Diverged {
                        loss: value,
                        epoch: epoch + 1,
                        step: state.step,
                    });
                }
                lr = cfg.learning_rate(state.step, warmup, total_steps);
                if cfg.encoder_lr_scale != 1.0 {
                    let encoder = split_encoder(&model, &mut grads);
                    model = optim.step(lr * cfg.encoder_lr_scale, model, encoder);
                }
                model = optim.step(lr, model, grads);
                state.step += 1;
                if let Some(ema) = &mut ema {
                    ema.update(&model.valid(), state.step)?;
                }
                state.batch += 1;
                state.epoch_loss_sum += value as f64 * count as f64;
                state.epoch_images += count;
                images_now += count;
                bar.update(
                    state.batch,
                    count,
                    state.epoch_loss_sum / state.epoch_images.max(1) as f64,
                );
                if self.stop.load(Ordering::SeqCst) && state.batch < all.len() {
                    interrupted = true;
                    break;
                }
            }
            bar.finish();
            if interrupted {
                self.checkpoint(&ckpts, &model, aux.as_ref(), &optim, ema.as_ref(), &state)?;
                if options.verbose {
                    eprintln!(
                        "stopped in epoch {} after batch {}/{}; checkpoint saved, continue with --resume",
                        epoch + 1,
                        state.batch,
                        all.len()
                    );
                }
                break;
            }
            let seconds = start.elapsed().as_secs_f64();
            let due = (epoch + 1) % cfg.eval_every == 0 || epoch + 1 == cfg.epochs;
            // What the run publishes: the moving average when there is one.
            let published = ema.as_ref().map_or(&model, Ema::model);
            let val = if due { self.validate(published)? } else { None };
            let record = EpochRecord {
                epoch: epoch + 1,
                step: state.step,
                lr,
                train_loss: state.epoch_loss_sum / state.epoch_images.max(1) as f64,
                images_per_sec: images_now as f64 / seconds.max(1e-9),
                val,
            };
            if options.verbose {
                eprintln!("{}", summary_line(&record));
            }
            state.history.push(record.clone());
            state.epoch += 1;
            state.batch = 0;
            state.epoch_loss_sum = 0.0;
            state.epoch_images = 0;
            if let Some(v) = &record.val
                && state.best.is_none_or(|(b, _)| v.class_average_accuracy > b)
            {
                state.best = Some((v.class_average_accuracy, record.epoch));
                crate::checkpoint::fault_point(&self.dir.join("best.bpk"));
                published.save(self.dir.join("best.bpk"))?;
            }
            crate::checkpoint::fault_point(&self.dir.join("last.bpk"));
            published.save(self.dir.join("last.bpk"))?;
            self.write_logs(&state.history)?;
            self.checkpoint(&ckpts, &model, aux.as_ref(), &optim, ema.as_ref(), &state)?;
            if self.stop.load(Ordering::SeqCst) && state.epoch < last_epoch {
                interrupted = true;
                break;
            }
        }
        interrupted |= state.epoch < cfg.epochs;
        Ok(TrainingOutcome {
            model: ema.map_or_else(|| model.valid(), |e| e.model().clone()),
            history: state.history,
            best: state.best,
            interrupted,
        })
    }

    fn optimizer(&self) -> ModuleOptimizer {
        let cfg = &self.config;
        let decay =
            (cfg.weight_decay > 0.0).then(|| WeightDecayConfig::new(cfg.weight_decay as f32));
        match cfg.optimizer {
            OptimizerKind::Sgd => SgdConfig::new()
                .with_momentum((cfg.momentum > 0.0).then(|| {
                    MomentumConfig::new()
                        .with_momentum(cfg.momentum)
                        .with_dampening(0.0)
                }))
                .with_weight_decay(decay)
                .init(),
            OptimizerKind::Adam => AdamConfig::new().with_weight_decay(decay).init(),
            OptimizerKind::AdamW => AdamWConfig::new()
                .with_weight_decay(cfg.weight_decay as f32)
                .init(),
        }
    }

    /// The loss's class weights, per the config.
    pub fn class_weights(&self) -> Result<Vec<f32>, TrainError> {
        let stats = match self.config.class_weighting {
            ClassWeighting::Uniform | ClassWeighting::SegNetTutorial => None,
            _ => Some(class_stats(
                self.train.dataset(),
                Some(&self.dir.join(CLASS_STATS_FILE)),
            )?),
        };
        self.config.class_weights(stats.as_ref())
    }

    /// `model` with the shipped ImageNet encoder, its batch norms calibrated on
    /// [`CALIBRATION_IMAGES`] training images spread evenly through the split, resized to the
    /// training size without augmentation and normalised as the training batches are.
    fn with_imagenet_encoder(
        &self,
        model: SqueezeSegNet,
        device: &Device,
    ) -> Result<SqueezeSegNet, TrainError> {
        let encoder = ImageNetEncoder::shipped()?;
        let n = self.train.len();
        let count = n.min(CALIBRATION_IMAGES);
        let indices = (0..count).map(|i| i * n / count).collect();
        let train = self.config.train_transform();
        let transform = TransformConfig::new(self.config.size)
            .with_mean(train.mean)
            .with_std(train.std);
        let stream = EpochStream::start(
            self.train.clone(),
            transform,
            vec![indices],
            self.config.seed,
            0,
        );
        let mut images = Vec::new();
        for items in stream {
            images.extend(items?);
        }
        let batch = SegmentationBatcher.batch(images, device);
        Ok(model.with_imagenet_encoder(&encoder, train.mean, train.std, batch.images)?)
    }

    fn validate(&self, model: &SqueezeSegNet) -> Result<Option<SegmentationScores>, TrainError> {
        let Some(val) = &self.val else {
            return Ok(None);
        };
        let matrix = crate::evaluate(
            model,
            val.clone(),
            self.config.eval_transform(),
            self.config.batch_size,
            &TestTimeAugmentation::none(),
            &self.device,
        )?;
        Ok(Some(matrix.scores()))
    }

    fn checkpoint(
        &self,
        ckpts: &CheckpointDir,
        model: &SqueezeSegNet,
        aux: Option<&AuxHead>,
        optim: &ModuleOptimizer,
        ema: Option<&Ema>,
        state: &TrainState,
    ) -> Result<(), TrainError> {
        let files = ckpts.prepare(state.epoch, state.batch)?;
        crate::checkpoint::fault_point(&files.model);
        model.save(&files.model)?;
        if let Some(aux) = aux {
            crate::checkpoint::fault_point(&files.aux);
            aux.save(&files.aux)?;
        }
        if let Some(ema) = ema {
            crate::checkpoint::fault_point(&files.ema);
            ema.model().save(&files.ema)?;
        }
        crate::checkpoint::fault_point(&files.optim);
        optim
            .save(&files.optim)
            .map_err(|e| TrainError::Checkpoint {
                path: files.optim.clone(),
                reason: format!("cannot write: {e:?}"),
            })?;
        ckpts.commit(&files, state)
    }

    fn write_run_files(&self) -> Result<(), TrainError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| TrainError::io(&self.dir, e))?;
        write_atomic(
            &self.dir.join("config.json"),
            self.config.to_string().as_bytes(),
        )?;
        write_atomic(
            &self.dir.join("model.json"),
            self.config.model.to_string().as_bytes(),
        )
    }

    /// On resume, the training split and the recipe must be the ones the checkpoint was made with
    /// (the recipe check catches a hand-edited `config.json`, which the config comparison cannot).
    fn check_resume_dependencies(&self, state: &TrainState) -> Result<(), TrainError> {
        let path = self.dir.join("config.json");
        if let Some(stored) = &state.depends_on {
            let now = self.run_fingerprint()?;
            for (field, s, g) in [
                (
                    "training split",
                    &stored.training_split,
                    &now.training_split,
                ),
                (
                    "recipe (config.json without epochs)",
                    &stored.recipe,
                    &now.recipe,
                ),
            ] {
                if s != g {
                    return Err(TrainError::ResumeMismatch {
                        path: path.clone(),
                        field: field.into(),
                        stored: s.clone(),
                        given: g.clone(),
                    });
                }
            }
        }
        if state.epoch > self.config.epochs {
            return Err(TrainError::ResumeMismatch {
                path,
                field: "epochs".into(),
                stored: format!("{} done", state.epoch),
                given: format!(
                    "{} (fewer than done: pass a larger --epochs)",
                    self.config.epochs
                ),
            });
        }
        let batches = self.train.len().div_ceil(self.config.batch_size);
        if state.batch > batches {
            return Err(TrainError::ResumeMismatch {
                path,
                field: "batches per epoch".into(),
                stored: format!("at least {}", state.batch),
                given: batches.to_string(),
            });
        }
        Ok(())
    }

    /// The fingerprint of the run folder's `config.json` and the training split.
    fn run_fingerprint(&self) -> Result<RunFingerprint, TrainError> {
        let path = self.dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
        RunFingerprint::new(&text, self.train.dataset())
    }

    /// On resume, the stored config must match this one except for `epochs`.
    fn check_resume_config(&self) -> Result<(), TrainError> {
        let path = self.dir.join("config.json");
        let stored = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
        let stored: serde_json::Value =
            serde_json::from_str(&stored).map_err(|e| TrainError::Checkpoint {
                path: path.clone(),
                reason: format!("unreadable config: {e}"),
            })?;
        // Options added since the run started take the values those runs had.
        let stored = squeeze_segnet::json_with_defaults(stored, &TrainingConfig::legacy_defaults());
        let given: serde_json::Value =
            serde_json::from_str(&self.config.to_string()).expect("config serialises");
        if let (Some(s), Some(g)) = (stored.as_object(), given.as_object()) {
            for (field, g) in g {
                let s = s.get(field).cloned().unwrap_or(serde_json::Value::Null);
                if field != "epochs" && &s != g {
                    return Err(TrainError::ResumeMismatch {
                        path,
                        field: field.clone(),
                        stored: s.to_string(),
                        given: g.to_string(),
                    });
                }
            }
        }
        if stored.get("epochs") != given.get("epochs") {
            write_atomic(&path, self.config.to_string().as_bytes())?;
        }
        Ok(())
    }

    fn write_logs(&self, history: &[EpochRecord]) -> Result<(), TrainError> {
        let mut jsonl = String::new();
        let mut csv = String::from(
            "epoch,step,lr,train_loss,images_per_sec,val_global_accuracy,val_class_average_accuracy,val_mean_iou\n",
        );
        for r in history {
            jsonl.push_str(&serde_json::to_string(r).expect("record serialises"));
            jsonl.push('\n');
            let v = |f: fn(&SegmentationScores) -> f64| {
                r.val
                    .as_ref()
                    .map_or(String::new(), |s| format!("{:.5}", f(s)))
            };
            csv.push_str(&format!(
                "{},{},{:.6},{:.5},{:.2},{},{},{}\n",
                r.epoch,
                r.step,
                r.lr,
                r.train_loss,
                r.images_per_sec,
                v(|s| s.global_accuracy),
                v(|s| s.class_average_accuracy),
                v(|s| s.mean_iou)
            ));
        }
        write_atomic(&self.dir.join("metrics.jsonl"), jsonl.as_bytes())?;
        write_atomic(&self.dir.join("metrics.csv"), csv.as_bytes())?;
        crate::chart::write_chart(&self.dir.join("chart.png"), history)
    }
}

/// Runs Burn's lazy parameter initialisation now, in module order on this thread: otherwise the
/// first thread to touch a parameter draws its random weights, and with data-parallel workers
/// that order (hence the weights) would depend on timing.
fn initialize_now<M: Module>(model: &M) {
    struct Touch;
    impl burn::module::ModuleVisitor for Touch {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            let _ = param.val();
        }
    }
    model.visit(&mut Touch);
}

/// `epoch 3: loss 1.2345, 4.1 img/s, val class-avg 0.412 mIoU 0.301 global 0.702`
pub fn summary_line(r: &EpochRecord) -> String {
    let mut s = format!(
        "epoch {}: loss {:.4}, lr {:.2e}, {:.1} img/s",
        r.epoch, r.train_loss, r.lr, r.images_per_sec
    );
    if let Some(v) = &r.val {
        s.push_str(&format!(
            ", val class-avg {:.3} mIoU {:.3} global {:.3}",
            v.class_average_accuracy, v.mean_iou, v.global_accuracy
        ));
    }
    s
}
