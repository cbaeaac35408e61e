//! The custom ops on every backend (NdArray, Flex, WGPU through Fusion, and Autodiff on each):
//! against the naive reference, against Burn's own pooling where the semantics agree, by finite
//! differences, across backends, and with bad arguments.

mod common;

use burn::prelude::*;
use burn::tensor::DType;
use common::*;
use squeeze_segnet::OpError;
use squeeze_segnet::ops::{self, PoolOptions, max_pool2d_with_indices, max_unpool2d, reference};

/// Shapes and pool settings: odd sizes, batch > 1, stride above and below the kernel.
fn cases(rng: &mut Rng) -> Vec<([usize; 4], PoolOptions)> {
    let mut cases = vec![
        ([1, 1, 5, 5], PoolOptions::new([2, 2], [2, 2])),
        ([2, 3, 7, 9], PoolOptions::new([3, 3], [2, 2])),
        ([1, 64, 17, 23], PoolOptions::new([3, 3], [2, 2])),
        ([3, 2, 6, 11], PoolOptions::new([2, 3], [3, 2])), // stride > kernel in height
        ([2, 2, 10, 7], PoolOptions::new([1, 2], [3, 1])),
        ([1, 2, 3, 3], PoolOptions::new([3, 3], [1, 1])),
        ([1, 1, 4, 4], PoolOptions::new([4, 4], [4, 4])),
        // Wide rows: the CPU's 8-windows-at-a-time path, its tails and ceil-mode edges.
        ([1, 2, 7, 57], PoolOptions::new([3, 3], [2, 2])),
        ([2, 3, 5, 64], PoolOptions::new([3, 3], [2, 2])),
        ([1, 1, 4, 601], PoolOptions::new([3, 3], [2, 2])), // more than 256 windows per row
        ([1, 2, 6, 40], PoolOptions::new([2, 3], [1, 2])),
    ];
    for _ in 0..6 {
        let k = [rng.range(1, 4), rng.range(1, 4)];
        let s = [rng.range(1, 3), rng.range(1, 3)];
        let shape = [
            rng.range(1, 3),
            rng.range(1, 4),
            rng.range(k[0], 19),
            rng.range(k[1], 19),
        ];
        cases.push((shape, PoolOptions::new(k, s)));
    }
    cases
}

#[test]
fn pool_matches_the_reference_on_every_backend() {
    let mut rng = Rng::new(1);
    for (shape, options) in cases(&mut rng) {
        let x = rng.tied(shape.iter().product(), 4); // many ties: first maximum must win
        let (want_v, want_i, want_shape) = reference::max_pool2d_with_indices(&x, shape, options);
        for (kind, device) in backends() {
            for device in [device.clone(), device.clone().autodiff()] {
                let (v, i) = max_pool2d_with_indices(float(&x, shape, &device), options).unwrap();
                assert_eq!(v.dims(), want_shape, "{kind} {shape:?} {options:?}");
                assert_eq!(host(v), want_v, "{kind} values {shape:?} {options:?}");
                assert_eq!(host_int(i), want_i, "{kind} indices {shape:?} {options:?}");
            }
        }
    }
}

#[test]
fn pool_handles_infinities_everywhere_and_propagates_nan_on_the_cpu() {
    let shape = [1, 1, 3, 4];
    let inf = vec![
        f64::NEG_INFINITY,
        f64::NEG_INFINITY,
        1.0,
        -3.0,
        f64::NEG_INFINITY,
        f64::NEG_INFINITY,
        2.0,
        0.0,
        -1.0,
        5.0,
        f64::INFINITY,
        3.0,
    ];
    let mut nan = inf.clone();
    nan[3] = f64::NAN;
    nan[8] = f64::NAN;
    let options = PoolOptions::new([2, 2], [2, 2]);
    let (_, inf_i, _) = reference::max_pool2d_with_indices(&inf, shape, options);
    let (nan_v, nan_i, _) = reference::max_pool2d_with_indices(&nan, shape, options);
    assert_eq!(inf_i, vec![0, 6, 9, 10], "all -inf: the first position");
    assert_eq!(nan_i, vec![0, 3, 8, 10], "a NaN is a maximum");
    for (kind, device) in backends() {
        let (_, i) = max_pool2d_with_indices(float(&inf, shape, &device), options).unwrap();
        assert_eq!(host_int(i), inf_i, "{kind}");
        // WGSL gives no NaN guarantees (shader compilers may assume finite floats), so NaN
        // propagation is a CPU-backend property.
        if kind != squeeze_segnet::BackendKind::Wgpu {
            let (v, i) = max_pool2d_with_indices(float(&nan, shape, &device), options).unwrap();
            assert_eq!(host_int(i), nan_i, "{kind}");
            assert_close(&host(v), &nan_v, 0.0, 0.0, &format!("{kind} values"));
        }
    }
}

#[test]
fn pool_propagates_nan_in_wide_rows_on_the_cpu() {
    let mut rng = Rng::new(11);
    for (shape, options) in [
        ([1, 2, 5, 77], PoolOptions::new([3, 3], [2, 2])),
        ([1, 1, 9, 48], PoolOptions::new([3, 3], [2, 2])),
    ] {
        let mut x = rng.tied(shape.iter().product(), 6);
        for v in x.iter_mut() {
            if rng.uniform() < 0.05 {
                *v = f64::NAN;
            }
        }
        let (want_v, want_i, _) = reference::max_pool2d_with_indices(&x, shape, options);
        assert!(want_v.iter().any(|v| v.is_nan()), "the case has NaN maxima");
        for (kind, device) in backends() {
            if kind == squeeze_segnet::BackendKind::Wgpu {
                continue; // no NaN guarantees in WGSL (see above)
            }
            let (v, i) = max_pool2d_with_indices(float(&x, shape, &device), options).unwrap();
            assert_eq!(host_int(i), want_i, "{kind} {shape:?}");
            assert_close(&host(v), &want_v, 0.0, 0.0, &format!("{kind} values"));
        }
    }
}

#[test]
fn pool_agrees_with_burns_builtin_where_semantics_agree() {
    // Burn's own ceil-mode pooling follows PyTorch whenever kernel >= stride (no window can
    // start outside the input); compare there, on every backend.
    let mut rng = Rng::new(2);
    for (shape, options) in cases(&mut rng) {
        if options.kernel[0] < options.stride[0] || options.kernel[1] < options.stride[1] {
            continue;
        }
        let x = rng.tied(shape.iter().product(), 5);
        for (kind, device) in backends() {
            let t = float(&x, shape, &device);
            let (v, i) = max_pool2d_with_indices(t.clone(), options).unwrap();
            let burn_options = burn::tensor::ops::MaxPoolOptions::new(options.kernel)
                .with_stride(options.stride)
                .with_ceil_mode(true);
            let (bv, bi) = burn::tensor::module::max_pool2d_with_indices(t, burn_options);
            assert_eq!(host(v), host(bv), "{kind} values {shape:?} {options:?}");
            assert_eq!(
                host_int(i),
                host_int(bi),
                "{kind} indices {shape:?} {options:?}"
            );
        }
    }
}

#[test]
fn unpool_matches_the_reference_with_collisions_and_both_index_dtypes() {
    let mut rng = Rng::new(3);
    for (shape, options) in cases(&mut rng) {
        // Indices from a real pooling (overlapping windows repeat indices) ...
        let x = rng.tied(shape.iter().product(), 3);
        let (_, idx, pooled) = reference::max_pool2d_with_indices(&x, shape, options);
        // ... and values that differ per cell, so a collision's winner matters.
        let values = rng.distinct(idx.len());
        let out_size = [shape[2], shape[3]];
        let want = reference::max_unpool2d(&values, &idx, pooled, out_size);
        for (kind, device) in backends() {
            for dtype in [DType::I32, DType::I64] {
                for device in [device.clone(), device.clone().autodiff()] {
                    let result = max_unpool2d(
                        float(&values, pooled, &device),
                        int_as(&idx, pooled, &device, dtype),
                        out_size,
                    );
                    // A WGPU adapter without 64-bit integer shaders (some Mesa lavapipe builds)
                    // cannot run any i64 kernel: the checked op says so instead of panicking.
                    if dtype == DType::I64 && !supports_i64(&device) {
                        assert!(
                            matches!(result, Err(squeeze_segnet::OpError::Device { .. })),
                            "{kind}: {result:?}"
                        );
                        continue;
                    }
                    let out = result.unwrap();
                    assert_eq!(out.dims(), [shape[0], shape[1], shape[2], shape[3]]);
                    assert_close(
                        &host(out),
                        &want,
                        1e-6,
                        1e-6,
                        &format!("{kind} {dtype:?} {shape:?}"),
                    );
                }
            }
        }
    }
}

#[test]
fn unpool_collisions_keep_the_last_cell_on_every_backend() {
    // Three cells; the first two name position 4 of a 3×3 plane: the second (2.0) wins.
    let (x, idx) = (vec![1.0, 2.0, 3.0], vec![4_i64, 4, 0]);
    for (kind, device) in backends() {
        let out = max_unpool2d(
            float(&x, [1, 1, 1, 3], &device),
            int(&idx, [1, 1, 1, 3], &device),
            [3, 3],
        )
        .unwrap();
        assert_eq!(
            host(out),
            vec![3., 0., 0., 0., 2., 0., 0., 0., 0.],
            "{kind}"
        );
    }
}

/// Autodiff gradients of `sum(w ⊙ op(x))` against the reference backward, every backend.
#[test]
fn gradients_match_the_reference_backward_on_every_backend() {
    let mut rng = Rng::new(4);
    for (shape, options) in cases(&mut rng) {
        let x = rng.tied(shape.iter().product(), 3);
        let (_, idx, pooled) = reference::max_pool2d_with_indices(&x, shape, options);
        let in_size = [shape[2], shape[3]];
        let w_pool = rng.normal(idx.len());
        let w_unpool = rng.normal(shape.iter().product());
        let values = rng.distinct(idx.len());
        let want_pool = reference::max_pool2d_backward(&w_pool, &idx, pooled, in_size);
        let want_unpool = reference::max_unpool2d_backward(&w_unpool, &idx, pooled, in_size);
        for (kind, device) in backends() {
            let ad = device.clone().autodiff();
            // pooling
            let xt = float(&x, shape, &ad).require_grad();
            let (v, _) = max_pool2d_with_indices(xt.clone(), options).unwrap();
            let grads = (v * float(&w_pool, pooled, &ad)).sum().backward();
            let g = host(xt.grad(&grads).expect("pool gradient"));
            assert_close(
                &g,
                &want_pool,
                1e-5,
                1e-5,
                &format!("{kind} pool grad {shape:?} {options:?}"),
            );
            // unpooling
            let vt = float(&values, pooled, &ad).require_grad();
            let out = max_unpool2d(vt.clone(), int(&idx, pooled, &ad), in_size).unwrap();
            let grads = (out * float(&w_unpool, shape, &ad)).sum().backward();
            let g = host(vt.grad(&grads).expect("unpool gradient"));
            assert_close(
                &g,
                &want_unpool,
                1e-6,
                1e-6,
                &format!("{kind} unpool grad {shape:?} {options:?}"),
            );
        }
    }
}

/// Central finite differences of `L(x) = sum(w ⊙ op(x))`, element by element.
fn finite_difference(x: &[f64], eps: f64, loss: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let keep = x[i];
            x[i] = keep + eps;
            let up = loss(&x);
            x[i] = keep - eps;
            let down = loss(&x);
            x[i] = keep;
            (up - down) / (2.0 * eps)
        })
        .collect()
}

#[test]
fn pool_gradient_matches_finite_differences() {
    let mut rng = Rng::new(5);
    let shape = [2, 2, 7, 6];
    let options = PoolOptions::new([3, 3], [2, 2]); // overlapping windows share maxima
    let x = rng.distinct(shape.iter().product());
    let pooled = reference::max_pool2d_with_indices(&x, shape, options).2;
    let w = rng.normal(pooled.iter().product());
    for (kind, device) in backends() {
        // f64 on the CPU backends; f32 on WGPU (the loss is piecewise linear, so the
        // difference quotient is exact up to rounding as long as no maximum changes).
        let make = |v: &[f64], s, d: &Device| {
            if kind == squeeze_segnet::BackendKind::Wgpu {
                float(v, s, d)
            } else {
                float64(v, s, d)
            }
        };
        let loss = |v: &[f64]| {
            let (p, _) = max_pool2d_with_indices(make(v, shape, &device), options).unwrap();
            host((p * make(&w, pooled, &device)).sum())[0]
        };
        let numeric = finite_difference(&x, 1e-2, loss);
        let ad = device.clone().autodiff();
        let xt = make(&x, shape, &ad).require_grad();
        let (p, _) = max_pool2d_with_indices(xt.clone(), options).unwrap();
        let grads = (p * make(&w, pooled, &ad)).sum().backward();
        let analytic = host(xt.grad(&grads).unwrap());
        assert!(
            analytic.iter().filter(|g| **g != 0.0).count() > 10,
            "{kind}: gradient is trivial"
        );
        assert_close(
            &analytic,
            &numeric,
            1e-3,
            1e-3,
            &format!("{kind} pool d/dx"),
        );
    }
}

#[test]
fn unpool_gradient_matches_finite_differences_including_collisions() {
    let mut rng = Rng::new(6);
    let shape = [2, 3, 9, 8];
    let options = PoolOptions::new([3, 3], [2, 2]);
    let x = rng.tied(shape.iter().product(), 2); // ties → many repeated indices
    let (_, idx, pooled) = reference::max_pool2d_with_indices(&x, shape, options);
    let collisions: usize = idx
        .chunks(pooled[2] * pooled[3])
        .map(|plane| {
            let mut seen = std::collections::HashSet::new();
            plane.iter().filter(|i| !seen.insert(**i)).count()
        })
        .sum();
    assert!(collisions > 0, "the case must exercise colliding indices");
    let out_size = [shape[2], shape[3]];
    let values = rng.distinct(idx.len());
    let w = rng.normal(shape.iter().product());
    for (kind, device) in backends() {
        let make = |v: &[f64], s, d: &Device| {
            if kind == squeeze_segnet::BackendKind::Wgpu {
                float(v, s, d)
            } else {
                float64(v, s, d)
            }
        };
        let loss = |v: &[f64]| {
            let out = max_unpool2d(
                make(v, pooled, &device),
                int(&idx, pooled, &device),
                out_size,
            )
            .unwrap();
            host((out * make(&w, shape, &device)).sum())[0]
        };
        let numeric = finite_difference(&values, 1e-2, loss);
        let ad = device.clone().autodiff();
        let vt = make(&values, pooled, &ad).require_grad();
        let out = max_unpool2d(vt.clone(), int(&idx, pooled, &ad), out_size).unwrap();
        let grads = (out * make(&w, shape, &ad)).sum().backward();
        let analytic = host(vt.grad(&grads).unwrap());
        assert!(
            analytic.contains(&0.0),
            "{kind}: losers of collisions get zero"
        );
        assert_close(
            &analytic,
            &numeric,
            1e-3,
            1e-3,
            &format!("{kind} unpool d/dx"),
        );
    }
}

#[test]
fn backends_agree_on_float_data() {
    // Real-valued inputs at a network shape: every backend gives the same pooled values,
    // indices, unpooled maps and gradients as Flex.
    let mut rng = Rng::new(7);
    let shape = [2, 16, 45, 61];
    let options = PoolOptions::new([3, 3], [2, 2]);
    let x: Vec<f64> = rng.normal(shape.iter().product());
    let mut results = Vec::new();
    for (kind, device) in backends() {
        let ad = device.clone().autodiff();
        let xt = float(&x, shape, &ad).require_grad();
        let (v, i) = max_pool2d_with_indices(xt.clone(), options).unwrap();
        let up = max_unpool2d(v.clone() * 2.0, i.clone(), [shape[2], shape[3]]).unwrap();
        let grads = (up.clone() * up.clone()).sum().backward();
        let g = host(xt.grad(&grads).unwrap());
        results.push((kind, host(v), host_int(i), host(up), g));
    }
    let (_, v0, i0, u0, g0) = &results[1]; // Flex
    for (kind, v, i, u, g) in &results {
        assert_eq!(v, v0, "{kind} values");
        assert_eq!(i, i0, "{kind} indices");
        assert_close(u, u0, 0.0, 0.0, &format!("{kind} unpool"));
        assert_close(g, g0, 1e-5, 1e-5, &format!("{kind} gradient"));
    }
}

#[test]
fn bad_arguments_are_typed_errors() {
    for (kind, device) in backends() {
        let x = Tensor::<4>::zeros([1, 1, 2, 5], &device);
        assert_eq!(
            max_pool2d_with_indices(x.clone(), PoolOptions::new([3, 3], [2, 2])).unwrap_err(),
            OpError::InputTooSmall {
                input: [2, 5],
                kernel: [3, 3]
            },
            "{kind}"
        );
        assert!(matches!(
            max_pool2d_with_indices(x.clone(), PoolOptions::new([0, 1], [1, 1])),
            Err(OpError::ZeroWindow { .. })
        ));
        assert!(matches!(
            max_pool2d_with_indices(x.clone(), PoolOptions::new([1, 1], [1, 0])),
            Err(OpError::ZeroWindow { .. })
        ));
        let v = Tensor::<4>::ones([1, 2, 2, 2], &device);
        let good = int(&[0, 1, 2, 3, 4, 5, 6, 7], [1, 2, 2, 2], &device);
        assert!(
            max_unpool2d(v.clone(), good.clone(), [3, 3]).is_ok(),
            "{kind}"
        );
        assert_eq!(
            max_unpool2d(v.clone(), good.clone(), [2, 3]).unwrap_err(),
            OpError::IndexOutOfRange {
                index: 7,
                output_size: [2, 3]
            },
            "{kind}: output size cannot hold index 7"
        );
        let negative = int(&[0, 1, -1, 3, 0, 0, 0, 0], [1, 2, 2, 2], &device);
        assert_eq!(
            max_unpool2d(v.clone(), negative, [3, 3]).unwrap_err(),
            OpError::IndexOutOfRange {
                index: -1,
                output_size: [3, 3]
            }
        );
        assert_eq!(
            max_unpool2d(v, int(&[0, 1, 2, 3], [1, 1, 2, 2], &device), [3, 3]).unwrap_err(),
            OpError::ShapeMismatch {
                values: [1, 2, 2, 2],
                indices: [1, 1, 2, 2]
            }
        );
        let message = OpError::IndexOutOfRange {
            index: 9,
            output_size: [2, 3],
        }
        .to_string();
        assert!(
            message.contains("index 9") && message.contains("0..6"),
            "{message}"
        );
    }
}

#[test]
fn unchecked_unpool_skips_out_of_range_indices_instead_of_panicking() {
    for (kind, device) in backends() {
        let v = float(&[1.0, 2.0, 3.0, 4.0], [1, 1, 2, 2], &device);
        let idx = int(&[0, 100, -5, 3], [1, 1, 2, 2], &device);
        let out = ops::max_unpool2d_unchecked(v, idx, [2, 2]);
        assert_eq!(host(out), vec![1.0, 0.0, 0.0, 4.0], "{kind}");
    }
}

/// Whether `device` runs kernels on i64 integers (every CPU backend does; a WGPU adapter only
/// with 64-bit integer shaders).
fn supports_i64(device: &Device) -> bool {
    int_as(&[1, 2], [1, 1, 1, 2], device, DType::I64)
        .max()
        .try_into_data()
        .is_ok()
}

/// The backward ops differentiated again, through the trait methods on tensors that need a
/// gradient (a double backward): both are linear in the gradient they take, and the derivative
/// of `sum(r ⊙ op(g))` with respect to `g` is the adjoint applied to `r` — a gather at the
/// indices for the pooling gradient, the unpooling (last cell wins) for the unpooling gradient.
/// Every backend; the cases include colliding indices.
#[test]
fn the_backward_ops_are_differentiable_on_every_backend() {
    use burn::backend::Dispatch;
    use squeeze_segnet::ops::SegNetOps;
    let mut rng = Rng::new(9);
    for (shape, options) in cases(&mut rng) {
        let x = rng.tied(shape.iter().product(), 2);
        let (_, idx, pooled) = reference::max_pool2d_with_indices(&x, shape, options);
        let [kh, kw] = options.kernel;
        let [sh, sw] = options.stride;
        let [h, w] = [shape[2], shape[3]];
        let r_in = rng.normal(shape.iter().product()); // weighs the pooling gradient's output
        let r_pooled = rng.normal(idx.len()); // weighs the unpooling gradient's output
        let plane = h * w;
        let want_pool: Vec<f64> = idx
            .iter()
            .enumerate()
            .map(|(p, &i)| r_in[p / (pooled[2] * pooled[3]) * plane + i as usize])
            .collect();
        let want_unpool = reference::max_unpool2d(&r_pooled, &idx, pooled, [h, w]);
        for (kind, device) in backends() {
            let ad = device.clone().autodiff();
            let what = format!("{kind} {shape:?} {options:?}");
            let g = float(&rng.normal(idx.len()), pooled, &ad).require_grad();
            let dx: Tensor<4> = Tensor::from_dispatch(Dispatch::seg_max_pool2d_backward(
                g.clone().into_dispatch(),
                int(&idx, pooled, &ad).into_dispatch(),
                h,
                w,
                kh,
                kw,
                sh,
                sw,
            ));
            let grads = (dx * float(&r_in, shape, &ad)).sum().backward();
            let got = host(
                g.grad(&grads)
                    .unwrap_or_else(|| panic!("{what}: pool grad dropped")),
            );
            assert_close(&got, &want_pool, 1e-6, 1e-6, &format!("{what} d pool-grad"));

            let g = float(&rng.normal(shape.iter().product()), shape, &ad).require_grad();
            let dv: Tensor<4> = Tensor::from_dispatch(Dispatch::seg_max_unpool2d_backward(
                g.clone().into_dispatch(),
                int(&idx, pooled, &ad).into_dispatch(),
            ));
            let grads = (dv * float(&r_pooled, pooled, &ad)).sum().backward();
            let got = host(
                g.grad(&grads)
                    .unwrap_or_else(|| panic!("{what}: unpool grad dropped")),
            );
            assert_close(
                &got,
                &want_unpool,
                1e-6,
                1e-6,
                &format!("{what} d unpool-grad"),
            );
        }
    }
}
