//! Host kernels of training-mode batch norm followed by ReLU, the step after every convolution
//! of the network in training: three passes forward (the mean, the variance, then normalise +
//! affine + ReLU in one) and two backward (the two per-channel sums, then the input gradient), instead
//! of the dozen full passes — transposed copies included — that Burn's generic batch norm, its
//! backward and the ReLU take.
//!
//! With `x̂ = (x − μ) / √(σ² + ε)` (μ, σ² the batch's per-channel mean and biased variance)
//! and `y = max(γ·x̂ + β, 0)`, the gradients given `dy` are, with `g = dy · [y > 0]` and `m` the
//! elements per channel:
//!
//! ```text
//! dβ = Σ g        dγ = Σ g·x̂        dx = γ/√(σ² + ε) · (g − dβ/m − x̂·dγ/m)
//! ```
//!
//! Sums are taken in eight lanes of the element type over chunks of 512, each chunk added in
//! f64, and the variance in a second pass over `x − μ` (no cancellation from `E[x²] − μ²`).

use burn::backend::tensor::FloatTensor;
use burn::tensor::TensorData;
use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::simd::multiversion;

use crate::host::{
    HostBackend, HostData, HostFloat, dims4, float_slice, par_fill, with_float_type,
};

/// `Σ_i f(i)` for `i < len`, for `K` sums at once (one pass over the operands `f` reads):
/// eight lanes of `T` per chunk of 512, the chunks added in f64.
#[inline(always)]
fn chunked_sums<T: HostFloat, const K: usize>(len: usize, f: impl Fn(usize) -> [T; K]) -> [f64; K] {
    let mut total = [0.0; K];
    let mut start = 0;
    while start < len {
        let end = (start + 512).min(len);
        let mut lanes = [[T::ZERO; 8]; K];
        let mut i = start;
        while i + 8 <= end {
            for l in 0..8 {
                let v = f(i + l);
                for k in 0..K {
                    lanes[k][l] = lanes[k][l].add(v[k]);
                }
            }
            i += 8;
        }
        for k in 0..K {
            let mut chunk: f64 = lanes[k].iter().map(|v| v.to_f64()).sum();
            for j in i..end {
                chunk += f(j)[k].to_f64();
            }
            total[k] += chunk;
        }
        start = end;
    }
    total
}

/// The planes of channel `ch` in `[n, c, plane]` data.
fn channel_planes<T>(
    data: &[T],
    [n, c, plane]: [usize; 3],
    ch: usize,
) -> impl Iterator<Item = &[T]> {
    (0..n).map(move |b| &data[(b * c + ch) * plane..][..plane])
}

/// Per channel `(mean, biased variance)` of `x: [n, c, plane]`, in f64.
fn statistics<T: HostFloat>(x: &[T], dims: [usize; 3]) -> Vec<(f64, f64)> {
    let [n, c, plane] = dims;
    let count = (n * plane) as f64;
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let sum: f64 = channel_planes(x, dims, ch).map(plane_sum).sum();
            let mean = sum / count;
            let m = T::from_f64(mean);
            let squares: f64 = channel_planes(x, dims, ch)
                .map(|p| plane_squares(p, m))
                .sum();
            (mean, squares / count)
        })
        .collect()
}

/// `γ / √(σ² + ε)` per channel.
fn scales<T: HostFloat>(gamma: &[T], stats: &[(f64, f64)], epsilon: f64) -> Vec<f64> {
    gamma
        .iter()
        .zip(stats)
        .map(|(g, (_, var))| g.to_f64() / (var + epsilon).sqrt())
        .collect()
}

/// Forward: `(relu(γ·x̂ + β), mean, variance)`.
fn forward<T: HostFloat>(
    x: &[T],
    gamma: &[T],
    beta: &[T],
    dims: [usize; 3],
    epsilon: f64,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let [_, c, plane] = dims;
    let stats = statistics(x, dims);
    let scale = scales(gamma, &stats, epsilon);
    // y = x·s + (β − μ·s), per channel.
    let affine: Vec<(T, T)> = (0..c)
        .map(|ch| {
            let shift = beta[ch].to_f64() - stats[ch].0 * scale[ch];
            (T::from_f64(scale[ch]), T::from_f64(shift))
        })
        .collect();
    let chunk = plane.max(1);
    let out = par_fill(x.len(), chunk, |i, dst| {
        let (s, t) = affine[i % c];
        affine_relu(dst, &x[i * chunk..], s, t);
    });
    let mean = stats.iter().map(|(m, _)| T::from_f64(*m)).collect();
    let var = stats.iter().map(|(_, v)| T::from_f64(*v)).collect();
    (out, mean, var)
}

/// Backward: `(dx, dγ, dβ)` given `x`, the forward's output `y` and statistics, and `dy`.
#[allow(clippy::too_many_arguments)]
fn backward<T: HostFloat>(
    x: &[T],
    y: &[T],
    gamma: &[T],
    mean: &[T],
    var: &[T],
    dy: &[T],
    dims: [usize; 3],
    epsilon: f64,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let [n, c, plane] = dims;
    let count = (n * plane) as f64;
    let inv_std: Vec<f64> = var
        .iter()
        .map(|v| 1.0 / (v.to_f64() + epsilon).sqrt())
        .collect();
    // dβ = Σ g, and Σ g·(x − μ) (dγ = that · 1/σ).
    let sums: Vec<(f64, f64)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let m = mean[ch];
            let planes = channel_planes(dy, dims, ch)
                .zip(channel_planes(y, dims, ch))
                .zip(channel_planes(x, dims, ch));
            let (mut sum_g, mut sum_gx) = (0.0, 0.0);
            for ((g, out), xs) in planes {
                let [a, b] = gradient_sums(g, out, xs, m);
                sum_g += a;
                sum_gx += b;
            }
            (sum_g, sum_gx)
        })
        .collect();
    let dbeta: Vec<T> = sums.iter().map(|(g, _)| T::from_f64(*g)).collect();
    let dgamma: Vec<T> = sums
        .iter()
        .zip(&inv_std)
        .map(|((_, gx), s)| T::from_f64(gx * s))
        .collect();
    // dx = k·g − k·Σg/m − k·(x − μ)·Σg(x − μ)/(m·σ²ε), with k = γ/σ: per channel
    // dx = k·g + a·(x − μ) + b.
    let coefficients: Vec<(T, T, T, T)> = (0..c)
        .map(|ch| {
            let k = gamma[ch].to_f64() * inv_std[ch];
            let (sum_g, sum_gx) = sums[ch];
            let a = -k * sum_gx * inv_std[ch] * inv_std[ch] / count;
            let b = -k * sum_g / count;
            (T::from_f64(k), T::from_f64(a), T::from_f64(b), mean[ch])
        })
        .collect();
    let chunk = plane.max(1);
    let dx = par_fill(x.len(), chunk, |i, dst| {
        let start = i * chunk;
        input_gradient(
            dst,
            &x[start..],
            &y[start..],
            &dy[start..],
            coefficients[i % c],
        );
    });
    (dx, dgamma, dbeta)
}

// The per-plane loops, each compiled for the CPU's vector extension (`crate::simd`).

multiversion! {
    /// `Σ p`.
    fn plane_sum<T: HostFloat>(p: &[T]) -> f64 = plane_sum_body;
}

#[inline(always)]
fn plane_sum_body<T: HostFloat>(p: &[T]) -> f64 {
    chunked_sums(p.len(), |i| [p[i]])[0]
}

multiversion! {
    /// `Σ (p − m)²`.
    fn plane_squares<T: HostFloat>(p: &[T], m: T) -> f64 = plane_squares_body;
}

#[inline(always)]
fn plane_squares_body<T: HostFloat>(p: &[T], m: T) -> f64 {
    chunked_sums(p.len(), |i| {
        let d = p[i] - m;
        [d * d]
    })[0]
}

multiversion! {
    /// `dst = relu(x·s + t)` over `dst`'s length.
    fn affine_relu<T: HostFloat>(dst: &mut [MaybeUninit<T>], x: &[T], s: T, t: T) = affine_relu_body;
}

#[inline(always)]
fn affine_relu_body<T: HostFloat>(dst: &mut [MaybeUninit<T>], x: &[T], s: T, t: T) {
    for (d, v) in dst.iter_mut().zip(x) {
        let y = (*v * s).add(t);
        d.write(if y > T::ZERO { y } else { T::ZERO });
    }
}

/// The output gradient where the ReLU passed it (`out > 0`), else 0.
#[inline(always)]
fn masked<T: HostFloat>(g: T, out: T) -> T {
    if out > T::ZERO { g } else { T::ZERO }
}

multiversion! {
    /// `(Σ g', Σ g'·(x − m))` of one plane, `g'` the gradient through the ReLU.
    fn gradient_sums<T: HostFloat>(g: &[T], out: &[T], xs: &[T], m: T) -> [f64; 2] = gradient_sums_body;
}

#[inline(always)]
fn gradient_sums_body<T: HostFloat>(g: &[T], out: &[T], xs: &[T], m: T) -> [f64; 2] {
    let (out, xs) = (&out[..g.len()], &xs[..g.len()]);
    chunked_sums(g.len(), |i| {
        let gi = masked(g[i], out[i]);
        [gi, gi * (xs[i] - m)]
    })
}

multiversion! {
    /// `dst = k·g' + a·(x − m) + b` over `dst`'s length, `g'` the gradient through the ReLU.
    fn input_gradient<T: HostFloat>(
        dst: &mut [MaybeUninit<T>],
        xs: &[T],
        out: &[T],
        g: &[T],
        coefficients: (T, T, T, T),
    ) = input_gradient_body;
}

#[inline(always)]
fn input_gradient_body<T: HostFloat>(
    dst: &mut [MaybeUninit<T>],
    xs: &[T],
    out: &[T],
    g: &[T],
    (k, a, b, m): (T, T, T, T),
) {
    let n = dst.len();
    let (xs, out, g) = (&xs[..n], &out[..n], &g[..n]);
    for (j, d) in dst.iter_mut().enumerate() {
        let gj = masked(g[j], out[j]);
        d.write((k * gj).add(a * (xs[j] - m)).add(b));
    }
}

/// `[n, c, plane]` of an NCHW tensor.
fn planes_of(x: &HostData) -> [usize; 3] {
    let [n, c, h, w] = dims4(&x.shape());
    [n, c, h * w]
}

pub(super) fn batch_norm_relu<B: HostBackend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    epsilon: f64,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let device = burn::backend::TensorMetadata::device(&x);
    let shape = burn::backend::TensorMetadata::shape(&x);
    let [x, gamma, beta] = [x, gamma, beta].map(B::float_host);
    let dims = planes_of(&x);
    let c = dims[1];
    let (out, mean, var) = with_float_type!("batch_norm_relu", x, |T| {
        let (out, mean, var) = forward::<T>(
            float_slice(&x),
            float_slice(&gamma),
            float_slice(&beta),
            dims,
            epsilon,
        );
        (
            TensorData::new(out, shape.clone()),
            TensorData::new(mean, [c]),
            TensorData::new(var, [c]),
        )
    });
    (
        B::float_from_data(out, &device),
        B::float_from_data(mean, &device),
        B::float_from_data(var, &device),
    )
}

#[allow(clippy::too_many_arguments)]
pub(super) fn batch_norm_relu_backward<B: HostBackend>(
    x: FloatTensor<B>,
    output: FloatTensor<B>,
    gamma: FloatTensor<B>,
    mean: FloatTensor<B>,
    variance: FloatTensor<B>,
    epsilon: f64,
    grad: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let device = burn::backend::TensorMetadata::device(&x);
    let shape = burn::backend::TensorMetadata::shape(&x);
    let [x, output, gamma, mean, variance, grad] =
        [x, output, gamma, mean, variance, grad].map(B::float_host);
    let dims = planes_of(&x);
    let c = dims[1];
    let (dx, dgamma, dbeta) = with_float_type!("batch_norm_relu_backward", x, |T| {
        let (dx, dgamma, dbeta) = backward::<T>(
            float_slice(&x),
            float_slice(&output),
            float_slice(&gamma),
            float_slice(&mean),
            float_slice(&variance),
            float_slice(&grad),
            dims,
            epsilon,
        );
        (
            TensorData::new(dx, shape.clone()),
            TensorData::new(dgamma, [c]),
            TensorData::new(dbeta, [c]),
        )
    });
    (
        B::float_from_data(dx, &device),
        B::float_from_data(dgamma, &device),
        B::float_from_data(dbeta, &device),
    )
}
