//! Storage precision of a weights file: the convolution weights (every 4-D tensor, 2.72 M of the
//! CamVid network's 2.75 M values) stored as f32, f16 or int8; biases and batch-norm values stay
//! f32. The network always runs in f32: a reduced file is decoded on the host at load time
//! ([`SqueezeSegNet::load`]), so every backend and the fused CPU path serve it unchanged.
//!
//! int8 is symmetric and per row of the first dimension (output channels for the convolutions,
//! input channels for the transposed one): for a 4-D weight `w` of shape `[r, …]`, each row
//! `w[i]` keeps `s_i = max|w[i]| / 127` (f32) and `q = round(w / s_i)` in `[-127, 127]` (one
//! byte each), and loads as `q · s_i`. In the burnpack file the int8 tensor keeps the parameter's
//! name and its scales sit beside it as `<name>:scale` (`[r]`, f32); the file's metadata
//! `precision` names the format.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use burn::module::Module;
use burn::tensor::{Bytes, DType, TensorData};
use burn_pack::{Reader, Tensor as PackTensor, Writer};

use crate::{SegNetError, SqueezeSegNet};

/// The metadata key of a weights file that names its [`Precision`].
pub const PRECISION_KEY: &str = "precision";
const SCALE_SUFFIX: &str = ":scale";

/// How a weights file stores the convolution weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// 4 bytes a value (Burn's record as it is). Default.
    #[default]
    F32,
    /// 2 bytes a value (IEEE half precision): about half the file.
    F16,
    /// 1 byte a value, one f32 scale per output row: about a quarter of the file.
    Int8,
}

impl Precision {
    /// Every precision, smallest file last.
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::F16, Precision::Int8];

    /// `f32`, `f16` or `int8`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Int8 => "int8",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = SegNetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Precision::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| SegNetError::Config(format!("unknown precision '{s}' (f32, f16, int8)")))
    }
}

impl SqueezeSegNet {
    /// Writes the weights to `path` (atomically, `.bpk` appended when `path` has no extension;
    /// a `.safetensors` name is refused) with the convolution weights stored in `precision`; [`SqueezeSegNet::load`] reads every
    /// precision back. Returns the path written.
    ///
    /// # Errors
    /// [`SegNetError::Save`] naming the file, or a weight that `precision` cannot store (not
    /// finite, or beyond f16's range).
    pub fn save_as(
        &self,
        path: impl AsRef<Path>,
        precision: Precision,
    ) -> Result<PathBuf, SegNetError> {
        let path = crate::weights::burnpack_path(path.as_ref())?;
        let save_err = |reason: String| SegNetError::Save {
            path: path.clone(),
            reason,
        };
        let bytes = self
            .valid()
            .into_record()
            .into_bytes()
            .map_err(|e| save_err(e.to_string()))?;
        let tensors = Reader::from_bytes(bytes)
            .and_then(Reader::into_tensors)
            .map_err(|e| save_err(e.to_string()))?;
        let mut out = Vec::with_capacity(tensors.len() * 2);
        for tensor in tensors {
            out.extend(encode(tensor, precision).map_err(save_err)?);
        }
        Writer::new(out)
            .with_metadata(PRECISION_KEY, precision.name())
            .overwrite(true)
            .write_to_file(&path)
            .map_err(|e| save_err(e.to_string()))?;
        Ok(path)
    }
}

/// The precision of the weights file at `path`, from its metadata (a file without it — any
/// record Burn writes — is reported f32; `load` still decodes whatever float dtype it holds).
///
/// # Errors
/// [`SegNetError::Load`] when the file is missing or not a burnpack file, or names an unknown
/// precision.
pub fn weights_precision(path: impl AsRef<Path>) -> Result<Precision, SegNetError> {
    let path = path.as_ref();
    let reader = Reader::from_file(path).map_err(|e| SegNetError::Load {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    precision_of(&reader).map_err(|reason| SegNetError::Load {
        path: path.to_path_buf(),
        reason,
    })
}

fn precision_of(reader: &Reader) -> Result<Precision, String> {
    match reader.metadata().get(PRECISION_KEY) {
        None => Ok(Precision::F32),
        Some(name) => Precision::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| format!("unknown precision '{name}' in its metadata")),
    }
}

/// Record path → shape of every float parameter and statistic of `model` (without initialising
/// lazy parameters).
pub(crate) fn expected_tensors(model: &SqueezeSegNet) -> HashMap<String, Vec<usize>> {
    let mut found = HashMap::new();
    crate::visit_float_params(model, |path, shape, _| {
        found.insert(path.to_string(), shape.to_vec());
    });
    found
}

/// The file's tensors, checked and decoded to f32, as a burnpack image (what
/// [`burn::store::ModuleRecord::from_bytes`] reads). Every file goes through here, f32 ones too:
/// each tensor must be one of `expected` (a parameter of the network, by record path and shape)
/// before its data is read, so a file cannot make the load allocate more than the network, and
/// its dtype and byte length must be right, since Burn's record loader panics on a wrong dtype.
pub(crate) fn decode_to_f32(
    path: &Path,
    expected: &HashMap<String, Vec<usize>>,
) -> Result<Bytes, SegNetError> {
    let load_err = |reason: String| SegNetError::Load {
        path: path.to_path_buf(),
        reason,
    };
    let mismatch = |reason: String| SegNetError::WeightsMismatch {
        path: path.to_path_buf(),
        reason,
    };
    let reader = Reader::from_file(path).map_err(|e| load_err(e.to_string()))?;
    precision_of(&reader).map_err(load_err)?;
    let tensors = reader.into_tensors().map_err(|e| load_err(e.to_string()))?;
    let mut scales = HashMap::new();
    let mut values = Vec::new();
    for tensor in tensors {
        let (owner, is_scale) = match tensor.name.strip_suffix(SCALE_SUFFIX) {
            Some(owner) => (owner.to_string(), true),
            None => (tensor.name.clone(), false),
        };
        let Some(shape) = expected.get(&owner) else {
            return Err(mismatch(format!(
                "tensor '{}' belongs to no parameter of this network",
                tensor.name
            )));
        };
        if is_scale {
            scales.insert(owner, tensor);
        } else if *tensor.shape != shape[..] {
            return Err(mismatch(format!(
                "tensor '{owner}' has shape {:?}, the network needs {shape:?}",
                &*tensor.shape
            )));
        } else {
            values.push(tensor);
        }
    }
    let mut out = Vec::with_capacity(values.len());
    for tensor in values {
        let scale = scales.remove(&tensor.name);
        out.push(decode(tensor, scale).map_err(load_err)?);
    }
    if let Some(name) = scales.keys().next() {
        return Err(load_err(format!(
            "tensor '{name}{SCALE_SUFFIX}' scales no int8 tensor"
        )));
    }
    Writer::new(out)
        .into_bytes()
        .map_err(|e| load_err(e.to_string()))
}

/// One record tensor in `precision`: itself, or a reduced copy (and its scales).
fn encode(tensor: PackTensor, precision: Precision) -> Result<Vec<PackTensor>, String> {
    let reduce = tensor.dtype == DType::F32 && tensor.shape.num_dims() == 4;
    if precision == Precision::F32 || !reduce {
        return Ok(vec![tensor]);
    }
    let (name, _, shape, id, bytes) = tensor.into_parts().map_err(|e| e.to_string())?;
    let values: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
    // f16 holds magnitudes up to 65504; int8 scales need finite rows.
    let limit = if precision == Precision::F16 {
        65504.0
    } else {
        f32::MAX
    };
    if let Some(bad) = values.iter().find(|v| !(v.abs() <= limit)) {
        return Err(format!(
            "tensor '{name}' holds {bad}, which {precision} cannot store"
        ));
    }
    match precision {
        Precision::F32 => unreachable!("returned above"),
        Precision::F16 => {
            let data = TensorData::new(values, shape.clone())
                .try_cast(DType::F16)
                .map_err(|e| format!("tensor '{name}': {e:?}"))?;
            Ok(vec![PackTensor::new(
                name,
                DType::F16,
                shape,
                id,
                data.into_bytes(),
            )])
        }
        Precision::Int8 => {
            let rows = shape[0];
            let (q, s) = quantize_rows(&values, rows);
            let scale_name = format!("{name}{SCALE_SUFFIX}");
            Ok(vec![
                PackTensor::new(name, DType::I8, shape, id, Bytes::from_elems(q)),
                PackTensor::new(scale_name, DType::F32, [rows], None, Bytes::from_elems(s)),
            ])
        }
    }
}

/// One file tensor back in f32, with the scales of an int8 one.
fn decode(tensor: PackTensor, scale: Option<PackTensor>) -> Result<PackTensor, String> {
    let (name, dtype, shape, id, bytes) = tensor.into_parts().map_err(|e| e.to_string())?;
    let expected = shape
        .iter()
        .try_fold(dtype.size(), |n, &d| n.checked_mul(d));
    if !matches!(dtype, DType::QFloat(_)) && expected != Some(bytes.len()) {
        return Err(format!(
            "tensor '{name}' holds {} bytes, not what its shape {:?} and dtype {dtype:?} need",
            bytes.len(),
            &*shape
        ));
    }
    let values: Vec<f32> = match (dtype, scale) {
        (DType::F32, None) => return Ok(PackTensor::new(name, dtype, shape, id, bytes)),
        (DType::F16 | DType::BF16 | DType::F64, None) => {
            TensorData::try_from_bytes(bytes, shape.clone(), dtype)
                .and_then(|d| d.try_cast(DType::F32))
                .and_then(|d| d.try_into_vec::<f32>())
                .map_err(|e| format!("tensor '{name}': {e:?}"))?
        }
        (DType::I8, Some(scale)) => {
            let (_, sdtype, sshape, _, sbytes) = scale.into_parts().map_err(|e| e.to_string())?;
            let rows = shape.first().copied().unwrap_or(0);
            if sdtype != DType::F32 || *sshape != [rows] || sbytes.len() != rows * 4 {
                return Err(format!(
                    "tensor '{name}{SCALE_SUFFIX}' must be {rows} f32 values, found {sdtype:?} {:?}",
                    &*sshape
                ));
            }
            let scales: Vec<f32> = bytemuck::pod_collect_to_vec(&sbytes);
            if let Some(bad) = scales.iter().find(|s| !(s.is_finite() && **s >= 0.0)) {
                return Err(format!("tensor '{name}' has a bad int8 scale {bad}"));
            }
            let q: &[i8] = bytemuck::cast_slice(&bytes);
            dequantize_rows(q, &scales)
        }
        (DType::I8, None) => return Err(format!("int8 tensor '{name}' has no scales")),
        (_, Some(_)) => {
            return Err(format!(
                "tensor '{name}{SCALE_SUFFIX}' scales a {dtype:?} tensor, not an int8 one"
            ));
        }
        (other, _) => {
            return Err(format!(
                "tensor '{name}' has dtype {other:?}, not a float or int8"
            ));
        }
    };
    Ok(PackTensor::new(
        name,
        DType::F32,
        shape,
        id,
        Bytes::from_elems(values),
    ))
}

/// Symmetric int8 per row of `values` (`rows` equal rows, `rows` dividing `values.len()`): the
/// codes and each row's scale.
pub(crate) fn quantize_rows(values: &[f32], rows: usize) -> (Vec<i8>, Vec<f32>) {
    let per_row = values.len() / rows.max(1);
    let mut codes = Vec::with_capacity(values.len());
    let mut scales = Vec::with_capacity(rows);
    for row in values.chunks(per_row.max(1)) {
        let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        scales.push(scale);
        codes.extend(
            row.iter()
                .map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8),
        );
    }
    (codes, scales)
}

/// The f32 values of int8 `codes` with one scale per row (`scales.len()` dividing
/// `codes.len()`, as checked by the caller).
pub(crate) fn dequantize_rows(codes: &[i8], scales: &[f32]) -> Vec<f32> {
    let per_row = codes.len() / scales.len().max(1);
    codes
        .chunks(per_row.max(1))
        .zip(scales)
        .flat_map(|(row, s)| row.iter().map(move |&q| q as f32 * s))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_rows_round_trip_within_half_a_step() {
        let values: Vec<f32> = (0..24)
            .map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.013)
            .collect();
        let (q, s) = quantize_rows(&values, 3);
        assert_eq!((q.len(), s.len()), (24, 3));
        for (row, scale) in values.chunks(8).zip(&s) {
            let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!((scale - max / 127.0).abs() < 1e-9);
        }
        let back = dequantize_rows(&q, &s);
        for i in 0..24 {
            assert!(
                (back[i] - values[i]).abs() <= s[i / 8] / 2.0 + 1e-7,
                "{i}: {} vs {}",
                back[i],
                values[i]
            );
        }
        // The largest magnitude of each row is exact up to rounding of the scale.
        assert!(q.iter().any(|&c| c == 127 || c == -127));
    }

    #[test]
    fn an_all_zero_row_stays_zero() {
        let (q, s) = quantize_rows(&[0.0; 6], 2);
        assert_eq!(q, vec![0; 6]);
        assert_eq!(dequantize_rows(&q, &s), vec![0.0; 6]);
    }

    #[test]
    fn precisions_parse_by_name() {
        for p in Precision::ALL {
            assert_eq!(p.name().parse::<Precision>().unwrap(), p);
        }
        assert!("int4".parse::<Precision>().is_err());
    }
}
