//! Hand-vectorised pooling for the network's case: f32, column stride 2, 8 windows at a time.

use super::planes::PlaneDims;
use std::arch::x86_64::*;

/// Output columns `start..start + best.len()` of output row `i` (see `pool_row`): the
/// same visiting order, tie and NaN rules as the portable loop, written with AVX2.
///
/// Eight windows at a time, each block's maxima and indices kept in registers while it
/// visits its window elements (row-major, as the reference does); windows that overhang
/// the right edge (ceil mode) and rows shorter than a block go one window at a time.
///
/// # Safety
/// The CPU must support AVX2. (The slices are bounds-checked where it matters: `input` must
/// hold the `h × w` plane and `best_index` at least `best.len()` elements, which
/// `pool_planes` guarantees; the unchecked loads rely on it.)
#[target_feature(enable = "avx2")]
pub(super) unsafe fn pool_row_f32_s2(
    input: &[f32],
    dims: PlaneDims,
    i: usize,
    start: usize,
    best: &mut [f32],
    best_index: &mut [i32],
) {
    let (w, kw, end) = (dims.w, dims.kernel[1], start + best.len());
    let (y0, y1) = window_rows(dims, i);
    let full = full_windows_s2(dims, start, end);
    let lanes = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
    // The second load of a block skips its last lane (an odd column no window uses), so a
    // block of windows j..j + 8 reads row[2j + dx ..= 2j + dx + 14], inside the row since
    // window j + 7 is.
    let hi_mask = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, -1, 0);
    let block = |j: usize| {
        let k = j - start;
        // SAFETY: windows j..j + 8 lie inside the row (j + 8 <= full) and k + 8 <=
        // best.len() (full <= end).
        unsafe {
            let mut b = _mm256_setzero_ps();
            let mut bi = _mm256_setzero_si256();
            let mut first = true;
            for y in y0..y1 {
                let row = input.as_ptr().add(y * w + 2 * j);
                for dx in 0..kw {
                    let p = row.add(dx);
                    let lo = _mm256_loadu_ps(p);
                    let hi = _mm256_maskload_ps(p.add(8), hi_mask);
                    // Even elements of lo ‖ hi, in order.
                    let even = _mm256_shuffle_ps::<0b10_00_10_00>(lo, hi);
                    let v = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(
                        _mm256_castps_pd(even),
                    ));
                    let idx =
                        _mm256_add_epi32(_mm256_set1_epi32((y * w + 2 * j + dx) as i32), lanes);
                    if first {
                        (b, bi, first) = (v, idx, false);
                        continue;
                    }
                    let take = _mm256_or_ps(
                        _mm256_cmp_ps::<_CMP_GT_OQ>(v, b),
                        _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v),
                    );
                    b = _mm256_blendv_ps(b, v, take);
                    bi = _mm256_castps_si256(_mm256_blendv_ps(
                        _mm256_castsi256_ps(bi),
                        _mm256_castsi256_ps(idx),
                        take,
                    ));
                }
            }
            _mm256_storeu_ps(best.as_mut_ptr().add(k), b);
            _mm256_storeu_si256(best_index.as_mut_ptr().add(k) as *mut __m256i, bi);
        }
    };
    let mut scalar_from = start;
    if full - start >= 8 {
        anchored_blocks(start, full, 8, block);
        scalar_from = full;
    }
    for j in scalar_from..end {
        (best[j - start], best_index[j - start]) = pool_window_f32_s2(input, dims, i, j);
    }
}

/// The input rows `y0..y1` of output row `i`'s windows.
pub(super) fn window_rows(dims: PlaneDims, i: usize) -> (usize, usize) {
    let y0 = i * dims.stride[0];
    (y0, (y0 + dims.kernel[0]).min(dims.h))
}

/// The end of the windows of `start..end` that lie entirely inside the row (`2j + kw <= w`):
/// those the vector kernels take in blocks.
pub(super) fn full_windows_s2(dims: PlaneDims, start: usize, end: usize) -> usize {
    let [_, kw] = dims.kernel;
    let w = dims.w;
    if w >= kw { (w - kw) / 2 + 1 } else { 0 }.clamp(start, end)
}

/// Calls `block(j)` for blocks of `width` windows covering `start..full` (at least `width`
/// of them), the last block anchored at `full - width`: it may recompute a few windows of the
/// previous block, with the same result.
pub(super) fn anchored_blocks(
    start: usize,
    full: usize,
    width: usize,
    mut block: impl FnMut(usize),
) {
    let mut j = start;
    loop {
        let j0 = j.min(full - width);
        block(j0);
        if j0 + width >= full {
            break;
        }
        j += width;
    }
}

/// Window `j` of output row `i` alone (column stride 2): its maximum and flat index, elements
/// visited row-major, the first maximum kept on a tie, a NaN taken. The kernels' edge case.
#[inline]
pub(super) fn pool_window_f32_s2(input: &[f32], dims: PlaneDims, i: usize, j: usize) -> (f32, i32) {
    let (w, kw) = (dims.w, dims.kernel[1]);
    let (y0, y1) = window_rows(dims, i);
    let (mut b, mut bi) = (input[y0 * w + 2 * j], y0 * w + 2 * j);
    for y in y0..y1 {
        for x in 2 * j..(2 * j + kw).min(w) {
            let v = input[y * w + x];
            #[allow(clippy::eq_op)]
            if v > b || v != v {
                (b, bi) = (v, y * w + x);
            }
        }
    }
    (b, bi as i32)
}
