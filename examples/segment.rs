//! Build Squeeze-SegNet, print its per-layer summary, and segment an image.
//!
//! ```text
//! cargo run --release --example segment -- [--backend flex|ndarray|wgpu] [--image IN.png]
//!                                          [--weights FILE.bpk] [--out MASK.png]
//! ```
//! Without `--weights` the network is freshly initialised, so the mask shows that the whole
//! pipeline runs, not a trained segmentation (training arrives with `train_camvid`).

use std::process::ExitCode;
use std::time::Instant;

use burn::prelude::*;
use squeeze_segnet::{BackendKind, SqueezeSegNetConfig};
use squeeze_segnet_data::{CAMVID_PALETTE, camvid_sample_root};

struct Args {
    backend: BackendKind,
    image: String,
    weights: Option<String>,
    out: String,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        backend: BackendKind::Flex,
        image: camvid_sample_root()
            .join("val/0016E5_07959.png")
            .display()
            .to_string(),
        weights: None,
        out: "segment_mask.png".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--backend" => args.backend = value()?.parse().map_err(|e| format!("{e}"))?,
            "--image" => args.image = value()?,
            "--weights" => args.weights = Some(value()?),
            "--out" => args.out = value()?,
            "-h" | "--help" => {
                println!(
                    "usage: segment [--backend flex|ndarray|wgpu] [--image IN.png] [--weights FILE.bpk] [--out MASK.png]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument '{other}' (try --help)")),
        }
    }
    Ok(args)
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let device = args.backend.device()?;
    let config = SqueezeSegNetConfig::new();
    let model = match &args.weights {
        Some(path) => config.init_from_file(path, &device)?,
        None => config.init(&device)?,
    };

    let img = image::open(&args.image)
        .map_err(|e| format!("cannot read image {}: {e}", args.image))?
        .to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    println!("{}", config.summary([1, 3, h, w])?);

    // [H, W, 3] bytes → [1, 3, H, W] floats in [0, 1].
    let data = TensorData::new(img.into_raw(), [h, w, 3]).convert::<f32>();
    let x = Tensor::<3>::from_data(data, &device)
        .permute([2, 0, 1])
        .unsqueeze::<4>()
        / 255.0;

    let start = Instant::now();
    let classes = model.segment(x)?;
    let labels = classes.into_data().convert::<i64>().try_to_vec::<i64>()?;
    println!(
        "segmented {}×{} on {} in {:.0} ms",
        w,
        h,
        args.backend,
        start.elapsed().as_secs_f64() * 1e3
    );

    let mut counts = [0usize; 11];
    let mut mask = image::RgbImage::new(w as u32, h as u32);
    for (pixel, &class) in mask.pixels_mut().zip(&labels) {
        counts[class as usize] += 1;
        *pixel = image::Rgb(CAMVID_PALETTE[class as usize]);
    }
    mask.save(&args.out)
        .map_err(|e| format!("cannot write {}: {e}", args.out))?;
    println!("pixels per class: {counts:?}");
    println!("wrote {}", args.out);
    Ok(())
}

fn main() -> ExitCode {
    squeeze_segnet_workspace::cli::exit(parse_args().map_err(Into::into).and_then(run))
}
