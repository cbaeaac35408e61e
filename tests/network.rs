//! The whole network as a user runs it: shapes at any size, parameter counts, errors, the same
//! forward and backward on every backend, and weights files.

mod common;

use burn::module::Module;
use burn::prelude::*;
use common::*;
use squeeze_segnet::{
    SegNetError, SqueezeSegNet, SqueezeSegNetConfig, min_input_len, num_trainable_params,
};

fn image(shape: [usize; 4], seed: u64, device: &Device) -> Tensor<4> {
    let mut rng = Rng::new(seed);
    float(&rng.normal(shape.iter().product()), shape, device)
}

#[test]
fn output_has_the_input_size_for_odd_even_and_minimum_sizes() {
    let device = Device::flex();
    let model = SqueezeSegNetConfig::paper_with_batch_norm()
        .init(&device)
        .unwrap();
    let min = min_input_len();
    for [h, w] in [
        [min, min],
        [min + 1, min + 2],
        [37, 53],
        [64, 80],
        [95, 128],
        [180, 240],
    ] {
        let y = model.forward(image([2, 3, h, w], 1, &device)).unwrap();
        assert_eq!(y.dims(), [2, 11, h, w], "input {h}×{w}");
    }
}

/// The encoder's output next to the logits (for auxiliary losses): the same logits as `forward`,
/// features of conv10's width at the encoder's size, and `forward`'s input errors.
#[test]
fn forward_with_features_gives_the_logits_and_the_encoder_output() {
    let device = Device::flex();
    let model = SqueezeSegNetConfig::camvid().init(&device).unwrap();
    let x = image([2, 3, 64, 80], 3, &device);
    let (logits, features) = model.forward_with_features(x.clone()).unwrap();
    assert_close(
        &host(logits),
        &host(model.forward(x).unwrap()),
        1e-6,
        1e-6,
        "logits",
    );
    // 64×80 → conv1 31×39 → pools (3×3/2, ceil) 15×19, 7×9, 3×4.
    assert_eq!(features.dims(), [2, 512, 3, 4]);
    let err = model
        .forward_with_features(image([1, 4, 64, 80], 3, &device))
        .unwrap_err();
    assert!(matches!(err, SegNetError::InputChannels { .. }), "{err}");
}

/// The shipped network's context at the smallest inputs, where the bottleneck is 1×1 or 1×2
/// and the 2×2, 3×3 and 6×6 grids pool a map smaller than themselves: the same finite logits
/// on every backend as on Flex, unfolded and folded for inference.
#[test]
fn the_context_works_at_the_minimum_sizes_on_every_backend() {
    let flex = Device::flex();
    let mut model = SqueezeSegNetConfig::camvid().init(&flex).unwrap();
    let context = model.context.as_mut().expect("camvid() has the context");
    let [o, i, _, _] = context.fuse.weight.dims();
    let values: Vec<f64> = Rng::new(3).normal(o * i).iter().map(|v| 0.05 * v).collect();
    context.fuse.weight = burn::module::Param::from_tensor(float(&values, [o, i, 1, 1], &flex));
    let model = model.valid();
    let min = min_input_len();
    for [h, w] in [[min, min], [min + 1, min + 9], [40, 33]] {
        let x = image([1, 3, h, w], 4, &flex);
        let want = host(model.forward(x.clone()).unwrap());
        assert!(
            want.iter().all(|v| v.is_finite()),
            "{h}×{w}: non-finite logits"
        );
        for (kind, device) in backends() {
            let m = model.clone().fork(&device);
            for (what, m) in [("unfolded", m.clone()), ("folded", m.for_inference())] {
                let got = host(m.forward(x.clone().to_device(&device)).unwrap());
                let scale = want.iter().map(|v| v.abs()).fold(0.0, f64::max);
                let what = format!("{kind} {what} {h}×{w}");
                assert_mostly_close(&got, &want, 1e-4 * scale.max(1.0), 1e-3, 1e-3, &what);
            }
        }
    }
}

#[test]
fn full_resolution_camvid_input() {
    let device = Device::flex();
    let model = SqueezeSegNetConfig::paper_with_batch_norm()
        .init(&device)
        .unwrap();
    let y = model.forward(image([1, 3, 360, 480], 2, &device)).unwrap();
    assert_eq!(y.dims(), [1, 11, 360, 480]);
    let classes = model.segment(image([1, 3, 360, 480], 2, &device)).unwrap();
    assert_eq!(classes.dims(), [1, 360, 480]);
    let labels = host_int_3(classes);
    assert!(labels.iter().all(|&c| (0..11).contains(&c)));
}

fn host_int_3(x: Tensor<3, Int>) -> Vec<i64> {
    x.into_data().convert::<i64>().try_to_vec::<i64>().unwrap()
}

#[test]
fn parameter_counts_match_the_paper_and_the_summary() {
    let device = Device::flex();
    let paper = SqueezeSegNetConfig::paper();
    let model = paper.init(&device).unwrap();
    // The paper's 2.7 M: every convolution with bias, no batch norm.
    assert_eq!(num_trainable_params(&model), 2_692_555);
    assert_eq!(
        paper.summary([1, 3, 360, 480]).unwrap().total_params(),
        2_692_555
    );
    // Batch norm (γ, β) after every convolution but the last, whose biases go:
    // 2,692,555 − 6,720 biases + 2 × 6,720 = 2,699,275.
    let batch_norm = SqueezeSegNetConfig::paper_with_batch_norm();
    let model = batch_norm.init(&device).unwrap();
    assert_eq!(num_trainable_params(&model), 2_699_275);
    assert_eq!(
        batch_norm.summary([1, 3, 360, 480]).unwrap().total_params(),
        2_699_275
    );
    // CamVid's: batch norm, the 3×3 refinement (64·64·9 + 2·64 = 36,992) and the pyramid
    // context (4 · (512·64 + 64) + 256·512 + 512 = 262,912): 2,999,179.
    let camvid = SqueezeSegNetConfig::camvid();
    let model = camvid.init(&device).unwrap();
    assert_eq!(num_trainable_params(&model), 2_999_179);
    assert_eq!(
        camvid.summary([1, 3, 360, 480]).unwrap().total_params(),
        2_999_179
    );
    // Other class counts change only deconv1 (64·k·9 + k).
    let four = SqueezeSegNetConfig::camvid().with_num_classes(4);
    assert_eq!(
        num_trainable_params(&four.init(&device).unwrap()),
        2_999_179 - 7 * (64 * 9 + 1)
    );
}

#[test]
fn bad_inputs_and_configs_are_typed_errors() {
    let device = Device::flex();
    let model = SqueezeSegNetConfig::paper_with_batch_norm()
        .init(&device)
        .unwrap();
    let err = model
        .forward(Tensor::zeros([1, 3, 24, 64], &device))
        .unwrap_err();
    assert!(
        matches!(
            err,
            SegNetError::InputTooSmall {
                height: 24,
                min_height: 25,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("at least 25×25"), "{err}");
    let err = model
        .forward(Tensor::zeros([1, 4, 64, 64], &device))
        .unwrap_err();
    assert!(
        matches!(err, SegNetError::InputChannels { channels: 3, .. }),
        "{err}"
    );
    let err = model
        .forward(Tensor::zeros([0, 3, 64, 64], &device))
        .unwrap_err();
    assert!(matches!(err, SegNetError::EmptyBatch), "{err}");
    let err = SqueezeSegNetConfig::paper_with_batch_norm()
        .with_num_classes(0)
        .init(&device)
        .unwrap_err();
    assert!(err.to_string().contains("num_classes is 0"), "{err}");
    let err = "cuda".parse::<squeeze_segnet::BackendKind>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown backend 'cuda': expected one of ndarray, flex, wgpu"
    );
}

#[test]
fn grayscale_input_works_when_configured() {
    let device = Device::flex();
    let model = SqueezeSegNetConfig::paper_with_batch_norm()
        .with_input_channels(1)
        .with_num_classes(2)
        .init(&device)
        .unwrap();
    assert_eq!(
        model
            .forward(image([1, 1, 40, 50], 3, &device))
            .unwrap()
            .dims(),
        [1, 2, 40, 50]
    );
}

/// Same weights on every backend: forward logits (inference) agree.
#[test]
fn forward_agrees_across_backends() {
    let flex = Device::flex();
    // Seeded: with fresh random weights each run, a pooling near-tie between backends
    // occasionally moved more logits than the tolerance allows (seen twice in many runs).
    flex.seed(11);
    let model = SqueezeSegNetConfig::paper_with_batch_norm()
        .with_num_classes(5)
        .init(&flex)
        .unwrap();
    let x = image([2, 3, 47, 61], 4, &flex);
    let want = host(model.forward(x.clone()).unwrap());
    for (kind, device) in backends() {
        let m = model.clone().to_device(&device);
        let got = host(m.forward(x.clone().to_device(&device)).unwrap());
        // Backends sum in different orders, so a pooling near-tie may flip (seen once in the
        // full suite).
        let scale = want.iter().map(|v| v.abs()).fold(0.0, f64::max);
        let what = format!("{kind} logits");
        assert_mostly_close(&got, &want, 1e-4 * scale.max(1.0), 1e-3, 1e-3, &what);
    }
}

/// Same weights on every backend: the gradients of a training step agree, through every pooling
/// and unpooling of the network.
///
/// Max-pooling is discontinuous: where two window values differ only by float rounding,
/// backends with different convolution kernels (WGPU) may pick different maxima, which moves
/// some encoder gradients. So layers are compared by the relative L2 error of their gradient:
/// tightly for the CPU backends and for decoder layers after the last unpooling, with room for
/// such flips in WGPU's encoder gradients. The paper's network (no batch norm) is used: in
/// training mode Burn's batch norm itself differs between backends by a few percent.
#[test]
fn backward_agrees_across_backends() {
    let flex = Device::flex();
    let model = SqueezeSegNetConfig::paper()
        .with_num_classes(4)
        .init(&flex)
        .unwrap();
    let shape = [2, 3, 73, 97];
    let x = image(shape, 5, &flex);
    let mut rng = Rng::new(6);
    let w = rng.normal(2 * 4 * 73 * 97);
    // (layer, is it an encoder layer, whose gradient flows back through the poolings)
    let layers = [
        ("conv1", true),
        ("fire5.expand3x3", true),
        ("dfire2.squeeze", false),
        ("deconv1", false),
    ];
    let grads_on = |device: &Device| -> Vec<Vec<f64>> {
        let ad = device.clone().autodiff();
        let m: SqueezeSegNet = model.clone().fork(&ad).train();
        let y = m.forward(x.clone().to_device(&ad)).unwrap();
        let loss = (y * float(&w, [2, 4, 73, 97], &ad)).sum();
        let grads = loss.backward();
        vec![
            host(m.conv1.conv.weight.val().grad(&grads).unwrap()),
            host(m.fire5.expand3x3.conv.weight.val().grad(&grads).unwrap()),
            host(m.dfire2.squeeze.conv.weight.val().grad(&grads).unwrap()),
            host(m.deconv1.weight.val().grad(&grads).unwrap()),
        ]
    };
    // The decoder's unpoolings place values with the encoder's pooling indices, and its
    // activations depend on every pooling decision: where a pooling's indices differ between
    // two backends (a near-tie decided by rounding), the decoder gradients move too. Whether
    // the three poolings agree is checked, not assumed.
    let pool_indices = |device: &Device| {
        // As in the training pass above: the autodiff fork, so the layers run the same kernels.
        let ad = device.clone().autodiff();
        let m: SqueezeSegNet = model.clone().fork(&ad).train();
        let pool = squeeze_segnet::config::POOL;
        let mut all = Vec::new();
        let mut y = m.conv1.forward(x.clone().to_device(&ad));
        for stage in 0..3 {
            let (v, i) = squeeze_segnet::ops::max_pool2d_with_indices(y, pool).unwrap();
            all.extend(host_int(i));
            y = match stage {
                0 => m.fire3.forward(m.fire2.forward(v)),
                1 => m.fire5.forward(m.fire4.forward(v)),
                _ => v,
            };
        }
        all
    };
    let want = grads_on(&flex);
    let want_indices = pool_indices(&flex);
    for (kind, device) in backends() {
        let got = grads_on(&device);
        let same_indices = pool_indices(&device) == want_indices;
        for ((layer, encoder), (g, w)) in layers.iter().zip(got.iter().zip(&want)) {
            let norm = w.iter().map(|v| v * v).sum::<f64>().sqrt();
            let diff = g
                .iter()
                .zip(w)
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f64>()
                .sqrt();
            // Encoder gradients flow back through three poolings and every ReLU: a different
            // summation order (WGPU's kernels, or a CPU backend's thread split, which varies with
            // load) can flip a near-tie between two window candidates, or a ReLU at zero, and
            // move a little gradient elsewhere. Seen on NdArray under the full test load: 1e-3
            // to 7e-3; on WGPU 1e-2 to 2.4e-2. Decoder layers stay at 1e-4 when the poolings'
            // indices agree (seen at 4e-3 to 2e-2 otherwise: the random weights come from a
            // generator that concurrently running tests share); the ops themselves are compared
            // exactly in tests/ops.rs. WGPU's own kernels (another summation order than the CPU
            // backends, which share this crate's training kernels) can also flip a decoder ReLU
            // at zero with the same indices: 3e-3 seen on dfire2.squeeze under the full test load.
            let tolerance = if *encoder || !same_indices {
                5e-2
            } else if kind == squeeze_segnet::BackendKind::Wgpu {
                1e-2
            } else {
                1e-4
            };
            assert!(norm > 0.0, "{layer}: zero gradient");
            assert!(
                diff <= tolerance * norm,
                "{kind} d/d {layer}: relative L2 error {:.3e} > {tolerance:e}",
                diff / norm
            );
        }
    }
}

#[test]
fn a_few_adam_steps_fit_a_fixed_segmentation() {
    // The network and its custom ops train: a few Adam steps of cross-entropy on a fixed batch
    // and label map raise pixel accuracy and cut the loss.
    use burn::nn::loss::CrossEntropyLossConfig;
    use burn::optim::{AdamConfig, GradientsParams};
    let ad = Device::flex().autodiff();
    let (n, k, h, w) = (2, 3, 33, 41);
    let mut model = SqueezeSegNetConfig::paper_with_batch_norm()
        .with_num_classes(k)
        .init(&ad)
        .unwrap();
    let x = image([n, 3, h, w], 9, &ad);
    // Labels: three vertical bands.
    let labels: Vec<i64> = (0..n * h * w).map(|i| ((i % w) * k / w) as i64).collect();
    let target = Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [n * h * w]), &ad);
    let loss_fn = CrossEntropyLossConfig::new().init(&ad);
    let mut optim = AdamConfig::new().init();
    let mut history = Vec::new();
    for _ in 0..12 {
        let y = model.forward(x.clone()).unwrap(); // [n, k, h, w]
        let flat = y.clone().permute([0, 2, 3, 1]).reshape([n * h * w, k]);
        let loss = loss_fn.forward(flat.clone(), target.clone());
        let pred = host_int_1(flat.argmax(1).squeeze_dim(1));
        let acc =
            pred.iter().zip(&labels).filter(|(a, b)| a == b).count() as f64 / labels.len() as f64;
        history.push((host(loss.clone())[0], acc));
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-2, model, grads);
    }
    let (first, last) = (history[0], history[history.len() - 1]);
    assert!(last.0 < 0.7 * first.0, "loss did not fall: {history:?}");
    assert!(last.1 > first.1 + 0.2, "accuracy did not rise: {history:?}");
}

fn host_int_1(x: Tensor<1, Int>) -> Vec<i64> {
    x.into_data().convert::<i64>().try_to_vec::<i64>().unwrap()
}

#[test]
fn weights_round_trip_including_batch_norm_statistics() {
    let dir = tempdir("round_trip");
    let ad = Device::flex().autodiff();
    let model = SqueezeSegNetConfig::paper_with_batch_norm()
        .init(&ad)
        .unwrap()
        .train();
    // One training-mode forward moves the batch-norm running statistics off their defaults.
    let _ = model.forward(image([2, 3, 40, 40], 7, &ad)).unwrap();
    let model = model.valid(); // inference snapshot on the plain device
    let device = Device::flex();
    assert!(!model.conv1.conv.weight.val().device().is_autodiff());
    let running_mean = host(
        model
            .dfire3
            .squeeze
            .norm
            .as_ref()
            .unwrap()
            .running_mean
            .value(),
    );
    assert!(
        running_mean.iter().any(|m| *m != 0.0),
        "running statistics did not move"
    );
    let path = model.save(dir.join("model")).unwrap();
    assert_eq!(path, dir.join("model.bpk"));
    let loaded = SqueezeSegNetConfig::paper_with_batch_norm()
        .init(&device)
        .and_then(|m| m.load(&path))
        .unwrap();
    let x = image([1, 3, 40, 40], 8, &device);
    let a = host(model.forward(x.clone()).unwrap());
    let b = host(loaded.forward(x.clone()).unwrap());
    assert_eq!(a, b);
    // A fresh model differs: the test would notice a load that did nothing.
    let fresh = host(
        SqueezeSegNetConfig::paper_with_batch_norm()
            .init(&device)
            .unwrap()
            .forward(x)
            .unwrap(),
    );
    assert_ne!(a, fresh);
}

#[test]
fn bad_weights_files_are_typed_errors_naming_the_file() {
    let dir = tempdir("bad_weights");
    let device = Device::flex();
    let config = SqueezeSegNetConfig::paper_with_batch_norm();
    let path = config
        .init(&device)
        .unwrap()
        .save(dir.join("good.bpk"))
        .unwrap();

    let missing = dir.join("missing.bpk");
    let err = config
        .init(&device)
        .and_then(|m| m.load(&missing))
        .unwrap_err();
    assert!(
        matches!(&err, SegNetError::Load { path, .. } if *path == missing),
        "{err}"
    );

    let garbage = dir.join("garbage.bpk");
    std::fs::write(&garbage, b"definitely not a burnpack file").unwrap();
    let err = config
        .init(&device)
        .and_then(|m| m.load(&garbage))
        .unwrap_err();
    assert!(
        matches!(&err, SegNetError::Load { path, .. } if *path == garbage),
        "{err}"
    );
    assert!(err.to_string().contains("garbage.bpk"), "{err}");

    let truncated = dir.join("truncated.bpk");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = config
        .init(&device)
        .and_then(|m| m.load(&truncated))
        .unwrap_err();
    assert!(matches!(&err, SegNetError::Load { .. }), "{err}");

    let err = config
        .clone()
        .with_num_classes(5)
        .init(&device)
        .and_then(|m| m.load(&path))
        .unwrap_err();
    assert!(
        matches!(&err, SegNetError::WeightsMismatch { path: p, .. } if *p == path),
        "{err}"
    );
    let err = SqueezeSegNetConfig::paper()
        .init(&device)
        .and_then(|m| m.load(&path))
        .unwrap_err();
    assert!(matches!(&err, SegNetError::WeightsMismatch { .. }), "{err}");
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("squeeze-segnet-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn folding_batch_norm_keeps_the_logits() {
    let device = Device::flex();
    let ad = device.clone().autodiff();
    let model = SqueezeSegNetConfig::camvid().init(&ad).unwrap();
    // Training-mode passes move the running statistics away from (0, 1).
    for i in 0..3 {
        let x = image([2, 3, 48, 64], 40 + i, &ad)
            .mul_scalar(1.0 + i as f32)
            .add_scalar(0.5 * i as f32);
        let _ = model.forward(x).unwrap();
    }
    // Non-trivial γ and β too, so that a fold forgetting either shows.
    let mut model = model;
    let mut seed = 60;
    for block in [
        &mut model.conv1,
        &mut model.fire5.expand3x3,
        &mut model.dfire2.squeeze,
        model.refine.as_mut().unwrap(),
    ] {
        let norm = block.norm.as_mut().unwrap();
        let c = norm.gamma.dims()[0];
        let mut rng = Rng::new(seed);
        seed += 1;
        let gamma: Vec<f32> = rng
            .normal(c)
            .iter()
            .map(|v| 1.0 + 0.5 * *v as f32)
            .collect();
        let beta: Vec<f32> = rng.normal(c).iter().map(|v| *v as f32).collect();
        norm.gamma = burn::module::Param::from_tensor(Tensor::from_floats(gamma.as_slice(), &ad));
        norm.beta = burn::module::Param::from_tensor(Tensor::from_floats(beta.as_slice(), &ad));
    }
    let eval = model.valid();
    let moved: f32 = eval
        .conv1
        .norm
        .as_ref()
        .unwrap()
        .running_mean
        .value()
        .abs()
        .sum()
        .into_scalar();
    assert!(moved > 1e-3, "the running means moved ({moved})");
    let folded = model.for_inference();
    assert_eq!(folded.config(), eval.config().with_batch_norm(false));
    assert!(folded.conv1.norm.is_none() && folded.conv1.conv.bias.is_some());
    assert!(folded.dfire2.squeeze.norm.is_none());
    assert!(folded.refine.as_ref().unwrap().norm.is_none());
    let x = image([1, 3, 48, 64], 50, &device);
    let expected = eval.forward(x.clone()).unwrap().into_data();
    folded
        .forward(x)
        .unwrap()
        .into_data()
        .assert_approx_eq::<f32>(&expected, burn::tensor::Tolerance::rel_abs(1e-3, 1e-4));
}

/// `forward` runs the layers in the order, and pools and unpools after the modules, that
/// `summary` derives from config.rs's tables (`ENCODER_FIRES`, `POOLED_AFTER`, `DECODER_DFIRES`,
/// `UNPOOLED_AFTER`): replaying the summary's rows one module at a time gives each row's shape
/// and, at the end, `forward`'s logits. Moving a pooling in `forward` alone fails it.
#[test]
fn forward_runs_the_layers_of_the_summary_in_its_order() {
    use squeeze_segnet::{config::POOL, ops};
    let device = Device::flex();
    for config in [SqueezeSegNetConfig::camvid(), SqueezeSegNetConfig::paper()] {
        let mut model = config.init(&device).unwrap();
        if let Some(context) = model.context.as_mut() {
            // A fresh context adds zero; random weights make its place in the order matter.
            let [o, i, _, _] = context.fuse.weight.dims();
            let values: Vec<f64> = Rng::new(5).normal(o * i).iter().map(|v| 0.1 * v).collect();
            context.fuse.weight =
                burn::module::Param::from_tensor(float(&values, [o, i, 1, 1], &device));
        }
        let m = model.valid();
        let shape = [1, 3, 61, 83];
        let x = image(shape, 9, &device);
        let mut pooled = std::collections::HashMap::new();
        let mut y = x.clone();
        let summary = config.summary(shape).unwrap();
        for row in &summary.layers {
            y = match row.name {
                "conv1" => m.conv1.forward(y),
                "fire2" => m.fire2.forward(y),
                "fire3" => m.fire3.forward(y),
                "fire4" => m.fire4.forward(y),
                "fire5" => m.fire5.forward(y),
                "fire6" => m.fire6.forward(y),
                "fire7" => m.fire7.forward(y),
                "fire8" => m.fire8.forward(y),
                "fire9" => m.fire9.forward(y),
                "conv10" => m.conv10.forward(y),
                "context" => m.context.as_ref().unwrap().forward(y),
                "conv10_d" => m.conv10_d.forward(y),
                "dfire9" => m.dfire9.forward(y),
                "dfire8" => m.dfire8.forward(y),
                "dfire7" => m.dfire7.forward(y),
                "dfire6" => m.dfire6.forward(y),
                "dfire5" => m.dfire5.forward(y),
                "dfire4" => m.dfire4.forward(y),
                "dfire3" => m.dfire3.forward(y),
                "dfire2" => m.dfire2.forward(y),
                "refine" => m.refine.as_ref().unwrap().forward(y),
                "deconv1" => squeeze_segnet::deconv::forward(&m.deconv1, y, [61, 83]),
                pool if row.kind.starts_with("MaxPool") => {
                    let [_, _, h, w] = y.dims();
                    let (v, indices) = ops::max_pool2d_with_indices(y, POOL).unwrap();
                    pooled.insert(pool, (indices, [h, w]));
                    v
                }
                unpool if row.kind.starts_with("MaxUnpool") => {
                    // "MaxUnpool (pool5)": the pooling whose indices it takes.
                    let pool = row
                        .kind
                        .trim_start_matches("MaxUnpool (")
                        .trim_end_matches(')');
                    let (indices, size) = pooled.remove(pool).expect(unpool);
                    ops::max_unpool2d(y, indices, size).unwrap()
                }
                other => panic!("the summary names a layer the network lacks: {other}"),
            };
            assert_eq!(y.dims(), row.output, "{} ({})", row.name, row.kind);
        }
        assert!(
            pooled.is_empty(),
            "poolings never unpooled: {:?}",
            pooled.keys()
        );
        let want = host(m.forward(x).unwrap());
        let got = host(y);
        assert_mostly_close(&got, &want, 1e-5, 1e-5, 1e-6, "replayed summary vs forward");
    }
}

#[test]
fn logit_offsets_add_to_every_pixel_of_their_class() {
    let device = Device::flex();
    let model = SqueezeSegNetConfig::camvid().init(&device).unwrap().valid();
    let x = image([1, 3, 40, 56], 5, &device);
    let before = host(model.forward(x.clone()).unwrap());
    let offsets: Vec<f32> = (0..11).map(|c| c as f32 * 0.25 - 1.0).collect();
    let adjusted = model.clone().with_logit_offsets(&offsets).unwrap();
    let after = host(adjusted.forward(x.clone()).unwrap());
    let plane = 40 * 56;
    for (i, (a, b)) in after.iter().zip(&before).enumerate() {
        let c = i / plane;
        let o = offsets[c] as f64;
        assert!((a - b - o).abs() < 1e-4, "class {c}: {a} vs {b} + {o}");
    }
    // The folded network gives the same logits.
    let folded = host(adjusted.for_inference().forward(x).unwrap());
    assert!(folded.iter().zip(&after).all(|(a, b)| (a - b).abs() < 1e-3));
    for bad in [vec![0.0; 10], vec![f32::NAN; 11]] {
        let err = model.clone().with_logit_offsets(&bad).unwrap_err();
        assert!(matches!(err, SegNetError::Config(_)), "{err}");
    }
}
