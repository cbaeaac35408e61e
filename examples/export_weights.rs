//! Export a Squeeze-SegNet's weights, an input and its logits as raw little-endian f32 files,
//! for the cross-framework check in `benches/peers/compare_logits.py`.
//!
//! ```text
//! cargo run --release --example export_weights -- [--weights FILE.bpk] [--paper] [--out DIR]
//! ```
//! Without `--weights` the network is freshly initialised (seeded). Writes `DIR/weights.json`
//! (tensor paths, shapes, offsets), `DIR/weights.bin`, `DIR/input.bin` `[1, 3, 360, 480]` and
//! `DIR/logits.bin` `[1, 11, 360, 480]` computed on Flex.

use std::io::Write;
use std::process::ExitCode;

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::Distribution;
use squeeze_segnet::SqueezeSegNetConfig;

#[derive(Default)]
struct Export {
    path: Vec<String>,
    entries: Vec<String>,
    blob: Vec<f32>,
}

impl ModuleVisitor for Export {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let tensor = param.val();
        let shape = tensor.dims().to_vec();
        let data = tensor
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("f32");
        self.entries.push(format!(
            "{{\"path\": \"{}\", \"shape\": {:?}, \"offset\": {}, \"len\": {}}}",
            self.path.join("."),
            shape,
            self.blob.len(),
            data.len()
        ));
        self.blob.extend(data);
    }
}

fn write_f32(path: &std::path::Path, data: &[f32]) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for v in data {
        f.write_all(&v.to_le_bytes())?;
    }
    f.flush()
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (mut weights, mut paper, mut out) =
        (None, false, std::path::PathBuf::from("target/export"));
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--weights" => weights = Some(args.next().ok_or("--weights needs a file")?),
            "--paper" => paper = true,
            "--out" => out = args.next().ok_or("--out needs a folder")?.into(),
            other => return Err(format!("unknown argument '{other}'").into()),
        }
    }
    let device = Device::flex();
    device.seed(7);
    // Trained weights bring their network's config (`model.json` in their run folder).
    let run_config = weights
        .as_ref()
        .map(|w| squeeze_segnet_workspace::weights_model_config(w.as_ref()))
        .transpose()?
        .flatten();
    let config = match (run_config, paper) {
        (Some(c), _) => c,
        (None, true) => SqueezeSegNetConfig::paper(),
        (None, false) => SqueezeSegNetConfig::new(),
    };
    let model = match weights {
        Some(path) => config.init_from_file(path, &device)?,
        None => config.init(&device)?,
    };
    std::fs::create_dir_all(&out)?;
    let mut export = Export::default();
    model.visit(&mut export);
    std::fs::write(
        out.join("weights.json"),
        format!(
            "{{\"batch_norm\": {}, \"refine\": {}, \"tensors\": [\n{}\n]}}\n",
            config.batch_norm,
            config.refine,
            export.entries.join(",\n")
        ),
    )?;
    write_f32(&out.join("weights.bin"), &export.blob)?;
    let x = Tensor::<4>::random([1, 3, 360, 480], Distribution::Normal(0.0, 1.0), &device);
    // The inference path a user runs: batch norm folded, the fused CPU kernels on Flex.
    let logits = model.for_inference().forward(x.clone())?;
    write_f32(&out.join("input.bin"), &x.into_data().try_to_vec::<f32>()?)?;
    write_f32(
        &out.join("logits.bin"),
        &logits.into_data().try_to_vec::<f32>()?,
    )?;
    println!(
        "wrote {} tensors ({} values) and input/logits to {}",
        export.entries.len(),
        export.blob.len(),
        out.display()
    );
    Ok(())
}

fn main() -> ExitCode {
    squeeze_segnet::retain_freed_memory();
    squeeze_segnet_workspace::cli::exit(run())
}
