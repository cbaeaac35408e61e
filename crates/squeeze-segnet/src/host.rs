//! The host-storage layer the CPU kernels share (pooling in `ops/cpu.rs`, the fused
//! convolutions in `fused/cpu.rs`): NdArray's and Flex's storage read in place, without a copy
//! (shared tensors included, as long as they are contiguous; other views go through
//! `TensorData`), the float element types the kernels run on, and one dispatch from a runtime
//! dtype to a Rust type.
#![allow(deprecated)] // burn::backend::NdArray: deprecated in Burn 0.22, supported on request.

use burn::backend::{
    Backend, Flex, NdArray, TensorMetadata,
    tensor::{FloatTensor, IntTensor},
};
use burn::tensor::{DType, Shape, TensorData, read_sync};
use burn_ndarray::NdArrayTensor;

/// Float element types the CPU kernels run on.
pub(crate) trait HostFloat:
    burn::tensor::Element
    + PartialOrd
    + Send
    + Sync
    + 'static
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
{
    /// Zero, whose bits are all zero (f32's and f64's `+0.0`: buffers are zeroed by memset).
    const ZERO: Self;
    const ONE: Self;
    fn add(self, other: Self) -> Self;
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
    /// The same slice as `f32`, for the hand-vectorised kernels (`None` for f64).
    fn as_f32(s: &[Self]) -> Option<&[f32]>;
    fn as_f32_mut(s: &mut [Self]) -> Option<&mut [f32]>;
}

impl HostFloat for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn add(self, other: Self) -> Self {
        self + other
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn as_f32(s: &[Self]) -> Option<&[f32]> {
        Some(s)
    }
    fn as_f32_mut(s: &mut [Self]) -> Option<&mut [f32]> {
        Some(s)
    }
}

impl HostFloat for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn add(self, other: Self) -> Self {
        self + other
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(v: f64) -> Self {
        v
    }
    fn as_f32(_: &[Self]) -> Option<&[f32]> {
        None
    }
    fn as_f32_mut(_: &mut [Self]) -> Option<&mut [f32]> {
        None
    }
}

/// Indices as they arrive: borrowed I32/I64 storage or a converted copy.
pub(crate) enum HostIndices<'a> {
    I32(&'a [i32]),
    I64(&'a [i64]),
}

impl HostIndices<'_> {
    #[inline(always)]
    pub(crate) fn get(&self, i: usize) -> i64 {
        match self {
            HostIndices::I32(s) => s[i] as i64,
            HostIndices::I64(s) => s[i],
        }
    }
}

/// Runs `f` on the indices of `data`: its I32 or I64 storage in place, other dtypes converted.
pub(crate) fn with_indices<R>(data: &HostData, f: impl FnOnce(HostIndices<'_>) -> R) -> R {
    match data.dtype() {
        DType::I32 => f(HostIndices::I32(
            data.as_slice::<i32>().expect("i32 storage"),
        )),
        DType::I64 => f(HostIndices::I64(
            data.as_slice::<i64>().expect("i64 storage"),
        )),
        _ => {
            let converted = data.to_data().convert::<i64>();
            f(HostIndices::I64(
                converted.as_slice::<i64>().expect("i64 storage"),
            ))
        }
    }
}

/// A CPU tensor's contiguous storage as the kernels read it: the backend's own buffer, borrowed
/// without a copy (even when the tensor is shared, as weights are), or the tensor's `TensorData`
/// for views that are not contiguous.
pub(crate) enum HostData {
    Flex(FloatTensor<Flex>),
    NdArray(NdArrayTensor),
    Data(TensorData),
}

/// The contiguous row-major storage of an NdArray tensor, as bytes.
fn ndarray_bytes(x: &NdArrayTensor) -> Option<&[u8]> {
    match x {
        NdArrayTensor::F32(s) => s.view().to_slice().map(bytemuck::cast_slice),
        NdArrayTensor::F64(s) => s.view().to_slice().map(bytemuck::cast_slice),
        NdArrayTensor::I32(s) => s.view().to_slice().map(bytemuck::cast_slice),
        NdArrayTensor::I64(s) => s.view().to_slice().map(bytemuck::cast_slice),
        _ => None,
    }
}

impl HostData {
    pub(crate) fn dtype(&self) -> DType {
        match self {
            HostData::Flex(x) => x.dtype(),
            HostData::NdArray(x) => x.dtype(),
            HostData::Data(d) => d.dtype(),
        }
    }

    pub(crate) fn shape(&self) -> Shape {
        match self {
            HostData::Flex(x) => x.shape(),
            HostData::NdArray(x) => x.shape(),
            HostData::Data(d) => d.shape().clone(),
        }
    }

    pub(crate) fn as_slice<E: burn::tensor::Element + bytemuck::Pod>(&self) -> Option<&[E]> {
        match self {
            HostData::Flex(x) => x.as_slice::<E>(),
            HostData::NdArray(x) => (E::dtype() == x.dtype())
                .then(|| ndarray_bytes(x))
                .flatten()
                .map(bytemuck::cast_slice),
            HostData::Data(d) => d.as_slice::<E>().ok(),
        }
    }

    pub(crate) fn to_data(&self) -> TensorData {
        match self {
            HostData::Flex(x) => x.clone().into_data(),
            HostData::NdArray(x) if x.dtype().is_float() => float_data::<NdArray>(x.clone()),
            HostData::NdArray(x) => int_data::<NdArray>(x.clone()),
            HostData::Data(d) => d.clone(),
        }
    }
}

/// How a CPU backend hands its tensors to the kernels. Implementing it gives a backend the
/// extension ops' host kernels (`SegNetOps` in `ops/cpu.rs`, `FusedConvOps` in `fused/cpu.rs`).
pub(crate) trait HostBackend: Backend {
    fn float_host(x: FloatTensor<Self>) -> HostData;
    fn int_host(x: IntTensor<Self>) -> HostData;
}

impl HostBackend for Flex {
    fn float_host(x: FloatTensor<Self>) -> HostData {
        flex_host(x)
    }
    fn int_host(x: IntTensor<Self>) -> HostData {
        flex_host(x)
    }
}

fn flex_host(x: FloatTensor<Flex>) -> HostData {
    if x.layout().contiguous_offsets().is_some() {
        HostData::Flex(x)
    } else {
        HostData::Data(x.into_data())
    }
}

impl HostBackend for NdArray {
    fn float_host(x: FloatTensor<Self>) -> HostData {
        if ndarray_bytes(&x).is_some() {
            HostData::NdArray(x)
        } else {
            HostData::Data(float_data::<Self>(x))
        }
    }
    fn int_host(x: IntTensor<Self>) -> HostData {
        if ndarray_bytes(&x).is_some() {
            HostData::NdArray(x)
        } else {
            HostData::Data(int_data::<Self>(x))
        }
    }
}

fn float_data<B: Backend>(x: FloatTensor<B>) -> TensorData {
    read_sync(B::float_into_data(x)).expect("reading a CPU tensor cannot fail")
}

fn int_data<B: Backend>(x: IntTensor<B>) -> TensorData {
    read_sync(B::int_into_data(x)).expect("reading a CPU tensor cannot fail")
}

/// The four dimensions of an NCHW shape.
pub(crate) fn dims4(shape: &Shape) -> [usize; 4] {
    [shape[0], shape[1], shape[2], shape[3]]
}

/// The float storage of `data` as `T` (which [`with_float_type`] picked from its dtype).
pub(crate) fn float_slice<T: HostFloat + bytemuck::Pod>(data: &HostData) -> &[T] {
    data.as_slice::<T>()
        .expect("with_float_type picks T from the storage's own dtype")
}

/// Runs `$body` with `$t` the Rust type of `$data`'s float dtype, f32 or f64. Other dtypes
/// panic naming the op: the checked API reports them first ([`crate::OpError::UnsupportedDType`])
/// and the fused path is only entered with f32 or f64 ([`crate::fused::applies`]).
macro_rules! with_float_type {
    ($op:expr, $data:expr, |$t:ident| $body:expr) => {
        match $data.dtype() {
            burn::tensor::DType::F32 => {
                type $t = f32;
                $body
            }
            burn::tensor::DType::F64 => {
                type $t = f64;
                $body
            }
            other => panic!("{}: the CPU kernels run f32 and f64, not {other:?}", $op),
        }
    };
}
pub(crate) use with_float_type;

/// A vector of `len` elements computed in parallel, `chunk` at a time, without zeroing it first:
/// `fill(i, dst)` must write every element of chunk `i` (`dst`, elements `i·chunk..` of the
/// result; the last chunk may be shorter). For outputs that a kernel overwrites whole, where a
/// `vec![0; len]` would be one more pass over memory.
pub(crate) fn par_fill<T: Send>(
    len: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [std::mem::MaybeUninit<T>]) + Sync + Send,
) -> Vec<T> {
    use rayon::prelude::*;
    let mut out = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk.max(1))
        .enumerate()
        .for_each(|(i, dst)| fill(i, dst));
    // SAFETY: `fill` wrote every element of every chunk, and the chunks cover `0..len`.
    unsafe { out.set_len(len) };
    out
}
