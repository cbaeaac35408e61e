//! Weights in PyTorch's names, as safetensors: what `benches/peers/squeeze_segnet.py` (the same
//! network in PyTorch) loads with `load_state_dict(..., strict=True)`, and what it saves with
//! `safetensors.torch.save_file(model.state_dict(), ...)` loads here.
//!
//! The names are this crate's module paths (`fire2.squeeze.conv.weight`, `deconv1.bias`, ...)
//! with PyTorch's batch-norm names: `norm.weight` / `norm.bias` for Burn's `gamma` / `beta`, and
//! a `norm.num_batches_tracked` (int64, 0-D) per batch norm, which PyTorch's state dict holds and
//! Burn has no use for. Every tensor has PyTorch's layout already (convolutions
//! `[out, in, kh, kw]`, the transposed convolution `[in, out, kh, kw]`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::prelude::*;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::params::FloatTensors;
use crate::{SegNetError, SqueezeSegNet};

const TRACKED: &str = "num_batches_tracked";

/// PyTorch's name of the parameter at Burn module path `path`.
fn pytorch_name(path: &str) -> String {
    match path.rsplit_once('.') {
        Some((owner, "gamma")) if owner.ends_with("norm") => format!("{owner}.weight"),
        Some((owner, "beta")) if owner.ends_with("norm") => format!("{owner}.bias"),
        _ => path.to_string(),
    }
}

impl SqueezeSegNet {
    /// Writes the weights as safetensors in PyTorch's names (see the [module docs](self)),
    /// atomically (`.safetensors` appended when `path` has no extension). Returns the path
    /// written.
    ///
    /// # Errors
    /// [`SegNetError::Save`] naming the file, also when it has another extension than
    /// `.safetensors` (which `load` would not read as safetensors).
    pub fn save_pytorch(&self, path: impl AsRef<Path>) -> Result<PathBuf, SegNetError> {
        let path = path.as_ref();
        let path = match path.extension() {
            None => path.with_extension("safetensors"),
            Some(e) if e == "safetensors" => path.to_path_buf(),
            Some(_) => {
                return Err(SegNetError::Save {
                    path: path.to_path_buf(),
                    reason: "safetensors files are named .safetensors".into(),
                });
            }
        };
        let save_err = |reason: String| SegNetError::Save {
            path: path.clone(),
            reason,
        };
        let mut found = Vec::new();
        crate::visit_float_params(&self.valid(), |path, shape, value| {
            let values = value().into_data().convert::<f32>().try_to_vec::<f32>();
            found.push((
                pytorch_name(path),
                shape.to_vec(),
                values.unwrap_or_default(),
            ));
        });
        let mut bytes: BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)> = BTreeMap::new();
        for (name, shape, values) in found {
            if let Some(owner) = name.strip_suffix(".running_mean") {
                bytes.insert(
                    format!("{owner}.{TRACKED}"),
                    (Dtype::I64, vec![], 0i64.to_le_bytes().to_vec()),
                );
            }
            let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            bytes.insert(name, (Dtype::F32, shape, data));
        }
        let views = bytes
            .iter()
            .map(|(name, (dtype, shape, data))| {
                TensorView::new(*dtype, shape.clone(), data).map(|v| (name.clone(), v))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| save_err(e.to_string()))?;
        let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
        let buffer =
            safetensors::serialize(views, Some(metadata)).map_err(|e| save_err(e.to_string()))?;
        // Burn's atomic write: a scratch file beside `path`, synced, then renamed over it.
        let (scratch, mut file) =
            burn_pack::AtomicFile::create(&path).map_err(|e| save_err(e.to_string()))?;
        std::io::Write::write_all(&mut file, &buffer)
            .and_then(|()| file.sync_all())
            .map_err(|e| save_err(e.to_string()))?;
        drop(file);
        scratch.commit().map_err(|e| save_err(e.to_string()))?;
        Ok(path)
    }

    /// Replaces this network's weights by those of a safetensors file in PyTorch's names (see
    /// the [module docs](self)): every parameter must be there with its shape, as f32, f16,
    /// bf16 or f64; `num_batches_tracked` entries are ignored; any other name is an error.
    ///
    /// # Errors
    /// [`SegNetError::Load`] when the file cannot be read or is not safetensors;
    /// [`SegNetError::WeightsMismatch`] naming the first tensor that is missing, unexpected,
    /// of another shape or of a non-float dtype.
    pub(crate) fn load_pytorch(self, path: impl AsRef<Path>) -> Result<Self, SegNetError> {
        let path = path.as_ref().to_path_buf();
        read_safetensors(&path, |file| self.load_pytorch_from(&path, file))
    }

    fn load_pytorch_from(self, path: &Path, file: &SafeTensors<'_>) -> Result<Self, SegNetError> {
        let path = path.to_path_buf();
        let mismatch = |reason: String| SegNetError::WeightsMismatch {
            path: path.clone(),
            reason,
        };
        // The network's parameters by record path and shape (the same list `load` checks
        // burnpack files against), in a fixed order so the first mismatch named is stable.
        let mut expected: Vec<(String, Vec<usize>)> = crate::precision::expected_tensors(&self)
            .into_iter()
            .collect();
        expected.sort_by_cached_key(|(record_path, _)| pytorch_name(record_path));
        let device = self.conv1.conv.weight.lazy_device();
        let mut values = FloatTensors::new();
        let mut names = HashSet::new();
        for (record_path, shape) in expected {
            let name = pytorch_name(&record_path);
            let view = file
                .tensor(&name)
                .map_err(|_| mismatch(format!("tensor '{name}' is missing")))?;
            if view.shape() != shape.as_slice() {
                return Err(mismatch(format!(
                    "tensor '{name}' has shape {:?}, the network needs {shape:?}",
                    view.shape()
                )));
            }
            let data = to_f32(&name, &view).map_err(&mismatch)?;
            let len = data.len();
            let tensor = Tensor::from_data(TensorData::new(data, [len]), &device);
            values.insert(record_path, (shape, tensor));
            names.insert(name);
        }
        if let Some(extra) = file
            .names()
            .into_iter()
            .find(|n| !names.contains(*n) && !n.ends_with(&format!(".{TRACKED}")))
        {
            return Err(mismatch(format!(
                "tensor '{extra}' belongs to no parameter of this network"
            )));
        }
        crate::params::assign_float_params(self, values).map_err(mismatch)
    }
}

/// Reads the safetensors file `path` and hands it to `f`.
///
/// # Errors
/// [`SegNetError::Load`] naming the file when it cannot be read or is not safetensors; what `f`
/// returns.
pub(crate) fn read_safetensors<R>(
    path: &Path,
    f: impl FnOnce(&SafeTensors<'_>) -> Result<R, SegNetError>,
) -> Result<R, SegNetError> {
    let load_err = |reason: String| SegNetError::Load {
        path: path.to_path_buf(),
        reason,
    };
    let buffer = std::fs::read(path).map_err(|e| load_err(e.to_string()))?;
    let file = SafeTensors::deserialize(&buffer)
        .map_err(|e| load_err(format!("not a safetensors file: {e}")))?;
    f(&file)
}

/// A safetensors tensor's values as f32.
pub(crate) fn to_f32(name: &str, view: &TensorView<'_>) -> Result<Vec<f32>, String> {
    let data = view.data();
    let values = match view.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|b| burn::tensor::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|b| burn::tensor::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        other => return Err(format!("tensor '{name}' has dtype {other:?}, not a float")),
    };
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::pytorch_name;

    #[test]
    fn batch_norm_takes_pytorch_names_and_nothing_else_changes() {
        assert_eq!(
            pytorch_name("fire2.squeeze.norm.gamma"),
            "fire2.squeeze.norm.weight"
        );
        assert_eq!(
            pytorch_name("fire2.squeeze.norm.beta"),
            "fire2.squeeze.norm.bias"
        );
        assert_eq!(
            pytorch_name("fire2.squeeze.norm.running_var"),
            "fire2.squeeze.norm.running_var"
        );
        assert_eq!(
            pytorch_name("fire2.squeeze.conv.weight"),
            "fire2.squeeze.conv.weight"
        );
        assert_eq!(pytorch_name("deconv1.bias"), "deconv1.bias");
    }
}
