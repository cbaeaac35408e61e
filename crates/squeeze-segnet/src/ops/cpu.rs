//! CPU implementations for NdArray and Flex: loops over contiguous NCHW planes, one plane per
//! task on Rayon's thread pool (the pool Burn's CPU backends already use).
//!
//! Both backends go through `TensorData`, which Flex hands over without a copy for contiguous,
//! unshared tensors. Floats: f32 and f64. Indices: read as I32 or I64, written in the dtype asked
//! for (the device's int dtype). Out-of-range indices are skipped, never a panic.

#![allow(deprecated)] // burn::backend::NdArray: deprecated in Burn 0.22, supported on request.

use burn::backend::{
    Backend, Flex, NdArray, TensorMetadata,
    tensor::{FloatTensor, IntTensor},
};
use burn::tensor::{DType, IntDType, Shape, TensorData, read_sync};
use rayon::prelude::*;

use super::{SegNetOps, pooled_len};

/// Float element types the CPU kernels run on.
trait HostFloat: burn::tensor::Element + PartialOrd + Send + Sync {
    const ZERO: Self;
    fn add(self, other: Self) -> Self;
}

impl HostFloat for f32 {
    const ZERO: Self = 0.0;
    fn add(self, other: Self) -> Self {
        self + other
    }
}

impl HostFloat for f64 {
    const ZERO: Self = 0.0;
    fn add(self, other: Self) -> Self {
        self + other
    }
}

/// Indices as they arrive: borrowed I32/I64 storage or a converted copy.
enum HostIndices<'a> {
    I32(&'a [i32]),
    I64(&'a [i64]),
}

impl HostIndices<'_> {
    #[inline(always)]
    fn get(&self, i: usize) -> i64 {
        match self {
            HostIndices::I32(s) => s[i] as i64,
            HostIndices::I64(s) => s[i],
        }
    }
}

fn with_indices<R>(data: &TensorData, f: impl FnOnce(HostIndices<'_>) -> R) -> R {
    match data.dtype() {
        DType::I32 => f(HostIndices::I32(
            data.as_slice::<i32>().expect("i32 storage"),
        )),
        DType::I64 => f(HostIndices::I64(
            data.as_slice::<i64>().expect("i64 storage"),
        )),
        _ => {
            let converted = data.clone().convert::<i64>();
            f(HostIndices::I64(
                converted.as_slice::<i64>().expect("i64 storage"),
            ))
        }
    }
}

fn float_data<B: Backend>(x: FloatTensor<B>) -> TensorData {
    read_sync(B::float_into_data(x)).expect("reading a CPU tensor cannot fail")
}

fn int_data<B: Backend>(x: IntTensor<B>) -> TensorData {
    read_sync(B::int_into_data(x)).expect("reading a CPU tensor cannot fail")
}

fn dims4(shape: &Shape) -> [usize; 4] {
    [shape[0], shape[1], shape[2], shape[3]]
}

/// Runs `f` on the float storage of `data` as f32 or f64.
macro_rules! float_dispatch {
    ($data:expr, $op:literal, |$slice:ident| $body:expr) => {
        match $data.dtype() {
            DType::F32 => {
                let $slice = $data.as_slice::<f32>().expect("f32 storage");
                $body
            }
            DType::F64 => {
                let $slice = $data.as_slice::<f64>().expect("f64 storage");
                $body
            }
            other => panic!(
                "{}: the CPU kernels support f32 and f64, not {other:?} (the checked API reports this as OpError::UnsupportedDType)",
                $op
            ),
        }
    };
}

/// Index element types the pooling kernel writes directly (the backend's int dtype), so no
/// conversion pass or second buffer is needed.
trait HostIndex: burn::tensor::Element + Copy + Send + Sync {
    const ZERO: Self;
    fn from_usize(i: usize) -> Self;
}

impl HostIndex for i32 {
    const ZERO: Self = 0;
    fn from_usize(i: usize) -> Self {
        i as i32
    }
}

impl HostIndex for i64 {
    const ZERO: Self = 0;
    fn from_usize(i: usize) -> Self {
        i as i64
    }
}

fn pool_planes<T: HostFloat, I: HostIndex>(
    x: &[T],
    [n, c, h, w]: [usize; 4],
    [kh, kw]: [usize; 2],
    [sh, sw]: [usize; 2],
    [oh, ow]: [usize; 2],
) -> (Vec<T>, Vec<I>) {
    let planes = n * c;
    let mut values = vec![T::ZERO; planes * oh * ow];
    let mut indices = vec![I::ZERO; planes * oh * ow];
    if oh * ow == 0 {
        return (values, indices);
    }
    values
        .par_chunks_mut(oh * ow)
        .zip(indices.par_chunks_mut(oh * ow))
        .enumerate()
        .for_each(|(plane, (values, indices))| {
            let input = &x[plane * h * w..(plane + 1) * h * w];
            // One output row at a time, all its windows together: the innermost loop runs over
            // the output columns, which are independent (no loop-carried dependency as in a
            // per-window scan), so it pipelines and vectorises. Per window the elements are
            // still visited in row-major order, so ties keep the first maximum, and a NaN
            // replaces the maximum (PyTorch's rule; `v != v` is the NaN test).
            let mut best_index = vec![0_usize; ow];
            for i in 0..oh {
                let (y0, y1) = (i * sh, (i * sh + kh).min(h));
                let best = &mut values[i * ow..(i + 1) * ow];
                for (j, (b, bi)) in best.iter_mut().zip(best_index.iter_mut()).enumerate() {
                    *bi = y0 * w + j * sw;
                    *b = input[*bi];
                }
                for y in y0..y1 {
                    let row = &input[y * w..(y + 1) * w];
                    for dx in 0..kw.min(w) {
                        // Windows whose column dx is still inside the row (ceil mode).
                        let columns = (w - dx).div_ceil(sw).min(ow);
                        for j in 0..columns {
                            let x = j * sw + dx;
                            let v = row[x];
                            #[allow(clippy::eq_op)]
                            let take = v > best[j] || v != v;
                            best[j] = if take { v } else { best[j] };
                            best_index[j] = if take { y * w + x } else { best_index[j] };
                        }
                    }
                }
                for (o, &bi) in indices[i * ow..(i + 1) * ow].iter_mut().zip(&best_index) {
                    *o = I::from_usize(bi);
                }
            }
        });
    (values, indices)
}

fn pool_backward_planes<T: HostFloat>(
    grad: &[T],
    indices: &HostIndices<'_>,
    planes: usize,
    pooled_plane: usize,
    input_plane: usize,
) -> Vec<T> {
    let mut out = vec![T::ZERO; planes * input_plane];
    if input_plane == 0 {
        return out;
    }
    out.par_chunks_mut(input_plane)
        .enumerate()
        .for_each(|(plane, out)| {
            let base = plane * pooled_plane;
            for (k, &g) in grad[base..base + pooled_plane].iter().enumerate() {
                let q = indices.get(base + k);
                if q >= 0 && (q as usize) < input_plane {
                    out[q as usize] = out[q as usize].add(g);
                }
            }
        });
    out
}

fn unpool_planes<T: HostFloat>(
    x: &[T],
    indices: &HostIndices<'_>,
    planes: usize,
    input_plane: usize,
    output_plane: usize,
) -> Vec<T> {
    let mut out = vec![T::ZERO; planes * output_plane];
    if output_plane == 0 {
        return out;
    }
    out.par_chunks_mut(output_plane)
        .enumerate()
        .for_each(|(plane, out)| {
            let base = plane * input_plane;
            for (k, &v) in x[base..base + input_plane].iter().enumerate() {
                let q = indices.get(base + k);
                if q >= 0 && (q as usize) < output_plane {
                    out[q as usize] = v;
                }
            }
        });
    out
}

fn unpool_backward_planes<T: HostFloat>(
    grad: &[T],
    indices: &HostIndices<'_>,
    planes: usize,
    input_plane: usize,
    output_plane: usize,
) -> Vec<T> {
    let mut out = vec![T::ZERO; planes * input_plane];
    if input_plane == 0 {
        return out;
    }
    out.par_chunks_mut(input_plane)
        .enumerate()
        .for_each(|(plane, out)| {
            // Winner per output position: the last cell (1-based, 0 = none) that names it.
            let mut winner = vec![0_u32; output_plane];
            let base = plane * input_plane;
            for k in 0..input_plane {
                let q = indices.get(base + k);
                if q >= 0 && (q as usize) < output_plane {
                    winner[q as usize] = k as u32 + 1;
                }
            }
            for (k, o) in out.iter_mut().enumerate() {
                let q = indices.get(base + k);
                if q >= 0 && (q as usize) < output_plane && winner[q as usize] == k as u32 + 1 {
                    *o = grad[plane * output_plane + q as usize];
                }
            }
        });
    out
}

fn pool<B: Backend>(
    x: FloatTensor<B>,
    kernel: [usize; 2],
    stride: [usize; 2],
    indices_dtype: IntDType,
) -> (FloatTensor<B>, IntTensor<B>) {
    let device = x.device();
    let data = float_data::<B>(x);
    let [n, c, h, w] = dims4(data.shape());
    let oh = pooled_len(h, kernel[0], stride[0]).unwrap_or(0);
    let ow = pooled_len(w, kernel[1], stride[1]).unwrap_or(0);
    let shape = [n, c, oh, ow];
    let (values, indices) = float_dispatch!(data, "max_pool2d_with_indices", |x| {
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

fn pool_backward<B: Backend>(
    grad: FloatTensor<B>,
    indices: IntTensor<B>,
    input_size: [usize; 2],
) -> FloatTensor<B> {
    let device = grad.device();
    let grad = float_data::<B>(grad);
    let indices = int_data::<B>(indices);
    let [n, c, oh, ow] = dims4(grad.shape());
    let shape = [n, c, input_size[0], input_size[1]];
    let plane_in = input_size[0] * input_size[1];
    let out = float_dispatch!(grad, "max_pool2d_backward", |g| with_indices(
        &indices,
        |i| { TensorData::new(pool_backward_planes(g, &i, n * c, oh * ow, plane_in), shape) }
    ));
    B::float_from_data(out, &device)
}

fn unpool<B: Backend>(
    x: FloatTensor<B>,
    indices: IntTensor<B>,
    output_size: [usize; 2],
) -> FloatTensor<B> {
    let device = x.device();
    let x = float_data::<B>(x);
    let indices = int_data::<B>(indices);
    let [n, c, h, w] = dims4(x.shape());
    let shape = [n, c, output_size[0], output_size[1]];
    let plane_out = output_size[0] * output_size[1];
    let out = float_dispatch!(x, "max_unpool2d", |v| with_indices(&indices, |i| {
        TensorData::new(unpool_planes(v, &i, n * c, h * w, plane_out), shape)
    }));
    B::float_from_data(out, &device)
}

fn unpool_backward<B: Backend>(grad: FloatTensor<B>, indices: IntTensor<B>) -> FloatTensor<B> {
    let device = grad.device();
    let grad = float_data::<B>(grad);
    let indices = int_data::<B>(indices);
    let [_, _, oh, ow] = dims4(grad.shape());
    let [n, c, h, w] = dims4(indices.shape());
    let out = float_dispatch!(grad, "max_unpool2d_backward", |g| with_indices(
        &indices,
        |i| {
            TensorData::new(
                unpool_backward_planes(g, &i, n * c, h * w, oh * ow),
                [n, c, h, w],
            )
        }
    ));
    B::float_from_data(out, &device)
}

/// One `impl SegNetOps` per CPU backend, all delegating to the generic host kernels above.
macro_rules! cpu_backend {
    ($backend:ty) => {
        impl SegNetOps for $backend {
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
    };
}

cpu_backend!(Flex);
cpu_backend!(NdArray);
