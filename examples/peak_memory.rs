//! Peak resident memory of one inference forward pass at 360×480, batch 1, read from the OS
//! (`VmHWM` in `/proc/self/status`, Linux). Run once per backend, each in a fresh process:
//!
//! ```text
//! cargo run --release --example peak_memory -- flex
//! ```

use std::process::ExitCode;

use burn::prelude::*;
use burn::tensor::Distribution;
use clap::Parser;
use squeeze_segnet::{BackendKind, SqueezeSegNetConfig};

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Peak resident memory of one inference forward pass at 360×480, batch 1.
#[derive(Parser)]
struct Cli {
    /// flex, ndarray or wgpu
    #[arg(default_value_t = BackendKind::Flex)]
    backend: BackendKind,
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let kind = squeeze_segnet_workspace::cli::parse::<Cli>()?.backend;
    let device = kind.device()?;
    let before = status_kib("VmHWM:").ok_or("no /proc/self/status (Linux only)")?;
    let model = SqueezeSegNetConfig::paper_with_batch_norm()
        .init(&device)?
        .for_inference();
    let x = Tensor::<4>::random([1, 3, 360, 480], Distribution::Default, &device);
    let y = model.forward(x)?;
    let _ = y.slice([0..1, 0..1, 0..1, 0..1]).into_data();
    let peak = status_kib("VmHWM:").unwrap_or(0);
    println!(
        "{kind}: peak RSS {:.0} MiB (process start, incl. runtime: {:.0} MiB)",
        peak as f64 / 1024.0,
        before as f64 / 1024.0
    );
    Ok(())
}

fn main() -> ExitCode {
    squeeze_segnet::retain_freed_memory();
    squeeze_segnet::flush_subnormals();
    squeeze_segnet_workspace::cli::exit(run())
}
