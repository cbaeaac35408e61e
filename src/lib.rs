//! Workspace root package: owns the top-level examples, benches and tests, and the small
//! command-line helper the examples share ([`cli`]).

pub mod cli;

use std::path::PathBuf;

/// The weights the examples use when none are given: `runs/camvid/best.bpk`, the best model of
/// the default `train_camvid` run, when it exists.
pub fn default_weights() -> Option<PathBuf> {
    let run = PathBuf::from("runs/camvid/best.bpk");
    run.is_file().then_some(run)
}
