//! Decoded-and-augmented images per second: PNG decoding, the training transform
//! (scale-and-crop, flip, jitter, normalisation) and batching — the work that must outpace
//! training steps — through the data crate's pipeline (`loader::EpochStream`, what the trainer
//! runs on) and through Burn's data loader with two worker threads (`TransformedDataset`, the
//! adapter for Burn's `DataLoader`).
//!
//! Uses the full CamVid when `SQUEEZE_SEGNET_CAMVID` points at it, else the embedded sample.
//! Ids: `data/<stage>/<source>`; throughput is in images (elements) per second.

use std::sync::Arc;

use burn::data::dataloader::{DataLoaderBuilder, batcher::Batcher};
use burn::data::dataset::Dataset;
use burn::prelude::*;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use squeeze_segnet_data::*;

fn bench_data(c: &mut Criterion) {
    squeeze_segnet::retain_freed_memory();
    squeeze_segnet::flush_subnormals();
    let (root, source) = match std::env::var("SQUEEZE_SEGNET_CAMVID") {
        Ok(r) => (r.into(), "camvid-train"),
        Err(_) => (camvid_sample_root(), "sample-train"),
    };
    let train = camvid(&root, "train").expect("CamVid train split");
    let n = train.len();
    let device = Device::flex();
    let mut group = c.benchmark_group("data");
    group.sample_size(10);
    group.throughput(Throughput::Elements(n as u64));

    group.bench_function(format!("decode/{source}"), |b| {
        b.iter(|| {
            (0..n)
                .map(|i| train.load(i).unwrap().mask.len())
                .sum::<usize>()
        })
    });

    for (stage, transform) in [
        ("augment-360x480", TransformConfig::train([360, 480])),
        ("augment-180x240", TransformConfig::train([180, 240])),
    ] {
        let data = TransformedDataset::new(train.clone(), transform.clone(), 0).unwrap();
        group.bench_function(format!("{stage}-1thread/{source}"), |b| {
            b.iter(|| {
                (0..n)
                    .map(|i| data.get(i).unwrap().mask.len())
                    .sum::<usize>()
            })
        });
        // Uncached (every epoch decodes, as a first epoch does), decoding on Rayon's pool.
        let cached = Arc::new(loader::CachedDataset::new(train.clone(), false));
        let order = loader::epoch_order(n, 0, 0);
        group.bench_function(format!("{stage}-pipeline/{source}"), |b| {
            b.iter(|| {
                let batches = loader::batches(&order, 4);
                loader::EpochStream::start(cached.clone(), transform.clone(), batches, 0, 0)
                    .map(|items| {
                        SegmentationBatcher
                            .batch(items.unwrap(), &device)
                            .images
                            .dims()[0]
                    })
                    .sum::<usize>()
            })
        });
        let burn_loader = DataLoaderBuilder::new(SegmentationBatcher)
            .batch_size(4)
            .shuffle(0)
            .num_workers(2)
            .set_device(device.clone())
            .build(TransformedDataset::new(train.clone(), transform, 0).unwrap());
        group.bench_function(format!("{stage}-loader-2workers/{source}"), |b| {
            b.iter(|| {
                burn_loader
                    .iter()
                    .map(|batch| batch.unwrap().images.dims()[0])
                    .sum::<usize>()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_data);
criterion_main!(benches);
