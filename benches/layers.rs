//! Where the time goes, layer by layer, for the shipped `camvid()` network (the paper's layers,
//! which every preset shares, plus `27-context` and `28-refine`; fp32, random weights), each
//! layer timed alone on its real input:
//!
//! - `layers/<backend>/<nn>-<layer>`: inference (batch norm folded, the fused CPU path) at
//!   360×480, batch 1, on the CPU backends; the layer times add up to about the whole forward
//!   (`benches/forward.rs`: the paper network's without 27 and 28, `camvid()`'s with them);
//! - `layers-train/flex/<nn>-<layer>`: forward and backward of the layer (autodiff, batch norm in
//!   training mode, gradient of the sum of its output) at 180×240, batch 4 — the training step's
//!   shape (`benches/train_step.rs`).
//!
//! Layers are numbered in execution order, e.g. `layers/flex/01-pool1`; `26-deconv1-phases` is
//! the final layer as four phase convolutions whatever the backend, beside `25-deconv1` (the
//! network's choice), to compare the two.
//! `cargo bench --bench layers -- layers/flex` runs one group and backend.

use burn::prelude::*;
use burn::tensor::{Distribution, Int};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use squeeze_segnet::config::POOL;
use squeeze_segnet::ops;
use squeeze_segnet::{BackendKind, SqueezeSegNet, SqueezeSegNetConfig};

/// One layer of the forward pass with its input, so it can be run again alone.
enum Step {
    Block(&'static str, Box<dyn Fn(Tensor<4>) -> Tensor<4>>, Tensor<4>),
    Pool(&'static str, Tensor<4>),
    Unpool(&'static str, Tensor<4>, Tensor<4, Int>, [usize; 2]),
}

/// Runs the network once, layer by layer (as `SqueezeSegNet::forward` does on Flex), and keeps
/// each layer's input.
fn steps(model: &SqueezeSegNet, x: Tensor<4>) -> Vec<Step> {
    let [_, _, height, width] = x.dims();
    let size = [height, width];
    let mut steps = Vec::new();
    let m = model.clone();
    let mut x = x;
    let mut block = |name: &'static str, f: Box<dyn Fn(Tensor<4>) -> Tensor<4>>, x: Tensor<4>| {
        let y = f(x.clone());
        steps.push(Step::Block(name, f, x));
        y
    };
    macro_rules! layer {
        ($name:literal, $field:ident) => {{
            let m = m.clone();
            x = block($name, Box::new(move |x| m.$field.forward(x)), x);
        }};
    }
    let mut pooled = Vec::new();
    macro_rules! pool {
        ($name:literal) => {{
            let [_, _, h, w] = x.dims();
            let (y, i) = ops::max_pool2d_with_indices_unchecked(x.clone(), POOL);
            pooled.push(($name, i, [h, w], x.clone()));
            x = y;
        }};
    }
    let mut pools = Vec::new();
    let mut unpools = Vec::new();
    layer!("conv1", conv1);
    pool!("pool1");
    layer!("fire2", fire2);
    layer!("fire3", fire3);
    pool!("pool3");
    layer!("fire4", fire4);
    layer!("fire5", fire5);
    pool!("pool5");
    layer!("fire6", fire6);
    layer!("fire7", fire7);
    layer!("fire8", fire8);
    layer!("fire9", fire9);
    layer!("conv10", conv10);
    if let Some(context) = model.context.clone() {
        x = block("context", Box::new(move |x| context.forward(x)), x);
    }
    layer!("conv10_d", conv10_d);
    layer!("dfire9", dfire9);
    layer!("dfire8", dfire8);
    layer!("dfire7", dfire7);
    layer!("dfire6", dfire6);
    let mut unpool = |x: Tensor<4>, name| {
        let (_, i, size, input) = pooled.pop().expect("one pooling per unpooling");
        unpools.push(Step::Unpool(name, x.clone(), i.clone(), size));
        pools.push(Step::Pool(pooled_name(name), input));
        ops::max_unpool2d_unchecked(x, i, size)
    };
    x = unpool(x, "unpool5");
    layer!("dfire5", dfire5);
    layer!("dfire4", dfire4);
    x = unpool(x, "unpool3");
    layer!("dfire3", dfire3);
    layer!("dfire2", dfire2);
    x = unpool(x, "unpool1");
    if let Some(refine) = model.refine.clone() {
        x = block("refine", Box::new(move |x| refine.forward(x)), x);
    }
    let d = model.deconv1.clone();
    // The network's own deconvolution path (this crate's kernel at inference on the CPU backends,
    // the four phases in training on NdArray, the backend's own op elsewhere).
    let _ = block(
        "deconv1",
        Box::new(move |x| squeeze_segnet::deconv::forward(&d, x, size)),
        x.clone(),
    );
    // The other contender: always the four phases, on this crate's convolution kernels.
    let d = model.deconv1.clone();
    let _ = block(
        "deconv1-phases",
        Box::new(move |x| {
            let bias = d.bias.as_ref().map(|b| b.val());
            squeeze_segnet::deconv::conv_transpose2d_3x3_s2(x, d.weight.val(), bias, size)
        }),
        x,
    );
    steps.extend(pools);
    steps.extend(unpools);
    steps
}

fn pooled_name(unpool: &str) -> &'static str {
    match unpool {
        "unpool5" => "pool5",
        "unpool3" => "pool3",
        _ => "pool1",
    }
}

const ORDER: [&str; 29] = [
    "conv1",
    "pool1",
    "fire2",
    "fire3",
    "pool3",
    "fire4",
    "fire5",
    "pool5",
    "fire6",
    "fire7",
    "fire8",
    "fire9",
    "conv10",
    "conv10_d",
    "dfire9",
    "dfire8",
    "dfire7",
    "dfire6",
    "unpool5",
    "dfire5",
    "dfire4",
    "unpool3",
    "dfire3",
    "dfire2",
    "unpool1",
    "deconv1",
    "deconv1-phases",
    "context",
    "refine",
];

fn step_name(step: &Step) -> &'static str {
    match step {
        Step::Block(n, ..) | Step::Pool(n, _) | Step::Unpool(n, ..) => n,
    }
}

/// The steps of one forward pass in execution order, with their benchmark ids.
fn ordered(model: &SqueezeSegNet, x: Tensor<4>, backend: &str) -> Vec<(BenchmarkId, Step)> {
    let mut all = steps(model, x);
    all.sort_by_key(|s| ORDER.iter().position(|o| *o == step_name(s)));
    all.into_iter()
        .map(|s| {
            let n = ORDER
                .iter()
                .position(|o| *o == step_name(&s))
                .expect("known layer");
            (
                BenchmarkId::new(backend, format!("{n:02}-{}", step_name(&s))),
                s,
            )
        })
        .collect()
}

fn layers(c: &mut Criterion) {
    squeeze_segnet::retain_freed_memory();
    squeeze_segnet::flush_subnormals();
    let mut group = c.benchmark_group("layers");
    group.sample_size(10);
    for kind in [BackendKind::Flex, BackendKind::NdArray] {
        let device = kind.device().expect("CPU backends always exist");
        let model = SqueezeSegNetConfig::camvid()
            .init(&device)
            .expect("default config")
            .for_inference();
        let x = Tensor::<4>::random([1, 3, 360, 480], Distribution::Default, &device);
        for (id, step) in ordered(&model, x, kind.name()) {
            match &step {
                Step::Block(_, f, x) => group.bench_function(id, |b| {
                    b.iter(|| f(x.clone()).slice([0..1, 0..1, 0..1, 0..1]).into_data())
                }),
                Step::Pool(_, x) => group.bench_function(id, |b| {
                    b.iter(|| {
                        ops::max_pool2d_with_indices_unchecked(x.clone(), POOL)
                            .0
                            .slice([0..1, 0..1, 0..1, 0..1])
                            .into_data()
                    })
                }),
                Step::Unpool(_, x, i, size) => group.bench_function(id, |b| {
                    b.iter(|| {
                        ops::max_unpool2d_unchecked(x.clone(), i.clone(), *size)
                            .slice([0..1, 0..1, 0..1, 0..1])
                            .into_data()
                    })
                }),
            };
        }
    }
    group.finish();

    // Forward + backward per layer, as in a training step.
    let mut group = c.benchmark_group("layers-train");
    group.sample_size(10);
    let device = Device::flex();
    let ad = device.clone().autodiff();
    let model = SqueezeSegNetConfig::camvid()
        .init(&device)
        .expect("default config")
        .fork(&ad)
        .train();
    let x = Tensor::<4>::random([4, 3, 180, 240], Distribution::Default, &ad);
    // Reads one value of the input gradient, so the backward pass is complete.
    let grad_of = |x: &Tensor<4>, y: Tensor<4>| {
        let grads = y.sum().backward();
        x.grad(&grads)
            .map(|g| g.slice([0..1, 0..1, 0..1, 0..1]).into_data())
    };
    for (id, step) in ordered(&model, x, "flex") {
        match &step {
            Step::Block(_, f, x) => {
                let x = x.clone().detach().require_grad();
                group.bench_function(id, |b| b.iter(|| grad_of(&x, f(x.clone()))))
            }
            Step::Pool(_, x) => {
                let x = x.clone().detach().require_grad();
                group.bench_function(id, |b| {
                    b.iter(|| {
                        grad_of(
                            &x,
                            ops::max_pool2d_with_indices_unchecked(x.clone(), POOL).0,
                        )
                    })
                })
            }
            Step::Unpool(_, x, i, size) => {
                let x = x.clone().detach().require_grad();
                group.bench_function(id, |b| {
                    b.iter(|| grad_of(&x, ops::max_unpool2d_unchecked(x.clone(), i.clone(), *size)))
                })
            }
        };
    }
    group.finish();
}

criterion_group!(benches, layers);
criterion_main!(benches);
