//! Forward pass of the default Squeeze-SegNet (inference: no autodiff, batch norm in eval mode
//! and folded into the convolutions by `for_inference`, fp32, random weights) on every backend
//! of the build; and of the shipped CamVid network (`SqueezeSegNetConfig::camvid`, with the
//! pyramid context and the 3×3 refinement) on the CPU
//! backends at 360×480, batch 1.
//!
//! Ids: `forward/<backend>/<H>x<W>/b<N>` and `forward-camvid/<backend>/360x480/b1`. WGPU here
//! runs on whatever adapter exists — on a machine without a GPU that is Mesa's software Vulkan,
//! which only shows that it works.
//!
//! `cargo bench --bench forward -- flex` runs one backend.

use burn::prelude::*;
use burn::tensor::Distribution;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use squeeze_segnet::{BackendKind, SqueezeSegNetConfig};

fn forward(c: &mut Criterion) {
    squeeze_segnet::retain_freed_memory();
    squeeze_segnet::flush_subnormals();
    let mut group = c.benchmark_group("forward");
    group.sample_size(10);
    for kind in BackendKind::ALL {
        let device = match kind.device() {
            Ok(d) => d,
            Err(e) => {
                eprintln!("skipping {kind}: {e}");
                continue;
            }
        };
        let model = SqueezeSegNetConfig::paper_with_batch_norm()
            .init(&device)
            .expect("default config")
            .for_inference();
        for (h, w, n) in [(360, 480, 1), (360, 480, 4), (180, 240, 1)] {
            let x = Tensor::<4>::random([n, 3, h, w], Distribution::Default, &device);
            let id = BenchmarkId::new(kind.name(), format!("{h}x{w}/b{n}"));
            group.bench_with_input(id, &x, |b, x| {
                b.iter(|| {
                    let y = model.forward(x.clone()).expect("valid input");
                    // Read one value back so lazy backends finish the work inside the timing.
                    y.slice([0..1, 0..1, 0..1, 0..1]).into_data()
                })
            });
        }
    }
    group.finish();

    let mut group = c.benchmark_group("forward-camvid");
    group.sample_size(10);
    for kind in [BackendKind::Flex, BackendKind::NdArray] {
        let device = kind.device().expect("CPU backends always exist");
        let model = SqueezeSegNetConfig::camvid()
            .init(&device)
            .expect("camvid config")
            .for_inference();
        let x = Tensor::<4>::random([1, 3, 360, 480], Distribution::Default, &device);
        group.bench_with_input(BenchmarkId::new(kind.name(), "360x480/b1"), &x, |b, x| {
            b.iter(|| {
                let y = model.forward(x.clone()).expect("valid input");
                y.slice([0..1, 0..1, 0..1, 0..1]).into_data()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
