//! The pyramid pooling context (`SqueezeSegNetConfig::context`): a fresh one is the identity, so
//! weights trained without it fine-tune with it; trained, it is the same function on every
//! backend, gradients reach every one of its parameters, and its weights round-trip.

mod common;

use burn::module::{Module, Param};
use burn::prelude::*;
use burn::tensor::DType;
use burn::tensor::module::{adaptive_avg_pool2d, interpolate};
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use common::*;
use squeeze_segnet::{
    PyramidContext, PyramidContextConfig, SegNetError, SqueezeSegNetConfig, num_trainable_params,
};

fn image(shape: [usize; 4], seed: u64, device: &Device) -> Tensor<4> {
    let mut rng = Rng::new(seed);
    float(&rng.normal(shape.iter().product()), shape, device)
}

/// `param` replaced by seeded normal values times `scale`.
fn randomised<const D: usize>(param: &Param<Tensor<D>>, seed: u64, scale: f64) -> Param<Tensor<D>> {
    let t = param.val();
    let shape = t.shape();
    let mut rng = Rng::new(seed);
    let values: Vec<f32> = rng
        .normal(shape.num_elements())
        .iter()
        .map(|v| (v * scale) as f32)
        .collect();
    Param::from_tensor(Tensor::from_data(
        TensorData::new(values, shape),
        &t.device(),
    ))
}

/// A context of 8 channels (3 per branch) whose fusion is no longer zero, as after training.
fn trained_context(device: &Device) -> PyramidContext {
    trained_context_of(PyramidContextConfig::new(8).with_branch_channels(3), device)
}

/// A 16-channel context (4 per branch), trained.
fn trained_context_wide(device: &Device) -> PyramidContext {
    trained_context_of(
        PyramidContextConfig::new(16).with_branch_channels(4),
        device,
    )
}

/// `config`'s context with seeded non-zero fusion and branch biases.
fn trained_context_of(config: PyramidContextConfig, device: &Device) -> PyramidContext {
    let mut c = config.init(device);
    c.fuse.weight = randomised(&c.fuse.weight, 1, 0.3);
    c.fuse.bias = c.fuse.bias.as_ref().map(|b| randomised(b, 2, 0.1));
    for (i, b) in c.branches.iter_mut().enumerate() {
        b.conv.bias = b
            .conv
            .bias
            .as_ref()
            .map(|p| randomised(p, 10 + i as u64, 0.1));
    }
    c
}

#[test]
fn a_fresh_context_is_the_identity_and_a_trained_one_is_not() {
    let device = Device::flex();
    let x = image([2, 8, 7, 9], 3, &device);
    let fresh = PyramidContextConfig::new(8).init(&device);
    assert_eq!(host(fresh.forward(x.clone())), host(x.clone()));
    let trained = trained_context(&device);
    let y = host(trained.forward(x.clone()));
    let diff: f64 = y
        .iter()
        .zip(host(x.clone()))
        .map(|(a, b)| (a - b).abs())
        .sum();
    assert!(diff > 1e-2, "a trained context changed nothing ({diff})");
    assert_eq!(host(trained.zeroed().forward(x.clone())), host(x));
}

/// The module against the formula written out with Burn's ops: x + fuse(concat(stretched
/// relu(conv(avgpool_b(x))))), the 1×1 grid broadcast, the others bilinear with aligned corners.
#[test]
fn the_context_is_pyramid_pooling_as_written_in_the_formula() {
    let device = Device::flex();
    let c = trained_context(&device);
    let x = image([2, 8, 13, 17], 4, &device);
    let parts: Vec<Tensor<4>> = c
        .bins
        .iter()
        .zip(&c.branches)
        .map(|(&b, branch)| {
            let p = adaptive_avg_pool2d(x.clone(), [b, b]);
            let p = burn::tensor::activation::relu(branch.conv.forward(p));
            interpolate(
                p,
                InterpolateOptions::new(InterpolateMode::Bilinear)
                    .with_output_size([13, 17])
                    .with_align_corners(true),
            )
        })
        .collect();
    let want = x.clone() + c.fuse.forward(Tensor::cat(parts, 1));
    assert_close(&host(c.forward(x)), &host(want), 1e-5, 1e-5, "context");
}

#[test]
fn weights_without_context_give_the_same_logits_with_a_fresh_one() {
    let device = Device::flex();
    let dir = tmp_dir("context-init");
    let plain = camvid_with_moved_statistics(21).with_context(None);
    let path = plain.save(dir.join("plain.bpk")).unwrap();
    let config = SqueezeSegNetConfig::camvid().with_context(true);
    // `load` itself refuses the file: the context's tensors are missing.
    let err = config.init(&device).unwrap().load(&path).unwrap_err();
    assert!(matches!(err, SegNetError::WeightsMismatch { .. }), "{err}");
    let with = config
        .init(&device)
        .unwrap()
        .load_adding_context(&path)
        .unwrap();
    assert!(with.context.is_some());
    let x = image([1, 3, 61, 83], 5, &device);
    let want = host(plain.forward(x.clone()).unwrap());
    let got = host(with.forward(x.clone()).unwrap());
    assert_close(&got, &want, 1e-5, 1e-5, "logits with a fresh context");
    // And a network with context loads a file with context in full.
    let mut trained = with.clone();
    trained.context = Some({
        let mut c = trained.context.take().unwrap();
        c.fuse.weight = randomised(&c.fuse.weight, 7, 0.05);
        c
    });
    let path = trained.save(dir.join("context.bpk")).unwrap();
    let loaded = config
        .init(&device)
        .unwrap()
        .load_adding_context(&path)
        .unwrap();
    assert_eq!(params(&loaded), params(&trained));
    // A file of another network is still an error, the whole network's.
    let five = SqueezeSegNetConfig::camvid()
        .with_num_classes(5)
        .init(&device)
        .unwrap();
    let path = five.save(dir.join("five.bpk")).unwrap();
    let err = config
        .init(&device)
        .unwrap()
        .load_adding_context(&path)
        .unwrap_err();
    assert!(matches!(err, SegNetError::WeightsMismatch { .. }), "{err}");
}

#[test]
fn the_context_costs_what_the_summary_says() {
    let device = Device::flex();
    let [a, b] = [false, true].map(|c| SqueezeSegNetConfig::camvid().with_context(c));
    let extra = num_trainable_params(&b.init(&device).unwrap())
        - num_trainable_params(&a.init(&device).unwrap());
    // Four branches 512→64 with bias, fusion 256→512 with bias.
    assert_eq!(extra, 4 * (512 * 64 + 64) + 256 * 512 + 512);
    let [sa, sb] = [a, b].map(|c| c.summary([1, 3, 360, 480]).unwrap());
    assert_eq!(sb.total_params() - sa.total_params(), extra);
    assert_eq!(sb.layers.len(), sa.layers.len() + 1);
    let row = sb.layers.iter().find(|l| l.name == "context").unwrap();
    assert_eq!(row.output, [1, 512, 22, 29]);
    let macs = (1 + 4 + 9 + 36) * 512 * 64 + 22 * 29 * 256 * 512;
    assert_eq!(row.macs, macs as u64);
    assert_eq!(sb.total_macs() - sa.total_macs(), macs as u64);
    let names: Vec<_> = sb.layers.iter().map(|l| l.name).collect();
    let at = names.iter().position(|&n| n == "context").unwrap();
    assert_eq!((names[at - 1], names[at + 1]), ("conv10", "conv10_d"));
}

/// A network with a trained context: the same logits and the same gradients of the context's
/// parameters on every backend, and every one of them gets a gradient.
/// The module alone, trained weights, every backend with autodiff: the same output and the same
/// gradients (input, fusion, every branch) as Flex. Every bin but 1×1 is stretched (a 12×15 map),
/// so the interpolation matrices' backward runs on each backend (NdArray has no `interpolate`
/// backward of its own).
#[test]
fn the_context_agrees_across_backends_in_value_and_gradient() {
    let flex = Device::flex();
    let context = trained_context_wide(&flex);
    let shape = [2, 16, 12, 15];
    let input = Rng::new(9).normal(shape.iter().product());
    let w = Rng::new(10).normal(shape.iter().product());
    let run = |device: &Device| -> Vec<Vec<f64>> {
        let ad = device.clone().autodiff();
        let c: PyramidContext = context.clone().fork(&ad).train();
        let x = float(&input, shape, &ad).require_grad();
        let y = c.forward(x.clone());
        let out = host(y.clone());
        let grads = (y * float(&w, shape, &ad)).sum().backward();
        let mut all = vec![
            out,
            host(x.grad(&grads).unwrap()),
            host(c.fuse.weight.val().grad(&grads).unwrap()),
            host(c.fuse.bias.as_ref().unwrap().val().grad(&grads).unwrap()),
        ];
        for b in &c.branches {
            all.push(host(b.conv.weight.val().grad(&grads).unwrap()));
            all.push(host(
                b.conv.bias.as_ref().unwrap().val().grad(&grads).unwrap(),
            ));
        }
        all
    };
    let want = run(&flex);
    for g in &want[2..] {
        assert!(
            g.iter().any(|v| *v != 0.0),
            "a context parameter got no gradient"
        );
    }
    let names = ["output", "input gradient", "fuse weight", "fuse bias"];
    for (kind, device) in backends() {
        for (i, (got, want)) in run(&device).iter().zip(&want).enumerate() {
            let scale = want.iter().map(|v| v.abs()).fold(0.0, f64::max);
            let what = format!(
                "{kind} {}",
                names.get(i).copied().unwrap_or("branch parameter")
            );
            assert_close(got, want, 1e-5 * scale.max(1.0), 1e-4, &what);
        }
    }
}

/// The stretch's interpolation matrices follow the input's float type: in f64 the module gives
/// the f32 result, in f64.
#[test]
fn the_context_runs_in_f64() {
    let flex = Device::flex();
    let context = trained_context_wide(&flex);
    let shape = [1, 16, 12, 15];
    let values = Rng::new(11).normal(shape.iter().product());
    let want = host(context.forward(float(&values, shape, &flex)));
    let y = context
        .map(&mut ToF64)
        .forward(float64(&values, shape, &flex));
    assert_eq!(y.dtype(), DType::F64);
    assert_close(&host(y), &want, 1e-5, 1e-5, "f64 context");
}

/// Casts every float parameter to f64.
struct ToF64;

impl burn::module::ModuleMapper for ToF64 {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        Param::from_tensor(param.val().cast(DType::F64))
    }
}

#[test]
fn the_context_survives_folding_for_inference() {
    let device = Device::flex();
    let mut model =
        camvid_with_moved_statistics(41).with_context(Some(trained_context_512(&device)));
    model = model.valid();
    let x = image([1, 3, 50, 66], 12, &device);
    let want = host(model.forward(x.clone()).unwrap());
    let got = host(model.for_inference().forward(x).unwrap());
    let scale = want.iter().map(|v| v.abs()).fold(0.0, f64::max);
    assert_close(&got, &want, 1e-4 * scale.max(1.0), 1e-4, "folded logits");
}

fn trained_context_512(device: &Device) -> PyramidContext {
    let mut c = PyramidContextConfig::new(512).init(device);
    c.fuse.weight = randomised(&c.fuse.weight, 13, 0.05);
    c
}
