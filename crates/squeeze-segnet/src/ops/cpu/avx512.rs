//! Hand-vectorised pooling for the network's case with AVX-512: f32, column stride 2, 16
//! windows at a time (the AVX2 kernel's algorithm at twice the width).

use super::avx2;
use super::planes::PlaneDims;
use std::arch::x86_64::*;

/// Output columns `start..start + best.len()` of output row `i`, as
/// [`avx2::pool_row_f32_s2`] computes them (same visiting order, tie and NaN rules), sixteen
/// windows at a time. Rows with fewer than sixteen full windows go to the AVX2 kernel; the
/// windows that overhang the right edge (ceil mode) go one at a time.
///
/// # Safety
/// The CPU must support AVX-512 F (and AVX2). `input` must hold the `h × w` plane and
/// `best_index` at least `best.len()` elements, which `pool_planes` guarantees; the unchecked
/// loads rely on it.
#[target_feature(enable = "avx512f,avx2")]
pub(super) unsafe fn pool_row_f32_s2(
    input: &[f32],
    dims: PlaneDims,
    i: usize,
    start: usize,
    best: &mut [f32],
    best_index: &mut [i32],
) {
    let full = avx2::full_windows_s2(dims, start, start + best.len());
    if full - start < 16 {
        // SAFETY: AVX-512 F implies AVX2 on every CPU that has it; same contract.
        unsafe { avx2::pool_row_f32_s2(input, dims, i, start, best, best_index) };
        return;
    }
    let (w, kw, end) = (dims.w, dims.kernel[1], start + best.len());
    let (y0, y1) = avx2::window_rows(dims, i);
    // The windows' first columns relative to 2j, and the permutation that gathers the even
    // elements of lo ‖ hi (lane k takes element 2k of the 32): the same sixteen numbers.
    let lanes = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let block = |j: usize| {
        let k = j - start;
        // SAFETY: windows j..j + 16 lie inside the row (j + 16 <= full), so the loads read
        // row[2j + dx ..= 2j + dx + 30] (the second load skips its last lane, an odd column
        // no window uses); k + 16 <= best.len() (full <= end).
        unsafe {
            let mut b = _mm512_setzero_ps();
            let mut bi = _mm512_setzero_si512();
            let mut first = true;
            for y in y0..y1 {
                let row = input.as_ptr().add(y * w + 2 * j);
                for dx in 0..kw {
                    let p = row.add(dx);
                    let lo = _mm512_loadu_ps(p);
                    let hi = _mm512_maskz_loadu_ps(0x7fff, p.add(16));
                    let v = _mm512_permutex2var_ps(lo, lanes, hi);
                    let idx =
                        _mm512_add_epi32(_mm512_set1_epi32((y * w + 2 * j + dx) as i32), lanes);
                    if first {
                        (b, bi, first) = (v, idx, false);
                        continue;
                    }
                    let take = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, b)
                        | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
                    b = _mm512_mask_mov_ps(b, take, v);
                    bi = _mm512_mask_mov_epi32(bi, take, idx);
                }
            }
            _mm512_storeu_ps(best.as_mut_ptr().add(k), b);
            _mm512_storeu_si512(best_index.as_mut_ptr().add(k) as *mut __m512i, bi);
        }
    };
    avx2::anchored_blocks(start, full, 16, block);
    for j in full..end {
        (best[j - start], best_index[j - start]) = avx2::pool_window_f32_s2(input, dims, i, j);
    }
}
