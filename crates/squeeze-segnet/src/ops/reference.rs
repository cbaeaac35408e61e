//! Naive reference implementations, written for clarity, not speed: one loop nest per op on the
//! host, in f64. Tests compare every backend's kernels against these; benchmarks use them as the
//! baseline.

use burn::prelude::*;

use super::{PoolOptions, pooled_len};

/// Host copy of a float tensor as f64, with its shape.
pub fn float_host(x: Tensor<4>) -> (Vec<f64>, [usize; 4]) {
    let dims = x.dims();
    let data = x.into_data().convert::<f64>();
    (data.try_to_vec::<f64>().expect("f64 after convert"), dims)
}

/// Host copy of an int tensor as i64, with its shape.
pub fn int_host(x: Tensor<4, Int>) -> (Vec<i64>, [usize; 4]) {
    let dims = x.dims();
    let data = x.into_data().convert::<i64>();
    (data.try_to_vec::<i64>().expect("i64 after convert"), dims)
}

/// Reference pooling: values, indices and the output shape.
///
/// Follows PyTorch's CPU kernel: the running maximum starts at `-inf` with the window's first
/// position, and a value replaces it when it is greater or NaN.
///
/// # Panics
/// When the input is smaller than the window.
pub fn max_pool2d_with_indices(
    x: &[f64],
    shape: [usize; 4],
    options: PoolOptions,
) -> (Vec<f64>, Vec<i64>, [usize; 4]) {
    let [n, c, h, w] = shape;
    let [kh, kw] = options.kernel;
    let [sh, sw] = options.stride;
    let oh = pooled_len(h, kh, sh).expect("input at least as large as the window");
    let ow = pooled_len(w, kw, sw).expect("input at least as large as the window");
    let mut values = Vec::with_capacity(n * c * oh * ow);
    let mut indices = Vec::with_capacity(n * c * oh * ow);
    for plane in 0..n * c {
        let base = plane * h * w;
        for i in 0..oh {
            for j in 0..ow {
                let (h0, w0) = (i * sh, j * sw);
                let mut best = f64::NEG_INFINITY;
                let mut best_index = h0 * w + w0;
                for y in h0..(h0 + kh).min(h) {
                    for x_ in w0..(w0 + kw).min(w) {
                        let v = x[base + y * w + x_];
                        if v > best || v.is_nan() {
                            best = v;
                            best_index = y * w + x_;
                        }
                    }
                }
                values.push(best);
                indices.push(best_index as i64);
            }
        }
    }
    (values, indices, [n, c, oh, ow])
}

/// Reference gradient of pooling: each output gradient added at its index.
pub fn max_pool2d_backward(
    grad: &[f64],
    indices: &[i64],
    pooled: [usize; 4],
    input_size: [usize; 2],
) -> Vec<f64> {
    let [n, c, oh, ow] = pooled;
    let plane_in = input_size[0] * input_size[1];
    let mut out = vec![0.0; n * c * plane_in];
    for plane in 0..n * c {
        for k in 0..oh * ow {
            let p = plane * oh * ow + k;
            out[plane * plane_in + indices[p] as usize] += grad[p];
        }
    }
    out
}

/// Reference unpooling: values written at their indices, the last cell winning collisions.
pub fn max_unpool2d(
    x: &[f64],
    indices: &[i64],
    shape: [usize; 4],
    output_size: [usize; 2],
) -> Vec<f64> {
    let [n, c, h, w] = shape;
    let plane_out = output_size[0] * output_size[1];
    let mut out = vec![0.0; n * c * plane_out];
    for plane in 0..n * c {
        for k in 0..h * w {
            let p = plane * h * w + k;
            out[plane * plane_out + indices[p] as usize] = x[p];
        }
    }
    out
}

/// Reference gradient of unpooling: the output gradient at each cell's index, or zero for a cell
/// whose value was overwritten by a later one.
pub fn max_unpool2d_backward(
    grad: &[f64],
    indices: &[i64],
    shape: [usize; 4],
    output_size: [usize; 2],
) -> Vec<f64> {
    let [n, c, h, w] = shape;
    let plane_out = output_size[0] * output_size[1];
    let mut winner = vec![usize::MAX; plane_out];
    let mut out = vec![0.0; n * c * h * w];
    for plane in 0..n * c {
        winner.fill(usize::MAX);
        for k in 0..h * w {
            winner[indices[plane * h * w + k] as usize] = k;
        }
        for k in 0..h * w {
            let q = indices[plane * h * w + k] as usize;
            if winner[q] == k {
                out[plane * h * w + k] = grad[plane * plane_out + q];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceil_mode_window_sees_only_the_input() {
        // 5×5 ramp, 2×2 windows, stride 2: ceil → 3×3, the last row/column of windows is 1 wide.
        let x: Vec<f64> = (0..25).map(f64::from).collect();
        let (v, i, s) = max_pool2d_with_indices(&x, [1, 1, 5, 5], PoolOptions::new([2, 2], [2, 2]));
        assert_eq!(s, [1, 1, 3, 3]);
        assert_eq!(i, vec![6, 8, 9, 16, 18, 19, 21, 23, 24]);
        assert_eq!(v, vec![6., 8., 9., 16., 18., 19., 21., 23., 24.]);
    }

    #[test]
    fn ties_go_to_the_first_maximum() {
        let x = vec![7.0; 9];
        let (_, i, _) = max_pool2d_with_indices(&x, [1, 1, 3, 3], PoolOptions::new([3, 3], [2, 2]));
        assert_eq!(i, vec![0]);
    }

    #[test]
    fn unpool_collision_last_wins_and_only_the_winner_gets_gradient() {
        let (x, idx) = (vec![1.0, 2.0, 3.0], vec![4_i64, 4, 0]);
        let out = max_unpool2d(&x, &idx, [1, 1, 1, 3], [3, 3]);
        assert_eq!(out, vec![3., 0., 0., 0., 2., 0., 0., 0., 0.]);
        let grad: Vec<f64> = (1..=9).map(f64::from).collect();
        let g = max_unpool2d_backward(&grad, &idx, [1, 1, 1, 3], [3, 3]);
        assert_eq!(g, vec![0., 5., 1.]);
    }
}
