//! Store weights in another precision: f16 (half the file) or int8 (a quarter), for small
//! devices. Every example's `--weights` and `SqueezeSegNet::load` read all three.
//!
//! ```text
//! cargo run --release --example convert_weights -- --precision int8
//! cargo run --release --example convert_weights -- --weights runs/camvid/best.bpk --precision f16 --out best-f16.bpk
//! ```
//! Prints both files' sizes and how far the converted network's logits move on a sample image.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use burn::prelude::*;
use clap::Parser;
use squeeze_segnet::{Precision, SqueezeSegNet, photo_input};
use squeeze_segnet_data::{camvid_sample_root, decode};
use squeeze_segnet_workspace::{ModelArgs, cli};

/// Store weights with their convolutions in f16 or int8.
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    model: ModelArgs,
    /// f16 or int8 (or f32)
    #[arg(long, value_name = "NAME")]
    precision: Precision,
    /// Output file [default: beside the input, named <stem>-<precision>.bpk]
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Replace --out when it exists
    #[arg(long)]
    force: bool,
}

fn main() -> ExitCode {
    squeeze_segnet::retain_freed_memory();
    squeeze_segnet::flush_subnormals();
    cli::exit(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = cli::parse::<Cli>()?;
    let precision = args.precision;
    let (saved, size) = args.model.resolve()?;
    let (weights, config) = (saved.weights, saved.config);
    let out = match args.out {
        Some(out) => out,
        None => {
            let stem = weights.file_stem().unwrap_or_default().to_string_lossy();
            weights.with_file_name(format!("{stem}-{precision}.bpk"))
        }
    };
    let out = squeeze_segnet::weights_path(&out);
    if same_file(&out, &weights) {
        return Err(format!("--out {} is the input file", out.display()).into());
    }
    if out.exists() && !args.force {
        return Err(format!("{} exists (pass --force to replace it)", out.display()).into());
    }

    let device = Device::flex();
    // The same network read from either file (the output has no model.json beside it).
    let load = |path: &Path| config.init(&device).and_then(|m| m.load(path));
    let (model, load_in) = timed(|| load(&weights));
    let model = model?;
    model.save_as(&out, precision)?;
    let (converted, load_out) = timed(|| load(&out));
    let converted = converted?;

    let image = decode(&camvid_sample_root().join("val/0016E5_07959.png"))?.to_rgb8();
    let x = photo_input(&image, size, &device)?;
    let (before, after) = (logits(&model, x.clone())?, logits(&converted, x)?);
    let scale = before.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = before
        .iter()
        .zip(&after)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    let agree = classes(&before, config.num_classes)
        .zip(classes(&after, config.num_classes))
        .filter(|(a, b)| a == b)
        .count() as f64
        / (size[0] * size[1]) as f64;
    let len = |p: &PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    println!(
        "{} ({:.2} MB, loads in {load_in:.0} ms) -> {} ({:.2} MB, {precision}, loads in {load_out:.0} ms)",
        weights.display(),
        len(&weights) as f64 / 1e6,
        out.display(),
        len(&out) as f64 / 1e6
    );
    println!(
        "sample image at {}x{}: largest logit change {diff:.4} (largest logit {scale:.2}), same class at {:.2}% of pixels",
        size[0],
        size[1],
        100.0 * agree
    );
    Ok(())
}

/// `f()` and its wall time in milliseconds (the fastest of three runs).
fn timed<T>(f: impl Fn() -> T) -> (T, f64) {
    let mut best = f64::INFINITY;
    let mut last = None;
    for _ in 0..3 {
        let start = std::time::Instant::now();
        last = Some(f());
        best = best.min(start.elapsed().as_secs_f64() * 1e3);
    }
    (last.expect("ran three times"), best)
}

fn logits(model: &SqueezeSegNet, x: Tensor<4>) -> Result<Vec<f32>, Box<dyn std::error::Error>> {
    Ok(model
        .forward(x)?
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| format!("{e:?}"))?)
}

/// Argmax over classes of `[1, k, h, w]` logits, per pixel.
fn classes(logits: &[f32], k: usize) -> impl Iterator<Item = usize> + '_ {
    let plane = logits.len() / k;
    (0..plane).map(move |i| {
        (0..k)
            .max_by(|&a, &b| logits[a * plane + i].total_cmp(&logits[b * plane + i]))
            .unwrap_or(0)
    })
}

fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
