//! One trainer per run folder: an exclusive lock on `<run>/.lock`, held while [`Trainer::run`]
//! runs and released by the operating system when the process ends, however it ends (so a
//! killed run leaves no stale lock). Taking the lock also removes the temporary files that a
//! killed run left behind (`*.tmp`, siblings of the files it was writing atomically).
//!
//! [`Trainer::run`]: crate::Trainer::run

use std::fs::{self, File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::TrainError;

/// The lock file's name inside the run folder.
pub const LOCK_FILE: &str = ".lock";

/// A held run-folder lock; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct RunLock {
    _file: File,
}

impl RunLock {
    /// Locks `dir` (creating it), then removes stale temporary files in it and in its
    /// checkpoint folders.
    ///
    /// # Errors
    /// [`TrainError::Locked`] when another process (or another trainer of this one) holds it.
    pub(crate) fn acquire(dir: &Path) -> Result<Self, TrainError> {
        fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| TrainError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(TrainError::Locked(dir.to_path_buf())),
            Err(TryLockError::Error(e)) => return Err(TrainError::io(&path, e)),
        }
        for folder in folders_to_clean(dir) {
            remove_temporaries(&folder)?;
        }
        Ok(Self { _file: file })
    }
}

/// The run folder, its `checkpoints/` and each checkpoint folder in it.
fn folders_to_clean(dir: &Path) -> Vec<PathBuf> {
    let mut folders = vec![dir.to_path_buf()];
    let checkpoints = dir.join("checkpoints");
    if checkpoints.is_dir() {
        folders.push(checkpoints.clone());
        if let Ok(entries) = fs::read_dir(&checkpoints) {
            folders.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
    }
    folders
}

fn remove_temporaries(folder: &Path) -> Result<(), TrainError> {
    let entries = fs::read_dir(folder).map_err(|e| TrainError::io(folder, e))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let is_tmp = path.extension().is_some_and(|e| e == "tmp");
        if is_tmp && path.is_file() {
            fs::remove_file(&path).map_err(|e| TrainError::io(&path, e))?;
        }
    }
    Ok(())
}
