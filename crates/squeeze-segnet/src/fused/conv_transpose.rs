//! Host kernels of the network's last layer, forward and backward: the 3×3, stride-2 transposed
//! convolution (`deconv1`: 64 channels up to the classes at twice the size), with its bias.
//!
//! A transposed convolution adds `x[ci][i][j] · w[ci][co][ky][kx]` into `y[co][2i + ky][2j + kx]`.
//! Per block of input rows, one GEMM computes every input pixel's nine taps for every class,
//! `P[t][co][pixel] = Σ_ci w[ci][co][t] · x[ci][pixel]` (m = 9·c_out, k = c_in, n = the block's
//! pixels: a GEMM as wide as the image rather than one with m = c_out, 11 rows, which fills a
//! fraction of the GEMM's micro-kernel), and the taps are then added into the output rows they
//! land on, after the bias. Each block writes the output rows `2·i0 .. 2·i1` of its input rows
//! `i0 .. i1` (the last block up to the output's last row); row `2·i0` also takes the `ky = 2`
//! taps of input row `i0 − 1`, which a second, three-times smaller GEMM computes for that one
//! row. The multiply-accumulates are exactly the transposed convolution's.
//!
//! In training the gradients come from the same layout ([`conv_transpose3x3_s2_backward`]):
//! per block of input rows, the output gradient's values at each pixel's nine taps are gathered
//! into `G[t][co][pixel] = dy[co][2i + ky][2j + kx]`; then `dx = W · G` (m = c_in, k = 9·c_out)
//! straight into the block's rows of `dx`, and `dW += x · Gᵀ` (k = the block's pixels), summed
//! per group of consecutive blocks and the groups in a fixed order.

use rayon::prelude::*;

use crate::simd::multiversion;

use super::cpu::{OutPtr, gemm_strided, matmul};
use crate::host::HostFloat;

/// Input pixels a block aims at: its taps (`9·c_out × pixels`, 792 KiB in f32 for the 11
/// CamVid classes) stay in a core's L2 cache between the GEMM that writes them and the pass
/// that adds them up.
const BLOCK_PIXELS: usize = 2048;

/// `conv_transpose2d(x, weight) + bias` for a 3×3 kernel, stride 2, no padding, dilation 1 and
/// one group, with output padding `[oh − (2h + 1), ow − (2w + 1)]` (0 or 1 per side; the
/// caller checks): `x: [n, c_in, h, w]`, `weight: [c_in, c_out, 3, 3]`, `bias: [c_out]` →
/// `[n, c_out, oh, ow]`.
pub(super) fn conv_transpose3x3_s2<T: HostFloat>(
    x: &[T],
    [n, c_in, h, w]: [usize; 4],
    weight: &[T],
    bias: &[T],
    c_out: usize,
    [oh, ow]: [usize; 2],
) -> Vec<T> {
    debug_assert!((2 * h + 1..=2 * h + 2).contains(&oh) && (2 * w + 1..=2 * w + 2).contains(&ow));
    let plane = oh * ow;
    let len = n * c_out * plane;
    if h == 0 || w == 0 {
        // No input pixel: every output element is its channel's bias.
        return (0..len).map(|i| bias[i / plane % c_out]).collect();
    }
    let mut out = Vec::with_capacity(len);
    // The GEMM's left-hand side is `wm` read transposed: row `t·c_out + co` = tap t of class co
    // over the input channels (taps first, so that the `ky = 2` taps are the last 3·c_out rows:
    // the halo's GEMM).
    let m = 9 * c_out;
    let wm = tap_matrix(weight, c_in, c_out);
    let (rows, blocks) = row_blocks(n, h, w);
    let ptr = OutPtr(out.spare_capacity_mut().as_mut_ptr().cast::<T>());
    (0..n * blocks).into_par_iter().for_each_init(
        || (Vec::new(), Vec::new()),
        |(taps, halo), task| {
            let (b, block) = (task / blocks, task % blocks);
            let (i0, i1) = (block * rows, ((block + 1) * rows).min(h));
            let image = &x[b * c_in * h * w..][..c_in * h * w];
            let pixels = (i1 - i0) * w;
            taps.resize(m * pixels, T::ZERO);
            // SAFETY: `taps` holds m × pixels; `wm` c_in × m, read transposed; the input's
            // rows i0..i1 of every channel are `pixels` elements from `i0·w`, channels `h·w`
            // apart.
            unsafe {
                gemm_strided(
                    [m, pixels, c_in],
                    [pixels, 1],
                    taps.as_mut_ptr(),
                    [1, m],
                    wm.as_ptr(),
                    [h * w, 1],
                    image[i0 * w..].as_ptr(),
                    false,
                );
            }
            if i0 > 0 {
                halo.resize(3 * c_out * w, T::ZERO);
                // SAFETY: as above, for the last 3·c_out columns of `wm` and input row i0 − 1.
                unsafe {
                    gemm_strided(
                        [3 * c_out, w, c_in],
                        [w, 1],
                        halo.as_mut_ptr(),
                        [1, m],
                        wm[6 * c_out..].as_ptr(),
                        [h * w, 1],
                        image[(i0 - 1) * w..].as_ptr(),
                        false,
                    );
                }
            }
            // Tap t = 3·ky + kx of class co for input row `row`, a row of w values.
            let tap = |t: usize, co: usize, row: usize| -> &[T] {
                if row + 1 == i0 {
                    &halo[((t - 6) * c_out + co) * w..][..w]
                } else {
                    &taps[(t * c_out + co) * pixels + (row - i0) * w..][..w]
                }
            };
            let last = if i1 == h { oh } else { 2 * i1 };
            for co in 0..c_out {
                for r in 2 * i0..last {
                    // SAFETY: output row r of class co of image b: this block's rows, which
                    // no other task writes, inside `out`.
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut(
                            ptr.get().add((b * c_out + co) * plane + r * ow),
                            ow,
                        )
                    };
                    dst.fill(bias[co]);
                    // The input rows i with 2i + ky = r.
                    for ky in (r % 2..3).step_by(2).filter(|&ky| ky <= r) {
                        let i = (r - ky) / 2;
                        if i >= h {
                            continue; // the output padding's row: the bias only
                        }
                        let t = 3 * ky;
                        add_taps(dst, tap(t, co, i), tap(t + 1, co, i), tap(t + 2, co, i));
                    }
                }
            }
        },
    );
    // SAFETY: the blocks' output rows tile 0..oh for every class of every image.
    unsafe { out.set_len(len) };
    out
}

multiversion! {
    /// `dst[2j + kx] += t_kx[j]` for the three taps `kx` of one input row (`w` values each) on
    /// an output row of at least `2w + 1`: even columns take taps 0 and 2, odd ones tap 1.
    fn add_taps<T: HostFloat>(dst: &mut [T], t0: &[T], t1: &[T], t2: &[T]) = add_taps_body;
}

#[inline(always)]
fn add_taps_body<T: HostFloat>(dst: &mut [T], t0: &[T], t1: &[T], t2: &[T]) {
    let w = t0.len();
    let (t1, t2) = (&t1[..w], &t2[..w]);
    let (pairs, rest) = dst[..2 * w + 1].split_at_mut(2 * w);
    // Column 2j: tap 0 of pixel j and tap 2 of pixel j − 1; column 2j + 1: tap 1 of pixel j.
    pairs[0] = pairs[0].add(t0[0]);
    pairs[1] = pairs[1].add(t1[0]);
    for (j, pair) in pairs.chunks_exact_mut(2).enumerate().skip(1) {
        pair[0] = pair[0].add(t0[j].add(t2[j - 1]));
        pair[1] = pair[1].add(t1[j]);
    }
    rest[0] = rest[0].add(t2[w - 1]);
}

/// The weight `[c_in, c_out, 3, 3]` as `[c_in, 9·c_out]`, column `t·c_out + co` = tap `t = 3·ky +
/// kx` of output channel `co`.
fn tap_matrix<T: HostFloat>(weight: &[T], c_in: usize, c_out: usize) -> Vec<T> {
    let m = 9 * c_out;
    let mut wm = vec![T::ZERO; c_in * m];
    for ci in 0..c_in {
        for co in 0..c_out {
            for t in 0..9 {
                wm[ci * m + t * c_out + co] = weight[(ci * c_out + co) * 9 + t];
            }
        }
    }
    wm
}

/// Input rows per block and blocks per image: about [`BLOCK_PIXELS`] pixels a block, and at
/// least two blocks per thread when the images have the rows.
fn row_blocks(n: usize, h: usize, w: usize) -> (usize, usize) {
    let threads = rayon::current_num_threads();
    let rows = (BLOCK_PIXELS / w.max(1))
        .min((n * h).div_ceil(2 * threads))
        .clamp(1, h.max(1));
    (rows, h.div_ceil(rows))
}

/// The gradients of [`conv_transpose3x3_s2`] (bias included) given its output gradient `grad:
/// [n, c_out, oh, ow]`: `(dx [n, c_in, h, w], dW [c_in, c_out, 3, 3], db [c_out])`.
pub(super) fn conv_transpose3x3_s2_backward<T: HostFloat>(
    x: &[T],
    [n, c_in, h, w]: [usize; 4],
    weight: &[T],
    grad: &[T],
    c_out: usize,
    [oh, ow]: [usize; 2],
) -> (Vec<T>, Vec<T>, Vec<T>) {
    debug_assert!((2 * h + 1..=2 * h + 2).contains(&oh) && (2 * w + 1..=2 * w + 2).contains(&ow));
    let m = 9 * c_out;
    // dx's GEMM left-hand side.
    let wm = tap_matrix(weight, c_in, c_out);
    let (rows, blocks) = row_blocks(n, h, w);
    let tasks = n * blocks;
    let groups = rayon::current_num_threads().min(tasks).max(1);
    let mut dx = Vec::with_capacity(n * c_in * h * w);
    let dx_ptr = OutPtr(dx.spare_capacity_mut().as_mut_ptr().cast::<T>());
    // Per group of consecutive blocks: dWᵀ-shaped sums [c_in][t·c_out + co].
    let sums: Vec<Vec<T>> = (0..groups)
        .into_par_iter()
        .map(|g| {
            let mut acc = vec![T::ZERO; c_in * m];
            let mut taps = Vec::new();
            for task in g * tasks / groups..(g + 1) * tasks / groups {
                let (b, block) = (task / blocks, task % blocks);
                let (i0, i1) = (block * rows, ((block + 1) * rows).min(h));
                let pixels = (i1 - i0) * w;
                taps.resize(m * pixels, T::ZERO);
                // G[t·c_out + co][(i − i0)·w + j] = grad[b][co][2i + ky][2j + kx]; 2i + ky ≤ 2h
                // and 2j + kx ≤ 2w lie inside the output.
                for t in 0..9 {
                    let (ky, kx) = (t / 3, t % 3);
                    for co in 0..c_out {
                        let plane = &grad[(b * c_out + co) * oh * ow..][..oh * ow];
                        for i in i0..i1 {
                            let src = &plane[(2 * i + ky) * ow + kx..];
                            let dst = &mut taps[(t * c_out + co) * pixels + (i - i0) * w..][..w];
                            for (d, s) in dst.iter_mut().zip(src.iter().step_by(2)) {
                                *d = *s;
                            }
                        }
                    }
                }
                let image = &x[b * c_in * h * w..][..c_in * h * w];
                // SAFETY: `acc` holds c_in × m; the input's rows i0..i1 are `pixels` elements
                // from i0·w, channels h·w apart; `taps` holds m × pixels, read transposed.
                unsafe {
                    gemm_strided(
                        [c_in, m, pixels],
                        [m, 1],
                        acc.as_mut_ptr(),
                        [h * w, 1],
                        image[i0 * w..].as_ptr(),
                        [1, pixels],
                        taps.as_ptr(),
                        true,
                    );
                }
                // SAFETY: rows i0..i1 of every channel of image b in `dx`: this task's alone.
                unsafe {
                    matmul(
                        [c_in, pixels, m],
                        (dx_ptr.get().add(b * c_in * h * w + i0 * w), h * w),
                        (wm.as_ptr(), m),
                        (taps.as_ptr(), pixels),
                    );
                }
            }
            acc
        })
        .collect();
    // SAFETY: the tasks' rows tile every channel of every image.
    unsafe { dx.set_len(n * c_in * h * w) };
    let mut dw = vec![T::ZERO; c_in * c_out * 9];
    for acc in &sums {
        for ci in 0..c_in {
            for co in 0..c_out {
                for t in 0..9 {
                    let d = &mut dw[(ci * c_out + co) * 9 + t];
                    *d = d.add(acc[ci * m + t * c_out + co]);
                }
            }
        }
    }
    let db = (0..c_out)
        .map(|co| {
            (0..n).fold(T::ZERO, |s, b| {
                let plane = &grad[(b * c_out + co) * oh * ow..][..oh * ow];
                plane.iter().fold(s, |s, v| s.add(*v))
            })
        })
        .collect();
    (dx, dw, db)
}
