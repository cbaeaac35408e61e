//! CubeCL kernels for the `Cube` backend: WGPU (Vulkan, Metal, DX12, WebGPU, or Mesa's software
//! Vulkan on a CPU), and any other CubeCL runtime Burn is built with.
//!
//! - pooling: one thread per output cell scans its window;
//! - pooling backward: one thread per *input* position gathers the gradients of the (at most
//!   `ceil(k/s)²`) windows that contain it, in row-major order, so sums are deterministic and
//!   need no float atomics;
//! - unpooling: the indices carry no window geometry, so collisions are settled in two passes:
//!   an atomic max records the last cell that names each output position, then one thread per
//!   output position gathers its winner's value (deterministic "last wins", like the CPU);
//! - unpooling backward: the same winner pass, then one thread per cell gathers its gradient.

// The #[cube] DSL has no `div_ceil` and no usable scalar `is_nan` for generic floats:
// `v != v` is the NaN test (shader compilers may still fold it; see the ops docs).
#![allow(clippy::manual_div_ceil, clippy::eq_op)]

use burn::backend::cubecl::dtype_to_storage_type;
use burn::backend::{
    TensorMetadata,
    tensor::{FloatTensor, IntTensor},
};
use burn::cubecl;
use burn::tensor::{DType, IntDType, Shape};
use burn_cubecl::{
    CubeBackend,
    kernel::into_contiguous,
    ops::numeric::{empty_device_dtype, zeros_client},
    tensor::CubeTensor,
};
use cubecl::prelude::*;
use cubecl::{CubeDim, calculate_cube_count_elemwise};

use super::{SegNetOps, pooled_shape};
use crate::host::dims4;

#[cube(launch)]
fn pool_kernel<F: Float, I: Int>(
    x: &Tensor<F>,
    values: &mut Tensor<F>,
    indices: &mut Tensor<I>,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    if ABSOLUTE_POS >= values.len() {
        terminate!();
    }
    let plane = ABSOLUTE_POS / (oh * ow);
    let cell = ABSOLUTE_POS % (oh * ow);
    let y0 = (cell / ow) * sh;
    let x0 = (cell % ow) * sw;
    let mut y1 = y0 + kh;
    if y1 > h {
        y1 = h;
    }
    let mut x1 = x0 + kw;
    if x1 > w {
        x1 = w;
    }
    let base = plane * h * w;
    let mut best = x[base + y0 * w + x0];
    let mut best_index = y0 * w + x0;
    for y in y0..y1 {
        for xx in x0..x1 {
            let v = x[base + y * w + xx];
            if v > best || v != v {
                best = v;
                best_index = y * w + xx;
            }
        }
    }
    values[ABSOLUTE_POS] = best;
    indices[ABSOLUTE_POS] = I::cast_from(best_index);
}

#[cube(launch)]
fn pool_backward_kernel<F: Float, I: Int>(
    grad: &Tensor<F>,
    indices: &Tensor<I>,
    out: &mut Tensor<F>,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    if ABSOLUTE_POS >= out.len() {
        terminate!();
    }
    let plane = ABSOLUTE_POS / (h * w);
    let q = ABSOLUTE_POS % (h * w);
    let y = q / w;
    let x = q % w;
    // Windows i with i*sh <= y < i*sh + kh, within [0, oh).
    let mut i_lo = 0;
    if y + 1 > kh {
        i_lo = (y + 1 - kh + sh - 1) / sh;
    }
    let mut i_end = y / sh + 1;
    if i_end > oh {
        i_end = oh;
    }
    let mut j_lo = 0;
    if x + 1 > kw {
        j_lo = (x + 1 - kw + sw - 1) / sw;
    }
    let mut j_end = x / sw + 1;
    if j_end > ow {
        j_end = ow;
    }
    let target = I::cast_from(q);
    let mut acc = F::new(0.0);
    for i in i_lo..i_end {
        for j in j_lo..j_end {
            let p = plane * oh * ow + i * ow + j;
            if indices[p] == target {
                acc += grad[p];
            }
        }
    }
    out[ABSOLUTE_POS] = acc;
}

/// Records, for each output position, the last (1-based) cell of its plane that names it.
#[cube(launch)]
fn winner_kernel<I: Int>(
    indices: &Tensor<I>,
    winners: &mut Tensor<Atomic<i32>>,
    in_plane: usize,
    out_plane: usize,
    #[define(I)] _dtype: ElemType,
) {
    if ABSOLUTE_POS >= indices.len() {
        terminate!();
    }
    let plane = ABSOLUTE_POS / in_plane;
    let k = ABSOLUTE_POS % in_plane;
    let q = indices[ABSOLUTE_POS];
    if q >= I::new(0) && q < I::cast_from(out_plane) {
        winners[plane * out_plane + usize::cast_from(q)].fetch_max(i32::cast_from(k + 1));
    }
}

#[cube(launch)]
fn unpool_gather_kernel<F: Float>(
    x: &Tensor<F>,
    winners: &Tensor<i32>,
    out: &mut Tensor<F>,
    in_plane: usize,
    out_plane: usize,
    #[define(F)] _dtype: ElemType,
) {
    if ABSOLUTE_POS >= out.len() {
        terminate!();
    }
    let plane = ABSOLUTE_POS / out_plane;
    let winner = winners[ABSOLUTE_POS];
    let mut v = F::new(0.0);
    if winner > 0 {
        v = x[plane * in_plane + usize::cast_from(winner - 1)];
    }
    out[ABSOLUTE_POS] = v;
}

#[cube(launch)]
fn unpool_backward_kernel<F: Float, I: Int>(
    grad: &Tensor<F>,
    indices: &Tensor<I>,
    winners: &Tensor<i32>,
    out: &mut Tensor<F>,
    in_plane: usize,
    out_plane: usize,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    if ABSOLUTE_POS >= out.len() {
        terminate!();
    }
    let plane = ABSOLUTE_POS / in_plane;
    let k = ABSOLUTE_POS % in_plane;
    let q = indices[ABSOLUTE_POS];
    let mut v = F::new(0.0);
    if q >= I::new(0) && q < I::cast_from(out_plane) {
        let position = plane * out_plane + usize::cast_from(q);
        if winners[position] == i32::cast_from(k + 1) {
            v = grad[position];
        }
    }
    out[ABSOLUTE_POS] = v;
}

fn launch_dims(tensor: &CubeTensor, elements: usize) -> (CubeCount, CubeDim) {
    let cube_dim = CubeDim::new(&tensor.client, elements);
    let count = calculate_cube_count_elemwise(&tensor.client, elements, cube_dim);
    (count, cube_dim)
}

/// The winner table of an unpooling: `[n, c, out_h, out_w]` of I32, 0 where no cell points.
fn winners(indices: &CubeTensor, output_size: [usize; 2]) -> CubeTensor {
    let [n, c, h, w] = dims4(&indices.shape());
    let table = zeros_client(
        indices.client.clone(),
        indices.device.clone(),
        Shape::new([n, c, output_size[0], output_size[1]]),
        DType::I32,
    );
    let elements = n * c * h * w;
    if elements > 0 {
        let (count, cube_dim) = launch_dims(indices, elements);
        winner_kernel::launch(
            &indices.client,
            count,
            cube_dim,
            indices.clone().into_tensor_arg(),
            table.clone().into_tensor_arg(),
            h * w,
            output_size[0] * output_size[1],
            dtype_to_storage_type(indices.dtype),
        );
    }
    table
}

impl SegNetOps for CubeBackend {
    fn seg_max_pool2d_with_indices(
        x: FloatTensor<Self>,
        kernel_h: usize,
        kernel_w: usize,
        stride_h: usize,
        stride_w: usize,
        indices_dtype: IntDType,
    ) -> (FloatTensor<Self>, IntTensor<Self>) {
        let x = into_contiguous(x);
        let [_, _, h, w] = dims4(&x.shape());
        let out_shape = pooled_shape(&x.shape(), [kernel_h, kernel_w], [stride_h, stride_w]);
        let [_, _, oh, ow] = dims4(&out_shape);
        let values = empty_device_dtype(
            x.client.clone(),
            x.device.clone(),
            out_shape.clone(),
            x.dtype,
        );
        let indices = empty_device_dtype(
            x.client.clone(),
            x.device.clone(),
            out_shape.clone(),
            DType::from(indices_dtype),
        );
        let elements = out_shape.num_elements();
        if elements > 0 {
            let (count, cube_dim) = launch_dims(&x, elements);
            let dtypes = [
                dtype_to_storage_type(x.dtype),
                dtype_to_storage_type(indices.dtype),
            ];
            pool_kernel::launch(
                &x.client,
                count,
                cube_dim,
                x.clone().into_tensor_arg(),
                values.clone().into_tensor_arg(),
                indices.clone().into_tensor_arg(),
                h,
                w,
                oh,
                ow,
                kernel_h,
                kernel_w,
                stride_h,
                stride_w,
                dtypes,
            );
        }
        (values, indices)
    }

    fn seg_max_pool2d_backward(
        grad: FloatTensor<Self>,
        indices: IntTensor<Self>,
        in_h: usize,
        in_w: usize,
        kernel_h: usize,
        kernel_w: usize,
        stride_h: usize,
        stride_w: usize,
    ) -> FloatTensor<Self> {
        let (grad, indices) = (into_contiguous(grad), into_contiguous(indices));
        let [n, c, oh, ow] = dims4(&grad.shape());
        let out = empty_device_dtype(
            grad.client.clone(),
            grad.device.clone(),
            Shape::new([n, c, in_h, in_w]),
            grad.dtype,
        );
        let elements = n * c * in_h * in_w;
        if elements > 0 {
            let (count, cube_dim) = launch_dims(&grad, elements);
            let dtypes = [
                dtype_to_storage_type(grad.dtype),
                dtype_to_storage_type(indices.dtype),
            ];
            pool_backward_kernel::launch(
                &grad.client,
                count,
                cube_dim,
                grad.clone().into_tensor_arg(),
                indices.into_tensor_arg(),
                out.clone().into_tensor_arg(),
                in_h,
                in_w,
                oh,
                ow,
                kernel_h,
                kernel_w,
                stride_h,
                stride_w,
                dtypes,
            );
        }
        out
    }

    fn seg_max_unpool2d(
        x: FloatTensor<Self>,
        indices: IntTensor<Self>,
        out_h: usize,
        out_w: usize,
    ) -> FloatTensor<Self> {
        let (x, indices) = (into_contiguous(x), into_contiguous(indices));
        let [n, c, h, w] = dims4(&x.shape());
        let table = winners(&indices, [out_h, out_w]);
        let out = empty_device_dtype(
            x.client.clone(),
            x.device.clone(),
            Shape::new([n, c, out_h, out_w]),
            x.dtype,
        );
        let elements = n * c * out_h * out_w;
        if elements > 0 {
            let (count, cube_dim) = launch_dims(&x, elements);
            unpool_gather_kernel::launch(
                &x.client,
                count,
                cube_dim,
                x.clone().into_tensor_arg(),
                table.into_tensor_arg(),
                out.clone().into_tensor_arg(),
                h * w,
                out_h * out_w,
                dtype_to_storage_type(x.dtype),
            );
        }
        out
    }

    fn seg_max_unpool2d_backward(
        grad: FloatTensor<Self>,
        indices: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        let (grad, indices) = (into_contiguous(grad), into_contiguous(indices));
        let [_, _, out_h, out_w] = dims4(&grad.shape());
        let [n, c, h, w] = dims4(&indices.shape());
        let table = winners(&indices, [out_h, out_w]);
        let out = empty_device_dtype(
            grad.client.clone(),
            grad.device.clone(),
            Shape::new([n, c, h, w]),
            grad.dtype,
        );
        let elements = n * c * h * w;
        if elements > 0 {
            let (count, cube_dim) = launch_dims(&grad, elements);
            let dtypes = [
                dtype_to_storage_type(grad.dtype),
                dtype_to_storage_type(indices.dtype),
            ];
            unpool_backward_kernel::launch(
                &grad.client,
                count,
                cube_dim,
                grad.clone().into_tensor_arg(),
                indices.into_tensor_arg(),
                table.into_tensor_arg(),
                out.clone().into_tensor_arg(),
                h * w,
                out_h * out_w,
                dtypes,
            );
        }
        out
    }
}
