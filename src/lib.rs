//! Workspace root package: owns the top-level examples, benches and tests, and the small
//! command-line helpers the examples share ([`cli`], [`ModelArgs`]).

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

/// The flags of the examples that run a saved model: which weights, and at which size.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// Weights (.bpk in any precision, or .safetensors) with their model.json beside them
    /// [default: the shipped CamVid weights, else runs/camvid/best.bpk]
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    /// Resolution the model runs at [default: the size recorded beside the weights, else
    /// 360x480]
    #[arg(long, value_name = "HxW", value_parser = cli::size)]
    pub size: Option<[usize; 2]>,
}

impl ModelArgs {
    /// The saved model to run ([`squeeze_segnet::SavedModel`]: `--weights`, else
    /// [`default_weights`]) and the size to run it at (`--size`, else the recorded size, else
    /// 360×480).
    pub fn resolve(&self) -> Result<(squeeze_segnet::SavedModel, [usize; 2]), String> {
        let weights = match &self.weights {
            Some(w) => w.clone(),
            None => default_weights()
                .ok_or("no --weights given and none found (train with the train_camvid example)")?,
        };
        let saved = squeeze_segnet::SavedModel::open(&weights).map_err(|e| e.to_string())?;
        let size = self.size.or(saved.input_size).unwrap_or([360, 480]);
        Ok((saved, size))
    }
}

/// The flags of the examples that predict (`evaluate`, `predict`): test-time augmentation.
#[derive(clap::Args, Debug, Clone)]
pub struct TtaArgs {
    /// Flip test-time augmentation: also run the mirrored image (twice the forward passes)
    #[arg(long)]
    pub flip: bool,
    /// Multi-scale test-time augmentation: run the model on the input rescaled by each of these
    /// factors of --size and sum the logits, e.g. 0.75,1,1.25 (three passes; with --flip, six)
    /// [default: 1]
    #[arg(long, value_name = "LIST")]
    pub scales: Option<squeeze_segnet::TestTimeAugmentation>,
}

impl TtaArgs {
    /// The passes these flags ask for ([`squeeze_segnet::TestTimeAugmentation::default`]: one).
    pub fn tta(&self) -> squeeze_segnet::TestTimeAugmentation {
        self.scales.clone().unwrap_or_default().with_flip(self.flip)
    }
}

/// A CamVid run's training pairs (what `train_camvid` trains on and `average_weights`
/// recomputes batch-norm statistics on): the `splits` of `root` joined in order, less the driving
/// sequence `held_out` (a file-name prefix, e.g. `0006R0`) when one is named, whose pairs are
/// returned second.
///
/// # Errors
/// An empty split name (`--train-splits` names the flag), and the data crate's errors (a missing
/// split, a sequence no image belongs to).
pub fn training_data(
    root: &std::path::Path,
    splits: &[String],
    held_out: Option<&str>,
) -> Result<
    (
        squeeze_segnet_data::SegmentationDataset,
        Option<squeeze_segnet_data::SegmentationDataset>,
    ),
    Box<dyn std::error::Error>,
> {
    use squeeze_segnet_data::{SegmentationDataset, camvid};
    if splits.is_empty() || splits.iter().any(|s| s.is_empty()) {
        return Err(format!(
            "--train-splits: '{}' names an empty split",
            splits.join(",")
        )
        .into());
    }
    let parts = splits
        .iter()
        .map(|s| camvid(root, s))
        .collect::<Result<Vec<_>, _>>()?;
    let train = SegmentationDataset::concat(&parts)?;
    Ok(match held_out {
        Some(prefix) => {
            let (train, held) = train.hold_out(prefix)?;
            (train, Some(held))
        }
        None => (train, None),
    })
}
