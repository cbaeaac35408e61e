//! The CPU pooling and unpooling loops over contiguous NCHW planes, one plane (or one output
//! row) per task on Rayon's thread pool, generic over the float and index element types; the
//! AVX-512 or AVX2 pooling row kernel (`avx512.rs`, `avx2.rs`) is picked at run time
//! ([`crate::simd::level`], which `SQUEEZE_SEGNET_SIMD` caps). `cpu.rs` hands them NdArray's
//! and Flex's storage.

use rayon::prelude::*;

use crate::host::{HostFloat, HostIndices, par_fill};
use crate::simd::Level;

/// Index element types the pooling kernel writes directly (the backend's int dtype), so no
/// conversion pass or second buffer is needed.
pub(super) trait HostIndex: burn::tensor::Element + Copy + Send + Sync {
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

pub(super) fn pool_planes<T: HostFloat, I: HostIndex>(
    x: &[T],
    [n, c, h, w]: [usize; 4],
    kernel: [usize; 2],
    stride: [usize; 2],
    [oh, ow]: [usize; 2],
) -> (Vec<T>, Vec<I>) {
    let planes = n * c;
    let mut values = vec![T::ZERO; planes * oh * ow];
    let mut indices = vec![I::ZERO; planes * oh * ow];
    if oh * ow == 0 {
        return (values, indices);
    }
    let dims = PlaneDims {
        h,
        w,
        kernel,
        stride,
        ow,
    };
    let level = crate::simd::level();
    values
        .par_chunks_mut(oh * ow)
        .zip(indices.par_chunks_mut(oh * ow))
        .enumerate()
        .for_each(|(plane, (values, indices))| {
            let input = &x[plane * h * w..(plane + 1) * h * w];
            let mut best_index = vec![I::ZERO; ow];
            for (i, (values, indices)) in values
                .chunks_exact_mut(ow)
                .zip(indices.chunks_exact_mut(ow))
                .enumerate()
            {
                pool_row(level, input, dims, i, values, &mut best_index);
                indices.copy_from_slice(&best_index);
            }
        });
    (values, indices)
}

/// A plane's geometry, for [`pool_row`].
#[derive(Clone, Copy)]
pub(super) struct PlaneDims {
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) kernel: [usize; 2],
    pub(super) stride: [usize; 2],
    pub(super) ow: usize,
}

/// Output row `i` of one plane: the maximum of every window and its flat index in the plane.
///
/// All windows of the row are computed together: the innermost loop runs over the output
/// columns, which are independent, so it vectorises (the column stride is a compile-time
/// constant for strides 1 and 2, and the AVX2 build of the loop is picked at run time; f32 with
/// column stride 2 has hand-written AVX2 and AVX-512 kernels, picked by `level`). Per
/// window the elements are still visited in row-major order, so ties keep the first maximum,
/// and a NaN replaces the maximum (PyTorch's rule; `v != v` is the NaN test).
fn pool_row<T: HostFloat, I: HostIndex>(
    level: Level,
    input: &[T],
    dims: PlaneDims,
    i: usize,
    best: &mut [T],
    best_index: &mut [I],
) {
    #[cfg(target_arch = "x86_64")]
    if level >= Level::Avx2 {
        if dims.stride[1] == 2
            && dims.h * dims.w <= i32::MAX as usize
            && let (Some(input), Some(best)) = (T::as_f32(input), T::as_f32_mut(best))
        {
            let mut index = [0_i32; 256];
            for (start, best) in (0..dims.ow).step_by(256).zip(best.chunks_mut(256)) {
                let index = &mut index[..best.len()];
                // SAFETY: the CPU supports the level's instructions (`simd::level` checks them
                // at run time; AVX-512 comes with AVX2).
                unsafe {
                    match level {
                        Level::Avx512 => {
                            avx512::pool_row_f32_s2(input, dims, i, start, best, index)
                        }
                        _ => avx2::pool_row_f32_s2(input, dims, i, start, best, index),
                    }
                };
                for (o, &k) in best_index[start..start + best.len()]
                    .iter_mut()
                    .zip(&*index)
                {
                    *o = I::from_usize(k as usize);
                }
            }
            return;
        }
        // SAFETY: the CPU supports AVX2 (`simd::level` checks it at run time).
        unsafe { pool_row_avx2(input, dims, i, best, best_index) };
        return;
    }
    let _ = level;
    pool_row_portable(input, dims, i, best, best_index);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn pool_row_avx2<T: HostFloat, I: HostIndex>(
    input: &[T],
    dims: PlaneDims,
    i: usize,
    best: &mut [T],
    best_index: &mut [I],
) {
    pool_row_portable(input, dims, i, best, best_index);
}

#[inline(always)]
fn pool_row_portable<T: HostFloat, I: HostIndex>(
    input: &[T],
    dims: PlaneDims,
    i: usize,
    best: &mut [T],
    best_index: &mut [I],
) {
    match dims.stride[1] {
        1 => pool_row_strided::<T, I, 1>(input, dims, i, best, best_index),
        2 => pool_row_strided::<T, I, 2>(input, dims, i, best, best_index),
        _ => pool_row_strided::<T, I, 0>(input, dims, i, best, best_index),
    }
}

/// [`pool_row`] with the column stride `SW` known at compile time (0: read it from `dims`).
#[inline(always)]
fn pool_row_strided<T: HostFloat, I: HostIndex, const SW: usize>(
    input: &[T],
    PlaneDims {
        h,
        w,
        kernel: [kh, kw],
        stride: [sh, sw],
        ow,
    }: PlaneDims,
    i: usize,
    best: &mut [T],
    best_index: &mut [I],
) {
    let sw = if SW == 0 { sw } else { SW };
    let (y0, y1) = (i * sh, (i * sh + kh).min(h));
    let first = &input[y0 * w..(y0 + 1) * w];
    for (j, (b, bi)) in best.iter_mut().zip(best_index.iter_mut()).enumerate() {
        *b = first[j * sw];
        *bi = I::from_usize(y0 * w + j * sw);
    }
    for y in y0..y1 {
        let row = &input[y * w..(y + 1) * w];
        for dx in 0..kw.min(w) {
            // Windows whose column dx is still inside the row (ceil mode).
            let columns = (w - dx).div_ceil(sw).min(ow);
            let (best, best_index) = (&mut best[..columns], &mut best_index[..columns]);
            // The last window read is at `(columns - 1)·sw + dx < w`.
            let row = &row[dx..dx + (columns - 1) * sw + 1];
            let base = y * w + dx;
            for (j, (b, bi)) in best.iter_mut().zip(best_index.iter_mut()).enumerate() {
                let v = row[j * sw];
                #[allow(clippy::eq_op)]
                let take = v > *b || v != v;
                *b = if take { v } else { *b };
                *bi = if take {
                    I::from_usize(base + j * sw)
                } else {
                    *bi
                };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
use super::{avx2, avx512};

/// A new `planes × plane` buffer, zeroed and then filled by `f(plane_index, plane)`, one plane
/// per Rayon task ([`par_fill`]): the zeroing runs in parallel too, and leaves the plane in
/// cache for `f`.
fn zeroed_planes<T: HostFloat>(
    planes: usize,
    plane: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) -> Vec<T> {
    par_fill(planes * plane, plane, |i, chunk| {
        // A memset: `T` is f32 or f64, whose zero is all-zero bits ([`HostFloat::ZERO`]).
        // SAFETY: `chunk` is `chunk.len()` writable elements.
        unsafe { std::ptr::write_bytes(chunk.as_mut_ptr(), 0, chunk.len()) };
        // SAFETY: every element of the chunk was just initialised (to zero).
        let chunk = unsafe { &mut *(chunk as *mut [std::mem::MaybeUninit<T>] as *mut [T]) };
        f(i, chunk);
    })
}

pub(super) fn pool_backward_planes<T: HostFloat>(
    grad: &[T],
    indices: &HostIndices<'_>,
    planes: usize,
    pooled_plane: usize,
    input_plane: usize,
) -> Vec<T> {
    zeroed_planes(planes, input_plane, |plane, out: &mut [T]| {
        let base = plane * pooled_plane;
        for (k, &g) in grad[base..base + pooled_plane].iter().enumerate() {
            let q = indices.get(base + k);
            if q >= 0 && (q as usize) < input_plane {
                out[q as usize] = out[q as usize].add(g);
            }
        }
    })
}

pub(super) fn unpool_planes<T: HostFloat>(
    x: &[T],
    indices: &HostIndices<'_>,
    planes: usize,
    input_plane: usize,
    output_plane: usize,
) -> Vec<T> {
    zeroed_planes(planes, output_plane, |plane, out: &mut [T]| {
        let base = plane * input_plane;
        for (k, &v) in x[base..base + input_plane].iter().enumerate() {
            let q = indices.get(base + k);
            if q >= 0 && (q as usize) < output_plane {
                out[q as usize] = v;
            }
        }
    })
}

pub(super) fn unpool_backward_planes<T: HostFloat>(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::pooled_len;

    /// The portable row loop (what machines without AVX2 run) and the AVX2 and AVX-512 kernels
    /// (those the CPU has) give the same maxima and indices, ties, NaN and ceil-mode edges
    /// included; all match the reference.
    #[test]
    fn portable_avx2_and_avx512_rows_agree() {
        let levels: Vec<Level> = [Level::Baseline, Level::Avx2, Level::Avx512]
            .into_iter()
            .filter(|&l| l <= crate::simd::level())
            .collect();
        let mut state = 7_u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u32
        };
        for (h, w, kernel) in [
            (7, 57, [3, 3]),
            (5, 601, [3, 3]),
            (9, 40, [2, 3]),
            (4, 17, [3, 2]),
            (3, 33, [3, 3]), // exactly 16 full windows
            (6, 65, [3, 3]), // 32: two AVX-512 blocks
            (5, 45, [3, 3]), // 22: a block and an overlapping one
        ] {
            let input: Vec<f32> = (0..h * w)
                .map(|_| match next() % 50 {
                    0 => f32::NAN,
                    r => (r % 5) as f32, // many ties
                })
                .collect();
            let stride = [2, 2];
            let oh = pooled_len(h, kernel[0], stride[0]).unwrap();
            let ow = pooled_len(w, kernel[1], stride[1]).unwrap();
            let dims = PlaneDims {
                h,
                w,
                kernel,
                stride,
                ow,
            };
            let (want_v, want_i, _) = crate::ops::reference::max_pool2d_with_indices(
                &input.iter().map(|&v| v as f64).collect::<Vec<_>>(),
                [1, 1, h, w],
                crate::ops::PoolOptions::new(kernel, stride),
            );
            for &level in &levels {
                let (mut values, mut indices) = (vec![0_f32; ow], vec![0_i32; ow]);
                for i in 0..oh {
                    pool_row(level, &input, dims, i, &mut values, &mut indices);
                    for j in 0..ow {
                        let (v, k) = (values[j] as f64, want_v[i * ow + j]);
                        assert!(
                            v == k || (v.is_nan() && k.is_nan()),
                            "{level:?} {h}x{w} ({i},{j})"
                        );
                        assert_eq!(
                            indices[j] as i64,
                            want_i[i * ow + j],
                            "{level:?} {h}x{w} ({i},{j})"
                        );
                    }
                }
            }
        }
    }
}
