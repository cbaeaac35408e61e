//! Autodiff: hand-written backward passes. Burn's `#[backend_extension]` routes autodiff devices
//! here; nothing is derived.
//!
//! - pooling: `dx = scatter-add(dy at indices)`, computed by the backend's
//!   [`seg_max_pool2d_backward`](SegNetOps::seg_max_pool2d_backward);
//! - unpooling: `dx = gather(dy at indices)` for cells that won their position, by
//!   [`seg_max_unpool2d_backward`](SegNetOps::seg_max_unpool2d_backward).
//!
//! The backward ops are linear in the gradient they take, and differentiable again through it
//! (double backward, e.g. a gradient penalty): their own derivatives are each other's adjoints —
//! the pooling gradient's is a gather at the indices, the unpooling gradient's is the unpooling
//! itself. Indices carry no gradient. When the incoming gradient is not tracked they run
//! untracked, at the inner backend's cost.

use burn::backend::autodiff::{
    Autodiff,
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::backend::{
    Backend, TensorMetadata,
    tensor::{FloatTensor, IntTensor},
};
use burn::tensor::{IntDType, Shape};

use super::SegNetOps;

#[derive(Debug)]
struct PoolBackward;

/// Indices, input size `[h, w]`, kernel `[kh, kw]`, stride `[sh, sw]`.
type PoolState<B> = (IntTensor<B>, [usize; 2], [usize; 2], [usize; 2]);

impl<B: Backend + SegNetOps> Backward<B, 1> for PoolBackward {
    type State = PoolState<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (indices, [h, w], [kh, kw], [sh, sw]) = ops.state;
        if let Some(node) = parent {
            let dx = B::seg_max_pool2d_backward(grad, indices, h, w, kh, kw, sh, sw);
            grads.register::<B>(node.id, dx);
        }
    }
}

#[derive(Debug)]
struct UnpoolBackward;

impl<B: Backend + SegNetOps> Backward<B, 1> for UnpoolBackward {
    type State = IntTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = parent {
            grads.register::<B>(node.id, B::seg_max_unpool2d_backward(grad, ops.state));
        }
    }
}

/// Backward of [`seg_max_pool2d_backward`](SegNetOps::seg_max_pool2d_backward) with respect to
/// its gradient argument: the adjoint of a scatter-add is a gather at the same indices.
#[derive(Debug)]
struct PoolGradBackward;

impl<B: Backend + SegNetOps> Backward<B, 1> for PoolGradBackward {
    type State = IntTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = parent {
            grads.register::<B>(node.id, gather_at::<B>(grad, ops.state));
        }
    }
}

/// Backward of [`seg_max_unpool2d_backward`](SegNetOps::seg_max_unpool2d_backward) with respect
/// to its gradient argument. That op reads position `q` only into the cell that won `q`, so its
/// adjoint writes each cell's value at its index with the last cell winning: the unpooling.
#[derive(Debug)]
struct UnpoolGradBackward;

impl<B: Backend + SegNetOps> Backward<B, 1> for UnpoolGradBackward {
    /// Indices and the unpooled size `[out_h, out_w]`.
    type State = (IntTensor<B>, [usize; 2]);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (indices, [out_h, out_w]) = ops.state;
        if let Some(node) = parent {
            grads.register::<B>(node.id, B::seg_max_unpool2d(grad, indices, out_h, out_w));
        }
    }
}

/// `plane[n, c, indices[n, c, i, j]]` for each cell: `plane: [n, c, h, w]`,
/// `indices: [n, c, oh, ow]` (flat positions in an `h × w` plane) → `[n, c, oh, ow]`.
fn gather_at<B: Backend>(plane: FloatTensor<B>, indices: IntTensor<B>) -> FloatTensor<B> {
    let [n, c, h, w] = plane.shape().dims();
    let [_, _, oh, ow] = indices.shape().dims();
    let flat = B::float_reshape(plane, Shape::new([n, c, h * w]));
    let flat_indices = B::int_reshape(indices, Shape::new([n, c, oh * ow]));
    B::float_reshape(
        B::float_gather(2, flat, flat_indices),
        Shape::new([n, c, oh, ow]),
    )
}

impl<B: Backend + SegNetOps, C: CheckpointStrategy> SegNetOps for Autodiff<B, C> {
    fn seg_max_pool2d_with_indices(
        x: FloatTensor<Self>,
        kernel_h: usize,
        kernel_w: usize,
        stride_h: usize,
        stride_w: usize,
        indices_dtype: IntDType,
    ) -> (FloatTensor<Self>, IntTensor<Self>) {
        let shape = x.shape();
        let input_size = [shape[2], shape[3]];
        let (x, guard) = x.into_parts();
        match PoolBackward
            .prepare::<C>([guard])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (values, indices) = B::seg_max_pool2d_with_indices(
                    x,
                    kernel_h,
                    kernel_w,
                    stride_h,
                    stride_w,
                    indices_dtype,
                );
                let state = (
                    indices.clone(),
                    input_size,
                    [kernel_h, kernel_w],
                    [stride_h, stride_w],
                );
                (prep.finish(state, values), indices)
            }
            OpsKind::UnTracked(prep) => {
                let (values, indices) = B::seg_max_pool2d_with_indices(
                    x,
                    kernel_h,
                    kernel_w,
                    stride_h,
                    stride_w,
                    indices_dtype,
                );
                (prep.finish(values), indices)
            }
        }
    }

    fn seg_max_pool2d_backward(
        grad: FloatTensor<Self>,
        indices: IntTensor<Self>,
        in_h: usize,
        in_w: usize,
        kernel_h: usize,
        kernel_w: usize,
        stride_h: usize,
        stride_w: usize,
    ) -> FloatTensor<Self> {
        let (grad, guard) = grad.into_parts();
        let dx = |grad, indices| {
            B::seg_max_pool2d_backward(
                grad, indices, in_h, in_w, kernel_h, kernel_w, stride_h, stride_w,
            )
        };
        match PoolGradBackward
            .prepare::<C>([guard])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let out = dx(grad, indices.clone());
                prep.finish(indices, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(dx(grad, indices)),
        }
    }

    fn seg_max_unpool2d(
        x: FloatTensor<Self>,
        indices: IntTensor<Self>,
        out_h: usize,
        out_w: usize,
    ) -> FloatTensor<Self> {
        let (x, guard) = x.into_parts();
        match UnpoolBackward
            .prepare::<C>([guard])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let out = B::seg_max_unpool2d(x, indices.clone(), out_h, out_w);
                prep.finish(indices, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::seg_max_unpool2d(x, indices, out_h, out_w)),
        }
    }

    fn seg_max_unpool2d_backward(
        grad: FloatTensor<Self>,
        indices: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        let [_, _, out_h, out_w] = grad.shape().dims();
        let (grad, guard) = grad.into_parts();
        match UnpoolGradBackward
            .prepare::<C>([guard])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let out = B::seg_max_unpool2d_backward(grad, indices.clone());
                prep.finish((indices, [out_h, out_w]), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::seg_max_unpool2d_backward(grad, indices)),
        }
    }
}
