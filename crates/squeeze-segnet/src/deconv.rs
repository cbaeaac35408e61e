//! The final 3×3, stride-2 transposed convolution, computed as four small ordinary
//! convolutions — one per output phase — whose outputs are interleaved.
//!
//! A stride-2 transposed convolution (no padding) sums `x[i] · w[k]` into `y[2i + k]`. Split by
//! the parity of the output index, in one dimension:
//!
//! ```text
//! y[2m]     = x[m] · w[0] + x[m − 1] · w[2]     (an ordinary 2-tap correlation, padding 1)
//! y[2m + 1] = x[m] · w[1]                       (a 1-tap correlation)
//! ```
//!
//! and in two dimensions the four (row, column) parities give 2×2, 2×1, 1×2 and 1×1 kernels
//! cut from the 3×3 one. The multiply-accumulates are exactly those of the transposed
//! convolution, but they run as ordinary convolutions, which every backend implements with a
//! GEMM — Burn 0.22's NdArray transposed convolution is a scalar loop (timings in `BENCHMARKS.md`).
//! Output padding (the extra last row or column that only receives the bias) is a zero row of
//! the odd phase. The phases are [`fused::conv2d_train`]: this crate's kernels and gradients on
//! NdArray and Flex, Burn's convolution elsewhere.

use crate::{BackendKind, fused};
use burn::nn::conv::ConvTranspose2d;
use burn::prelude::*;
use burn::tensor::module::conv_transpose2d;
use burn::tensor::ops::ConvTransposeOptions;

/// `deconv`'s transposed convolution applied to `x`, with the output padding (0 or 1 per side)
/// that lands exactly on `[height, width]`: `2·(h − 1) + 3 + pad = height` for the network's
/// 3×3, stride-2 layer.
///
/// On NdArray and Flex, in inference and training, that layer runs on this crate's kernel and
/// gradients ([`fused::conv_transpose3x3_s2`]: one GEMM per block of rows for every tap, then
/// the taps added into place; faster than either backend's own, in `BENCHMARKS.md`). Without
/// a bias on NdArray, whose transposed convolution is a scalar loop, it runs as four ordinary
/// convolutions ([`conv_transpose2d_3x3_s2`]; exact, and much faster there); WGPU and any
/// other layer shape get the backend's own transposed convolution.
///
/// # Panics
/// When `[height, width]` is not the layer's natural output size plus an output padding
/// smaller than the stride, per side ([`SqueezeSegNet::forward`](crate::SqueezeSegNet::forward)
/// checks its input so that this never happens there).
pub fn forward(deconv: &ConvTranspose2d, x: Tensor<4>, [height, width]: [usize; 2]) -> Tensor<4> {
    let bias = deconv.bias.as_ref().map(|b| b.val());
    let weight = deconv.weight.val();
    let [_, _, h, w] = x.dims();
    let network_layer = weight.dims()[2..] == [3, 3]
        && deconv.stride == [2, 2]
        && deconv.padding == [0, 0]
        && deconv.dilation == [1, 1]
        && deconv.groups == 1;
    if network_layer {
        if let Some(bias) = bias.clone().filter(|_| fused::trains(&x)) {
            return fused::conv_transpose3x3_s2(x, weight, bias, [height, width]);
        }
        if BackendKind::of(&x.device()) == Some(BackendKind::NdArray) {
            return conv_transpose2d_3x3_s2(x, weight, bias, [height, width]);
        }
    }
    // The size without output padding, per dimension d: (len − 1)·s + dilation·(k − 1) + 1 − 2p.
    let natural = |len: usize, d: usize| {
        (len - 1) * deconv.stride[d] + deconv.dilation[d] * (deconv.kernel_size[d] - 1) + 1
            - 2 * deconv.padding[d]
    };
    let padding_out = [height - natural(h, 0), width - natural(w, 1)];
    let options = ConvTransposeOptions::new(
        deconv.stride,
        deconv.padding,
        padding_out,
        deconv.dilation,
        deconv.groups,
    );
    conv_transpose2d(x, weight, bias, options)
}

/// `conv_transpose2d` with a 3×3 kernel, stride 2, no padding, dilation 1 and one group, cropped
/// to `output_size` (`2·h + 1` or `2·h + 2` per side: output padding 0 or 1).
///
/// # Shapes
/// - `x`: `[batch, c_in, h, w]`
/// - `weight`: `[c_in, c_out, 3, 3]` (Burn's and PyTorch's transposed-convolution layout)
/// - `bias`: `[c_out]`
/// - output: `[batch, c_out, output_size[0], output_size[1]]`
///
/// # Panics
/// When the kernel is not 3×3 or `output_size` is not `2·h + 1` or `2·h + 2` by `2·w + 1` or
/// `2·w + 2`.
pub fn conv_transpose2d_3x3_s2(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    [out_h, out_w]: [usize; 2],
) -> Tensor<4> {
    let [n, _, h, w] = x.dims();
    let [_, c_out, kh, kw] = weight.dims();
    assert_eq!(
        [kh, kw],
        [3, 3],
        "the phase decomposition is written for 3×3 kernels"
    );
    assert!(
        (2 * h + 1..=2 * h + 2).contains(&out_h) && (2 * w + 1..=2 * w + 2).contains(&out_w),
        "output size {out_h}×{out_w} is not 2·{h}+1 or +2 by 2·{w}+1 or +2"
    );
    let device = x.device();
    // Ordinary-convolution weights [c_out, c_in, rows, cols] from the given taps. The taps are
    // listed in correlation order: [2, 0] for the even phase, [1] for the odd one.
    let kernel = |rows: &[usize], cols: &[usize]| -> Tensor<4> {
        let k = weight.clone().swap_dims(0, 1);
        let pick = |t: Tensor<4>, dim: usize, taps: &[usize]| {
            let parts: Vec<Tensor<4>> = taps.iter().map(|&i| t.clone().narrow(dim, i, 1)).collect();
            Tensor::cat(parts, dim)
        };
        pick(pick(k, 2, rows), 3, cols)
    };
    let phase = |rows: &[usize], cols: &[usize]| -> Tensor<4> {
        let padding = [usize::from(rows.len() == 2), usize::from(cols.len() == 2)];
        let k = kernel(rows, cols);
        let y = fused::conv2d_train(x.clone(), k, [1, 1], padding);
        // Every phase to (h + 1) × (w + 1): odd phases get a zero last row / column.
        let [_, _, ph, pw] = y.dims();
        let y = if ph == h {
            Tensor::cat(
                vec![y, Tensor::zeros([n, c_out, 1, pw], (&device, x.dtype()))],
                2,
            )
        } else {
            y
        };
        if pw == w {
            Tensor::cat(
                vec![y, Tensor::zeros([n, c_out, h + 1, 1], (&device, x.dtype()))],
                3,
            )
        } else {
            y
        }
    };
    let (even, odd) = (&[2usize, 0][..], &[1usize][..]);
    // Interleave columns within each row parity, then the two row parities.
    let cols = |a: Tensor<4>, b: Tensor<4>| {
        Tensor::stack::<5>(vec![a, b], 4).reshape([n, c_out, h + 1, 2 * (w + 1)])
    };
    let even_rows = cols(phase(even, even), phase(even, odd));
    let odd_rows = cols(phase(odd, even), phase(odd, odd));
    let y = Tensor::stack::<5>(vec![even_rows, odd_rows], 3)
        .reshape([n, c_out, 2 * (h + 1), 2 * (w + 1)])
        .slice([0..n, 0..c_out, 0..out_h, 0..out_w]);
    match bias {
        Some(b) => y + b.reshape([1, c_out, 1, 1]),
        None => y,
    }
}
