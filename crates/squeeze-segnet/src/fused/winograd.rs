//! 3×3, stride-1, padding-1 convolutions by Winograd's minimal filtering F(2×2, 3×3) (Lavin &
//! Gray, *Fast Algorithms for Convolutional Neural Networks*, 2016): each 2×2 tile of output is
//! `Aᵀ [Σ_c (G g Gᵀ) ⊙ (Bᵀ d B)] A` for its 4×4 input patch `d`, which takes 16 multiplications
//! per input channel where the direct convolution takes 36 — the sum over channels being 16
//! GEMMs, one per position of the 4×4 transformed tile:
//!
//! ```text
//!      ⎡1  0 −1  0⎤        ⎡ 1    0    0 ⎤
//! Bᵀ = ⎢0  1  1  0⎥    G = ⎢1/2  1/2  1/2⎥    Aᵀ = ⎡1 1  1  0⎤
//!      ⎢0 −1  1  0⎥        ⎢1/2 −1/2  1/2⎥         ⎣0 1 −1 −1⎦
//!      ⎣0  1  0 −1⎦        ⎣ 0    0    1 ⎦
//! ```
//!
//! In this network the 3×3 convolutions (Fire and DFire expands, `refine`) hold most of the
//! multiply-accumulates. The fused kernel (`cpu.rs`) runs those of them that gain ([`fits`]:
//! inference, deep inputs, wide rows — dfire5 to dfire2 and `refine` at 360×480) here, block by
//! block: the input
//! transform of the block's tiles, the 16 GEMMs (`gemm` crate), then the output transform with
//! bias and ReLU straight into the block's place in the output. The transforms run over whole
//! tile rows, so they vectorise. The rounding error is a small multiple of the direct
//! convolution's (the tests hold it to Burn's convolution at the same tolerances).

use rayon::prelude::*;

use super::cpu::{Conv, matmul};
use crate::host::HostFloat;

/// Whether `conv` over `c_in` channels of rows `w` wide runs here: an inference convolution
/// (with a bias) that is 3×3, stride 1, padding 1 (output size = input size), with at least 64
/// input channels and rows at least 40 wide. Below those the 16 GEMMs are too small (k = c_in,
/// n = the block's tiles) and im2col + one GEMM is faster; so is the training path's
/// convolution (no bias) in the training step (measured in `BENCHMARKS.md`).
pub(super) fn fits<T>(conv: &Conv<'_, T>, c_in: usize, w: usize) -> bool {
    conv.kernel == [3, 3]
        && conv.stride == [1, 1]
        && conv.padding == [1, 1]
        && conv.bias.is_some()
        && c_in >= 64
        && w >= 40
}

/// The transformed weights `U = G g Gᵀ`, laid out `[c_out][16][c_in]` (tile position `ξ`'s
/// GEMM left-hand matrix starts at `ξ·c_in`, rows `16·c_in` apart), from `weight: [c_out, c_in,
/// 3, 3]`. Computed in f64, output channels in parallel (each writes its own contiguous rows).
pub(super) fn weights<T: HostFloat>(weight: &[T], c_out: usize, c_in: usize) -> Vec<T> {
    let mut u = vec![T::ZERO; 16 * c_out * c_in];
    u.par_chunks_mut(16 * c_in)
        .enumerate()
        .for_each(|(co, rows)| {
            for c in 0..c_in {
                let g: [f64; 9] = std::array::from_fn(|i| weight[(co * c_in + c) * 9 + i].to_f64());
                // t = G g (4×3), then t Gᵀ (4×4): the same three-to-four map on rows, then
                // columns.
                let expand = |a: f64, b: f64, c: f64| [a, (a + b + c) / 2.0, (a - b + c) / 2.0, c];
                let columns: [[f64; 4]; 3] =
                    std::array::from_fn(|j| expand(g[j], g[3 + j], g[6 + j]));
                for i in 0..4 {
                    let row = expand(columns[0][i], columns[1][i], columns[2][i]);
                    for (j, value) in row.into_iter().enumerate() {
                        rows[(i * 4 + j) * c_in + c] = T::from_f64(value);
                    }
                }
            }
        });
    u
}

/// Scratch buffers a block reuses: transformed input, GEMM output, padded input rows, and two
/// output rows.
pub(super) struct Buffers<T> {
    v: Vec<T>,
    m: Vec<T>,
    rows: Vec<T>,
    y: Vec<T>,
}

impl<T> Default for Buffers<T> {
    fn default() -> Self {
        Self {
            v: Vec::new(),
            m: Vec::new(),
            rows: Vec::new(),
            y: Vec::new(),
        }
    }
}

/// `conv` (3×3, stride 1, padding 1; [`fits`]) over output rows `oy0..oy1` of `image:
/// [c_in, h, w]`, with its bias and ReLU, into `dst`: output channel `co`'s row `oy` at
/// `dst + co·dst_rs + (oy − oy0)·w`. `u` is [`weights`] of `conv.weight`.
///
/// # Safety
/// `dst` must be valid for writes of `conv.c_out` rows of `(oy1 − oy0)·w` elements at stride
/// `dst_rs`, which no other thread writes.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn conv3x3<T: HostFloat>(
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
    let (tiles_y, tiles_x) = ((oy1 - oy0).div_ceil(2), w.div_ceil(2));
    let tiles = tiles_y * tiles_x;
    let Buffers { v, m, rows, y } = buffers;
    v.resize(16 * c_in * tiles, T::ZERO);
    m.resize(16 * c_out * tiles, T::ZERO);
    // Four input rows, zero-padded by one column on the left and enough on the right for the
    // last tile: 2·tiles_x + 2 columns.
    let width = 2 * tiles_x + 2;
    rows.resize(4 * width, T::ZERO);

    // Input transform: V[ξ][c][tile] = (Bᵀ d B)[ξ].
    for c in 0..c_in {
        let channel = &image[c * h * w..][..h * w];
        for ty in 0..tiles_y {
            for i in 0..4 {
                let row = &mut rows[i * width..][..width];
                row.fill(T::ZERO);
                let iy = (oy0 + 2 * ty + i).checked_sub(1).filter(|&y| y < h);
                if let Some(iy) = iy {
                    row[1..1 + w].copy_from_slice(&channel[iy * w..][..w]);
                }
            }
            let (d0, rest) = rows.split_at_mut(width);
            let (d1, rest) = rest.split_at_mut(width);
            let (d2, d3) = rest.split_at_mut(width);
            // Bᵀ d, in place, over whole rows: (d0 − d2, d1 + d2, d2 − d1, d1 − d3).
            for k in 0..width {
                let (a, b, c_, d) = (d0[k], d1[k], d2[k], d3[k]);
                d0[k] = a - c_;
                d1[k] = b.add(c_);
                d2[k] = c_ - b;
                d3[k] = b - d;
            }
            // · B, per tile: columns 2tx .. 2tx + 3.
            let base = ty * tiles_x;
            for (i, t) in [&*d0, &*d1, &*d2, &*d3].into_iter().enumerate() {
                let [o0, o1, o2, o3] =
                    [0, 1, 2, 3].map(|j| ((i * 4 + j) * c_in + c) * tiles + base);
                for tx in 0..tiles_x {
                    let q = &t[2 * tx..2 * tx + 4];
                    v[o0 + tx] = q[0] - q[2];
                    v[o1 + tx] = q[1].add(q[2]);
                    v[o2 + tx] = q[2] - q[1];
                    v[o3 + tx] = q[1] - q[3];
                }
            }
        }
    }

    // M[ξ] = U[ξ] · V[ξ]: [c_out, c_in] · [c_in, tiles].
    for xi in 0..16 {
        // SAFETY: `m`, `u` and `v` hold the 16 matrices at these offsets and strides.
        unsafe {
            let dst = m.as_mut_ptr().add(xi * c_out * tiles);
            let lhs = u.as_ptr().add(xi * c_in);
            let rhs = v.as_ptr().add(xi * c_in * tiles);
            matmul(
                [c_out, tiles, c_in],
                (dst, tiles),
                (lhs, 16 * c_in),
                (rhs, tiles),
            );
        }
    }

    // Output transform: Y = Aᵀ M A, then bias and ReLU, two output rows per tile row.
    let out_rows = oy1 - oy0;
    y.resize(2 * width, T::ZERO);
    for co in 0..c_out {
        let bias = conv.bias.map_or(T::ZERO, |b| b[co]);
        let finish = |v: T| {
            let s = v.add(bias);
            if conv.relu && !(s > T::ZERO) {
                T::ZERO
            } else {
                s
            }
        };
        for ty in 0..tiles_y {
            let at = |xi: usize| &m[(xi * c_out + co) * tiles + ty * tiles_x..][..tiles_x];
            let mm: [&[T]; 16] = std::array::from_fn(at);
            let (y0, y1) = y.split_at_mut(width);
            for tx in 0..tiles_x {
                // Per row i of the tile: s_i = m_i0 + m_i1 + m_i2, r_i = m_i1 − m_i2 − m_i3.
                let s = |i: usize| mm[4 * i][tx].add(mm[4 * i + 1][tx]).add(mm[4 * i + 2][tx]);
                let r = |i: usize| mm[4 * i + 1][tx] - mm[4 * i + 2][tx] - mm[4 * i + 3][tx];
                let (s0, s1, s2, s3) = (s(0), s(1), s(2), s(3));
                let (r0, r1, r2, r3) = (r(0), r(1), r(2), r(3));
                y0[2 * tx] = finish(s0.add(s1).add(s2));
                y0[2 * tx + 1] = finish(r0.add(r1).add(r2));
                y1[2 * tx] = finish(s1 - s2 - s3);
                y1[2 * tx + 1] = finish(r1 - r2 - r3);
            }
            for (dy, src) in [&*y0, &*y1].into_iter().enumerate() {
                let oy = 2 * ty + dy;
                if oy < out_rows {
                    // SAFETY: row `oy` of channel `co` lies in the caller's target.
                    unsafe {
                        let row = dst.add(co * dst_rs + oy * w);
                        std::ptr::copy_nonoverlapping(src.as_ptr(), row, w);
                    }
                }
            }
        }
    }
}
