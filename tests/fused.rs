//! The fused CPU convolution path (`squeeze_segnet::fused`) against Burn's own ops (conv2d,
//! bias, ReLU, concatenation) on NdArray and Flex, in f32 and f64; and the whole network with
//! it against the same weights through Burn's ops.

mod common;

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use common::*;
use squeeze_segnet::{BackendKind, SqueezeSegNetConfig, fused};

fn cpu_backends() -> Vec<(BackendKind, Device)> {
    backends()
        .into_iter()
        .filter(|(kind, _)| *kind != BackendKind::Wgpu)
        .collect()
}

/// Random tensor of `shape` in f32 or f64.
fn random(rng: &mut Rng, shape: [usize; 4], f64_: bool, device: &Device) -> Tensor<4> {
    let values = rng.normal(shape.iter().product());
    if f64_ {
        float64(&values, shape, device)
    } else {
        float(&values, shape, device)
    }
}

fn burn_conv(
    x: Tensor<4>,
    w: Tensor<4>,
    b: Tensor<1>,
    stride: [usize; 2],
    pad: [usize; 2],
) -> Tensor<4> {
    relu(conv2d(
        x,
        w,
        Some(b),
        ConvOptions::new(stride, pad, [1, 1], 1),
    ))
}

#[test]
fn conv_bias_relu_matches_burns_ops() {
    let mut rng = Rng::new(21);
    // (input, c_out, kernel, stride, padding): the network's kinds of layers (1×1, 3×3 padded,
    // conv1's 3×3/2 unpadded) at odd sizes, batch 2, and shapes that split into many row blocks.
    let cases = [
        ([1, 3, 17, 23], 8, [3, 3], [2, 2], [0, 0]),
        ([2, 5, 9, 11], 7, [1, 1], [1, 1], [0, 0]),
        ([2, 4, 13, 10], 6, [3, 3], [1, 1], [1, 1]),
        ([1, 16, 40, 57], 24, [3, 3], [1, 1], [1, 1]),
        ([1, 48, 30, 33], 16, [1, 1], [1, 1], [0, 0]),
        ([1, 3, 31, 45], 16, [3, 3], [2, 2], [0, 0]),
        ([2, 3, 8, 9], 4, [2, 3], [1, 2], [1, 0]),
        ([1, 2, 5, 6], 3, [3, 3], [3, 2], [2, 1]),
        ([1, 130, 6, 300], 5, [3, 3], [1, 1], [1, 1]), // im2col rows wider than a block
        ([2, 64, 9, 41], 12, [3, 3], [1, 1], [1, 1]),  // Winograd: 64 channels, rows 41 wide
        ([1, 384, 6, 43], 9, [3, 3], [1, 1], [1, 1]),  // Winograd, as deep as dfire5's input
        ([1, 64, 10, 42], 7, [3, 3], [1, 1], [1, 1]),  // Winograd, rows 4k + 2 wide
        ([1, 64, 7, 77], 6, [3, 3], [1, 1], [1, 1]),   // Winograd, rows 77 wide: 19 whole tiles + 1
        ([1, 2, 5, 1], 3, [1, 1], [3, 4], [2, 5]),     // rows of padding only, stride > width
        ([1, 2, 4, 3], 2, [3, 3], [1, 5], [1, 4]),
    ];
    for (kind, device) in cpu_backends() {
        for f64_ in [false, true] {
            for (shape, c_out, [kh, kw], stride, pad) in cases {
                let x = random(&mut rng, shape, f64_, &device);
                let w = random(&mut rng, [c_out, shape[1], kh, kw], f64_, &device).mul_scalar(0.3);
                let b = random(&mut rng, [1, 1, 1, c_out], f64_, &device).reshape([c_out]);
                assert!(fused::applies(&x));
                let want = burn_conv(x.clone(), w.clone(), b.clone(), stride, pad);
                // Without the ReLU too (the transposed convolution's phases).
                let linear =
                    fused::conv2d_bias(x.clone(), w.clone(), b.clone(), stride, pad, false);
                let want_linear = conv2d(
                    x.clone(),
                    w.clone(),
                    Some(b.clone()),
                    ConvOptions::new(stride, pad, [1, 1], 1),
                );
                let tol = if f64_ { 1e-10 } else { 1e-4 };
                // Rounding error grows with the sums' magnitude (k = 3456 products in the deepest
                // case, where Winograd's transforms multiply it by up to 8): absolute error is
                // allowed to grow by a tenth of `tol` per unit of the output's largest magnitude.
                let want_linear = host(want_linear);
                let scale = want_linear.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                let atol = tol * (1.0 + 0.1 * scale);
                assert_close(
                    &host(linear),
                    &want_linear,
                    atol,
                    tol,
                    &format!("{kind} linear {shape:?}"),
                );
                let got = fused::conv2d_bias_relu(x, w, b, stride, pad);
                assert_eq!(got.dims(), want.dims(), "{kind} {shape:?}");
                assert_eq!(got.dtype(), want.dtype(), "{kind} {shape:?}");
                let want = host(want);
                // The ReLU both passes and clips something (the tiny edge cases aside).
                assert!(want.len() < 64 || (want.iter().any(|v| *v > 0.0) && want.contains(&0.0)));
                assert_close(
                    &host(got),
                    &want,
                    atol,
                    tol,
                    &format!("{kind} f64={f64_} {shape:?}"),
                );
            }
        }
    }
}

#[test]
fn fire_expand_matches_two_convolutions_concatenated() {
    let mut rng = Rng::new(22);
    for (kind, device) in cpu_backends() {
        // The last case is deep and wide enough for the Winograd 3×3 kernel (odd row count).
        let cases = [
            ([2, 16, 11, 13], 32, 32),
            ([1, 48, 22, 29], 24, 40),
            ([2, 64, 9, 45], 8, 24),
        ];
        for (shape, e1, e3) in cases {
            let x = random(&mut rng, shape, false, &device);
            let w1 = random(&mut rng, [e1, shape[1], 1, 1], false, &device).mul_scalar(0.3);
            let b1 = random(&mut rng, [1, 1, 1, e1], false, &device).reshape([e1]);
            let w3 = random(&mut rng, [e3, shape[1], 3, 3], false, &device).mul_scalar(0.1);
            let b3 = random(&mut rng, [1, 1, 1, e3], false, &device).reshape([e3]);
            let want = Tensor::cat(
                vec![
                    burn_conv(x.clone(), w1.clone(), b1.clone(), [1, 1], [0, 0]),
                    burn_conv(x.clone(), w3.clone(), b3.clone(), [1, 1], [1, 1]),
                ],
                1,
            );
            let got = fused::fire_expand(x, w1, b1, w3, b3);
            assert_eq!(got.dims(), [shape[0], e1 + e3, shape[2], shape[3]]);
            assert_close(
                &host(got),
                &host(want),
                1e-4,
                1e-4,
                &format!("{kind} {shape:?}"),
            );
        }
    }
}

#[test]
fn dfire_matches_burns_ops() {
    let mut rng = Rng::new(24);
    for (kind, device) in cpu_backends() {
        for f64_ in [false, true] {
            // The last case takes the Winograd 3×3 kernel (64 channels, rows 41 wide, odd rows).
            let cases = [
                ([2, 32, 9, 14], 8, 24),
                ([1, 64, 23, 31], 16, 64),
                ([2, 72, 7, 41], 8, 16),
            ];
            for (shape, e, c_out) in cases {
                let x = random(&mut rng, shape, f64_, &device);
                let w1 = random(&mut rng, [e, shape[1], 1, 1], f64_, &device).mul_scalar(0.3);
                let b1 = random(&mut rng, [1, 1, 1, e], f64_, &device).reshape([e]);
                let w3 = random(&mut rng, [e, shape[1], 3, 3], f64_, &device).mul_scalar(0.1);
                let b3 = random(&mut rng, [1, 1, 1, e], f64_, &device).reshape([e]);
                let ws = random(&mut rng, [c_out, 2 * e, 1, 1], f64_, &device).mul_scalar(0.3);
                let bs = random(&mut rng, [1, 1, 1, c_out], f64_, &device).reshape([c_out]);
                let expanded = Tensor::cat(
                    vec![
                        burn_conv(x.clone(), w1.clone(), b1.clone(), [1, 1], [0, 0]),
                        burn_conv(x.clone(), w3.clone(), b3.clone(), [1, 1], [1, 1]),
                    ],
                    1,
                );
                let want = host(burn_conv(expanded, ws.clone(), bs.clone(), [1, 1], [0, 0]));
                assert!(want.iter().any(|v| *v > 0.0) && want.contains(&0.0));
                let got = fused::dfire(x, [w1, w3, ws], [b1, b3, bs]);
                assert_eq!(got.dims(), [shape[0], c_out, shape[2], shape[3]]);
                let tol = if f64_ { 1e-10 } else { 1e-4 };
                assert_close(
                    &host(got),
                    &want,
                    tol,
                    tol,
                    &format!("{kind} f64={f64_} {shape:?}"),
                );
            }
        }
    }
}

#[test]
fn the_fused_path_applies_to_inference_devices_only() {
    let x = |device: &Device| Tensor::<4>::zeros([1, 1, 2, 2], device);
    assert!(fused::applies(&x(&Device::flex())));
    assert!(!fused::applies(&x(&Device::flex().autodiff())));
    // Parameters of a model forked onto an autodiff device.
    let model = SqueezeSegNetConfig::paper().init(&Device::flex()).unwrap();
    let forked = model.fork(&Device::flex().autodiff()).train();
    assert!(!fused::applies(&forked.conv1.conv.weight.val()));
    for (kind, device) in backends() {
        assert_eq!(
            fused::applies(&x(&device)),
            kind != BackendKind::Wgpu,
            "{kind}"
        );
    }
}

/// The shipped configuration (context and refinement included) with non-trivial biases and a
/// context that adds something (a fresh one adds zero), folded for
/// inference: on Flex and NdArray (fused path) the logits equal those of the same weights run
/// through Burn's ops (on the autodiff device, where the fused path does not apply).
#[test]
fn network_logits_match_burns_ops() {
    for (kind, device) in cpu_backends() {
        let ad = device.clone().autodiff();
        let mut reference = SqueezeSegNetConfig::camvid()
            .with_num_classes(5)
            .init(&ad)
            .unwrap()
            .for_inference();
        // Non-zero biases, so a fused bias that went missing shows.
        let mut rng = Rng::new(23);
        for block in [
            &mut reference.conv1,
            &mut reference.fire2.expand3x3,
            &mut reference.dfire2.squeeze,
        ] {
            let c = block.conv.bias.as_ref().unwrap().dims()[0];
            let values: Vec<f32> = rng.normal(c).iter().map(|v| 0.1 * *v as f32).collect();
            block.conv.bias = Some(Param::from_tensor(Tensor::from_floats(
                values.as_slice(),
                &ad,
            )));
        }
        let context = reference
            .context
            .as_mut()
            .expect("camvid() has the context");
        let [o, i, _, _] = context.fuse.weight.dims();
        let values: Vec<f32> = rng.normal(o * i).iter().map(|v| 0.05 * *v as f32).collect();
        context.fuse.weight = Param::from_tensor(
            Tensor::<1>::from_floats(values.as_slice(), &ad).reshape([o, i, 1, 1]),
        );
        let model = reference.valid();
        let shape = [2, 3, 47, 61];
        let values = rng.normal(shape.iter().product());
        let (x, x_ad) = (float(&values, shape, &device), float(&values, shape, &ad));
        assert!(fused::applies(&x) && !fused::applies(&x_ad));
        let got = host(model.forward(x).unwrap());
        let want = host(reference.forward(x_ad).unwrap());
        // Pooling near-ties may flip between the two paths (seen about once in 15 runs).
        let scale = want.iter().map(|v| v.abs()).fold(0.0, f64::max);
        assert!(scale > 0.0);
        let what = format!("{kind} logits");
        assert_mostly_close(&got, &want, 1e-4 * scale.max(1.0), 1e-3, 1e-3, &what);
    }
}

/// The training path's convolution (`fused::conv2d_train`): value and both gradients equal to
/// Burn's `conv2d` on NdArray and Flex autodiff devices, f32 and f64, strided too.
#[test]
fn training_convolution_matches_burns_value_and_gradients() {
    let mut rng = Rng::new(25);
    // (input, c_out, kernel, padding): the network's 1×1 and padded 3×3 with many inputs and
    // few outputs (where Flex's own backward is slow), an unpadded 3×3 and a 2×3.
    let cases = [
        ([2, 128, 11, 13], 16, [3, 3], [1, 1], [1, 1]),
        ([2, 64, 9, 7], 16, [1, 1], [1, 1], [0, 0]),
        ([1, 3, 8, 10], 6, [3, 3], [1, 1], [0, 0]),
        ([2, 4, 7, 9], 5, [2, 3], [1, 1], [1, 1]),
        ([1, 32, 40, 23], 8, [3, 3], [1, 1], [1, 1]), // several row blocks
        ([2, 4, 300, 64], 3, [3, 3], [1, 1], [1, 1]), // many row blocks per Rayon task
        ([2, 3, 31, 45], 8, [3, 3], [2, 2], [0, 0]),  // conv1: 3×3, stride 2, no padding
        ([1, 5, 12, 11], 4, [3, 3], [2, 3], [1, 1]),  // uneven strides, padded
        ([1, 2, 6, 7], 3, [1, 1], [1, 1], [1, 1]),    // padding as large as the kernel
        ([1, 64, 9, 41], 64, [3, 3], [1, 1], [1, 1]), // Winograd, value and dx (refine's shape)
        ([1, 64, 5, 70], 64, [3, 3], [1, 1], [1, 1]), // Winograd, rows of 17 whole tiles
    ];
    for (kind, device) in cpu_backends() {
        let ad = device.clone().autodiff();
        for f64_ in [false, true] {
            for (shape, c_out, [kh, kw], stride, pad) in cases {
                let xv = rng.normal(shape.iter().product());
                let wv = rng.normal(c_out * shape[1] * kh * kw);
                let wshape = [c_out, shape[1], kh, kw];
                let make = |v: &[f64], s: [usize; 4]| {
                    if f64_ {
                        float64(v, s, &ad)
                    } else {
                        float(v, s, &ad)
                    }
                    .require_grad()
                };
                let (x1, w1) = (make(&xv, shape), make(&wv, wshape));
                let (x2, w2) = (make(&xv, shape), make(&wv, wshape));
                assert!(fused::trains(&x1));
                let ours = fused::conv2d_train(x1.clone(), w1.clone(), stride, pad);
                let theirs = conv2d(
                    x2.clone(),
                    w2.clone(),
                    None,
                    ConvOptions::new(stride, pad, [1, 1], 1),
                );
                assert_eq!(ours.dims(), theirs.dims());
                let gv = rng.normal(ours.dims().iter().product());
                let g = if f64_ {
                    float64(&gv, ours.dims(), &ad)
                } else {
                    float(&gv, ours.dims(), &ad)
                };
                let tol = if f64_ { 1e-9 } else { 2e-4 };
                let what = format!("{kind} f64={f64_} {shape:?} k{kh}x{kw}");
                assert_close(&host(ours.clone()), &host(theirs.clone()), tol, tol, &what);
                let ga = (ours * g.clone()).sum().backward();
                let gb = (theirs * g).sum().backward();
                let dx = (host(x1.grad(&ga).unwrap()), host(x2.grad(&gb).unwrap()));
                let dw = (host(w1.grad(&ga).unwrap()), host(w2.grad(&gb).unwrap()));
                assert_close(&dx.0, &dx.1, tol, tol, &format!("{what} dx"));
                // dW sums over every pixel: scale the tolerance by the number of terms.
                let terms = (shape[0] * shape[2] * shape[3]) as f64;
                assert_close(&dw.0, &dw.1, tol * terms.sqrt(), tol, &format!("{what} dW"));
            }
        }
    }
}

/// The inference-only fused operations reached with tensors that need a gradient — through the
/// Tensor-level entry points and through the backend-extension trait methods directly — compute
/// the same value and the same gradients (input, weights, biases) as Burn's own ops: no path
/// silently trains nothing.
#[test]
fn inference_ops_with_tracked_tensors_differentiate_like_burns_ops() {
    use burn::backend::Dispatch;
    use squeeze_segnet::fused::FusedConvOps;
    let mut rng = Rng::new(27);
    let (n, c, h, w, e1, e3, out) = (2, 6, 7, 9, 4, 5, 3);
    for (kind, device) in cpu_backends() {
        let ad = device.autodiff();
        let xv = rng.normal(n * c * h * w);
        let w1v = rng.normal(e1 * c);
        let w3v = rng.normal(e3 * c * 9);
        let wsv = rng.normal(out * (e1 + e3));
        let bv: Vec<Vec<f64>> = [e1, e3, out].iter().map(|&k| rng.normal(k)).collect();
        // Fresh leaves for each path, so their gradients are separate.
        let leaves = || {
            let t4 = |v: &[f64], s| float(v, s, &ad).require_grad();
            let t1 = |v: &[f64]| {
                let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
                Tensor::<1>::from_floats(v.as_slice(), &ad).require_grad()
            };
            (
                t4(&xv, [n, c, h, w]),
                [
                    t4(&w1v, [e1, c, 1, 1]),
                    t4(&w3v, [e3, c, 3, 3]),
                    t4(&wsv, [out, e1 + e3, 1, 1]),
                ],
                [t1(&bv[0]), t1(&bv[1]), t1(&bv[2])],
            )
        };
        type Op = fn(Tensor<4>, [Tensor<4>; 3], [Tensor<1>; 3]) -> Tensor<4>;
        let burn_dfire: Op = |x, [w1, w3, ws], [b1, b3, bs]| {
            let e = Tensor::cat(
                vec![
                    burn_conv(x.clone(), w1, b1, [1, 1], [0, 0]),
                    burn_conv(x, w3, b3, [1, 1], [1, 1]),
                ],
                1,
            );
            burn_conv(e, ws, bs, [1, 1], [0, 0])
        };
        let entry_dfire: Op = |x, w, b| fused::dfire(x, w, b);
        let trait_dfire: Op = |x, [w1, w3, ws], [b1, b3, bs]| {
            Tensor::from_dispatch(Dispatch::seg_dfire(
                x.into_dispatch(),
                w1.into_dispatch(),
                b1.into_dispatch(),
                w3.into_dispatch(),
                b3.into_dispatch(),
                ws.into_dispatch(),
                bs.into_dispatch(),
            ))
        };
        // The expand stage and a single convolution, through both routes, fed into the squeeze
        // by Burn's ops so that every operand is in the graph.
        let entry_expand: Op = |x, [w1, w3, ws], [b1, b3, bs]| {
            let e = fused::fire_expand(x, w1, b1, w3, b3);
            fused::conv2d_bias_relu(e, ws, bs, [1, 1], [0, 0])
        };
        let trait_expand: Op = |x, [w1, w3, ws], [b1, b3, bs]| {
            let e: Tensor<4> = Tensor::from_dispatch(Dispatch::seg_fire_expand(
                x.into_dispatch(),
                w1.into_dispatch(),
                b1.into_dispatch(),
                w3.into_dispatch(),
                b3.into_dispatch(),
            ));
            Tensor::from_dispatch(Dispatch::seg_conv2d_bias(
                e.into_dispatch(),
                ws.into_dispatch(),
                bs.into_dispatch(),
                1,
                1,
                0,
                0,
                true,
            ))
        };
        let run = |op: Op| {
            let (x, ws, bs) = leaves();
            let y = op(x.clone(), ws.clone(), bs.clone());
            let grads = (y.clone() * y.clone()).sum().backward();
            let mut all = vec![host(y), host(x.grad(&grads).expect("dx"))];
            all.extend(ws.iter().map(|w| host(w.grad(&grads).expect("dW"))));
            all.extend(bs.iter().map(|b| host(b.grad(&grads).expect("db"))));
            all
        };
        let want = run(burn_dfire);
        let names = ["value", "dx", "dw1", "dw3", "dws", "db1", "db3", "dbs"];
        for (route, op) in [
            ("entry dfire", entry_dfire),
            ("trait dfire", trait_dfire),
            ("entry expand", entry_expand),
            ("trait expand", trait_expand),
        ] {
            for ((got, want), name) in run(op).iter().zip(&want).zip(names) {
                let scale = want.iter().map(|v| v.abs()).fold(1.0, f64::max);
                assert_close(
                    got,
                    want,
                    1e-4 * scale,
                    1e-4,
                    &format!("{kind} {route} {name}"),
                );
            }
        }
    }
}

/// The weight gradient of the training convolution, itself differentiated (a double backward,
/// reached through the trait method on tensors that need a gradient): its derivatives equal
/// Burn's. `sum(r ⊙ dW(x, g))` is `sum(g ⊙ conv2d(x, r))` (dW is linear in the weight), so
/// `∂/∂g = conv2d(x, r)` and `∂/∂x` is the input gradient of that convolution.
#[test]
fn the_weight_gradient_is_differentiable_like_burns() {
    use burn::backend::Dispatch;
    use squeeze_segnet::fused::FusedConvOps;
    let mut rng = Rng::new(31);
    // (x shape, c_out, kernel, stride, padding): a squeeze, a padded 3×3, conv1's stride 2.
    let cases = [
        ([2, 5, 6, 7], 3, 1, 1, 0),
        ([1, 4, 7, 9], 2, 3, 1, 1),
        ([2, 3, 9, 8], 4, 3, 2, 0),
    ];
    for (kind, device) in cpu_backends() {
        let ad = device.autodiff();
        for (shape, c_out, k, s, p) in cases {
            let [n, c_in, h, w] = shape;
            let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
            let (xv, gv) = (
                rng.normal(n * c_in * h * w),
                rng.normal(n * c_out * oh * ow),
            );
            let rv = rng.normal(c_out * c_in * k * k);
            let r = float(&rv, [c_out, c_in, k, k], &ad);
            let x = float(&xv, shape, &ad).require_grad();
            let g = float(&gv, [n, c_out, oh, ow], &ad).require_grad();
            let dw: Tensor<4> = Tensor::from_dispatch(Dispatch::seg_conv2d_weight_grad(
                x.clone().into_dispatch(),
                g.clone().into_dispatch(),
                k,
                k,
                s,
                s,
                p,
                p,
            ));
            let grads = (dw * r.clone()).sum().backward();
            let what = format!("{kind} {shape:?} k{k} s{s} p{p}");
            let dg = host(
                g.grad(&grads)
                    .unwrap_or_else(|| panic!("{what}: no gradient for g")),
            );
            let dx = host(
                x.grad(&grads)
                    .unwrap_or_else(|| panic!("{what}: no gradient for x")),
            );
            // Burn's: the same bilinear form through its convolution.
            let (x2, g2) = (x.clone().detach().require_grad(), g.clone().detach());
            let options = ConvOptions::new([s, s], [p, p], [1, 1], 1);
            let want_dg = conv2d(x2.clone(), r.clone(), None, options.clone());
            let grads = (conv2d(x2.clone(), r, None, options) * g2).sum().backward();
            let want_dx = host(x2.grad(&grads).unwrap());
            assert_close(&dg, &host(want_dg), 1e-4, 1e-4, &format!("{what} d/dg"));
            assert_close(&dx, &want_dx, 1e-4, 1e-4, &format!("{what} d/dx"));
        }
    }
}

/// Training-mode batch norm + ReLU on this crate's kernels against Burn's `batch_norm_train`
/// then ReLU: output, batch statistics and the gradients of `sum(r ⊙ y)` with respect to the
/// input, γ and β; f32 and f64, on NdArray and Flex. The inputs sit far from zero (mean 3) so
/// that a variance taken as `E[x²] − μ²` would show, γ has both signs, and the ReLU clips about
/// half the outputs.
#[test]
fn batch_norm_relu_matches_burns_batch_norm_and_relu() {
    use burn::tensor::module::batch_norm_train;
    let mut rng = Rng::new(41);
    let shapes = [[2, 5, 7, 9], [1, 3, 4, 4], [4, 2, 1, 3], [2, 16, 33, 17]];
    for (kind, device) in cpu_backends() {
        let ad = device.autodiff();
        for shape in shapes {
            for f64_ in [false, true] {
                let c = shape[1];
                let xv: Vec<f64> = rng
                    .normal(shape.iter().product())
                    .iter()
                    .map(|v| 3.0 + v)
                    .collect();
                // |γ| ≥ 0.5 and small β: every channel has clipped and passed outputs.
                let gv: Vec<f64> = rng
                    .normal(c)
                    .iter()
                    .map(|g| g.signum() * (0.5 + g.abs()))
                    .collect();
                let bv: Vec<f64> = rng.normal(c).iter().map(|b| 0.1 * b).collect();
                let rv = rng.normal(shape.iter().product());
                let tol = if f64_ { 1e-9 } else { 1e-4 };
                let t4 = |v: &[f64]| {
                    if f64_ {
                        float64(v, shape, &ad)
                    } else {
                        float(v, shape, &ad)
                    }
                };
                let t1 = |v: &[f64]| {
                    let t = float(v, [1, 1, 1, c], &ad).reshape([c]);
                    if f64_ {
                        t.cast(burn::tensor::DType::F64)
                    } else {
                        t
                    }
                };
                let run = |fused_path: bool| {
                    let (x, g, b) = (
                        t4(&xv).require_grad(),
                        t1(&gv).require_grad(),
                        t1(&bv).require_grad(),
                    );
                    let (y, mean, var) = if fused_path {
                        fused::batch_norm_relu_train(x.clone(), g.clone(), b.clone(), 1e-5)
                    } else {
                        let r = batch_norm_train(x.clone(), g.clone(), b.clone(), 1e-5);
                        (relu(r.output), r.mean, r.variance)
                    };
                    let grads = (y.clone() * t4(&rv)).sum().backward();
                    [
                        host(y),
                        host(mean),
                        host(var),
                        host(x.grad(&grads).expect("dx")),
                        host(g.grad(&grads).expect("dgamma")),
                        host(b.grad(&grads).expect("dbeta")),
                    ]
                };
                let (got, want) = (run(true), run(false));
                assert!(want[0].iter().any(|v| *v == 0.0) && want[0].iter().any(|v| *v > 0.0));
                let names = ["output", "mean", "variance", "dx", "dgamma", "dbeta"];
                for ((g, w), name) in got.iter().zip(&want).zip(names) {
                    let scale = w.iter().map(|v| v.abs()).fold(1.0, f64::max);
                    let what = format!("{kind} {shape:?} f64={f64_} {name}");
                    assert_close(g, w, tol * scale, tol, &what);
                }
            }
        }
    }
}

/// A convolution block with batch norm, in training on the CPU backends (this crate's batch
/// norm + ReLU): the output is Burn's batch norm + ReLU of the convolution, and the running
/// statistics move as Burn's layer moves them (momentum 0.1 from mean 0 and variance 1).
#[test]
fn a_training_block_updates_the_running_statistics_like_burns_batch_norm() {
    use burn::tensor::module::batch_norm_train;
    use squeeze_segnet::ConvBlockConfig;
    let mut rng = Rng::new(43);
    for (kind, device) in cpu_backends() {
        let ad = device.autodiff();
        let block = ConvBlockConfig::new([4, 6], 3).with_padding(1).init(&ad);
        let x = float(&rng.normal(2 * 4 * 9 * 11), [2, 4, 9, 11], &ad);
        let y = block.forward(x.clone());
        let conv = conv2d(
            x,
            block.conv.weight.val(),
            None,
            ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
        );
        let norm = block.norm.as_ref().unwrap();
        let want = batch_norm_train(conv, norm.gamma.val(), norm.beta.val(), norm.epsilon);
        assert_close(
            &host(y),
            &host(relu(want.output)),
            1e-5,
            1e-5,
            &format!("{kind} output"),
        );
        let want_mean: Vec<f64> = host(want.mean).iter().map(|m| 0.1 * m).collect();
        let want_var: Vec<f64> = host(want.variance).iter().map(|v| 0.9 + 0.1 * v).collect();
        let got_mean = host(norm.running_mean.value_sync());
        let got_var = host(norm.running_var.value_sync());
        assert!(
            got_mean.iter().any(|m| m.abs() > 1e-3),
            "{kind}: the running mean moved"
        );
        assert_close(
            &got_mean,
            &want_mean,
            1e-6,
            1e-5,
            &format!("{kind} running mean"),
        );
        assert_close(
            &got_var,
            &want_var,
            1e-6,
            1e-5,
            &format!("{kind} running variance"),
        );
    }
}

/// The batch-norm gradient op differentiated again through the trait method (a double backward,
/// reached with an output gradient that needs a gradient): it is linear in that gradient, so
/// the derivative of `sum(r ⊙ dx(g))` by `g[i]` is `sum(r ⊙ dx(e_i))`, evaluated untracked for
/// every unit vector `e_i`.
#[test]
fn the_batch_norm_gradient_is_differentiable() {
    use burn::backend::Dispatch;
    use squeeze_segnet::fused::FusedConvOps;
    let mut rng = Rng::new(47);
    let shape = [2, 3, 4, 5];
    let len: usize = shape.iter().product();
    for (kind, device) in cpu_backends() {
        let ad = device.autodiff();
        let x = float64(&rng.normal(len), shape, &ad);
        let gamma = float64(&rng.normal(3), [1, 1, 1, 3], &ad).reshape([3]);
        let beta = float64(&rng.normal(3), [1, 1, 1, 3], &ad).reshape([3]);
        let (y, mean, var) = fused::batch_norm_relu_train(x.clone(), gamma.clone(), beta, 1e-5);
        let r = float64(&rng.normal(len), shape, &ad);
        let dx = |g: Tensor<4>| -> Tensor<4> {
            let (dx, _, _) = Dispatch::seg_batch_norm_relu_backward(
                x.clone().detach().into_dispatch(),
                y.clone().detach().into_dispatch(),
                gamma.clone().detach().into_dispatch(),
                mean.clone().into_dispatch(),
                var.clone().into_dispatch(),
                1e-5,
                g.into_dispatch(),
            );
            Tensor::from_dispatch(dx)
        };
        let g = float64(&rng.normal(len), shape, &ad).require_grad();
        let grads = (dx(g.clone()) * r.clone()).sum().backward();
        let analytic = host(g.grad(&grads).expect("the gradient of the gradient"));
        let numeric: Vec<f64> = (0..len)
            .map(|i| {
                let mut e = vec![0.0; len];
                e[i] = 1.0;
                host((dx(float64(&e, shape, &ad)) * r.clone()).sum())[0]
            })
            .collect();
        assert!(analytic.iter().any(|v| v.abs() > 1e-3), "{kind}: trivial");
        assert_close(
            &analytic,
            &numeric,
            1e-7,
            1e-7,
            &format!("{kind} d dx / d grad"),
        );
    }
}

/// The host kernels' AVX2 and baseline code (`squeeze_segnet::SIMD_ENV`) against Burn's ops
/// too: the kernel tests above, again in child processes capped at each level.
#[test]
fn every_vector_level_matches_burns_ops() {
    rerun_at_lower_vector_levels(&[
        "conv_bias_relu_matches_burns_ops",
        "dfire_matches_burns_ops",
        "training_convolution_matches_burns_value_and_gradients",
        "batch_norm_relu_matches_burns_batch_norm_and_relu",
        "the_batch_norm_gradient_is_differentiable",
    ]);
}
