//! The CPU fast path, as a backend extension for NdArray and Flex: in inference, convolution +
//! bias + ReLU in one pass over NCHW data; in training, the convolutions, batch norm + ReLU and
//! the last layer with hand-written gradients.
//!
//! ```text
//! fused/mod.rs    FusedConvOps (the extension trait), the Tensor-level functions, when they apply
//! fused/cpu.rs    host kernels: row blocks of im2col (none for 1×1) → GEMM (`gemm` crate) → bias + ReLU
//! fused/winograd.rs    F(4×4, 3×3) for the deep, wide 3×3 layers
//! fused/conv_transpose.rs  the last layer, the 3×3 stride-2 transposed convolution
//! fused/grad.rs   the training path: Autodiff with hand-written gradients
//! fused/batch_norm.rs  host kernels of training-mode batch norm + ReLU and its gradient
//! ```
//!
//! Burn's CPU convolutions convert every input to channels-last, build an im2col matrix of the
//! whole image and write the output back to NCHW, then bias and ReLU are two more passes and
//! a Fire module's concatenation a third. Here each output row block is computed once, straight
//! into its place in the NCHW output: a 1×1 convolution is a GEMM on the input as it lies, a
//! 3×3 convolution builds im2col for one block of rows (a cache-sized buffer), and bias and
//! ReLU are applied to the block while it is in cache. The two expand branches of a Fire
//! module write into the two halves of the concatenated output; in a DFire module they stay in
//! a block-sized buffer that the squeeze reads straight away.
//!
//! Each operation has one entry point that decides by itself: the fused kernels on inference
//! devices ([`applies`]: NdArray or Flex without autodiff, f32 or f64; the network calls them for
//! blocks with a bias and no batch norm, as [`SqueezeSegNet::for_inference`] leaves them).
//! Elsewhere on NdArray and Flex — training included — convolutions run on [`conv2d_train`]
//! ([`trains`]), differentiable with this crate's gradients. WGPU and every other case get
//! Burn's own ops, which is the reference the tests compare both paths with. On an autodiff
//! backend the inference-only trait methods compute the same function from Burn's
//! differentiable ops, so even a direct call never drops a gradient.
//!
//! [`SqueezeSegNet::for_inference`]: crate::SqueezeSegNet::for_inference
#![allow(missing_docs)] // The macro-generated Dispatch items carry no docs.
#![allow(deprecated)] // NdArray: see `ops`.
#![allow(clippy::too_many_arguments)]

mod batch_norm;
mod conv_transpose;
mod cpu;
mod grad;
mod winograd;

use burn::backend::{Backend, Dispatch, backend_extension, tensor::FloatTensor};
use burn::prelude::*;
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{DType, activation};

use crate::BackendKind;

/// Fused convolution + bias + ReLU on the CPU backends. Use the Tensor-level functions
/// [`conv2d_bias_relu`] (or [`conv2d_bias`]), [`fire_expand`] and [`dfire`].
#[backend_extension(NdArray, Flex, Autodiff)]
pub trait FusedConvOps: Backend {
    /// `relu(conv2d(x, weight) + bias)` (without the ReLU when `relu` is false): groups 1,
    /// dilation 1, symmetric zero padding.
    ///
    /// `x: [n, c_in, h, w]`, `weight: [c_out, c_in, kh, kw]`, `bias: [c_out]` →
    /// `[n, c_out, (h + 2·pad_h − kh) / stride_h + 1, (w + 2·pad_w − kw) / stride_w + 1]`.
    fn seg_conv2d_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride_h: usize,
        stride_w: usize,
        pad_h: usize,
        pad_w: usize,
        relu: bool,
    ) -> FloatTensor<Self>;

    /// A Fire module's expand stage: `cat([relu(conv1x1(x) + b1), relu(conv3x3(x, pad 1) + b3)], 1)`,
    /// each branch written straight into its half of the output.
    ///
    /// `x: [n, c_in, h, w]`, `w1: [e1, c_in, 1, 1]`, `w3: [e3, c_in, 3, 3]` →
    /// `[n, e1 + e3, h, w]`.
    fn seg_fire_expand(
        x: FloatTensor<Self>,
        w1: FloatTensor<Self>,
        b1: FloatTensor<Self>,
        w3: FloatTensor<Self>,
        b3: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// A whole DFire module: [`seg_fire_expand`](FusedConvOps::seg_fire_expand), then
    /// `relu(conv1x1(·, ws) + bs)` of the concatenation, block by block (the concatenated
    /// expand output never exists as a whole tensor).
    ///
    /// `x: [n, c_in, h, w]`, `w1: [e1, c_in, 1, 1]`, `w3: [e3, c_in, 3, 3]`,
    /// `ws: [c_out, e1 + e3, 1, 1]` → `[n, c_out, h, w]`.
    fn seg_dfire(
        x: FloatTensor<Self>,
        w1: FloatTensor<Self>,
        b1: FloatTensor<Self>,
        w3: FloatTensor<Self>,
        b3: FloatTensor<Self>,
        ws: FloatTensor<Self>,
        bs: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// The network's last layer: `conv_transpose2d(x, weight) + bias` for a 3×3 kernel, stride 2,
    /// no padding, with the output padding (0 or 1 per side) that gives `[out_h, out_w]`.
    ///
    /// `x: [n, c_in, h, w]`, `weight: [c_in, c_out, 3, 3]`, `bias: [c_out]` →
    /// `[n, c_out, out_h, out_w]`, `out_h` = `2h + 1` or `2h + 2`, `out_w` = `2w + 1` or `2w + 2`.
    fn seg_conv_transpose3x3_s2(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        out_h: usize,
        out_w: usize,
    ) -> FloatTensor<Self>;

    /// The gradients of [`seg_conv_transpose3x3_s2`](FusedConvOps::seg_conv_transpose3x3_s2)
    /// with respect to `x`, `weight` and `bias`, given its input, weight and output gradient.
    ///
    /// `x: [n, c_in, h, w]`, `weight: [c_in, c_out, 3, 3]`, `grad: [n, c_out, out_h, out_w]` →
    /// `(dx [n, c_in, h, w], dweight [c_in, c_out, 3, 3], dbias [c_out])`.
    fn seg_conv_transpose3x3_s2_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// `conv2d(x, weight)`, symmetric zero padding, no bias — the training path's convolution,
    /// differentiable on autodiff devices (`grad.rs`).
    ///
    /// `x: [n, c_in, h, w]`, `weight: [c_out, c_in, kh, kw]` →
    /// `[n, c_out, (h + 2·pad_h − kh) / stride_h + 1, (w + 2·pad_w − kw) / stride_w + 1]`.
    fn seg_conv2d_train(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride_h: usize,
        stride_w: usize,
        pad_h: usize,
        pad_w: usize,
    ) -> FloatTensor<Self>;

    /// Gradient of [`seg_conv2d_train`](FusedConvOps::seg_conv2d_train) with respect to its weight:
    /// `dW[co][ci][ky][kx] = Σ grad[b][co][y][x] · x[b][ci][y·sh + ky − pad_h][x·sw + kx − pad_w]`.
    ///
    /// `x: [n, c_in, h, w]`, `grad: [n, c_out, oh, ow]` → `[c_out, c_in, kernel_h, kernel_w]`.
    fn seg_conv2d_weight_grad(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        kernel_h: usize,
        kernel_w: usize,
        stride_h: usize,
        stride_w: usize,
        pad_h: usize,
        pad_w: usize,
    ) -> FloatTensor<Self>;

    /// Training-mode batch norm, then ReLU: `relu(γ·(x − μ)/√(σ² + ε) + β)` with μ and σ² the
    /// batch's per-channel mean and biased variance, which are returned too (for the running
    /// statistics); differentiable on autodiff devices (`grad.rs`).
    ///
    /// `x: [n, c, h, w]`, `gamma, beta: [c]` → `([n, c, h, w], mean [c], variance [c])`.
    fn seg_batch_norm_relu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// Gradients of [`seg_batch_norm_relu`](FusedConvOps::seg_batch_norm_relu) with respect to
    /// `x`, `gamma` and `beta`, given its input, output, statistics and output gradient.
    ///
    /// `x, output, grad: [n, c, h, w]`, `gamma, mean, variance: [c]` →
    /// `(dx [n, c, h, w], dgamma [c], dbeta [c])`.
    fn seg_batch_norm_relu_backward(
        x: FloatTensor<Self>,
        output: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

// Every Tensor-level function below is the one entry point of its operation: it runs the fused
// kernel where that applies and falls back by itself (to the training kernels, then to Burn's
// ops), so callers never test the device. On an autodiff backend the inference-only ops are the
// same function built from Burn's differentiable ops (`grad.rs`): no path drops a gradient.

/// `conv2d(x, weight)` with the given stride, symmetric padding and no bias, differentiable:
/// this crate's kernels and gradients on NdArray and Flex (plain or autodiff devices,
/// [`trains`]), Burn's convolution elsewhere.
///
/// # Shapes
/// - `x`: `[n, c_in, h, w]`, `weight`: `[c_out, c_in, kh, kw]`
/// - output: `[n, c_out, (h + 2·padding[0] − kh) / stride[0] + 1, (w + 2·padding[1] − kw) / stride[1] + 1]`
pub fn conv2d_train(
    x: Tensor<4>,
    weight: Tensor<4>,
    stride: [usize; 2],
    padding: [usize; 2],
) -> Tensor<4> {
    let fits =
        trains(&x) && trains(&weight) && same_place(&x, &weight) && weight.dims()[1] == x.dims()[1];
    if !fits {
        let options = ConvOptions::new(stride, padding, [1, 1], 1);
        return burn::tensor::module::conv2d(x, weight, None, options);
    }
    Tensor::from_dispatch(Dispatch::seg_conv2d_train(
        x.into_dispatch(),
        weight.into_dispatch(),
        stride[0],
        stride[1],
        padding[0],
        padding[1],
    ))
}

/// Whether [`conv2d_train`] runs `x` on this crate's kernels: a tensor of NdArray or Flex, with
/// or without autodiff, in f32 or f64.
pub fn trains<const D: usize>(x: &Tensor<D>) -> bool {
    matches!(
        BackendKind::of(&x.device()),
        Some(BackendKind::Flex | BackendKind::NdArray)
    ) && matches!(x.dtype(), DType::F32 | DType::F64)
}

/// Whether the fused inference kernels take `x`: a tensor of NdArray or Flex, without
/// autodiff, in f32 or f64. The fused functions check it on every operand themselves.
pub fn applies<const D: usize>(x: &Tensor<D>) -> bool {
    use burn::backend::DispatchAutodiffContext;
    let device = x.device();
    // The device alone does not tell (a module forked onto an autodiff device can hold
    // parameters whose device reads as the inner one), so the tensor's own autodiff
    // association is checked too.
    let autodiff = !matches!(
        x.clone().into_dispatch().autodiff,
        DispatchAutodiffContext::Disabled
    );
    !autodiff && !device.is_autodiff() && trains(x)
}

fn same_place<const D: usize>(x: &Tensor<4>, t: &Tensor<D>) -> bool {
    t.device() == x.device() && t.dtype() == x.dtype()
}

/// Whether a fused inference kernel takes these operands: all [`applies`], on `x`'s device and
/// in its dtype.
fn inference_operands(x: &Tensor<4>, weights: &[&Tensor<4>], biases: &[&Tensor<1>]) -> bool {
    applies(x)
        && weights.iter().all(|w| applies(*w) && same_place(x, *w))
        && biases.iter().all(|b| applies(*b) && same_place(x, *b))
}

/// `relu(conv2d(x, weight) + bias)` with groups 1 and dilation 1: one fused pass on inference
/// devices of the CPU backends ([`applies`]); elsewhere [`conv2d_train`] (training on NdArray
/// and Flex) or Burn's convolution, then the bias and the ReLU.
///
/// # Shapes
/// - `x`: `[n, c_in, h, w]`, `weight`: `[c_out, c_in, kh, kw]`, `bias`: `[c_out]`
/// - output: `[n, c_out, (h + 2·padding[0] − kh) / stride[0] + 1, (w + 2·padding[1] − kw) / stride[1] + 1]`
pub fn conv2d_bias_relu(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    stride: [usize; 2],
    padding: [usize; 2],
) -> Tensor<4> {
    conv2d_bias(x, weight, bias, stride, padding, true)
}

/// [`conv2d_bias_relu`] with the ReLU optional: `conv2d(x, weight) + bias` when `relu` is false.
pub fn conv2d_bias(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    stride: [usize; 2],
    padding: [usize; 2],
    relu: bool,
) -> Tensor<4> {
    let fused = weight.dims()[1] == x.dims()[1] && inference_operands(&x, &[&weight], &[&bias]);
    if !fused {
        let y = if trains(&x) {
            let c = bias.dims()[0];
            conv2d_train(x, weight, stride, padding) + bias.reshape([1, c, 1, 1])
        } else {
            let options = ConvOptions::new(stride, padding, [1, 1], 1);
            burn::tensor::module::conv2d(x, weight, Some(bias), options)
        };
        return if relu { activation::relu(y) } else { y };
    }
    Tensor::from_dispatch(Dispatch::seg_conv2d_bias(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        stride[0],
        stride[1],
        padding[0],
        padding[1],
        relu,
    ))
}

/// Whether `x` and the expand weights fit [`fire_expand`]'s kernel: a 1×1 and a 3×3 kernel over
/// `x`'s channels, and every operand on an inference device.
fn expand_fits(
    x: &Tensor<4>,
    w1: &Tensor<4>,
    b1: &Tensor<1>,
    w3: &Tensor<4>,
    b3: &Tensor<1>,
) -> bool {
    let ([_, c1, k1h, k1w], [_, c3, k3h, k3w]) = (w1.dims(), w3.dims());
    [c1, c3] == [x.dims()[1]; 2]
        && [k1h, k1w, k3h, k3w] == [1, 1, 3, 3]
        && inference_operands(x, &[w1, w3], &[b1, b3])
}

/// A Fire module's two expand branches, concatenated: `cat([relu(conv1x1(x, w1) + b1),
/// relu(conv3x3(x, w3, padding 1) + b3)], 1)`, each branch written straight into its half of the
/// output on inference devices of the CPU backends; two [`conv2d_bias_relu`] and a
/// concatenation elsewhere.
///
/// # Shapes
/// - `x`: `[n, c_in, h, w]`, `w1`: `[e1, c_in, 1, 1]`, `b1`: `[e1]`, `w3`: `[e3, c_in, 3, 3]`,
///   `b3`: `[e3]`
/// - output: `[n, e1 + e3, h, w]`
pub fn fire_expand(
    x: Tensor<4>,
    w1: Tensor<4>,
    b1: Tensor<1>,
    w3: Tensor<4>,
    b3: Tensor<1>,
) -> Tensor<4> {
    if !expand_fits(&x, &w1, &b1, &w3, &b3) {
        let e1 = conv2d_bias_relu(x.clone(), w1, b1, [1, 1], [0, 0]);
        let e3 = conv2d_bias_relu(x, w3, b3, [1, 1], [1, 1]);
        return Tensor::cat(vec![e1, e3], 1);
    }
    Tensor::from_dispatch(Dispatch::seg_fire_expand(
        x.into_dispatch(),
        w1.into_dispatch(),
        b1.into_dispatch(),
        w3.into_dispatch(),
        b3.into_dispatch(),
    ))
}

/// A whole DFire module: `relu(conv1x1(fire_expand(x, w1, b1, w3, b3), ws) + bs)`, block by
/// block on inference devices of the CPU backends (the concatenated expand output never exists
/// as a whole tensor); [`fire_expand`] then [`conv2d_bias_relu`] elsewhere.
///
/// # Shapes
/// - `x`: `[n, c_in, h, w]`, `w1`: `[e1, c_in, 1, 1]`, `w3`: `[e3, c_in, 3, 3]`,
///   `ws`: `[c_out, e1 + e3, 1, 1]`, biases `[e1]`, `[e3]`, `[c_out]`
/// - output: `[n, c_out, h, w]`
pub fn dfire(
    x: Tensor<4>,
    [w1, w3, ws]: [Tensor<4>; 3],
    [b1, b3, bs]: [Tensor<1>; 3],
) -> Tensor<4> {
    let [_, cs, ksh, ksw] = ws.dims();
    let fits = expand_fits(&x, &w1, &b1, &w3, &b3)
        && [cs, ksh, ksw] == [w1.dims()[0] + w3.dims()[0], 1, 1]
        && inference_operands(&x, &[&ws], &[&bs]);
    if !fits {
        let expanded = fire_expand(x, w1, b1, w3, b3);
        return conv2d_bias_relu(expanded, ws, bs, [1, 1], [0, 0]);
    }
    Tensor::from_dispatch(Dispatch::seg_dfire(
        x.into_dispatch(),
        w1.into_dispatch(),
        b1.into_dispatch(),
        w3.into_dispatch(),
        b3.into_dispatch(),
        ws.into_dispatch(),
        bs.into_dispatch(),
    ))
}

/// Training-mode batch norm followed by ReLU: `relu(γ·(x − μ)/√(σ² + ε) + β)`, with μ and σ²
/// the batch's per-channel mean and biased variance, returned with the output (what the running
/// statistics are updated from). Three passes forward and two backward on NdArray and Flex
/// ([`trains`], every operand on `x`'s device and dtype); Burn's
/// [`batch_norm_train`](burn::tensor::module::batch_norm_train) and ReLU elsewhere.
///
/// # Shapes
/// - `x`: `[n, c, h, w]`, `gamma`, `beta`: `[c]`
/// - output: `([n, c, h, w], mean [c], variance [c])`
pub fn batch_norm_relu_train(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
) -> (Tensor<4>, Tensor<1>, Tensor<1>) {
    let c = x.dims()[1];
    let fits = trains(&x)
        && [&gamma, &beta]
            .iter()
            .all(|p| same_place(&x, *p) && p.dims() == [c]);
    if !fits {
        let result = burn::tensor::module::batch_norm_train(x, gamma, beta, epsilon);
        return (
            activation::relu(result.output),
            result.mean,
            result.variance,
        );
    }
    let (y, mean, variance) = Dispatch::seg_batch_norm_relu(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        epsilon,
    );
    (
        Tensor::from_dispatch(y),
        Tensor::from_dispatch(mean),
        Tensor::from_dispatch(variance),
    )
}

/// The network's last layer, `conv_transpose2d(x, weight) + bias` for a 3×3 kernel, stride 2, no
/// padding, dilation 1 and one group, with the output padding (0 or 1 per side) that lands on
/// `size`: one GEMM per block of input rows (every pixel's nine taps for every output channel)
/// and a pass that adds the taps into place, with this crate's gradients on autodiff devices,
/// on NdArray and Flex ([`trains`]); Burn's transposed convolution elsewhere.
///
/// # Shapes
/// - `x`: `[n, c_in, h, w]`, `weight`: `[c_in, c_out, 3, 3]` (Burn's and PyTorch's
///   transposed-convolution layout), `bias`: `[c_out]`
/// - output: `[n, c_out, size[0], size[1]]`, `size` = `2h + 1` or `2h + 2` by `2w + 1` or `2w + 2`
///
/// # Panics
/// When the kernel is not 3×3 or `size` is not one of those.
pub fn conv_transpose3x3_s2(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    [out_h, out_w]: [usize; 2],
) -> Tensor<4> {
    let [_, c_in, h, w] = x.dims();
    let [weight_c_in, _, kh, kw] = weight.dims();
    assert!(
        [kh, kw] == [3, 3]
            && (2 * h + 1..=2 * h + 2).contains(&out_h)
            && (2 * w + 1..=2 * w + 2).contains(&out_w),
        "conv_transpose3x3_s2: a {kh}×{kw} kernel to {out_h}×{out_w} from {h}×{w} (3×3 to 2·{h}+1 \
         or +2 by 2·{w}+1 or +2 expected)"
    );
    let fits = weight_c_in == c_in
        && trains(&x)
        && trains(&weight)
        && trains(&bias)
        && same_place(&x, &weight)
        && same_place(&x, &bias);
    if !fits {
        let padding_out = [out_h - (2 * h + 1), out_w - (2 * w + 1)];
        let options = ConvTransposeOptions::new([2, 2], [0, 0], padding_out, [1, 1], 1);
        return burn::tensor::module::conv_transpose2d(x, weight, Some(bias), options);
    }
    Tensor::from_dispatch(Dispatch::seg_conv_transpose3x3_s2(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        out_h,
        out_w,
    ))
}
