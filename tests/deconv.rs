//! The phase-decomposed transposed convolution equals Burn's `conv_transpose2d` (3×3, stride 2,
//! output padding 0 or 1), in value and in every gradient, on every backend.

mod common;

use burn::prelude::*;
use burn::tensor::module::conv_transpose2d;
use burn::tensor::ops::ConvTransposeOptions;
use burn::tensor::{Distribution, Tolerance};
use common::{backends, rerun_at_lower_vector_levels};
use squeeze_segnet::deconv::conv_transpose2d_3x3_s2;
use squeeze_segnet::fused;

fn reference(x: Tensor<4>, w: Tensor<4>, b: Tensor<1>, out: [usize; 2]) -> Tensor<4> {
    let [_, _, h, wd] = x.dims();
    let pad_out = [out[0] - (2 * h + 1), out[1] - (2 * wd + 1)];
    conv_transpose2d(
        x,
        w,
        Some(b),
        ConvTransposeOptions::new([2, 2], [0, 0], pad_out, [1, 1], 1),
    )
}

#[test]
fn matches_burns_transposed_convolution_with_gradients() {
    let cases = [
        ([2, 5, 7, 9], 3, [15, 19]),    // output padding 0 / 0
        ([1, 4, 6, 5], 2, [14, 11]),    // 1 / 0
        ([3, 3, 1, 4], 4, [3, 10]),     // a single input row; 0 / 1
        ([1, 8, 11, 12], 11, [24, 26]), // 1 / 1
    ];
    for (kind, device) in backends() {
        let ad = device.clone().autodiff();
        // Each new shape makes WGPU compile and autotune kernels (slow on Mesa's software Vulkan):
        // two cases there, covering output padding 0 and 1 on both sides.
        let cases = if kind == squeeze_segnet::BackendKind::Wgpu {
            &cases[2..]
        } else {
            &cases[..]
        };
        for &(shape, c_out, out) in cases {
            let started = std::time::Instant::now();
            let x = Tensor::<4>::random(shape, Distribution::Default, &ad).require_grad();
            let w = Tensor::<4>::random([shape[1], c_out, 3, 3], Distribution::Default, &ad)
                .require_grad();
            let b = Tensor::<1>::random([c_out], Distribution::Default, &ad).require_grad();
            let g = Tensor::<4>::random(
                [shape[0], c_out, out[0], out[1]],
                Distribution::Default,
                &ad,
            );
            let ours = conv_transpose2d_3x3_s2(x.clone(), w.clone(), Some(b.clone()), out);
            let theirs = reference(x.clone(), w.clone(), b.clone(), out);
            assert_eq!(ours.dims(), [shape[0], c_out, out[0], out[1]]);
            let tol = Tolerance::<f32>::rel_abs(1e-4, 1e-4);
            ours.clone()
                .into_data()
                .assert_approx_eq::<f32>(&theirs.clone().into_data(), tol);
            let ga = (ours * g.clone()).sum().backward();
            let gb = (theirs * g).sum().backward();
            for (name, a, b) in [
                ("x", x.grad(&ga), x.grad(&gb)),
                ("weight", w.grad(&ga), w.grad(&gb)),
            ] {
                // Context for a failure message below.
                eprintln!("{kind} {shape:?} -> {out:?}: d/d{name}");
                let (a, b) = (a.expect("gradient"), b.expect("gradient"));
                a.into_data().assert_approx_eq::<f32>(&b.into_data(), tol);
            }
            b.grad(&ga)
                .unwrap()
                .into_data()
                .assert_approx_eq::<f32>(&b.grad(&gb).unwrap().into_data(), tol);
            eprintln!("{kind} {shape:?}: {:?}", started.elapsed());
        }
    }
}

/// At inference on the CPU backends both of this crate's forms of the last layer equal Burn's
/// transposed convolution in f32 and f64: its kernel (`fused::conv_transpose3x3_s2`: one GEMM
/// per block of input rows for every tap, then the taps added into place) and the four phases
/// (on the fused convolution kernels); at every output padding, with single rows and columns,
/// batches, and images of many row blocks (whose first output row takes the previous block's
/// last input row).
#[test]
fn the_last_layers_kernels_match_burns_transposed_convolution() {
    let cases = [
        ([2, 5, 7, 9], 3, [15, 19]),       // output padding 0 / 0, batch 2
        ([1, 4, 6, 5], 2, [14, 11]),       // 1 / 0
        ([3, 3, 1, 4], 4, [3, 10]),        // a single input row; 0 / 1
        ([1, 2, 1, 1], 5, [4, 4]),         // a single pixel; 1 / 1
        ([1, 64, 40, 27], 11, [82, 55]),   // many row blocks, the network's channels; 1 / 0
        ([2, 64, 23, 300], 11, [47, 602]), // wide rows: blocks of a few rows; 0 / 1
    ];
    for (kind, device) in backends() {
        if kind == squeeze_segnet::BackendKind::Wgpu {
            continue;
        }
        for (dtype, tol) in [
            (burn::tensor::DType::F32, 1e-4),
            (burn::tensor::DType::F64, 1e-10),
        ] {
            for &(shape, c_out, out) in &cases {
                let x = Tensor::<4>::random(shape, Distribution::Default, (&device, dtype));
                let w = Tensor::<4>::random(
                    [shape[1], c_out, 3, 3],
                    Distribution::Default,
                    (&device, dtype),
                );
                let b = Tensor::<1>::random([c_out], Distribution::Default, (&device, dtype));
                assert!(squeeze_segnet::fused::applies(&x));
                let kernel = fused::conv_transpose3x3_s2(x.clone(), w.clone(), b.clone(), out);
                let phases = conv_transpose2d_3x3_s2(x.clone(), w.clone(), Some(b.clone()), out);
                let theirs = reference(x, w, b, out).into_data().convert::<f64>();
                for ours in [kernel, phases] {
                    assert_eq!(ours.dtype(), dtype);
                    assert_eq!(ours.dims(), [shape[0], c_out, out[0], out[1]]);
                    ours.into_data()
                        .convert::<f64>()
                        .assert_approx_eq::<f64>(&theirs, Tolerance::<f64>::rel_abs(tol, tol));
                }
            }
        }
    }
}

/// An input without rows or columns gives an output of the output padding alone: every element
/// its channel's bias.
#[test]
fn the_last_layers_kernel_gives_the_bias_alone_for_an_empty_input() {
    for (kind, device) in backends() {
        if kind == squeeze_segnet::BackendKind::Wgpu {
            continue;
        }
        for (shape, out) in [([2, 3, 0, 4], [2, 9]), ([1, 3, 2, 0], [5, 1])] {
            let x = Tensor::<4>::zeros(shape, &device);
            let w = Tensor::<4>::random([3, 2, 3, 3], Distribution::Default, &device);
            let b = Tensor::<1>::from_floats([0.5, -2.0], &device);
            let y = fused::conv_transpose3x3_s2(x, w, b.clone(), out);
            assert_eq!(y.dims(), [shape[0], 2, out[0], out[1]]);
            let want = b
                .reshape([1, 2, 1, 1])
                .expand([shape[0], 2, out[0], out[1]]);
            y.into_data().assert_eq(&want.into_data(), true);
        }
    }
}

/// In training (autodiff devices of NdArray and Flex) the same function has this crate's
/// gradients (`fused::conv_transpose3x3_s2`'s backward: the output gradient gathered at every
/// pixel's taps, then two GEMMs): the same as Burn's gradients of its transposed convolution
/// for the input, the weight and the bias, in f32 and f64, over the shapes above.
#[test]
fn the_last_layers_gradients_match_burns() {
    let cases = [
        ([2, 5, 7, 9], 3, [15, 19]),
        ([3, 3, 1, 4], 4, [3, 10]),
        ([1, 2, 1, 1], 5, [4, 4]),
        ([1, 64, 40, 27], 11, [82, 55]),
        ([2, 16, 23, 300], 11, [47, 602]),
    ];
    for (kind, device) in backends() {
        if kind == squeeze_segnet::BackendKind::Wgpu {
            continue;
        }
        let ad = device.autodiff();
        for (dtype, tol) in [
            (burn::tensor::DType::F32, 1e-4),
            (burn::tensor::DType::F64, 1e-10),
        ] {
            for &(shape, c_out, out) in &cases {
                let on = (&ad, dtype);
                let x = Tensor::<4>::random(shape, Distribution::Default, on).require_grad();
                let w = Tensor::<4>::random([shape[1], c_out, 3, 3], Distribution::Default, on)
                    .require_grad();
                let b = Tensor::<1>::random([c_out], Distribution::Default, on).require_grad();
                let g = Tensor::<4>::random(
                    [shape[0], c_out, out[0], out[1]],
                    Distribution::Default,
                    on,
                );
                let ours = fused::conv_transpose3x3_s2(x.clone(), w.clone(), b.clone(), out);
                let theirs = reference(x.clone(), w.clone(), b.clone(), out);
                let ga = (ours * g.clone()).sum().backward();
                let gb = (theirs * g).sum().backward();
                let tol = Tolerance::<f64>::rel_abs(tol, tol);
                let check = |name: &str, a: Option<Tensor<4>>, b: Option<Tensor<4>>| {
                    eprintln!("{kind} {dtype:?} {shape:?} -> {out:?}: d/d{name}");
                    let (a, b) = (a.expect("gradient"), b.expect("gradient"));
                    assert_eq!(a.dtype(), dtype);
                    a.into_data()
                        .convert::<f64>()
                        .assert_approx_eq::<f64>(&b.into_data().convert::<f64>(), tol);
                };
                check("x", x.grad(&ga), x.grad(&gb));
                check("weight", w.grad(&ga), w.grad(&gb));
                let bias = |g: Option<Tensor<1>>| g.map(|t| t.reshape([1, 1, 1, c_out]));
                check("bias", bias(b.grad(&ga)), bias(b.grad(&gb)));
            }
        }
    }
}

/// The same gradients against central differences of `Σ y · g` in f64, on a small case with
/// output padding on one side, for a few elements of the input, the weight and the bias.
#[test]
fn the_last_layers_gradients_match_finite_differences() {
    for (kind, device) in backends() {
        if kind == squeeze_segnet::BackendKind::Wgpu {
            continue;
        }
        let ad = device.autodiff();
        let on = (&ad, burn::tensor::DType::F64);
        let (shape, c_out, out) = ([2, 3, 4, 5], 2, [10, 11]);
        let x = Tensor::<4>::random(shape, Distribution::Default, on).require_grad();
        let w = Tensor::<4>::random([3, c_out, 3, 3], Distribution::Default, on).require_grad();
        let b = Tensor::<1>::random([c_out], Distribution::Default, on).require_grad();
        let g = Tensor::<4>::random([2, c_out, out[0], out[1]], Distribution::Default, on);
        let loss = |x: Tensor<4>, w: Tensor<4>, b: Tensor<1>| -> f64 {
            let y = fused::conv_transpose3x3_s2(x, w, b, out);
            (y * g.clone()).sum().into_scalar::<f64>()
        };
        let grads = (fused::conv_transpose3x3_s2(x.clone(), w.clone(), b.clone(), out) * g.clone())
            .sum()
            .backward();
        let host = |t: Tensor<4>| t.into_data().convert::<f64>().try_to_vec::<f64>().unwrap();
        let (dx, dw) = (host(x.grad(&grads).unwrap()), host(w.grad(&grads).unwrap()));
        let db = b
            .grad(&grads)
            .unwrap()
            .into_data()
            .convert::<f64>()
            .try_to_vec::<f64>()
            .unwrap();
        let (x0, w0, b0) = (x.clone().detach(), w.clone().detach(), b.clone().detach());
        let eps = 1e-6;
        let bump = |t: &Tensor<4>, i: usize, d: f64| -> Tensor<4> {
            let mut v = host(t.clone());
            v[i] += d;
            Tensor::from_data(burn::tensor::TensorData::new(v, t.dims()), on)
        };
        for i in [0, 17, 59, 119] {
            let num = (loss(bump(&x0, i, eps), w0.clone(), b0.clone())
                - loss(bump(&x0, i, -eps), w0.clone(), b0.clone()))
                / (2.0 * eps);
            assert!(
                (num - dx[i]).abs() < 1e-6,
                "{kind} dx[{i}]: {} vs {num}",
                dx[i]
            );
        }
        for i in [0, 13, 26, 53] {
            let num = (loss(x0.clone(), bump(&w0, i, eps), b0.clone())
                - loss(x0.clone(), bump(&w0, i, -eps), b0.clone()))
                / (2.0 * eps);
            assert!(
                (num - dw[i]).abs() < 1e-6,
                "{kind} dW[{i}]: {} vs {num}",
                dw[i]
            );
        }
        for i in 0..c_out {
            let mut v = b0
                .clone()
                .into_data()
                .convert::<f64>()
                .try_to_vec::<f64>()
                .unwrap();
            v[i] += eps;
            let up = Tensor::from_data(burn::tensor::TensorData::new(v.clone(), [c_out]), on);
            v[i] -= 2.0 * eps;
            let down = Tensor::from_data(burn::tensor::TensorData::new(v, [c_out]), on);
            let num = (loss(x0.clone(), w0.clone(), up) - loss(x0.clone(), w0.clone(), down))
                / (2.0 * eps);
            assert!(
                (num - db[i]).abs() < 1e-6,
                "{kind} db[{i}]: {} vs {num}",
                db[i]
            );
        }
    }
}

#[test]
fn backend_kind_is_read_from_the_device_autodiff_included() {
    for (kind, device) in backends() {
        assert_eq!(squeeze_segnet::BackendKind::of(&device), Some(kind));
        assert_eq!(
            squeeze_segnet::BackendKind::of(&device.autodiff()),
            Some(kind)
        );
    }
}

/// The last layer's kernels at the AVX2 and baseline levels too (`squeeze_segnet::SIMD_ENV`).
#[test]
fn every_vector_level_matches_burns_transposed_convolution() {
    rerun_at_lower_vector_levels(&["the_last_layers_kernels_match_burns_transposed_convolution"]);
}
