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

/// The network `weights` belong to, from the `model.json` of the run folder holding them;
/// `None` when there is none.
pub fn weights_model_config(
    weights: &std::path::Path,
) -> Result<Option<squeeze_segnet::SqueezeSegNetConfig>, String> {
    let file = weights
        .parent()
        .unwrap_or(std::path::Path::new(""))
        .join("model.json");
    if !file.is_file() {
        return Ok(None);
    }
    squeeze_segnet_train::load_model_config(&file)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// The weights an example runs with, the network they belong to and the size to run it at:
/// `--weights FILE` (default [`default_weights`]); the network's config and validation size are
/// read from the run folder holding the weights (`model.json`, `config.json`) when present;
/// `--size HxW` overrides the size (default 360×480 outside a run folder).
pub fn resolve_weights(
    args: &cli::Args,
) -> Result<(PathBuf, squeeze_segnet::SqueezeSegNetConfig, [usize; 2]), String> {
    let weights: PathBuf = match args.get("weights")? {
        Some(w) => w,
        None => default_weights()
            .ok_or("no --weights given and none found (train with the train_camvid example)")?,
    };
    let run_dir = weights.parent().map(PathBuf::from).unwrap_or_default();
    // Weights without their run folder: the shipped network's config.
    let model =
        weights_model_config(&weights)?.unwrap_or_else(squeeze_segnet::SqueezeSegNetConfig::camvid);
    let config_file = run_dir.join("config.json");
    let run_size = if config_file.is_file() {
        let c = squeeze_segnet_train::TrainingConfig::load_compatible(&config_file)
            .map_err(|e| format!("the weights' run configuration is damaged: {e}"))?;
        Some(c.eval_size.unwrap_or(c.size))
    } else {
        None
    };
    let size = args.size("size")?.or(run_size).unwrap_or([360, 480]);
    Ok((weights, model, size))
}
