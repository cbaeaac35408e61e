//! Workspace root package: owns the top-level examples, benches and tests, and the small
//! command-line helper the examples share ([`cli`]).

pub mod cli;
pub mod fuzz;

/// The README's Rust code, compiled and run by `cargo test --doc`.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

use std::path::PathBuf;

/// The weights the examples use when none are given: the CamVid weights shipped with the model
/// crate ([`squeeze_segnet::camvid_weights_path`]), else `runs/camvid/best.bpk` (the best model of
/// the default `train_camvid` run), when they exist.
pub fn default_weights() -> Option<PathBuf> {
    let shipped = squeeze_segnet::camvid_weights_path();
    let run = PathBuf::from("runs/camvid/best.bpk");
    [shipped, run].into_iter().find(|p| p.is_file())
}

/// The saved model an example runs and the size to run it at: `--weights FILE` (default
/// [`default_weights`]) with the network and validation size recorded beside it
/// ([`squeeze_segnet::SavedModel`]); `--size HxW` overrides the size (default: the recorded one,
/// else 360×480).
pub fn resolve_weights(args: &cli::Args) -> Result<(squeeze_segnet::SavedModel, [usize; 2]), String> {
    let weights: PathBuf = match args.get("weights")? {
        Some(w) => w,
        None => default_weights()
            .ok_or("no --weights given and none found (train with the train_camvid example)")?,
    };
    let saved = squeeze_segnet::SavedModel::open(&weights).map_err(|e| e.to_string())?;
    let size = args.size("size")?.or(saved.input_size).unwrap_or([360, 480]);
    Ok((saved, size))
}
