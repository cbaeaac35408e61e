//! Build Squeeze-SegNet, print its per-layer summary, and segment an image.
//!
//! ```text
//! cargo run --release --example segment -- [--backend flex|ndarray|wgpu] [--image IN.png]
//!                                          [--weights FILE.bpk] [--out MASK.png]
//! ```
//! Without `--weights` the network is freshly initialised, so the mask shows that the whole
//! pipeline runs, not a trained segmentation (`predict` uses the trained weights by default).

use std::process::ExitCode;
use std::time::Instant;

use burn::prelude::*;
use squeeze_segnet::{BackendKind, SqueezeSegNetConfig};
use squeeze_segnet_data::{CAMVID_PALETTE, TransformConfig, camvid_sample_root};

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
    // Trained weights come with their network's config (`model.json`, in their run folder).
    let config = args
        .weights
        .as_ref()
        .map(|w| squeeze_segnet_workspace::weights_model_config(w.as_ref()))
        .transpose()?
        .flatten()
        .unwrap_or_else(|| match args.weights {
            // Weights without their run folder: the shipped network's config.
            Some(_) => SqueezeSegNetConfig::camvid(),
            None => SqueezeSegNetConfig::new(),
        });
    let model = match &args.weights {
        Some(path) => config.init_from_file(path, &device)?,
        None => config.init(&device)?,
    }
    .for_inference();

    let img = image::open(&args.image)
        .map_err(|e| format!("cannot read image {}: {e}", args.image))?
        .to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    // The network runs at the image's own size here: its activations grow with the area
    // (64 channels of half the size after conv1). `predict` runs any image at a fixed size.
    const MAX_SIDE: usize = 2048;
    if w > MAX_SIDE || h > MAX_SIDE {
        return Err(format!(
            "{} is {w}x{h}: segment runs the network at the image's size, up to {MAX_SIDE} a side; use the predict example for larger images",
            args.image
        )
        .into());
    }
    println!("{}", config.summary([1, 3, h, w])?);

    // Normalised as in training: [1, 3, H, W].
    let pixels = TransformConfig::new([h, w]).prepare_image(&img);
    let x = Tensor::<4>::from_data(TensorData::new(pixels, [1, 3, h, w]), &device);

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

    // Sized by the model's classes; classes beyond CamVid's palette are drawn black.
    let mut counts = vec![0usize; config.num_classes];
    let mut mask = image::RgbImage::new(w as u32, h as u32);
    for (pixel, &class) in mask.pixels_mut().zip(&labels) {
        counts[class as usize] += 1;
        *pixel = image::Rgb(
            CAMVID_PALETTE
                .get(class as usize)
                .copied()
                .unwrap_or([0, 0, 0]),
        );
    }
    mask.save(&args.out)
        .map_err(|e| format!("cannot write {}: {e}", args.out))?;
    println!("pixels per class: {counts:?}");
    println!("wrote {}", args.out);
    Ok(())
}

fn main() -> ExitCode {
    squeeze_segnet::retain_freed_memory();
    squeeze_segnet_workspace::cli::exit(parse_args().map_err(Into::into).and_then(run))
}
