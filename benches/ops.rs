//! The custom pooling/unpooling kernels against Burn's built-in `max_pool2d_with_indices` and the
//! naive reference, on the network's real shapes, forward and backward, on every backend.
//!
//! Ids: `ops/<op>/<impl>/<backend>/<shape>`.

use burn::prelude::*;
use burn::tensor::{Distribution, module, ops::MaxPoolOptions};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use squeeze_segnet::BackendKind;
use squeeze_segnet::ops::{self, PoolOptions, reference};

const POOL: PoolOptions = PoolOptions::new([3, 3], [2, 2]);
/// pool1, pool3, pool5 inputs at 360×480, batch 1.
const SHAPES: [[usize; 4]; 3] = [[1, 64, 179, 239], [1, 128, 89, 119], [1, 256, 44, 59]];

fn label(s: [usize; 4]) -> String {
    format!("{}x{}x{}x{}", s[0], s[1], s[2], s[3])
}

fn bench_ops(c: &mut Criterion) {
    squeeze_segnet::retain_freed_memory();
    squeeze_segnet::flush_subnormals();
    let mut group = c.benchmark_group("ops");
    group.sample_size(20);
    for kind in BackendKind::ALL {
        let Ok(device) = kind.device() else { continue };
        for shape in SHAPES {
            let x = Tensor::<4>::random(shape, Distribution::Default, &device);
            let id =
                |op: &str, imp: &str| BenchmarkId::new(format!("{op}/{imp}/{kind}"), label(shape));
            group.bench_function(id("pool", "ours"), |b| {
                b.iter(|| {
                    ops::max_pool2d_with_indices_unchecked(x.clone(), POOL)
                        .0
                        .into_data()
                })
            });
            let opts = MaxPoolOptions::new(POOL.kernel)
                .with_stride(POOL.stride)
                .with_ceil_mode(true);
            group.bench_function(id("pool", "burn"), |b| {
                b.iter(|| {
                    module::max_pool2d_with_indices(x.clone(), opts.clone())
                        .0
                        .into_data()
                })
            });
            let (v, i) = ops::max_pool2d_with_indices_unchecked(x.clone(), POOL);
            let size = [shape[2], shape[3]];
            group.bench_function(id("unpool", "ours"), |b| {
                b.iter(|| ops::max_unpool2d_unchecked(v.clone(), i.clone(), size).into_data())
            });
            let xa = x.clone().autodiff().require_grad();
            group.bench_function(id("pool+unpool fwd+bwd", "ours"), |b| {
                b.iter(|| {
                    let (v, i) = ops::max_pool2d_with_indices_unchecked(xa.clone(), POOL);
                    let y = ops::max_unpool2d_unchecked(v, i, size);
                    xa.grad(&y.sum().backward()).map(|g| g.into_data())
                })
            });
            if kind == BackendKind::Flex {
                let (host, dims) = reference::float_host(x.clone());
                group.bench_function(id("pool", "naive"), |b| {
                    b.iter(|| reference::max_pool2d_with_indices(&host, dims, POOL))
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, bench_ops);
criterion_main!(benches);
