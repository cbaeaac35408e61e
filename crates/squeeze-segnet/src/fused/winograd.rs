//! 3×3, stride-1, padding-1 convolutions by Winograd's minimal filtering F(4×4, 3×3) (Lavin &
//! Gray, *Fast Algorithms for Convolutional Neural Networks*, 2016): each 4×4 tile of output is
//! `Aᵀ [Σ_c (G g Gᵀ) ⊙ (Bᵀ d B)] A` for its 6×6 input patch `d`, which takes 36 multiplications
//! per input channel where the direct convolution takes 144 — the sum over channels being 36
//! GEMMs, one per position of the 6×6 transformed tile. The interpolation points are 0, ±1, ±2
//! and ∞:
//!
//! ```text
//!      ⎡4  0 −5  0  1  0⎤        ⎡ 1/4     0     0 ⎤
//!      ⎢0 −4 −4  1  1  0⎥        ⎢−1/6  −1/6  −1/6 ⎥        ⎡1  1  1  1  1  0⎤
//! Bᵀ = ⎢0  4 −4 −1  1  0⎥    G = ⎢−1/6   1/6  −1/6 ⎥   Aᵀ = ⎢0  1 −1  2 −2  0⎥
//!      ⎢0 −2 −1  2  1  0⎥        ⎢1/24  1/12   1/6 ⎥        ⎢0  1  1  4  4  0⎥
//!      ⎢0  2 −1 −2  1  0⎥        ⎢1/24 −1/12   1/6 ⎥        ⎣0  1 −1  8 −8  1⎦
//!      ⎣0  4  0 −5  0  1⎦        ⎣  0     0     1  ⎦
//! ```
//!
//! In this network the 3×3 convolutions (Fire and DFire expands, `refine`) hold most of the
//! multiply-accumulates. The fused kernel (`cpu.rs`) runs those of them that gain ([`fits`]:
//! deep inputs, wide rows — dfire5 to dfire2 and `refine` at 360×480 in inference, `refine` in
//! training) here, block by block: the input transform of the block's tiles, the 36 GEMMs
//! (`gemm` crate), then the output transform with bias and ReLU straight into the block's place
//! in the output. The row half of
//! the input transform runs over whole tile rows, so it vectorises. F(4×4) replaced F(2×2)
//! (16 multiplications per 2×2 tile: 2.25× more per output than F(4×4)'s) after a per-layer
//! comparison in `BENCHMARKS.md`. Its rounding error is larger than the direct convolution's
//! (the transforms' coefficients reach 8): the tests hold it to Burn's convolution at the same
//! tolerances as every fused kernel (1e-4 in f32).

use rayon::prelude::*;

use super::cpu::{Conv, matmul};
use crate::host::HostFloat;
use crate::simd::multiversion;

/// Output rows (and columns) of one tile: blocks of output rows come in multiples of it.
pub(super) const TILE: usize = 4;

/// Whether `conv` over `c_in` channels of rows `w` wide runs here: a convolution that is 3×3,
/// stride 1, padding 1 (output size = input size), with at least 64 input channels and rows at
/// least 40 wide, and in training (no bias: the convolutions followed by batch norm, and the
/// input gradients' convolutions) at least 64 output channels too. Below those the 36 GEMMs are
/// too small (k = c_in, m = c_out, n = the block's tiles) and im2col + one GEMM is faster
/// (measured in `BENCHMARKS.md`): in training that leaves `camvid()`'s `refine` (64 → 64
/// channels at half the input size) and its input gradient.
pub(super) fn fits<T>(conv: &Conv<'_, T>, c_in: usize, w: usize) -> bool {
    conv.kernel == [3, 3]
        && conv.stride == [1, 1]
        && conv.padding == [1, 1]
        && (conv.bias.is_some() || conv.c_out >= 64)
        && c_in >= 64
        && w >= 40
}

/// `Bᵀ d` for one column (or row) of six inputs.
#[inline(always)]
fn bt6<T: HostFloat>([d0, d1, d2, d3, d4, d5]: [T; 6]) -> [T; 6] {
    let four = T::from_f64(4.0);
    let five = T::from_f64(5.0);
    let two = T::from_f64(2.0);
    let t1 = d4 - four * d2;
    let t2 = d3 - four * d1;
    let t3 = d4 - d2;
    let t4 = two * (d3 - d1);
    [
        (four * d0 - five * d2).add(d4),
        t1.add(t2),
        t1 - t2,
        t3.add(t4),
        t3 - t4,
        (four * d1 - five * d3).add(d5),
    ]
}

/// `Aᵀ m` for one column (or row) of six products: four outputs.
#[inline(always)]
fn at6<T: HostFloat>([m0, m1, m2, m3, m4, m5]: [T; 6]) -> [T; 4] {
    let two = T::from_f64(2.0);
    let four = T::from_f64(4.0);
    let eight = T::from_f64(8.0);
    let a = m1.add(m2);
    let b = m1 - m2;
    let c = m3.add(m4);
    let d = m3 - m4;
    [
        m0.add(a).add(c),
        b.add(two * d),
        a.add(four * c),
        b.add(eight * d).add(m5),
    ]
}

/// The transformed weights `U = G g Gᵀ`, laid out `[c_out][36][c_in]` (tile position `ξ`'s
/// GEMM left-hand matrix starts at `ξ·c_in`, rows `36·c_in` apart), from `weight: [c_out, c_in,
/// 3, 3]`. Computed in f64, output channels in parallel (each writes its own contiguous rows).
pub(super) fn weights<T: HostFloat>(weight: &[T], c_out: usize, c_in: usize) -> Vec<T> {
    let mut u = vec![T::ZERO; 36 * c_out * c_in];
    u.par_chunks_mut(36 * c_in)
        .enumerate()
        .for_each(|(co, rows)| {
            for c in 0..c_in {
                let g: [f64; 9] = std::array::from_fn(|i| weight[(co * c_in + c) * 9 + i].to_f64());
                let expand = |a: f64, b: f64, c: f64| {
                    [
                        a / 4.0,
                        -(a + b + c) / 6.0,
                        -(a - b + c) / 6.0,
                        (a / 4.0 + b / 2.0 + c) / 6.0,
                        (a / 4.0 - b / 2.0 + c) / 6.0,
                        c,
                    ]
                };
                // t = G g (6×3), then t Gᵀ (6×6): the same three-to-six map on rows, then
                // columns.
                let columns: [[f64; 6]; 3] =
                    std::array::from_fn(|j| expand(g[j], g[3 + j], g[6 + j]));
                for i in 0..6 {
                    let row = expand(columns[0][i], columns[1][i], columns[2][i]);
                    for (j, value) in row.into_iter().enumerate() {
                        rows[(i * 6 + j) * c_in + c] = T::from_f64(value);
                    }
                }
            }
        });
    u
}

/// Scratch buffers a block reuses: transformed input, GEMM output, a tile row's six input rows
/// as column phases, and the output transform's half-way products.
#[derive(Default)]
pub(super) struct Buffers<T> {
    v: Vec<T>,
    m: Vec<T>,
    phases: Vec<T>,
    half: Vec<T>,
}

multiversion! {
    /// `conv` (3×3, stride 1, padding 1; [`fits`]) over output rows `oy0..oy1` of `image:
    /// [c_in, h, w]`, with its bias and ReLU, into `dst`: output channel `co`'s row `oy` at
    /// `dst + co·dst_rs + (oy − oy0)·w`. `u` is [`weights`] of `conv.weight`. Compiled for the
    /// CPU's vector extension ([`crate::simd`]).
    ///
    /// # Safety
    /// `dst` must be valid for writes of `conv.c_out` rows of `(oy1 − oy0)·w` elements at stride
    /// `dst_rs`, which no other thread writes.
    pub(super) unsafe fn conv3x3<T: HostFloat>(
        image: &[T],
        dims: [usize; 3],
        conv: &Conv<'_, T>,
        u: &[T],
        rows: [usize; 2],
        dst: *mut T,
        dst_rs: usize,
        buffers: &mut Buffers<T>,
    ) = conv3x3_body;
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn conv3x3_body<T: HostFloat>(
    image: &[T],
    [c_in, h, w]: [usize; 3],
    conv: &Conv<'_, T>,
    u: &[T],
    [oy0, oy1]: [usize; 2],
    dst: *mut T,
    dst_rs: usize,
    buffers: &mut Buffers<T>,
) {
    let c_out = conv.c_out;
    let (tiles_y, tiles_x) = ((oy1 - oy0).div_ceil(TILE), w.div_ceil(TILE));
    let tiles = tiles_y * tiles_x;
    let Buffers { v, m, phases, half } = buffers;
    v.resize(36 * c_in * tiles, T::ZERO);
    m.resize(36 * c_out * tiles, T::ZERO);
    // The six input rows of a tile row, each as four column phases: phase k of row i at tx
    // is column 4·tx + k − 1 of the input (padding 1: zero outside), tx ≤ tiles_x, so a tile's
    // six columns 4·tx − 1 .. 4·tx + 4 are phases 0-3 at tx and 0-1 at tx + 1.
    let stride = tiles_x + 1;
    phases.resize(24 * stride, T::ZERO);

    // Input transform: V[ξ][c][tile] = (Bᵀ d B)[ξ]. Every loop below runs over the tiles of a
    // row, element by element with no gather, so it vectorises.
    for c in 0..c_in {
        let channel = &image[c * h * w..][..h * w];
        for ty in 0..tiles_y {
            for i in 0..6 {
                let [p0, p1, p2, p3] = runs(&mut phases[4 * i * stride..], stride);
                let iy = (oy0 + TILE * ty + i).checked_sub(1).filter(|&y| y < h);
                let Some(iy) = iy else {
                    for p in [p0, p1, p2, p3] {
                        p.fill(T::ZERO);
                    }
                    continue;
                };
                let row = &channel[iy * w..][..w];
                let chunks = row.chunks_exact(TILE);
                let tail = chunks.remainder();
                let full = w / TILE;
                p0[0] = T::ZERO;
                for (tx, q) in chunks.enumerate() {
                    p1[tx] = q[0];
                    p2[tx] = q[1];
                    p3[tx] = q[2];
                    p0[tx + 1] = q[3];
                }
                let mut last = [T::ZERO; TILE];
                last[..tail.len()].copy_from_slice(tail);
                p1[full] = last[0];
                p2[full] = last[1];
                p3[full] = last[2];
                if full + 1 < stride {
                    p0[full + 1] = last[3];
                }
                for p in [p1, p2, p3] {
                    p[full + 1..].fill(T::ZERO);
                }
                if full + 2 < stride {
                    p0[full + 2..].fill(T::ZERO);
                }
            }
            // Bᵀ d, in place, across the six rows: element by element over their phases.
            {
                let n = 4 * stride;
                let [d0, d1, d2, d3, d4, d5] = runs(phases, n);
                for k in 0..n {
                    let r = bt6([d0[k], d1[k], d2[k], d3[k], d4[k], d5[k]]);
                    d0[k] = r[0];
                    d1[k] = r[1];
                    d2[k] = r[2];
                    d3[k] = r[3];
                    d4[k] = r[4];
                    d5[k] = r[5];
                }
            }
            // · B, per tile, into six disjoint runs of `v` per row.
            let base = ty * tiles_x;
            for i in 0..6 {
                let p = |k: usize, shift: usize| &phases[(4 * i + k) * stride + shift..][..tiles_x];
                let (q0, q1, q2, q3, q4, q5) =
                    (p(0, 0), p(1, 0), p(2, 0), p(3, 0), p(0, 1), p(1, 1));
                let at = |j: usize| ((i * 6 + j) * c_in + c) * tiles + base;
                let vp = v.as_mut_ptr();
                // SAFETY: runs `at(j)..at(j) + tiles_x` of `v` for j < 6: distinct tile
                // positions ξ = 6i + j, so disjoint, and inside `v` (36·c_in·tiles elements).
                let [v0, v1, v2, v3, v4, v5]: [&mut [T]; 6] = unsafe {
                    [0, 1, 2, 3, 4, 5]
                        .map(|j| std::slice::from_raw_parts_mut(vp.add(at(j)), tiles_x))
                };
                for tx in 0..tiles_x {
                    let r = bt6([q0[tx], q1[tx], q2[tx], q3[tx], q4[tx], q5[tx]]);
                    v0[tx] = r[0];
                    v1[tx] = r[1];
                    v2[tx] = r[2];
                    v3[tx] = r[3];
                    v4[tx] = r[4];
                    v5[tx] = r[5];
                }
            }
        }
    }

    // M[ξ] = U[ξ] · V[ξ]: [c_out, c_in] · [c_in, tiles].
    for xi in 0..36 {
        // SAFETY: `m`, `u` and `v` hold the 36 matrices at these offsets and strides.
        unsafe {
            let dst = m.as_mut_ptr().add(xi * c_out * tiles);
            let lhs = u.as_ptr().add(xi * c_in);
            let rhs = v.as_ptr().add(xi * c_in * tiles);
            matmul(
                [c_out, tiles, c_in],
                (dst, tiles),
                (lhs, 36 * c_in),
                (rhs, tiles),
            );
        }
    }

    // Output transform: Y = Aᵀ M A, then bias and ReLU, four output rows per tile row. First
    // Aᵀ M for every column j of every tile (`half[r][j]`, a run over the tiles), then · A per
    // output row, four columns per tile — both loops over the tiles of a row — straight into
    // the output row (the last, partial tile through a small array).
    let out_rows = oy1 - oy0;
    half.resize(24 * tiles_x, T::ZERO);
    let full = w / TILE;
    for co in 0..c_out {
        let bias = conv.bias.map_or(T::ZERO, |b| b[co]);
        let relu = conv.relu;
        let finish = |v: T| {
            let s = v.add(bias);
            if relu && !(s > T::ZERO) { T::ZERO } else { s }
        };
        for ty in 0..tiles_y {
            let mm = |xi: usize| &m[(xi * c_out + co) * tiles + ty * tiles_x..][..tiles_x];
            for j in 0..6 {
                let (m0, m1, m2, m3, m4, m5) = (
                    mm(j),
                    mm(6 + j),
                    mm(12 + j),
                    mm(18 + j),
                    mm(24 + j),
                    mm(30 + j),
                );
                let (h0, rest) = half[j * tiles_x..].split_at_mut(tiles_x);
                let (h1, rest) = rest[5 * tiles_x..].split_at_mut(tiles_x);
                let (h2, rest) = rest[5 * tiles_x..].split_at_mut(tiles_x);
                let h3 = &mut rest[5 * tiles_x..][..tiles_x];
                for tx in 0..tiles_x {
                    let r = at6([m0[tx], m1[tx], m2[tx], m3[tx], m4[tx], m5[tx]]);
                    h0[tx] = r[0];
                    h1[tx] = r[1];
                    h2[tx] = r[2];
                    h3[tx] = r[3];
                }
            }
            for r in 0..TILE {
                let oy = TILE * ty + r;
                if oy >= out_rows {
                    break;
                }
                let hh = |j: usize| &half[(r * 6 + j) * tiles_x..][..tiles_x];
                let (a0, a1, a2, a3, a4, a5) = (hh(0), hh(1), hh(2), hh(3), hh(4), hh(5));
                // SAFETY: row `oy` of channel `co` lies in the caller's target, `w` elements.
                let out =
                    unsafe { std::slice::from_raw_parts_mut(dst.add(co * dst_rs + oy * w), w) };
                let (body, tail) = out.split_at_mut(TILE * full);
                for (tx, o) in body.chunks_exact_mut(TILE).enumerate() {
                    let q = at6([a0[tx], a1[tx], a2[tx], a3[tx], a4[tx], a5[tx]]);
                    o[0] = finish(q[0]);
                    o[1] = finish(q[1]);
                    o[2] = finish(q[2]);
                    o[3] = finish(q[3]);
                }
                if !tail.is_empty() {
                    let q = at6([a0[full], a1[full], a2[full], a3[full], a4[full], a5[full]]);
                    for (o, value) in tail.iter_mut().zip(q) {
                        *o = finish(value);
                    }
                }
            }
        }
    }
}

/// The first `N` runs of `len` elements of `s`, as `N` slices.
#[inline(always)]
fn runs<T, const N: usize>(s: &mut [T], len: usize) -> [&mut [T]; N] {
    let mut chunks = s.chunks_exact_mut(len);
    std::array::from_fn(|_| chunks.next().expect("the slice holds N runs"))
}
