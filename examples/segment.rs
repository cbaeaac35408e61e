//! Build Squeeze-SegNet, print its per-layer summary, and segment one image at its own size.
//!
//! ```text
//! cargo run --release --example segment -- [--backend flex|ndarray|wgpu] [--image IN.png]
//!                                          [--weights FILE.bpk] [--out MASK.png]
//! ```
//! Without `--weights` the shipped CamVid network is freshly initialised, so the mask shows that
//! the whole pipeline runs, not a trained segmentation (`predict` uses the trained weights).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use squeeze_segnet::{
    BackendKind, CAMVID_PALETTE, SavedModel, SqueezeSegNetConfig, colorize, photo_input,
};
use squeeze_segnet_data::{camvid_sample_root, decode};
use squeeze_segnet_workspace::cli;

/// Print the network's layers and segment one image at its own size.
#[derive(Parser)]
struct Cli {
    /// flex, ndarray or wgpu
    #[arg(long, value_name = "NAME", default_value_t = BackendKind::Flex)]
    backend: BackendKind,
    /// Image to segment [default: a validation image of the embedded sample]
    #[arg(long, value_name = "FILE")]
    image: Option<PathBuf>,
    /// Weights (.bpk or .safetensors) with their model.json beside them [default: a freshly
    /// initialised network]
    #[arg(long, value_name = "FILE")]
    weights: Option<PathBuf>,
    /// Class mask to write
    #[arg(long, value_name = "FILE", default_value = "segment_mask.png")]
    out: PathBuf,
}

/// The network runs at the image's own size here, and its activations grow with the area (64
/// channels at half the size after conv1): `predict` runs any image at a fixed size.
const MAX_SIDE: usize = 2048;

fn main() -> ExitCode {
    squeeze_segnet::retain_freed_memory();
    squeeze_segnet::flush_subnormals();
    cli::exit(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = cli::parse::<Cli>()?;
    let (backend, out) = (args.backend, args.out);
    let image_path = args
        .image
        .unwrap_or_else(|| camvid_sample_root().join("val/0016E5_07959.png"));
    let device = backend.device()?;
    let saved = args.weights.map(SavedModel::open).transpose()?;
    let config = saved
        .as_ref()
        .map_or_else(SqueezeSegNetConfig::camvid, |s| s.config.clone());
    let model = match &saved {
        Some(saved) => saved.init(&device)?,
        None => config.init(&device)?,
    }
    .for_inference();

    let image = decode(&image_path)?.to_rgb8();
    let (w, h) = (image.width() as usize, image.height() as usize);
    if w > MAX_SIDE || h > MAX_SIDE {
        return Err(format!(
            "{} is {w}x{h}: segment runs the network at the image's size, up to {MAX_SIDE} a side; use the predict example for larger images",
            image_path.display()
        )
        .into());
    }
    println!("{}", config.summary([1, 3, h, w])?);

    // Normalised as in training: [1, 3, H, W].
    let x = photo_input(&image, [h, w], &device)?;
    let start = Instant::now();
    let classes = model
        .segment(x)?
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .map_err(|e| format!("cannot read the classes back: {e:?}"))?;
    println!(
        "segmented {w}×{h} on {backend} in {:.0} ms",
        start.elapsed().as_secs_f64() * 1e3
    );

    let mut counts = vec![0usize; config.num_classes];
    for &c in &classes {
        counts[c as usize] += 1;
    }
    // Classes beyond CamVid's palette are drawn black.
    colorize(&classes, [h, w], &CAMVID_PALETTE)?
        .save(&out)
        .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    println!("pixels per class: {counts:?}");
    println!("wrote {}", out.display());
    Ok(())
}
