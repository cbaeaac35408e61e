//! Host kernels of the fused path: for each block of output rows, im2col of that block (none
//! for 1×1 convolutions), one GEMM per convolution straight into the NCHW output, then bias and
//! ReLU on the block while it is in cache. Blocks run in parallel on Rayon's pool; the GEMM is
//! the `gemm` crate's (the one Flex uses), single-threaded inside a block.

use burn::backend::tensor::FloatTensor;
use burn::tensor::{Shape, TensorData};
use rayon::prelude::*;

use super::FusedConvOps;
use super::winograd;
use crate::host::{HostBackend, HostData, HostFloat, dims4, with_float_type};
use crate::simd::multiversion;

/// One convolution of a fused call: its weights and where its channels go in the output.
pub(super) struct Conv<'a, T> {
    /// `[c_out, c_in, kh, kw]`, row-major: row `co` is the GEMM's left-hand row for `co`.
    pub(super) weight: &'a [T],
    /// `[c_out]`, or none (the training path's convolutions, followed by batch norm).
    pub(super) bias: Option<&'a [T]>,
    pub(super) c_out: usize,
    pub(super) kernel: [usize; 2],
    pub(super) stride: [usize; 2],
    pub(super) padding: [usize; 2],
    /// First output channel of this convolution in the (concatenated) output.
    pub(super) channel_offset: usize,
    /// ReLU after the bias (every layer but the transposed convolution's phases).
    pub(super) relu: bool,
}

/// Output columns a block aims at: about 64 Ki elements of im2col buffer (`k × columns`, 256 KiB
/// in f32) for `k` up to 512; the 128-column floor and whole rows make it larger for deeper
/// inputs.
fn block_columns(k: usize) -> usize {
    (65_536 / k.max(1)).clamp(128, 2048)
}

/// The fewest output columns a block gets when the image has rows to spare (see `run`).
const MIN_BLOCK_COLUMNS: usize = 64;

/// A pointer the blocks share; each block writes a disjoint set of output elements.
#[derive(Clone, Copy)]
pub(super) struct OutPtr<T>(pub(super) *mut T);
// SAFETY: blocks write disjoint elements (distinct rows of each output plane), see `run`.
unsafe impl<T: Send> Send for OutPtr<T> {}
unsafe impl<T: Send> Sync for OutPtr<T> {}

impl<T> OutPtr<T> {
    /// The pointer (a method, so closures capture the whole `Send` wrapper, not the field).
    pub(super) fn get(self) -> *mut T {
        self.0
    }
}

/// Runs `convs` (same input, same output size, channel ranges tiling `0..c_mid`) on
/// `x: [n, c_in, h, w]`, then `squeeze` (a 1×1 convolution of the `c_mid` channels) when given,
/// into a new `[n, c_out, oh, ow]` buffer (`c_out`: the squeeze's, else `c_mid`).
///
/// With a squeeze (a DFire module), a block's expand results stay in a block-sized buffer and
/// never reach memory as a whole tensor.
fn run<T: HostFloat>(
    x: &[T],
    [n, c_in, h, w]: [usize; 4],
    convs: &[Conv<'_, T>],
    squeeze: Option<&Conv<'_, T>>,
    [oh, ow]: [usize; 2],
) -> Vec<T> {
    let c_mid: usize = convs.iter().map(|c| c.c_out).sum();
    let c_out = squeeze.map_or(c_mid, |s| s.c_out);
    let plane = oh * ow;
    let len = n * c_out * plane;
    // Not zeroed: the blocks below write every element (each block all channels of its rows).
    let mut out = Vec::with_capacity(len);
    if len == 0 {
        return out;
    }
    let k_max = convs
        .iter()
        .map(|c| c_in * c.kernel[0] * c.kernel[1])
        .max()
        .unwrap_or(1);
    // Rows per block: cache-sized, and ~4 blocks per thread when the image allows, but not under
    // MIN_BLOCK_COLUMNS columns: every block's GEMM packs the whole weight matrix, so small
    // blocks pay for that packing many times over and under-fill gemm's 64-row micro-kernel
    // (the deep layers of a 180×240 image are 14 columns wide). Few blocks come in a multiple
    // of the thread count, of even sizes.
    let threads = rayon::current_num_threads();
    let by_cache = (block_columns(k_max) / ow.max(1)).max(1);
    let by_threads = (oh * n / (4 * threads)).max(MIN_BLOCK_COLUMNS.div_ceil(ow.max(1)));
    let mut rows = by_cache.min(by_threads);
    let mut blocks = oh.div_ceil(rows);
    if n == 1 && blocks > threads && blocks < 4 * threads {
        blocks -= blocks % threads;
    }
    rows = oh.div_ceil(blocks);
    // Winograd's tiles cover four output rows: blocks of a multiple of four rows.
    let transformed: Vec<Option<Vec<T>>> = convs
        .iter()
        .map(|c| winograd::fits(c, c_in, w).then(|| winograd::weights(c.weight, c.c_out, c_in)))
        .collect();
    if transformed.iter().any(Option::is_some) {
        rows = rows.next_multiple_of(winograd::TILE);
    }
    let blocks_per_image = oh.div_ceil(rows);
    let ptr = OutPtr(out.spare_capacity_mut().as_mut_ptr().cast::<T>());
    // Scratch buffers reused from task to task (zeroed only when they grow; every use
    // overwrites what it reads): im2col, the DFire's expand block, Winograd's tiles.
    let scratch = || (Vec::new(), Vec::new(), winograd::Buffers::default());
    (0..n * blocks_per_image)
        .into_par_iter()
        .for_each_init(scratch, |(col, mid, tiles), task| {
            let (b, block) = (task / blocks_per_image, task % blocks_per_image);
            let oy0 = block * rows;
            let oy1 = (oy0 + rows).min(oh);
            let columns = (oy1 - oy0) * ow;
            let image = &x[b * c_in * h * w..(b + 1) * c_in * h * w];
            // Where the block of channel 0 goes, and the stride between channels there.
            // SAFETY (both): inside `out`, see `gemm_bias_act`.
            let block_out = unsafe { ptr.get().add(b * c_out * plane + oy0 * ow) };
            let (target, target_rs) = match squeeze {
                Some(_) => {
                    mid.resize(c_mid * columns, T::ZERO);
                    (mid.as_mut_ptr(), columns)
                }
                None => (block_out, plane),
            };
            for (conv, transformed) in convs.iter().zip(&transformed) {
                if let Some(u) = transformed {
                    // SAFETY: as for the GEMM below (the same target rows).
                    unsafe {
                        let dst = target.add(conv.channel_offset * target_rs);
                        winograd::conv3x3(
                            image,
                            [c_in, h, w],
                            conv,
                            u,
                            [oy0, oy1],
                            dst,
                            target_rs,
                            tiles,
                        );
                    }
                    continue;
                }
                let [kh, kw] = conv.kernel;
                let k = c_in * kh * kw;
                let direct = kh == 1 && kw == 1 && conv.stride == [1, 1] && conv.padding == [0, 0];
                // Right-hand side [k, columns]: the input itself for 1×1 (rows = channels, stride h·w),
                // else the block's im2col.
                let (rhs, rhs_rs) = if direct {
                    (image[oy0 * w..].as_ptr(), h * w)
                } else {
                    col.resize(k * columns, T::ZERO);
                    im2col(image, [c_in, h, w], conv, [oy0, oy1], ow, col);
                    (col.as_ptr(), columns)
                };
                // SAFETY: the target holds this convolution's `c_out` channel rows of `columns`
                // elements at stride `target_rs` from its channel offset (the block's rows of image b
                // in `out`, which no other task writes, or the block's own `mid`); the operands hold
                // `c_out × k` and `k × columns` elements at the given strides.
                unsafe {
                    let dst = target.add(conv.channel_offset * target_rs);
                    gemm_bias_act(conv, k, columns, dst, target_rs, rhs, rhs_rs);
                }
            }
            if let Some(squeeze) = squeeze {
                // SAFETY: as above; `mid` holds `c_mid × columns` elements.
                unsafe {
                    gemm_bias_act(
                        squeeze,
                        c_mid,
                        columns,
                        block_out,
                        plane,
                        mid.as_ptr(),
                        columns,
                    )
                };
            }
        });
    // SAFETY: every block wrote all `c_out` channels of its rows of its image, and the blocks
    // cover every row of every image.
    unsafe { out.set_len(len) };
    out
}

/// `dst = lhs · rhs` for `[m, n, k]` and row-major operands, each given with its row stride:
/// `lhs` `[m, k]`, `rhs` `[k, n]`, `dst` `[m, n]` (overwritten). One `gemm` call,
/// single-threaded: the callers already run one per Rayon task.
///
/// # Safety
/// Each pointer must be valid for its matrix at its row stride (`dst` for writes).
pub(super) unsafe fn matmul<T: HostFloat>(
    [m, n, k]: [usize; 3],
    (dst, dst_rs): (*mut T, usize),
    (lhs, lhs_rs): (*const T, usize),
    (rhs, rhs_rs): (*const T, usize),
) {
    unsafe {
        gemm_strided(
            [m, n, k],
            [dst_rs, 1],
            dst,
            [lhs_rs, 1],
            lhs,
            [rhs_rs, 1],
            rhs,
            false,
        )
    }
}

/// `dst = lhs · rhs`, or `dst += lhs · rhs` when `accumulate`, for `[m, n, k]`, each operand
/// given with its `[row, column]` strides (a transposed operand is one with its strides
/// swapped). One single-threaded `gemm` call.
///
/// # Safety
/// Each pointer must be valid for its matrix at its strides (`dst` for reads and writes).
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn gemm_strided<T: HostFloat>(
    [m, n, k]: [usize; 3],
    [dst_rs, dst_cs]: [usize; 2],
    dst: *mut T,
    [lhs_rs, lhs_cs]: [usize; 2],
    lhs: *const T,
    [rhs_rs, rhs_cs]: [usize; 2],
    rhs: *const T,
    accumulate: bool,
) {
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_cs as isize,
            dst_rs as isize,
            accumulate,
            lhs,
            lhs_cs as isize,
            lhs_rs as isize,
            rhs,
            rhs_cs as isize,
            rhs_rs as isize,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// `dst[co][j] = relu(Σ_k weight[co][k]·rhs[k][j] + bias[co])` (without the ReLU unless
/// `conv.relu`) for `co < c_out`, `j < columns`: one single-threaded GEMM, then bias and ReLU
/// on the block while it is in cache.
///
/// # Safety
/// `dst` must be valid for writes of `c_out` rows of `columns` elements at stride `dst_rs`, and
/// `rhs` for reads of `k` rows of `columns` elements at stride `rhs_rs`; `conv.weight` holds
/// `c_out × k` elements.
unsafe fn gemm_bias_act<T: HostFloat>(
    conv: &Conv<'_, T>,
    k: usize,
    columns: usize,
    dst: *mut T,
    dst_rs: usize,
    rhs: *const T,
    rhs_rs: usize,
) {
    debug_assert_eq!(conv.weight.len(), conv.c_out * k);
    unsafe {
        let lhs = conv.weight.as_ptr();
        matmul(
            [conv.c_out, columns, k],
            (dst, dst_rs),
            (lhs, k),
            (rhs, rhs_rs),
        );
        if conv.bias.is_none() && !conv.relu {
            return; // the GEMM's output is the result
        }
        for co in 0..conv.c_out {
            let bias = conv.bias.map_or(T::ZERO, |b| b[co]);
            let row = std::slice::from_raw_parts_mut(dst.add(co * dst_rs), columns);
            bias_act(row, bias, conv.relu);
        }
    }
}

multiversion! {
    /// `row += bias`, then the ReLU when `relu`.
    fn bias_act<T: HostFloat>(row: &mut [T], bias: T, relu: bool) = bias_act_body;
}

#[inline(always)]
fn bias_act_body<T: HostFloat>(row: &mut [T], bias: T, relu: bool) {
    if relu {
        for v in row {
            let s = v.add(bias);
            *v = if s > T::ZERO { s } else { T::ZERO };
        }
    } else {
        for v in row {
            *v = v.add(bias);
        }
    }
}

multiversion! {
    /// im2col of output rows `oy0..oy1`: `col[(c·kh + ky)·kw + kx][(oy − oy0)·ow + ox] =
    /// x[c][oy·sh + ky − ph][ox·sw + kx − pw]`, zero outside the input.
    fn im2col<T: HostFloat>(
        image: &[T],
        dims: [usize; 3],
        conv: &Conv<'_, T>,
        rows: [usize; 2],
        ow: usize,
        col: &mut [T],
    ) = im2col_body;
}

#[inline(always)]
fn im2col_body<T: HostFloat>(
    image: &[T],
    [c_in, h, w]: [usize; 3],
    conv: &Conv<'_, T>,
    [oy0, oy1]: [usize; 2],
    ow: usize,
    col: &mut [T],
) {
    let [kh, kw] = conv.kernel;
    let [sh, sw] = conv.stride;
    let [ph, pw] = conv.padding;
    let columns = (oy1 - oy0) * ow;
    for c in 0..c_in {
        let channel = &image[c * h * w..(c + 1) * h * w];
        for ky in 0..kh {
            for kx in 0..kw {
                let row = &mut col[((c * kh + ky) * kw + kx) * columns..][..columns];
                // Output columns whose input column ox·sw + kx − pw lies in 0..w.
                let lo = pw.saturating_sub(kx).div_ceil(sw).min(ow);
                let hi = if w + pw > kx {
                    ((w + pw - kx - 1) / sw + 1).min(ow)
                } else {
                    0
                }
                .max(lo);
                for (oy, dst) in (oy0..oy1).zip(row.chunks_exact_mut(ow)) {
                    let iy = (oy * sh + ky).checked_sub(ph).filter(|&iy| iy < h);
                    let Some(iy) = iy else {
                        dst.fill(T::ZERO);
                        continue;
                    };
                    let src = &channel[iy * w..(iy + 1) * w];
                    dst[..lo].fill(T::ZERO);
                    dst[hi..].fill(T::ZERO);
                    if lo == hi {
                        continue; // no output column of this row reads the input
                    }
                    let start = lo * sw + kx - pw;
                    if sw == 1 {
                        dst[lo..hi].copy_from_slice(&src[start..start + (hi - lo)]);
                    } else {
                        for (d, s) in dst[lo..hi].iter_mut().zip(src[start..].iter().step_by(sw)) {
                            *d = *s;
                        }
                    }
                }
            }
        }
    }
}

/// Output length of a convolution; panics, as Burn's convolution does, when the kernel is
/// larger than the padded input or the stride is 0.
fn out_len(len: usize, kernel: usize, stride: usize, pad: usize) -> usize {
    assert!(
        len + 2 * pad >= kernel && stride > 0,
        "conv2d_bias: kernel {kernel} does not fit an input of {len} padded by {pad} (stride {stride})"
    );
    (len + 2 * pad - kernel) / stride + 1
}

/// Panics with the operand's name when a shape is not what the fused call needs: these are
/// backend-level ops (like Burn's own `conv2d`), called by the network with shapes it built.
fn expect_shape(what: &str, got: &Shape, want: &[usize]) {
    assert!(
        got.num_dims() == want.len() && (0..want.len()).all(|i| got[i] == want[i]),
        "{what}: shape {got:?}, expected {want:?}"
    );
}

fn slice<'a, T: HostFloat + bytemuck::Pod>(data: &'a HostData, what: &str) -> &'a [T] {
    data.as_slice::<T>()
        .unwrap_or_else(|| panic!("{what}: the same float dtype as the input"))
}

fn conv2d_bias<B: HostBackend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: Option<FloatTensor<B>>,
    stride: [usize; 2],
    padding: [usize; 2],
    relu: bool,
) -> FloatTensor<B> {
    let device = burn::backend::TensorMetadata::device(&x);
    let (x, weight) = (B::float_host(x), B::float_host(weight));
    let bias = bias.map(B::float_host);
    let [n, c_in, h, w] = dims4(&x.shape());
    let [c_out, _, kh, kw] = dims4(&weight.shape());
    expect_shape(
        "conv2d_bias weight",
        &weight.shape(),
        &[c_out, c_in, kh, kw],
    );
    if let Some(bias) = &bias {
        expect_shape("conv2d_bias bias", &bias.shape(), &[c_out]);
    }
    let [oh, ow] = [
        out_len(h, kh, stride[0], padding[0]),
        out_len(w, kw, stride[1], padding[1]),
    ];
    let data = with_float_type!("conv2d_bias", x, |T| {
        let conv = Conv {
            weight: slice::<T>(&weight, "weight"),
            bias: bias.as_ref().map(|b| slice::<T>(b, "bias")),
            c_out,
            kernel: [kh, kw],
            stride,
            padding,
            channel_offset: 0,
            relu,
        };
        let out = run(
            slice::<T>(&x, "x"),
            [n, c_in, h, w],
            &[conv],
            None,
            [oh, ow],
        );
        TensorData::new(out, [n, c_out, oh, ow])
    });
    B::float_from_data(data, &device)
}

/// A Fire module's expand stage, and with `squeeze` a whole DFire module (expand, then the
/// 1×1 squeeze of the concatenation).
fn expand<B: HostBackend>(
    x: FloatTensor<B>,
    [w1, b1, w3, b3]: [FloatTensor<B>; 4],
    squeeze: Option<[FloatTensor<B>; 2]>,
) -> FloatTensor<B> {
    let device = burn::backend::TensorMetadata::device(&x);
    let x = B::float_host(x);
    let [w1, b1, w3, b3] = [w1, b1, w3, b3].map(B::float_host);
    let squeeze = squeeze.map(|s| s.map(B::float_host));
    let [n, c_in, h, w] = dims4(&x.shape());
    let (e1, e3) = (w1.shape()[0], w3.shape()[0]);
    let c_out = squeeze.as_ref().map_or(e1 + e3, |[ws, _]| ws.shape()[0]);
    expect_shape("fire_expand w1", &w1.shape(), &[e1, c_in, 1, 1]);
    expect_shape("fire_expand b1", &b1.shape(), &[e1]);
    expect_shape("fire_expand w3", &w3.shape(), &[e3, c_in, 3, 3]);
    expect_shape("fire_expand b3", &b3.shape(), &[e3]);
    if let Some([ws, bs]) = &squeeze {
        expect_shape("dfire squeeze weight", &ws.shape(), &[c_out, e1 + e3, 1, 1]);
        expect_shape("dfire squeeze bias", &bs.shape(), &[c_out]);
    }
    let data = with_float_type!("fire_expand", x, |T| {
        let convs = [
            Conv {
                weight: slice::<T>(&w1, "w1"),
                bias: Some(slice::<T>(&b1, "b1")),
                c_out: e1,
                kernel: [1, 1],
                stride: [1, 1],
                padding: [0, 0],
                channel_offset: 0,
                relu: true,
            },
            Conv {
                weight: slice::<T>(&w3, "w3"),
                bias: Some(slice::<T>(&b3, "b3")),
                c_out: e3,
                kernel: [3, 3],
                stride: [1, 1],
                padding: [1, 1],
                channel_offset: e1,
                relu: true,
            },
        ];
        let squeeze = squeeze.as_ref().map(|[ws, bs]| Conv {
            weight: slice::<T>(ws, "squeeze weight"),
            bias: Some(slice::<T>(bs, "squeeze bias")),
            c_out,
            kernel: [1, 1],
            stride: [1, 1],
            padding: [0, 0],
            channel_offset: 0,
            relu: true,
        });
        let x = slice::<T>(&x, "x");
        let out = run(x, [n, c_in, h, w], &convs, squeeze.as_ref(), [h, w]);
        TensorData::new(out, [n, c_out, h, w])
    });
    B::float_from_data(data, &device)
}

/// `dW = Σ grad · im2col(x)ᵀ` for a convolution: one GEMM per block of rows, accumulated per
/// group of consecutive blocks in parallel, the group sums added in a fixed order.
fn conv2d_weight_grad<B: HostBackend>(
    x: FloatTensor<B>,
    grad: FloatTensor<B>,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
) -> FloatTensor<B> {
    let device = burn::backend::TensorMetadata::device(&x);
    let (x, grad) = (B::float_host(x), B::float_host(grad));
    let [n, c_in, h, w] = dims4(&x.shape());
    let [kh, kw] = kernel;
    let [oh, ow] = [
        out_len(h, kh, stride[0], padding[0]),
        out_len(w, kw, stride[1], padding[1]),
    ];
    let c_out = grad.shape()[1];
    expect_shape(
        "conv2d_weight_grad grad",
        &grad.shape(),
        &[n, c_out, oh, ow],
    );
    let k = c_in * kh * kw;
    let data = with_float_type!("conv2d_weight_grad", x, |T| {
        let (x, g) = (slice::<T>(&x, "x"), slice::<T>(&grad, "grad"));
        let geometry = Conv {
            weight: &[],
            bias: None,
            c_out,
            kernel,
            stride,
            padding,
            channel_offset: 0,
            relu: false,
        };
        let direct = kernel == [1, 1] && stride == [1, 1] && padding == [0, 0];
        let rows = (block_columns(k) / ow.max(1)).max(1);
        let blocks = oh.div_ceil(rows);
        let plane = oh * ow;
        // Tasks are summed in a fixed order whatever the thread count or scheduling, so a
        // training step is deterministic (a resumed run repeats the uninterrupted one exactly):
        // GROUPS consecutive runs of tasks, each summed in order into its own buffer, then the
        // buffers added in group order.
        const GROUPS: usize = 8;
        let tasks = n * blocks;
        let per_group = tasks.div_ceil(GROUPS).max(1);
        let partials: Vec<Vec<T>> = (0..tasks.div_ceil(per_group))
            .into_par_iter()
            .map(|group| {
                let mut acc = vec![T::ZERO; c_out * k];
                let mut col = Vec::new();
                for task in group * per_group..((group + 1) * per_group).min(tasks) {
                    let (b, block) = (task / blocks, task % blocks);
                    let (oy0, oy1) = (block * rows, ((block + 1) * rows).min(oh));
                    let columns = (oy1 - oy0) * ow;
                    let image = &x[b * c_in * h * w..(b + 1) * c_in * h * w];
                    // Right-hand side col(x)ᵀ [columns × k]: element (j, r) at rhs + j·cs_j + r·cs_r.
                    let (rhs, rhs_rs, rhs_cs) = if direct {
                        (image[oy0 * w..].as_ptr(), 1, (h * w) as isize)
                    } else {
                        col.resize(k * columns, T::ZERO);
                        im2col(image, [c_in, h, w], &geometry, [oy0, oy1], ow, &mut col);
                        (col.as_ptr(), 1, columns as isize)
                    };
                    let lhs = g[(b * c_out) * plane + oy0 * ow..].as_ptr();
                    // SAFETY: acc holds c_out × k; lhs reads c_out rows of `columns` at stride
                    // `plane` inside image b's gradient; rhs reads `columns` × k elements of
                    // the block's input rows (1×1) or of `col`.
                    unsafe {
                        gemm::gemm(
                            c_out,
                            k,
                            columns,
                            acc.as_mut_ptr(),
                            1,
                            k as isize,
                            true,
                            lhs,
                            1,
                            plane as isize,
                            rhs,
                            rhs_cs,
                            rhs_rs,
                            T::ONE,
                            T::ONE,
                            false,
                            false,
                            false,
                            gemm::Parallelism::None,
                        );
                    }
                }
                acc
            })
            .collect();
        let mut partials = partials.into_iter();
        let mut dw = partials.next().unwrap_or_else(|| vec![T::ZERO; c_out * k]);
        for p in partials {
            for (a, b) in dw.iter_mut().zip(p) {
                *a = a.add(b);
            }
        }
        TensorData::new(dw, [c_out, c_in, kh, kw])
    });
    B::float_from_data(data, &device)
}

/// `conv2d(x, weight)`, no bias, on the fused kernel (no epilogue pass: no bias, no ReLU).
fn conv2d_train<B: HostBackend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    stride: [usize; 2],
    padding: [usize; 2],
) -> FloatTensor<B> {
    conv2d_bias::<B>(x, weight, None, stride, padding, false)
}

/// Panics unless `[oh, ow]` is a size the last layer produces from `[h, w]`: `2h + 1` or
/// `2h + 2` by `2w + 1` or `2w + 2` (output padding 0 or 1 per side).
fn expect_doubled([h, w]: [usize; 2], [oh, ow]: [usize; 2]) {
    assert!(
        (2 * h + 1..=2 * h + 2).contains(&oh) && (2 * w + 1..=2 * w + 2).contains(&ow),
        "conv_transpose3x3_s2: output size {oh}×{ow} is not 2·{h}+1 or +2 by 2·{w}+1 or +2"
    );
}

/// The network's last layer (`conv_transpose.rs`): `x: [n, c_in, h, w]`, `weight: [c_in,
/// c_out, 3, 3]`, `bias: [c_out]` → `[n, c_out, oh, ow]`.
fn conv_transpose3x3_s2<B: HostBackend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: FloatTensor<B>,
    [oh, ow]: [usize; 2],
) -> FloatTensor<B> {
    let device = burn::backend::TensorMetadata::device(&x);
    let (x, weight, bias) = (B::float_host(x), B::float_host(weight), B::float_host(bias));
    let [n, c_in, h, w] = dims4(&x.shape());
    let c_out = dims4(&weight.shape())[1];
    expect_shape(
        "conv_transpose3x3_s2 weight",
        &weight.shape(),
        &[c_in, c_out, 3, 3],
    );
    expect_shape("conv_transpose3x3_s2 bias", &bias.shape(), &[c_out]);
    expect_doubled([h, w], [oh, ow]);
    let data = with_float_type!("conv_transpose3x3_s2", x, |T| {
        let out = super::conv_transpose::conv_transpose3x3_s2(
            slice::<T>(&x, "x"),
            [n, c_in, h, w],
            slice::<T>(&weight, "weight"),
            slice::<T>(&bias, "bias"),
            c_out,
            [oh, ow],
        );
        TensorData::new(out, [n, c_out, oh, ow])
    });
    B::float_from_data(data, &device)
}

/// The gradients of [`conv_transpose3x3_s2`] (`conv_transpose.rs`): `(dx, dweight, dbias)`.
fn conv_transpose3x3_s2_backward<B: HostBackend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    grad: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let device = burn::backend::TensorMetadata::device(&x);
    let [x, weight, grad] = [x, weight, grad].map(B::float_host);
    let [n, c_in, h, w] = dims4(&x.shape());
    let [_, c_out, oh, ow] = dims4(&grad.shape());
    expect_shape(
        "conv_transpose3x3_s2 weight",
        &weight.shape(),
        &[c_in, c_out, 3, 3],
    );
    expect_shape(
        "conv_transpose3x3_s2 grad",
        &grad.shape(),
        &[n, c_out, oh, ow],
    );
    expect_doubled([h, w], [oh, ow]);
    let [dx, dw, db] = with_float_type!("conv_transpose3x3_s2_backward", x, |T| {
        let (dx, dw, db) = super::conv_transpose::conv_transpose3x3_s2_backward(
            slice::<T>(&x, "x"),
            [n, c_in, h, w],
            slice::<T>(&weight, "weight"),
            slice::<T>(&grad, "grad"),
            c_out,
            [oh, ow],
        );
        [
            TensorData::new(dx, [n, c_in, h, w]),
            TensorData::new(dw, [c_in, c_out, 3, 3]),
            TensorData::new(db, [c_out]),
        ]
    });
    (
        B::float_from_data(dx, &device),
        B::float_from_data(dw, &device),
        B::float_from_data(db, &device),
    )
}

/// NdArray's and Flex's implementation (every `HostBackend`): the host kernels above.
impl<B: HostBackend> FusedConvOps for B {
    fn seg_conv2d_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride_h: usize,
        stride_w: usize,
        pad_h: usize,
        pad_w: usize,
        relu: bool,
    ) -> FloatTensor<Self> {
        conv2d_bias::<Self>(
            x,
            weight,
            Some(bias),
            [stride_h, stride_w],
            [pad_h, pad_w],
            relu,
        )
    }

    fn seg_conv2d_train(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride_h: usize,
        stride_w: usize,
        pad_h: usize,
        pad_w: usize,
    ) -> FloatTensor<Self> {
        conv2d_train::<Self>(x, weight, [stride_h, stride_w], [pad_h, pad_w])
    }

    fn seg_conv2d_weight_grad(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        kernel_h: usize,
        kernel_w: usize,
        stride_h: usize,
        stride_w: usize,
        pad_h: usize,
        pad_w: usize,
    ) -> FloatTensor<Self> {
        conv2d_weight_grad::<Self>(
            x,
            grad,
            [kernel_h, kernel_w],
            [stride_h, stride_w],
            [pad_h, pad_w],
        )
    }

    fn seg_batch_norm_relu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        super::batch_norm::batch_norm_relu::<Self>(x, gamma, beta, epsilon)
    }

    fn seg_batch_norm_relu_backward(
        x: FloatTensor<Self>,
        output: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        super::batch_norm::batch_norm_relu_backward::<Self>(
            x, output, gamma, mean, variance, epsilon, grad,
        )
    }

    fn seg_fire_expand(
        x: FloatTensor<Self>,
        w1: FloatTensor<Self>,
        b1: FloatTensor<Self>,
        w3: FloatTensor<Self>,
        b3: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        expand::<Self>(x, [w1, b1, w3, b3], None)
    }

    fn seg_dfire(
        x: FloatTensor<Self>,
        w1: FloatTensor<Self>,
        b1: FloatTensor<Self>,
        w3: FloatTensor<Self>,
        b3: FloatTensor<Self>,
        ws: FloatTensor<Self>,
        bs: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        expand::<Self>(x, [w1, b1, w3, b3], Some([ws, bs]))
    }

    fn seg_conv_transpose3x3_s2(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        out_h: usize,
        out_w: usize,
    ) -> FloatTensor<Self> {
        conv_transpose3x3_s2::<Self>(x, weight, bias, [out_h, out_w])
    }

    fn seg_conv_transpose3x3_s2_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        conv_transpose3x3_s2_backward::<Self>(x, weight, grad)
    }
}
