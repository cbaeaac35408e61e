//! Max-pooling with indices and max-unpooling, the two operations SegNet-style decoders are
//! built on, as a Burn backend extension: one implementation for the CPU backends (NdArray and
//! Flex, through the crate's host layer), one for CubeCL (WGPU) and one for Autodiff.
//!
//! ```text
//! SegNetOps (this file)          the extension trait and the Tensor-level functions
//! ├── pool.rs                    PoolOptions, output-size rule, checked max_pool2d_with_indices
//! ├── unpool.rs                  checked max_unpool2d
//! ├── reference.rs               naive host-side reference used by tests and benchmarks
//! ├── cpu.rs                     NdArray and Flex: their storage to the host loops
//! │   ├── cpu/planes.rs          multi-threaded loops over contiguous NCHW planes
//! │   └── cpu/avx2.rs            the AVX2 pooling row kernel (f32, column stride 2)
//! ├── cube.rs                    WGPU (and every CubeCL runtime): #[cube] kernels
//! └── autodiff.rs                Autodiff: hand-written backward passes
//! ```
//!
//! # Semantics (PyTorch's `MaxPool2d(return_indices=True, ceil_mode=True)` and `MaxUnpool2d`)
//!
//! - Pooling has no padding and always uses ceil mode: the output has
//!   `ceil((H - k) / s) + 1` rows, minus one when the last window would start outside the input
//!   (PyTorch's rule). Windows that overhang the bottom/right edge only see the input.
//! - An index is the flat position `h * W + w` of the maximum inside its `H × W` input plane.
//!   Ties go to the first maximum in row-major window order. On the CPU backends NaN propagates
//!   (a NaN is a maximum); WGSL gives shaders no NaN guarantees, so on WGPU it may not.
//! - Unpooling writes each value at its index in a zeroed `output_size` plane. When overlapping
//!   windows make several pooled cells point to the same position, the cell that comes **last** in
//!   row-major order wins (PyTorch's CPU rule), on every backend, GPU included.
//! - Gradients: pooling sends each output gradient to its argmax position (summed where windows
//!   share a maximum); unpooling gathers the output gradient at the indices, for the cells whose
//!   value was written (a cell that lost a collision does not influence the output and gets zero).
//!   Both are exact derivatives of the forward, which the finite-difference tests check.
//!
//! The backend-level trait methods are unchecked: they skip out-of-range indices rather than
//! panic. The public functions [`max_pool2d_with_indices`] and [`max_unpool2d`] validate their
//! arguments and return [`OpError`](crate::OpError).
#![allow(missing_docs)]
// The macro-generated Dispatch items carry no docs.
// NdArray is deprecated by Burn 0.22 in favour of Flex; the crate supports both, and the
// extension macro's generated routing names it. The allowance stays inside `ops`.
#![allow(deprecated)]
// Extension ops take their window geometry as scalar arguments.
#![allow(clippy::too_many_arguments)]

mod autodiff;
mod cpu;
mod cube;
mod pool;
pub mod reference;
mod unpool;

pub use pool::*;
pub use unpool::*;

use burn::backend::{
    Backend, backend_extension,
    tensor::{FloatTensor, IntTensor},
};
use burn::tensor::{DType, IntDType, Shape};

/// Output metadata of the pooling op for the lazy (Fusion) backend.
fn pool_meta(
    x: &burn::backend::fusion::custom::TensorSpec,
    kernel_h: &usize,
    kernel_w: &usize,
    stride_h: &usize,
    stride_w: &usize,
    indices_dtype: &IntDType,
) -> (
    burn::backend::fusion::custom::TensorSpec,
    burn::backend::fusion::custom::TensorSpec,
) {
    use burn::backend::fusion::custom::TensorSpec;
    let out = pooled_shape(&x.shape, [*kernel_h, *kernel_w], [*stride_h, *stride_w]);
    (
        TensorSpec::new(out.clone(), x.dtype),
        TensorSpec::new(out, DType::from(*indices_dtype)),
    )
}

/// `[n, c, out_h, out_w]` from `[n, c, _, _]`.
pub(crate) fn plane_shape(x: &Shape, out_h: &usize, out_w: &usize) -> Shape {
    Shape::new([x[0], x[1], *out_h, *out_w])
}

/// The Squeeze-SegNet backend extension: pooling with indices and unpooling, forward and backward.
///
/// All tensors are NCHW. Indices may be any integer dtype the backend supports (I32 and I64 are
/// tested). Use the checked functions [`max_pool2d_with_indices`] and [`max_unpool2d`] rather than
/// calling these directly.
#[backend_extension(NdArray, Flex, Cube, Fusion, Autodiff)]
pub trait SegNetOps: Backend {
    /// Max-pooling, no padding, ceil mode. Returns the pooled values and, for each, the flat
    /// position `h * W + w` of its maximum in the input plane, as `indices_dtype`.
    ///
    /// `x: [n, c, h, w]` → `([n, c, oh, ow], [n, c, oh, ow])` with `oh, ow` from
    /// [`pooled_len`].
    #[fusion(meta = pool_meta)]
    fn seg_max_pool2d_with_indices(
        x: FloatTensor<Self>,
        kernel_h: usize,
        kernel_w: usize,
        stride_h: usize,
        stride_w: usize,
        indices_dtype: IntDType,
    ) -> (FloatTensor<Self>, IntTensor<Self>);

    /// Gradient of [`seg_max_pool2d_with_indices`](SegNetOps::seg_max_pool2d_with_indices) with
    /// respect to its input: each output gradient is added at its argmax position.
    ///
    /// `grad, indices: [n, c, oh, ow]` → `[n, c, in_h, in_w]`. The window geometry lets GPU
    /// kernels gather instead of scatter (deterministic, no atomics).
    #[fusion(dtype = grad, shape = plane_shape(grad, in_h, in_w))]
    fn seg_max_pool2d_backward(
        grad: FloatTensor<Self>,
        indices: IntTensor<Self>,
        in_h: usize,
        in_w: usize,
        kernel_h: usize,
        kernel_w: usize,
        stride_h: usize,
        stride_w: usize,
    ) -> FloatTensor<Self>;

    /// Max-unpooling: a zeroed `[n, c, out_h, out_w]` tensor where each value of `x` is written at
    /// its index; on collisions the last cell in row-major order wins.
    ///
    /// `x, indices: [n, c, h, w]` → `[n, c, out_h, out_w]`.
    #[fusion(dtype = x, shape = plane_shape(x, out_h, out_w))]
    fn seg_max_unpool2d(
        x: FloatTensor<Self>,
        indices: IntTensor<Self>,
        out_h: usize,
        out_w: usize,
    ) -> FloatTensor<Self>;

    /// Gradient of [`seg_max_unpool2d`](SegNetOps::seg_max_unpool2d) with respect to its values:
    /// `grad` gathered at the indices, zero for cells that lost a collision.
    ///
    /// `grad: [n, c, out_h, out_w]`, `indices: [n, c, h, w]` → `[n, c, h, w]`.
    #[fusion(dtype = grad, shape = indices)]
    fn seg_max_unpool2d_backward(
        grad: FloatTensor<Self>,
        indices: IntTensor<Self>,
    ) -> FloatTensor<Self>;
}
