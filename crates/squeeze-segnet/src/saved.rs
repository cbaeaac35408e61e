//! A saved model: a weights file and, beside it, the description of its network (`model.json`)
//! and of the run that trained it (`config.json`), as the training crate writes them and as the
//! shipped CamVid weights come.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{SegNetError, SqueezeSegNet, SqueezeSegNetConfig};

/// The network's description beside a weights file.
pub const MODEL_FILE: &str = "model.json";
/// The training run's options beside a weights file (only the size it validated at is read here).
pub const RUN_FILE: &str = "config.json";

/// A weights file with the network it belongs to and the input size it was validated at.
///
/// ```
/// use burn::prelude::*;
/// use squeeze_segnet::SavedModel;
/// let saved = SavedModel::camvid()?;                  // the shipped weights, with their model.json
/// assert_eq!(saved.input_size, Some([360, 480]));     // the size they score best at
/// let model = saved.init(&Device::flex())?.for_inference();
/// # Ok::<(), squeeze_segnet::SegNetError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SavedModel {
    /// The weights: burnpack in any [`crate::Precision`], or `.safetensors` in PyTorch's names.
    pub weights: PathBuf,
    /// The network: [`MODEL_FILE`] beside the weights, else [`SqueezeSegNetConfig::camvid`]
    /// less the optional layers (context, refinement, batch norm) whose tensors the file lacks.
    pub config: SqueezeSegNetConfig,
    /// The input size the run validated at ([`RUN_FILE`]'s `eval_size`, else its `size`), when
    /// that file is beside the weights: the size to run the model at.
    pub input_size: Option<[usize; 2]>,
}

impl SavedModel {
    /// Describes the weights in `path` from the files beside them.
    ///
    /// # Errors
    /// [`SegNetError::Load`] when `path` is not a file; [`SegNetError::ConfigFile`] naming
    /// [`MODEL_FILE`] or [`RUN_FILE`] when one is present but cannot be read or parsed.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, SegNetError> {
        let weights = path.as_ref().to_path_buf();
        if !weights.is_file() {
            return Err(SegNetError::Load {
                path: weights,
                reason: "no such file".into(),
            });
        }
        let dir = weights.parent().unwrap_or(Path::new("")).to_path_buf();
        let model_file = dir.join(MODEL_FILE);
        let config = if model_file.is_file() {
            SqueezeSegNetConfig::load_json(&model_file)?
        } else {
            config_from_tensor_names(&weights)
        };
        let run_file = dir.join(RUN_FILE);
        let input_size = if run_file.is_file() {
            Some(validated_size(&run_file)?)
        } else {
            None
        };
        Ok(Self {
            weights,
            config,
            input_size,
        })
    }

    /// The CamVid weights shipped with this crate ([`crate::camvid_weights_path`]).
    ///
    /// # Errors
    /// As [`SavedModel::open`]: e.g. a packaged crate without its `weights/` folder.
    pub fn camvid() -> Result<Self, SegNetError> {
        Self::open(crate::camvid_weights_path())
    }

    /// The same weights in int8 ([`crate::camvid_int8_weights_path`]).
    ///
    /// # Errors
    /// As [`SavedModel::open`].
    pub fn camvid_int8() -> Result<Self, SegNetError> {
        Self::open(crate::camvid_int8_weights_path())
    }

    /// Builds the network on `device` and loads the weights.
    ///
    /// # Errors
    /// As [`SqueezeSegNet::load`].
    pub fn init(&self, device: &Device) -> Result<SqueezeSegNet, SegNetError> {
        self.config.init(device)?.load(&self.weights)
    }
}

impl SqueezeSegNetConfig {
    /// Reads a network description ([`MODEL_FILE`]), also one written before an option existed:
    /// a missing option takes the value networks had before it (a missing `refine` means no
    /// [`refine`](Self::refine)ment, a missing `context` no [`context`](Self::context)).
    ///
    /// # Errors
    /// [`SegNetError::ConfigFile`] naming the file when it cannot be read or parsed.
    pub fn load_json(path: impl AsRef<Path>) -> Result<Self, SegNetError> {
        load_json_with_defaults(path.as_ref(), &Self::paper_with_batch_norm())
    }
}

/// The network of a weights file without a [`MODEL_FILE`]: [`SqueezeSegNetConfig::camvid`],
/// without the optional layers whose tensors (`context.*`, `refine.*`, `*.norm.*`) the file
/// lacks — weights trained before `camvid()` gained one of them still load. A file whose names
/// cannot be read gets `camvid()`, and loading it reports what is wrong.
fn config_from_tensor_names(weights: &Path) -> SqueezeSegNetConfig {
    let camvid = SqueezeSegNetConfig::camvid();
    let names: Vec<String> = if weights.extension().is_some_and(|e| e == "safetensors") {
        safetensors_names(weights).unwrap_or_default()
    } else {
        burn_pack::Reader::from_file(weights)
            .map(|r| r.tensor_names().into_iter().map(String::from).collect())
            .unwrap_or_default()
    };
    if names.is_empty() {
        return camvid;
    }
    let top_level = |module: &str| names.iter().any(|n| n.starts_with(module));
    camvid
        .with_context(top_level("context."))
        .with_refine(top_level("refine."))
        .with_batch_norm(names.iter().any(|n| n.contains(".norm.")))
}

/// The tensor names of a safetensors file, from its header alone (an 8-byte little-endian
/// length, then that many bytes of JSON): the tensors themselves are read once, when loading.
fn safetensors_names(path: &Path) -> Option<Vec<String>> {
    use std::io::Read;
    // The safetensors crate's own bound on a header.
    const MAX_HEADER: u64 = 100_000_000;
    let mut file = std::fs::File::open(path).ok()?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).ok()?;
    let len = u64::from_le_bytes(len);
    let file_len = file.metadata().ok()?.len();
    if len > MAX_HEADER || len > file_len.saturating_sub(8) {
        return None;
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header).ok()?;
    let entries: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).ok()?;
    Some(
        entries
            .into_iter()
            .map(|(name, _)| name)
            .filter(|name| name != "__metadata__")
            .collect(),
    )
}

/// The `eval_size` (else `size`) of a training run's options file.
fn validated_size(path: &Path) -> Result<[usize; 2], SegNetError> {
    let value = read_json(path)?;
    let size = match value.get("eval_size") {
        Some(v) if !v.is_null() => v,
        _ => value.get("size").ok_or_else(|| SegNetError::ConfigFile {
            path: path.to_path_buf(),
            reason: "it has neither eval_size nor size".into(),
        })?,
    };
    serde_json::from_value(size.clone()).map_err(|e| SegNetError::ConfigFile {
        path: path.to_path_buf(),
        reason: format!("its size {size} is not [height, width]: {e}"),
    })
}

/// Reads a JSON options file, taking every key it lacks (at any depth) from `defaults`: files
/// written before an option existed still load. The training crate reads its run options with it.
///
/// # Errors
/// [`SegNetError::ConfigFile`] naming the file when it cannot be read or does not parse as `C`.
pub fn load_json_with_defaults<C: Serialize + DeserializeOwned>(
    path: &Path,
    defaults: &C,
) -> Result<C, SegNetError> {
    let stored = read_json(path)?;
    serde_json::from_value(json_with_defaults(stored, defaults)).map_err(|e| {
        SegNetError::ConfigFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    })
}

fn read_json(path: &Path) -> Result<serde_json::Value, SegNetError> {
    let error = |reason: String| SegNetError::ConfigFile {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| error(e.to_string()))
}

/// `stored` with every key it lacks (at any depth of nested objects) taken from `defaults`.
pub fn json_with_defaults(
    stored: serde_json::Value,
    defaults: &impl Serialize,
) -> serde_json::Value {
    fn merge(stored: serde_json::Value, defaults: &serde_json::Value) -> serde_json::Value {
        match (stored, defaults) {
            (serde_json::Value::Object(mut s), serde_json::Value::Object(d)) => {
                for (k, dv) in d {
                    let merged = match s.remove(k) {
                        Some(sv) => merge(sv, dv),
                        None => dv.clone(),
                    };
                    s.insert(k.clone(), merged);
                }
                serde_json::Value::Object(s)
            }
            (s, _) => s,
        }
    }
    // Serialising a plain options struct to a JSON value cannot fail; `Null` would only drop
    // the defaults.
    let defaults = serde_json::to_value(defaults).unwrap_or(serde_json::Value::Null);
    merge(stored, &defaults)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ssn-saved-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_model_json_without_refine_is_a_network_without_refinement() {
        let dir = temp_dir("legacy");
        let file = dir.join(MODEL_FILE);
        std::fs::write(
            &file,
            r#"{"num_classes": 5, "input_channels": 3, "batch_norm": true}"#,
        )
        .unwrap();
        let config = SqueezeSegNetConfig::load_json(&file).unwrap();
        assert_eq!(
            config,
            SqueezeSegNetConfig::paper_with_batch_norm()
                .with_num_classes(5)
                .with_refine(false)
        );
        let err = SqueezeSegNetConfig::load_json(dir.join("missing.json")).unwrap_err();
        assert!(err.to_string().contains("missing.json"), "{err}");
        std::fs::write(&file, r#"{"num_classes": "many"}"#).unwrap();
        let err = SqueezeSegNetConfig::load_json(&file).unwrap_err();
        assert!(matches!(err, SegNetError::ConfigFile { .. }), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn open_reads_the_files_beside_the_weights() {
        let dir = temp_dir("open");
        let weights = dir.join("w.bpk");
        assert!(matches!(
            SavedModel::open(&weights),
            Err(SegNetError::Load { .. })
        ));
        std::fs::write(&weights, b"not read by open").unwrap();
        // Alone: the shipped network, no size.
        let alone = SavedModel::open(&weights).unwrap();
        assert_eq!(alone.config, SqueezeSegNetConfig::camvid());
        assert_eq!(alone.input_size, None);
        // With a run's files: its network and its validation size (eval_size over size).
        let paper = SqueezeSegNetConfig::paper().with_num_classes(4);
        std::fs::write(dir.join(MODEL_FILE), paper.to_string()).unwrap();
        std::fs::write(
            dir.join(RUN_FILE),
            r#"{"size": [120, 160], "eval_size": null}"#,
        )
        .unwrap();
        let run = SavedModel::open(&weights).unwrap();
        assert_eq!((run.config, run.input_size), (paper, Some([120, 160])));
        std::fs::write(
            dir.join(RUN_FILE),
            r#"{"size": [120, 160], "eval_size": [90, 120]}"#,
        )
        .unwrap();
        assert_eq!(
            SavedModel::open(&weights).unwrap().input_size,
            Some([90, 120])
        );
        std::fs::write(dir.join(RUN_FILE), r#"{"size": "big"}"#).unwrap();
        let err = SavedModel::open(&weights).unwrap_err();
        assert!(err.to_string().contains(RUN_FILE), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn weights_alone_are_read_as_the_network_their_tensors_belong_to() {
        let dir = temp_dir("names");
        let device = Device::flex();
        for (i, config) in [
            SqueezeSegNetConfig::camvid(),
            SqueezeSegNetConfig::camvid().with_context(false),
            SqueezeSegNetConfig::paper_with_batch_norm(),
            SqueezeSegNetConfig::paper(),
        ]
        .into_iter()
        .enumerate()
        {
            let model = config.init(&device).unwrap();
            for path in [
                model.save(dir.join(format!("w{i}.bpk"))).unwrap(),
                model
                    .save_pytorch(dir.join(format!("w{i}.safetensors")))
                    .unwrap(),
            ] {
                let saved = SavedModel::open(&path).unwrap();
                assert_eq!(saved.config, config, "{}", path.display());
                saved.init(&device).unwrap();
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn defaults_fill_nested_keys_and_keep_stored_ones() {
        let stored = serde_json::json!({"a": 1, "inner": {"x": 5}});
        let defaults = serde_json::json!({"a": 0, "b": 2, "inner": {"x": 0, "y": 3}});
        assert_eq!(
            json_with_defaults(stored, &defaults),
            serde_json::json!({"a": 1, "b": 2, "inner": {"x": 5, "y": 3}})
        );
    }
}
