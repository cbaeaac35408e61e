//! Weights for PyTorch and ONNX Runtime users, and the cross-framework check in
//! `benches/peers/compare_logits.py`.
//!
//! ```text
//! cargo run --release --example export_weights -- [--weights FILE] [--paper] [--out DIR]
//! cargo run --release --example export_weights -- --check DIR
//! ```
//! Export writes `DIR/weights.safetensors` (PyTorch's names: `load_state_dict(..., strict=True)`
//! in `benches/peers/squeeze_segnet.py`), an input `DIR/input.bin` `[1, 3, 360, 480]` and its
//! logits `DIR/logits.bin` `[1, classes, 360, 480]` (raw little-endian f32) computed on Flex. Without
//! `--weights` the network is freshly initialised (seeded).
//!
//! `--check DIR` is the other direction: it loads `DIR/from_torch.safetensors` (a state dict
//! saved by `compare_logits.py`) and compares this crate's logits on `DIR/input.bin` with
//! PyTorch's `DIR/from_torch_logits.bin`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use burn::prelude::*;
use burn::tensor::Distribution;
use clap::Parser;
use squeeze_segnet::{SavedModel, SqueezeSegNet, SqueezeSegNetConfig};
use squeeze_segnet_workspace::cli;

/// Export weights as PyTorch safetensors with an input and its logits, or check PyTorch's.
#[derive(Parser)]
struct Cli {
    /// Weights to export (.bpk, any precision) [default: a freshly initialised network]
    #[arg(long, value_name = "FILE")]
    weights: Option<PathBuf>,
    /// Without --weights: the paper's network [default: the shipped network's, camvid()]
    #[arg(long)]
    paper: bool,
    /// Output folder
    #[arg(long, value_name = "DIR", default_value = "target/export")]
    out: PathBuf,
    /// Load DIR/from_torch.safetensors and compare logits with DIR/from_torch_logits.bin
    #[arg(long, value_name = "DIR")]
    check: Option<PathBuf>,
}

const INPUT: [usize; 4] = [1, 3, 360, 480];

fn main() -> ExitCode {
    squeeze_segnet::retain_freed_memory();
    squeeze_segnet::flush_subnormals();
    cli::exit(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = cli::parse::<Cli>()?;
    let device = Device::flex();
    if let Some(dir) = &args.check {
        return check(dir, &device);
    }
    device.seed(7);
    let weights = args.weights;
    // Trained weights bring their network's config (`model.json` beside them).
    let recorded = weights
        .as_ref()
        .filter(|w| w.with_file_name(squeeze_segnet::MODEL_FILE).is_file())
        .map(SavedModel::open)
        .transpose()?;
    let config = match (recorded, args.paper) {
        (Some(saved), _) => saved.config,
        (None, true) => SqueezeSegNetConfig::paper(),
        (None, false) => SqueezeSegNetConfig::camvid(),
    };
    let model = match &weights {
        Some(path) => config.init(&device).and_then(|m| m.load(path))?,
        None => config.init(&device)?,
    };
    let out = args.out;
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let file = model.save_pytorch(out.join("weights.safetensors"))?;
    let x = Tensor::<4>::random(INPUT, Distribution::Normal(0.0, 1.0), &device);
    // The inference path a user runs: batch norm folded, the fused CPU kernels on Flex.
    let logits = model.for_inference().forward(x.clone())?;
    write_f32(&out.join("input.bin"), &x.into_data().try_to_vec::<f32>()?)?;
    write_f32(
        &out.join("logits.bin"),
        &logits.into_data().try_to_vec::<f32>()?,
    )?;
    println!(
        "wrote {} (batch_norm {}, refine {}) and input/logits to {}",
        file.display(),
        config.batch_norm,
        config.refine,
        out.display()
    );
    Ok(())
}

/// PyTorch → this crate: the state dict PyTorch saved gives PyTorch's logits here.
fn check(dir: &Path, device: &Device) -> Result<(), Box<dyn std::error::Error>> {
    let weights = dir.join("from_torch.safetensors");
    let shapes = safetensors_shapes(&weights)?;
    let dim = |name: &str, i: usize| {
        shapes
            .get(name)
            .and_then(|s| s.get(i).copied())
            .ok_or_else(|| format!("{}: no tensor '{name}'", weights.display()))
    };
    let classes = dim("deconv1.bias", 0)?;
    if dim("conv1.conv.weight", 1)? != INPUT[1] {
        return Err(format!("{}: the check runs RGB networks", weights.display()).into());
    }
    let config = SqueezeSegNetConfig::paper_with_batch_norm()
        .with_num_classes(classes)
        .with_batch_norm(shapes.keys().any(|n| n.contains(".norm.")))
        .with_refine(shapes.keys().any(|n| n.starts_with("refine.")))
        .with_context(shapes.keys().any(|n| n.starts_with("context.")));
    let model: SqueezeSegNet = config.init(device)?.load(&weights)?;
    let x = read_f32(&dir.join("input.bin"), INPUT.iter().product())?;
    let want = read_f32(
        &dir.join("from_torch_logits.bin"),
        classes * INPUT[2] * INPUT[3],
    )?;
    let x = Tensor::<4>::from_data(TensorData::new(x, INPUT), device);
    let got = model
        .for_inference()
        .forward(x)?
        .into_data()
        .try_to_vec::<f32>()?;
    let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
    let diff = got
        .iter()
        .zip(&want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    println!("max |difference| {diff:.3e} (logits up to {scale:.3e})");
    if diff > 1e-4 * scale {
        return Err(format!("logits differ from PyTorch's by {diff:.3e}").into());
    }
    println!("OK: PyTorch's weights give PyTorch's logits within 1e-4 relative");
    Ok(())
}

/// Name → shape of every tensor of a safetensors file.
fn safetensors_shapes(
    path: &Path,
) -> Result<std::collections::HashMap<String, Vec<usize>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| format!("{}: not a safetensors file: {e}", path.display()))?;
    Ok(meta
        .tensors()
        .into_iter()
        .map(|(name, info)| (name, info.shape.clone()))
        .collect())
}

fn write_f32(path: &Path, data: &[f32]) -> Result<(), String> {
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(err)?);
    for v in data {
        f.write_all(&v.to_le_bytes()).map_err(err)?;
    }
    f.flush().map_err(err)
}

fn read_f32(path: &Path, len: usize) -> Result<Vec<f32>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() != 4 * len {
        return Err(format!(
            "{}: {} bytes, expected {len} f32 values",
            path.display(),
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}
