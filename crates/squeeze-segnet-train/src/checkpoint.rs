//! Checkpoints that survive a kill: each checkpoint is a folder of files written atomically
//! (temporary file, fsync, rename), and a small manifest, `checkpoints/latest.json`, written
//! last, names the one complete checkpoint to resume from.
//!
//! ```text
//! <run>/checkpoints/e0003-b0000/model.bpk   model weights and batch-norm statistics (Burn record)
//!                              /optim.bpk   optimiser state (Burn record: momentum / Adam moments)
//!                              /ema.bpk     moving average of the weights (runs with an EMA)
//!                              /state.json  epoch, batch, step, seed, best score, metric history
//! <run>/checkpoints/latest.json             {"dir": "e0003-b0000", ...}: the commit point
//! ```
//!
//! A kill at any moment leaves either the previous manifest (pointing at a complete, older
//! checkpoint) or the new one (pointing at a complete, newer one). Burn's own checkpointer writes
//! each file atomically but not the set, and keeps no data-order or RNG state; this adds both.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use squeeze_segnet_data::fnv1a;

use crate::TrainError;

/// Everything besides the model and optimiser records needed to continue a run exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Epochs fully done (0-based index of the epoch to run or continue).
    pub epoch: usize,
    /// Batches of epoch `epoch` already done (0 at an epoch boundary).
    pub batch: usize,
    /// Optimiser steps done since the start of the run.
    pub step: usize,
    /// The run's seed: with `epoch` and the sample index it determines the data order and every
    /// augmentation, so no generator state needs saving.
    pub seed: u64,
    /// Sum of the training losses of the batches done in the current epoch.
    pub epoch_loss_sum: f64,
    /// Images seen in the current epoch.
    pub epoch_images: usize,
    /// Best validation class-average accuracy so far, and its epoch (1-based).
    pub best: Option<(f64, usize)>,
    /// One record per finished epoch.
    pub history: Vec<crate::EpochRecord>,
    /// What the run depends on, checked when it resumes (`None` in checkpoints written before
    /// it was recorded).
    #[serde(default)]
    pub depends_on: Option<RunFingerprint>,
}

/// Fingerprints of what a run depends on besides its checkpoint: a resumed run must see the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFingerprint {
    /// The training split: its size and an FNV-1a hash of its image and mask file names, in order.
    pub training_split: String,
    /// An FNV-1a hash of the recipe: the run's `config.json` as written, without `epochs` (which
    /// may grow on resume). Options that a later version adds do not change it.
    pub recipe: String,
}

impl RunFingerprint {
    /// The fingerprint of a run on `train` whose `config.json` holds `config_json`.
    ///
    /// # Errors
    /// [`TrainError::Config`] when `config_json` is not JSON.
    pub fn new(
        config_json: &str,
        train: &squeeze_segnet_data::SegmentationDataset,
    ) -> Result<Self, TrainError> {
        let names = train
            .paths()
            .iter()
            .map(|p| {
                let name = |f: &std::path::Path| {
                    f.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                };
                format!("{} {}", name(&p.image), name(&p.mask))
            })
            .collect::<Vec<_>>()
            .join("\n");
        let mut recipe: serde_json::Value = serde_json::from_str(config_json)
            .map_err(|e| TrainError::Config(format!("config.json: {e}")))?;
        if let Some(o) = recipe.as_object_mut() {
            o.remove("epochs");
        }
        Ok(Self {
            training_split: format!(
                "{} images, fnv1a {:016x}",
                train.len(),
                fnv1a(names.as_bytes())
            ),
            recipe: format!("fnv1a {:016x}", fnv1a(recipe.to_string().as_bytes())),
        })
    }
}

/// The manifest naming the latest complete checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Checkpoint folder, relative to `<run>/checkpoints`.
    pub dir: String,
    /// Its epoch and batch (as in [`TrainState`]).
    pub epoch: usize,
    /// Batches done in `epoch`.
    pub batch: usize,
}

/// Paths of one checkpoint.
#[derive(Debug, Clone)]
pub struct CheckpointFiles {
    /// The checkpoint folder.
    pub dir: PathBuf,
    /// Model record.
    pub model: PathBuf,
    /// Optimiser record.
    pub optim: PathBuf,
    /// The moving average of the weights (only in runs with `ema_decay > 0`).
    pub ema: PathBuf,
    /// The auxiliary head (only in runs with `aux_weight > 0`).
    pub aux: PathBuf,
    /// [`TrainState`] as JSON.
    pub state: PathBuf,
}

impl CheckpointFiles {
    fn in_dir(dir: PathBuf) -> Self {
        Self {
            model: dir.join("model.bpk"),
            optim: dir.join("optim.bpk"),
            ema: dir.join("ema.bpk"),
            aux: dir.join("aux.bpk"),
            state: dir.join("state.json"),
            dir,
        }
    }
}

/// The `checkpoints` folder of a run.
#[derive(Debug, Clone)]
pub struct CheckpointDir {
    root: PathBuf,
    keep: usize,
}

impl CheckpointDir {
    /// The checkpoints of the run in `run_dir`, keeping the newest `keep` (at least 1).
    pub fn new(run_dir: &Path, keep: usize) -> Self {
        Self {
            root: run_dir.join("checkpoints"),
            keep: keep.max(1),
        }
    }

    /// The manifest's path.
    pub fn manifest_path(&self) -> PathBuf {
        self.root.join("latest.json")
    }

    /// Folder for a new checkpoint at `(epoch, batch)`; created empty.
    pub fn prepare(&self, epoch: usize, batch: usize) -> Result<CheckpointFiles, TrainError> {
        let dir = self.root.join(format!("e{epoch:04}-b{batch:05}"));
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
        }
        fs::create_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
        Ok(CheckpointFiles::in_dir(dir))
    }

    /// Writes `state` into `files`, then commits the checkpoint by replacing the manifest, then
    /// removes checkpoints older than the newest `keep`.
    pub fn commit(&self, files: &CheckpointFiles, state: &TrainState) -> Result<(), TrainError> {
        let json = serde_json::to_vec_pretty(state).expect("state serialises");
        write_atomic(&files.state, &json)?;
        let name = files
            .dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("checkpoint folder names are ASCII")
            .to_string();
        let manifest = Manifest {
            dir: name.clone(),
            epoch: state.epoch,
            batch: state.batch,
        };
        write_atomic(
            &self.manifest_path(),
            &serde_json::to_vec_pretty(&manifest).expect("manifest serialises"),
        )?;
        self.prune(&name);
        Ok(())
    }

    /// The latest complete checkpoint, or `None` when no manifest exists.
    pub fn latest(&self) -> Result<Option<(CheckpointFiles, TrainState)>, TrainError> {
        let path = self.manifest_path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(TrainError::io(&path, e)),
        };
        let bad = |reason: String| TrainError::Checkpoint {
            path: path.clone(),
            reason,
        };
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("unreadable manifest: {e}")))?;
        if manifest.dir.contains(['/', '\\']) || manifest.dir.starts_with('.') {
            return Err(bad(format!("bad folder name '{}'", manifest.dir)));
        }
        let files = CheckpointFiles::in_dir(self.root.join(&manifest.dir));
        let bytes = fs::read(&files.state).map_err(|e| TrainError::Checkpoint {
            path: files.state.clone(),
            reason: e.to_string(),
        })?;
        let state: TrainState =
            serde_json::from_slice(&bytes).map_err(|e| TrainError::Checkpoint {
                path: files.state.clone(),
                reason: format!("unreadable state: {e}"),
            })?;
        for f in [&files.model, &files.optim] {
            if !f.is_file() {
                return Err(TrainError::Checkpoint {
                    path: f.clone(),
                    reason: "missing".into(),
                });
            }
        }
        Ok(Some((files, state)))
    }

    /// Removes every checkpoint folder but the newest `keep` (by name, which sorts by epoch and
    /// batch) and the committed one; failures only leave extra files behind.
    fn prune(&self, committed: &str) {
        let Ok(entries) = fs::read_dir(&self.root) else {
            return;
        };
        let mut dirs: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| n.starts_with('e'))
            .collect();
        dirs.sort();
        let cut = dirs.len().saturating_sub(self.keep);
        for name in &dirs[..cut] {
            if name != committed {
                let _ = fs::remove_dir_all(self.root.join(name));
            }
        }
    }
}

/// Writes `bytes` to `path` atomically: a sibling temporary file, fsync, rename, fsync of the
/// folder. A reader sees the old content or the new, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    fault_point(path);
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        TrainError::io(path, e)
    })
}

/// The environment variable of the crash tests' fault injection: `NAME@N` kills the process the
/// `N`-th time it is about to write a file called `NAME` (`best.bpk`, `state.json`, ...), after
/// leaving a half-written temporary sibling, as a kill in the middle of the write would.
pub const FAULT_ENV: &str = "SQUEEZE_SEGNET_FAULT";

/// Dies here (abort: no destructor, no flush, like `kill -9`) when [`FAULT_ENV`] names this write.
pub(crate) fn fault_point(path: &Path) {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static TARGET: std::sync::OnceLock<Option<(String, usize)>> = std::sync::OnceLock::new();
    static SEEN: Mutex<Option<HashMap<String, usize>>> = Mutex::new(None);
    let target = TARGET.get_or_init(|| {
        let v = std::env::var(FAULT_ENV).ok()?;
        let (name, n) = v.rsplit_once('@')?;
        Some((name.to_string(), n.parse().ok()?))
    });
    let Some((name, n)) = target else { return };
    let file = path.file_name().map(|f| f.to_string_lossy().into_owned());
    if file.as_deref() != Some(name.as_str()) {
        return;
    }
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let count = seen
        .get_or_insert_with(HashMap::new)
        .entry(name.clone())
        .or_insert(0);
    *count += 1;
    if *count == *n {
        let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        let _ = fs::write(&tmp, b"half-written");
        eprintln!("{FAULT_ENV}: killed before writing {}", path.display());
        std::process::abort();
    }
}
