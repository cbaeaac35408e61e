//! Batch norm folded into the convolution before it, for inference: the arithmetic once, for one
//! [`ConvBlock`](crate::ConvBlock) and, by record path, for a whole network.

use burn::prelude::*;

use crate::params::FloatTensors;

/// The batch norm of one block in inference mode: `γ·(y − mean)/√(var + ε) + β`.
pub(crate) struct NormStats {
    pub gamma: Tensor<1>,
    pub beta: Tensor<1>,
    pub mean: Tensor<1>,
    pub var: Tensor<1>,
    pub epsilon: f64,
}

/// The convolution that computes `norm(conv(x) + bias)`: with `s = γ / √(var + ε)`, weights
/// `W·s` per output channel and bias `(b − mean)·s + β` (`b = 0` without a bias).
///
/// # Shapes
/// - weight: `[c_out, c_in, k, k]`; bias and every statistic: `[c_out]`
pub(crate) fn fold(
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    norm: NormStats,
) -> (Tensor<4>, Tensor<1>) {
    let [c_out, ..] = weight.dims();
    let device = weight.device();
    // Running statistics may sit on another device (data-parallel training forks them).
    let (mean, var) = (norm.mean.to_device(&device), norm.var.to_device(&device));
    let scale = norm.gamma.div(var.add_scalar(norm.epsilon).sqrt());
    let bias = bias.unwrap_or_else(|| Tensor::zeros([c_out], &device));
    let bias = bias.sub(mean).mul(scale.clone()).add(norm.beta);
    (weight.mul(scale.reshape([c_out, 1, 1, 1])), bias)
}

/// `model`'s float tensors by record path (flattened), each block's batch norm folded into its
/// convolution: for every `P.norm.gamma`, the `P.norm.*` tensors are gone and `P.conv.weight` /
/// `P.conv.bias` are [`fold`]'s (every batch norm of the network has the same `epsilon`). What
/// the same network built without batch norm takes
/// ([`assign_float_params`](crate::params::assign_float_params)).
///
/// # Errors
/// The record path of a batch norm whose block has no `conv.weight` beside it.
pub(crate) fn folded_tensors<M: Module>(model: &M, epsilon: f64) -> Result<FloatTensors, String> {
    let mut tensors = FloatTensors::new();
    crate::visit_float_params(model, |path, shape, value| {
        tensors.insert(path.to_string(), (shape.to_vec(), value()));
    });
    let blocks: Vec<String> = tensors
        .keys()
        .filter_map(|path| path.strip_suffix(".norm.gamma").map(str::to_string))
        .collect();
    for block in blocks {
        let mut take = |name: &str| tensors.remove(&format!("{block}.{name}"));
        let (Some(gamma), Some(beta), Some(mean), Some(var), Some((shape, weight))) = (
            take("norm.gamma"),
            take("norm.beta"),
            take("norm.running_mean"),
            take("norm.running_var"),
            take("conv.weight"),
        ) else {
            return Err(format!(
                "batch norm '{block}.norm' follows no convolution '{block}.conv'"
            ));
        };
        let bias = take("conv.bias").map(|(_, b)| b);
        let dims: [usize; 4] = shape.clone().try_into().map_err(|_| {
            format!("'{block}.conv.weight' has shape {shape:?}, not a 2-D convolution's")
        })?;
        let stats = NormStats {
            gamma: gamma.1,
            beta: beta.1,
            mean: mean.1,
            var: var.1,
            epsilon,
        };
        let (weight, bias) = fold(weight.reshape(dims), bias, stats);
        let len = dims.iter().product::<usize>();
        tensors.insert(
            format!("{block}.conv.weight"),
            (shape, weight.reshape([len])),
        );
        tensors.insert(format!("{block}.conv.bias"), (vec![dims[0]], bias));
    }
    Ok(tensors)
}
