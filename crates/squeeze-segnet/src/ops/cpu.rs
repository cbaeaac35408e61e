//! The extension ops on NdArray and Flex: their storage handed to the plane loops of
//! `cpu/planes.rs` (one plane per task on Rayon's pool, the one Burn's CPU backends use).
//!
//! Both backends' storage is read in place (`crate::host`: no copy, shared tensors included, as
//! long as the tensor is contiguous; other views go through `TensorData`). Floats: f32 and f64,
//! with an AVX2 kernel for f32 pooling at column stride 2 (`cpu/avx2.rs`, picked at run time). Indices: read as
//! I32 or I64, written in the dtype asked for (the device's int dtype). Out-of-range indices are
//! skipped, never a panic.

use burn::backend::{
    TensorMetadata,
    tensor::{FloatTensor, IntTensor},
};
use burn::tensor::{DType, IntDType, TensorData};

use super::{SegNetOps, pooled_len};
use crate::host::{HostBackend, dims4, float_slice, with_float_type, with_indices};
use planes::{pool_backward_planes, pool_planes, unpool_backward_planes, unpool_planes};

/// Hand-vectorised pooling for the network's case: f32, column stride 2, 8 windows at a time.
#[cfg(target_arch = "x86_64")]
mod avx2;
/// The same with AVX-512, 16 windows at a time.
#[cfg(target_arch = "x86_64")]
mod avx512;
mod planes;

fn pool<B: HostBackend>(
    x: FloatTensor<B>,
    kernel: [usize; 2],
    stride: [usize; 2],
    indices_dtype: IntDType,
) -> (FloatTensor<B>, IntTensor<B>) {
    let device = x.device();
    let data = B::float_host(x);
    let [n, c, h, w] = dims4(&data.shape());
    let oh = pooled_len(h, kernel[0], stride[0]).unwrap_or(0);
    let ow = pooled_len(w, kernel[1], stride[1]).unwrap_or(0);
    let shape = [n, c, oh, ow];
    let (values, indices) = with_float_type!("max_pool2d_with_indices", data, |T| {
        let x = float_slice::<T>(&data);
        let dims = [n, c, h, w];
        match indices_dtype {
            IntDType::I32 => {
                let (v, i) = pool_planes::<_, i32>(x, dims, kernel, stride, [oh, ow]);
                (TensorData::new(v, shape), TensorData::new(i, shape))
            }
            other => {
                let (v, i) = pool_planes::<_, i64>(x, dims, kernel, stride, [oh, ow]);
                let i = TensorData::new(i, shape);
                let i = if other == IntDType::I64 {
                    i
                } else {
                    i.convert_dtype(DType::from(other))
                };
                (TensorData::new(v, shape), i)
            }
        }
    });
    (
        B::float_from_data(values, &device),
        B::int_from_data(indices, &device),
    )
}

fn pool_backward<B: HostBackend>(
    grad: FloatTensor<B>,
    indices: IntTensor<B>,
    input_size: [usize; 2],
) -> FloatTensor<B> {
    let device = grad.device();
    let grad = B::float_host(grad);
    let indices = B::int_host(indices);
    let [n, c, oh, ow] = dims4(&grad.shape());
    let shape = [n, c, input_size[0], input_size[1]];
    let plane_in = input_size[0] * input_size[1];
    let out = with_float_type!("max_pool2d_backward", grad, |T| {
        let g = float_slice::<T>(&grad);
        with_indices(&indices, |i| {
            TensorData::new(pool_backward_planes(g, &i, n * c, oh * ow, plane_in), shape)
        })
    });
    B::float_from_data(out, &device)
}

fn unpool<B: HostBackend>(
    x: FloatTensor<B>,
    indices: IntTensor<B>,
    output_size: [usize; 2],
) -> FloatTensor<B> {
    let device = x.device();
    let x = B::float_host(x);
    let indices = B::int_host(indices);
    let [n, c, h, w] = dims4(&x.shape());
    let shape = [n, c, output_size[0], output_size[1]];
    let plane_out = output_size[0] * output_size[1];
    let out = with_float_type!("max_unpool2d", x, |T| {
        let v = float_slice::<T>(&x);
        with_indices(&indices, |i| {
            TensorData::new(unpool_planes(v, &i, n * c, h * w, plane_out), shape)
        })
    });
    B::float_from_data(out, &device)
}

fn unpool_backward<B: HostBackend>(grad: FloatTensor<B>, indices: IntTensor<B>) -> FloatTensor<B> {
    let device = grad.device();
    let grad = B::float_host(grad);
    let indices = B::int_host(indices);
    let [_, _, oh, ow] = dims4(&grad.shape());
    let [n, c, h, w] = dims4(&indices.shape());
    let out = with_float_type!("max_unpool2d_backward", grad, |T| {
        let g = float_slice::<T>(&grad);
        with_indices(&indices, |i| {
            TensorData::new(
                unpool_backward_planes(g, &i, n * c, h * w, oh * ow),
                [n, c, h, w],
            )
        })
    });
    B::float_from_data(out, &device)
}

/// NdArray's and Flex's implementation (every `HostBackend`): the generic host kernels above.
impl<B: HostBackend> SegNetOps for B {
    fn seg_max_pool2d_with_indices(
        x: FloatTensor<Self>,
        kernel_h: usize,
        kernel_w: usize,
        stride_h: usize,
        stride_w: usize,
        indices_dtype: IntDType,
    ) -> (FloatTensor<Self>, IntTensor<Self>) {
        pool::<Self>(x, [kernel_h, kernel_w], [stride_h, stride_w], indices_dtype)
    }

    fn seg_max_pool2d_backward(
        grad: FloatTensor<Self>,
        indices: IntTensor<Self>,
        in_h: usize,
        in_w: usize,
        _kernel_h: usize,
        _kernel_w: usize,
        _stride_h: usize,
        _stride_w: usize,
    ) -> FloatTensor<Self> {
        pool_backward::<Self>(grad, indices, [in_h, in_w])
    }

    fn seg_max_unpool2d(
        x: FloatTensor<Self>,
        indices: IntTensor<Self>,
        out_h: usize,
        out_w: usize,
    ) -> FloatTensor<Self> {
        unpool::<Self>(x, indices, [out_h, out_w])
    }

    fn seg_max_unpool2d_backward(
        grad: FloatTensor<Self>,
        indices: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        unpool_backward::<Self>(grad, indices)
    }
}
