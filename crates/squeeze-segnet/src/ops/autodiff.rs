//! Autodiff: hand-written backward passes. Burn's `#[backend_extension]` routes autodiff devices
//! here; nothing is derived.
//!
//! - pooling: `dx = scatter-add(dy at indices)`, computed by the backend's
//!   [`seg_max_pool2d_backward`](SegNetOps::seg_max_pool2d_backward);
//! - unpooling: `dx = gather(dy at indices)` for cells that won their position, by
//!   [`seg_max_unpool2d_backward`](SegNetOps::seg_max_unpool2d_backward).
//!
//! The backward ops themselves are not differentiable again (no second-order gradients): on an
//! autodiff device they run untracked.

use burn::backend::autodiff::{
    Autodiff,
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::backend::{
    AutodiffBackend, Backend, TensorMetadata,
    tensor::{FloatTensor, IntTensor},
};
use burn::tensor::IntDType;

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
        Self::from_inner(B::seg_max_pool2d_backward(
            grad.into_primitive(),
            indices,
            in_h,
            in_w,
            kernel_h,
            kernel_w,
            stride_h,
            stride_w,
        ))
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
        Self::from_inner(B::seg_max_unpool2d_backward(grad.into_primitive(), indices))
    }
}
