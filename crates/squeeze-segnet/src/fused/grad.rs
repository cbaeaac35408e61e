//! The training path's convolution: `conv2d(x, weight)` without bias (the convolutions followed
//! by batch norm), differentiable, with the gradients computed by this crate's kernels.
//!
//! Flex's own convolution backward is slow where a layer has many input and few output
//! channels — in this network the squeezes of fire2/fire3 (64/128 → 16) and the expands of
//! dfire3/dfire2 (128 → 16); `cargo bench --bench layers -- layers-train` compares the two
//! paths per layer (figures in `BENCHMARKS.md`). Here:
//!
//! - `dx` is the convolution of the output gradient with the transposed, flipped kernel
//!   (`[c_in, c_out, kh, kw]`, padding `k − 1 − p`), run on the fused forward kernel, for
//!   stride 1; for larger strides (conv1, whose input needs no gradient in training) Burn's
//!   transposed convolution;
//! - `dW` is `Σ grad · im2col(x)ᵀ`, one GEMM per block of rows, summed over Rayon tasks
//!   ([`FusedConvOps::seg_conv2d_weight_grad`]).
//!
//! Training-mode batch norm + ReLU ([`FusedConvOps::seg_batch_norm_relu`]) gets its three
//! gradients from one backward op (host kernels in `batch_norm.rs`).
//!
//! Used by [`ConvBlock`](crate::ConvBlock) on autodiff devices over NdArray and Flex; the
//! tests compare every gradient with Burn's.

use burn::backend::autodiff::{
    Autodiff,
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::backend::ops::{FloatTensorOps, ModuleOps};
use burn::backend::{AutodiffBackend, Backend, TensorMetadata, tensor::FloatTensor};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{Scalar, Shape};

use super::FusedConvOps;
use crate::host::dims4;

#[derive(Debug)]
struct ConvBackward;

/// Input, weight, stride `[sh, sw]`, padding `[ph, pw]`.
type ConvState<B> = (FloatTensor<B>, FloatTensor<B>, [usize; 2], [usize; 2]);

impl<B: Backend + FusedConvOps> Backward<B, 2> for ConvBackward {
    type State = ConvState<B>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, weight, [sh, sw], [ph, pw]) = ops.state;
        let [_, _, kh, kw] = dims4(&weight.shape());
        let [_, _, h, w] = dims4(&x.shape());
        if let Some(node) = node_w {
            let dw = B::seg_conv2d_weight_grad(x, grad.clone(), kh, kw, sh, sw, ph, pw);
            grads.register::<B>(node.id, dw);
        }
        if let Some(node) = node_x {
            let dx = if [sh, sw] == [1, 1] && ph < kh && pw < kw {
                // Transposed (in ↔ out) and flipped kernel; "full" padding k − 1 − p.
                let flipped = B::float_flip(B::float_swap_dims(weight, 0, 1), &[2, 3]);
                B::seg_conv2d_train(grad, flipped, 1, 1, kh - 1 - ph, kw - 1 - pw)
            } else {
                // Strided (or padded by a kernel size or more): the transposed convolution, with
                // the output padding that restores the input size (rows and columns the strides
                // skipped).
                let padding_out = [(h + 2 * ph - kh) % sh, (w + 2 * pw - kw) % sw];
                let options = ConvTransposeOptions::new([sh, sw], [ph, pw], padding_out, [1, 1], 1);
                B::conv_transpose2d(grad, weight, None, options)
            };
            grads.register::<B>(node.id, dx);
        }
    }
}

#[derive(Debug)]
struct BatchNormReluBackward;

/// Input, output, gamma, mean, variance, epsilon.
type BatchNormState<B> = (
    FloatTensor<B>,
    FloatTensor<B>,
    FloatTensor<B>,
    FloatTensor<B>,
    FloatTensor<B>,
    f64,
);

impl<B: Backend + FusedConvOps> Backward<B, 3> for BatchNormReluBackward {
    type State = BatchNormState<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, output, gamma, mean, variance, epsilon) = ops.state;
        let (dx, dgamma, dbeta) =
            B::seg_batch_norm_relu_backward(x, output, gamma, mean, variance, epsilon, grad);
        for (node, g) in [(node_x, dx), (node_gamma, dgamma), (node_beta, dbeta)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

#[derive(Debug)]
struct ConvTransposeBackward;

impl<B: Backend + FusedConvOps> Backward<B, 3> for ConvTransposeBackward {
    /// Input and weight.
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, weight) = ops.state;
        let (dx, dw, db) = B::seg_conv_transpose3x3_s2_backward(x, weight, grad);
        for (node, g) in [(node_x, dx), (node_w, dw), (node_b, db)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

impl<B: Backend + FusedConvOps, C: CheckpointStrategy> FusedConvOps for Autodiff<B, C> {
    fn seg_conv2d_train(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride_h: usize,
        stride_w: usize,
        pad_h: usize,
        pad_w: usize,
    ) -> FloatTensor<Self> {
        let (x, gx) = x.into_parts();
        let (weight, gw) = weight.into_parts();
        let (stride, padding) = ([stride_h, stride_w], [pad_h, pad_w]);
        match ConvBackward
            .prepare::<C>([gx, gw])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::seg_conv2d_train(
                    x.clone(),
                    weight.clone(),
                    stride_h,
                    stride_w,
                    pad_h,
                    pad_w,
                );
                prep.finish((x, weight, stride, padding), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::seg_conv2d_train(
                x, weight, stride_h, stride_w, pad_h, pad_w,
            )),
        }
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
        if x.is_tracked() || grad.is_tracked() {
            // Differentiated again (double backward): Burn's own weight gradient, written in the
            // autodiff backend's differentiable ops. The weight only lends its shape.
            let [_, c_in, _, _] = dims4(&x.shape());
            let [_, c_out, _, _] = dims4(&grad.shape());
            let shape = Shape::new([c_out, c_in, kernel_h, kernel_w]);
            let weight = Self::float_zeros(shape, &x.device(), x.dtype().into());
            let options = ConvOptions::new([stride_h, stride_w], [pad_h, pad_w], [1, 1], 1);
            return <Self as ModuleOps<Self>>::conv2d_weight_backward(x, weight, grad, options);
        }
        Self::from_inner(B::seg_conv2d_weight_grad(
            x.into_primitive(),
            grad.into_primitive(),
            kernel_h,
            kernel_w,
            stride_h,
            stride_w,
            pad_h,
            pad_w,
        ))
    }

    fn seg_batch_norm_relu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (x, gx) = x.into_parts();
        let (gamma, gg) = gamma.into_parts();
        let (beta, gb) = beta.into_parts();
        // The statistics are outputs without a gradient (Burn's batch norm detaches them too).
        match BatchNormReluBackward
            .prepare::<C>([gx, gg, gb])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (y, mean, var) =
                    B::seg_batch_norm_relu(x.clone(), gamma.clone(), beta, epsilon);
                let state = (x, y.clone(), gamma, mean.clone(), var.clone(), epsilon);
                let y = prep.finish(state, y);
                (y, Self::from_inner(mean), Self::from_inner(var))
            }
            OpsKind::UnTracked(prep) => {
                let (y, mean, var) = B::seg_batch_norm_relu(x, gamma, beta, epsilon);
                (
                    prep.finish(y),
                    Self::from_inner(mean),
                    Self::from_inner(var),
                )
            }
        }
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
        let operands = [&x, &output, &gamma, &mean, &variance, &grad];
        if operands.iter().any(|t| t.is_tracked()) {
            // Differentiated again (double backward): the same formula in differentiable ops.
            return batch_norm_relu_grad::<Self>(x, output, gamma, mean, variance, epsilon, grad);
        }
        let (dx, dgamma, dbeta) = B::seg_batch_norm_relu_backward(
            x.into_primitive(),
            output.into_primitive(),
            gamma.into_primitive(),
            mean.into_primitive(),
            variance.into_primitive(),
            epsilon,
            grad.into_primitive(),
        );
        (
            Self::from_inner(dx),
            Self::from_inner(dgamma),
            Self::from_inner(dbeta),
        )
    }

    fn seg_conv_transpose3x3_s2(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        out_h: usize,
        out_w: usize,
    ) -> FloatTensor<Self> {
        let (x, gx) = x.into_parts();
        let (weight, gw) = weight.into_parts();
        let (bias, gb) = bias.into_parts();
        match ConvTransposeBackward
            .prepare::<C>([gx, gw, gb])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::seg_conv_transpose3x3_s2(x.clone(), weight.clone(), bias, out_h, out_w);
                prep.finish((x, weight), y)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::seg_conv_transpose3x3_s2(x, weight, bias, out_h, out_w))
            }
        }
    }

    fn seg_conv_transpose3x3_s2_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        if x.is_tracked() || weight.is_tracked() || grad.is_tracked() {
            // Differentiated again (double backward): Burn's gradients of its transposed
            // convolution, in the autodiff backend's differentiable ops.
            let [_, _, h, w] = dims4(&x.shape());
            let [_, c_out, oh, ow] = dims4(&grad.shape());
            let padding_out = [oh - (2 * h + 1), ow - (2 * w + 1)];
            let options = ConvTransposeOptions::new([2, 2], [0, 0], padding_out, [1, 1], 1);
            let bias = Self::float_zeros(Shape::new([c_out]), &x.device(), x.dtype().into());
            let dx = <Self as ModuleOps<Self>>::conv_transpose2d_x_backward(
                weight.clone(),
                grad.clone(),
                options.clone(),
            );
            let dw = <Self as ModuleOps<Self>>::conv_transpose2d_weight_backward(
                x.clone(),
                weight,
                grad.clone(),
                options,
            );
            let db = <Self as ModuleOps<Self>>::conv_transpose2d_bias_backward(x, bias, grad);
            return (dx, dw, db);
        }
        let (dx, dw, db) = B::seg_conv_transpose3x3_s2_backward(
            x.into_primitive(),
            weight.into_primitive(),
            grad.into_primitive(),
        );
        (
            Self::from_inner(dx),
            Self::from_inner(dw),
            Self::from_inner(db),
        )
    }

    // The inference-only ops: the Tensor-level entry points never send autodiff tensors here,
    // but the trait methods are public, so a direct call computes the same function from the
    // autodiff backend's own differentiable ops — tracked inputs get their gradients.

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
        conv_bias::<Self>(x, weight, bias, [stride_h, stride_w], [pad_h, pad_w], relu)
    }

    fn seg_fire_expand(
        x: FloatTensor<Self>,
        w1: FloatTensor<Self>,
        b1: FloatTensor<Self>,
        w3: FloatTensor<Self>,
        b3: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        expand::<Self>(x, w1, b1, w3, b3)
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
        let expanded = expand::<Self>(x, w1, b1, w3, b3);
        conv_bias::<Self>(expanded, ws, bs, [1, 1], [0, 0], true)
    }
}

/// `conv2d(x, weight) + bias`, then the ReLU when `relu`, in `B`'s own ops.
fn conv_bias<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: FloatTensor<B>,
    stride: [usize; 2],
    padding: [usize; 2],
    relu: bool,
) -> FloatTensor<B> {
    let y = B::conv2d(
        x,
        weight,
        Some(bias),
        ConvOptions::new(stride, padding, [1, 1], 1),
    );
    if relu { B::relu(y) } else { y }
}

/// A Fire module's expand stage in `B`'s own ops.
fn expand<B: Backend>(
    x: FloatTensor<B>,
    w1: FloatTensor<B>,
    b1: FloatTensor<B>,
    w3: FloatTensor<B>,
    b3: FloatTensor<B>,
) -> FloatTensor<B> {
    let e1 = conv_bias::<B>(x.clone(), w1, b1, [1, 1], [0, 0], true);
    let e3 = conv_bias::<B>(x, w3, b3, [1, 1], [1, 1], true);
    B::float_cat(vec![e1, e3], 1)
}

/// The gradient of batch norm + ReLU (`batch_norm.rs` has the formula) in `B`'s own ops:
/// differentiable when `B` is an autodiff backend. `sign(output)` is the ReLU's mask (the
/// output is 0 or positive).
fn batch_norm_relu_grad<B: Backend>(
    x: FloatTensor<B>,
    output: FloatTensor<B>,
    gamma: FloatTensor<B>,
    mean: FloatTensor<B>,
    variance: FloatTensor<B>,
    epsilon: f64,
    grad: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let [n, c, h, w] = dims4(&x.shape());
    let count = Scalar::Float((n * h * w) as f64);
    let per_channel = |t| B::float_reshape(t, Shape::new([1, c, 1, 1]));
    let channel_sum = |t| B::float_reshape(B::float_sum_dims(t, &[0, 2, 3]), Shape::new([c]));
    let g = B::float_mul(grad, B::float_sign(output));
    let inv_std = B::float_recip(B::float_sqrt(B::float_add_scalar(
        variance,
        Scalar::Float(epsilon),
    )));
    let inv_std = per_channel(inv_std);
    let x_hat = B::float_mul(B::float_sub(x, per_channel(mean)), inv_std.clone());
    let dbeta = channel_sum(g.clone());
    let dgamma = channel_sum(B::float_mul(g.clone(), x_hat.clone()));
    let mean_g = B::float_div_scalar(per_channel(dbeta.clone()), count);
    let mean_gx = B::float_div_scalar(per_channel(dgamma.clone()), count);
    let centred = B::float_sub(B::float_sub(g, mean_g), B::float_mul(x_hat, mean_gx));
    let dx = B::float_mul(B::float_mul(per_channel(gamma), inv_std), centred);
    (dx, dgamma, dbeta)
}
