//! Segment images with trained weights: a colourised class mask (CamVid palette) and an overlay
//! on the input, as PNGs.
//!
//! ```text
//! cargo run --release --example predict -- --weights runs/camvid/best.bpk photo.png more_photos/
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use squeeze_segnet::{BackendKind, CAMVID_PALETTE, colorize, overlay, segment_photo};
use squeeze_segnet_data::{camvid_sample_root, decode};
use squeeze_segnet_workspace::{ModelArgs, TtaArgs, cli};

/// Segment images (files or folders; default: the sample's validation images).
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    model: ModelArgs,
    /// Output folder
    #[arg(long, value_name = "DIR", default_value = "predictions")]
    out: PathBuf,
    /// flex, ndarray or wgpu
    #[arg(long, value_name = "NAME", default_value_t = BackendKind::Flex)]
    backend: BackendKind,
    #[command(flatten)]
    tta: TtaArgs,
    /// Images, or folders of .png/.jpg images
    #[arg(value_name = "IMAGE|DIR")]
    inputs: Vec<PathBuf>,
}

fn main() -> ExitCode {
    squeeze_segnet::retain_freed_memory();
    squeeze_segnet::flush_subnormals();
    cli::exit(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = cli::parse::<Cli>()?;
    let (backend, out) = (args.backend, args.out);

    let inputs = if args.inputs.is_empty() {
        vec![camvid_sample_root().join("val")]
    } else {
        args.inputs
    };
    let files = image_files(&inputs)?;
    let (saved, size) = args.model.resolve()?;
    let device = backend.device()?;
    let model = saved.init(&device)?.for_inference();
    let tta = args.tta.tta();
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    for file in files {
        let image = decode(&file)?.to_rgb8();
        let (w, h) = (image.width() as usize, image.height() as usize);
        // The model runs at `size`; the classes come back at the photo's own size without
        // full-size logits (one byte a pixel at any image size).
        let classes = segment_photo(&model, &image, size, &tta)?;
        let mask = colorize(&classes, [h, w], &CAMVID_PALETTE)?;
        let stem = file.file_stem().unwrap_or_default().to_string_lossy();
        let (mask_path, overlay_path) = (
            out.join(format!("{stem}_mask.png")),
            out.join(format!("{stem}_overlay.png")),
        );
        mask.save(&mask_path)
            .map_err(|e| format!("{}: {e}", mask_path.display()))?;
        overlay(&image, &mask, 0.5)?
            .save(&overlay_path)
            .map_err(|e| format!("{}: {e}", overlay_path.display()))?;
        println!(
            "{} -> {}, {}",
            file.display(),
            mask_path.display(),
            overlay_path.display()
        );
    }
    Ok(())
}

/// The files given, and the PNG/JPEG files of the folders given (sorted).
fn image_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(input)
                .map_err(|e| format!("{}: {e}", input.display()))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| is_image(p))
                .collect();
            if found.is_empty() {
                return Err(format!(
                    "{}: no .png or .jpg images in this folder",
                    input.display()
                ));
            }
            found.sort();
            files.extend(found);
        } else if input.is_file() {
            files.push(input.clone());
        } else {
            return Err(format!("{}: no such file or folder", input.display()));
        }
    }
    // Outputs are named by stem: `x.png` and `x.jpg` (or `a/x.png` and `b/x.png`) would overwrite
    // each other's masks.
    let mut seen = std::collections::HashMap::new();
    for f in &files {
        let stem = f.file_stem().unwrap_or_default().to_os_string();
        if let Some(other) = seen.insert(stem, f) {
            return Err(format!(
                "{} and {} would both write {}_mask.png: segment them in separate runs",
                other.display(),
                f.display(),
                f.file_stem().unwrap_or_default().to_string_lossy()
            ));
        }
    }
    Ok(files)
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["png", "jpg", "jpeg"].contains(&e.to_ascii_lowercase().as_str()))
}
