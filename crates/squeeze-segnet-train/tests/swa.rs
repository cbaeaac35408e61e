//! Stochastic weight averaging: the average against the element-wise mean of the models, and the
//! recomputed batch-norm statistics against the batch statistics computed by hand (Flex, seeded,
//! the embedded CamVid sample).

use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::prelude::*;
use squeeze_segnet::{SqueezeSegNet, SqueezeSegNetConfig, visit_float_params};
use squeeze_segnet_data::loader::{CachedDataset, EpochStream, batches};
use squeeze_segnet_data::{SegmentationBatcher, TransformConfig, camvid, camvid_sample_root};
use squeeze_segnet_train::{TrainError, average_weights, update_batch_norm};

fn config(classes: usize) -> SqueezeSegNetConfig {
    SqueezeSegNetConfig::paper_with_batch_norm().with_num_classes(classes)
}

/// A batch-norm network (11 classes unless named) whose running statistics have moved off 0 and
/// 1 (seeded), in inference mode.
fn trained(seed: u64, classes: usize) -> SqueezeSegNet {
    let device = Device::flex().autodiff();
    device.seed(seed);
    let model = config(classes).init(&device).unwrap().train();
    let x = Tensor::<4>::random([2, 3, 40, 40], burn::tensor::Distribution::Default, &device);
    let _ = model.forward(x).unwrap();
    model.valid()
}

/// Every float tensor by record path, flattened.
fn tensors(model: &SqueezeSegNet) -> Vec<(String, Vec<f32>)> {
    let mut out = Vec::new();
    visit_float_params(model, |path, _, value| {
        out.push((
            path.to_string(),
            value().into_data().try_to_vec::<f32>().unwrap(),
        ));
    });
    out
}

fn get(all: &[(String, Vec<f32>)], path: &str) -> Vec<f32> {
    all.iter().find(|(p, _)| p == path).unwrap().1.clone()
}

/// The embedded sample's 16 training pairs, resized to 48x64 without augmentation.
fn sample_train() -> (Arc<CachedDataset>, TransformConfig) {
    let train = camvid(camvid_sample_root(), "train").unwrap();
    (
        Arc::new(CachedDataset::new(train, true)),
        TransformConfig::new([48, 64]),
    )
}

#[test]
fn the_average_is_the_elementwise_mean_of_every_parameter_and_statistic() {
    let models = [trained(1, 11), trained(2, 11), trained(3, 11)];
    let flat: Vec<_> = models.iter().map(tensors).collect();
    let average = tensors(&average_weights(&models).unwrap());
    assert_eq!(average.len(), flat[0].len());
    let mut compared = 0;
    for (i, (path, got)) in average.iter().enumerate() {
        assert_eq!(path, &flat[0][i].0);
        for (j, &g) in got.iter().enumerate() {
            let want = (flat[0][i].1[j] + flat[1][i].1[j] + flat[2][i].1[j]) / 3.0;
            assert!(
                (g - want).abs() <= 1e-5 * (1.0 + want.abs()),
                "{path}[{j}]: {g} vs {want}"
            );
            compared += 1;
        }
    }
    assert!(compared > 2_000_000, "only {compared} values compared");
    // The statistics are averaged too, and the models differ there.
    let stat = "fire5.squeeze.norm.running_var";
    assert_ne!(get(&flat[0], stat), get(&flat[1], stat));
}

#[test]
fn another_network_or_no_network_is_refused() {
    let err = average_weights(&[trained(1, 11), trained(2, 5)])
        .unwrap_err()
        .to_string();
    assert!(err.contains("model 1 is another network"), "{err}");
    assert!(matches!(average_weights(&[]), Err(TrainError::Config(_))));
    // One model averages to itself.
    let one = trained(4, 11);
    assert_eq!(
        tensors(&average_weights(&[one.clone()]).unwrap()),
        tensors(&one)
    );
}

#[test]
fn batch_norm_statistics_are_the_mean_of_the_batch_statistics() {
    let device = Device::flex();
    let (data, transform) = sample_train();
    let batch_size = 5; // 16 images: batches of 5, 5, 5 and 1, each weighted by its images
    let model = trained(5, 11);
    let updated = update_batch_norm(
        &model,
        data.clone(),
        transform.clone(),
        batch_size,
        0,
        &device,
    )
    .unwrap();

    // By hand: conv1's batch norm sees conv1's convolution of the images (no bias).
    let order: Vec<usize> = (0..data.len()).collect();
    let (mut mean, mut var) = (vec![0.0f64; 64], vec![0.0f64; 64]);
    for items in EpochStream::start(data.clone(), transform, batches(&order, batch_size), 0, 0) {
        let items = items.unwrap();
        let n = items.len() as f64;
        let images = SegmentationBatcher.batch(items, &device).images;
        let y = model.conv1.conv.forward(images);
        let [b, c, h, w] = y.dims();
        let y = y.swap_dims(0, 1).reshape([c, b * h * w]);
        let m = y.clone().mean_dim(1);
        let v = (y - m.clone()).powi_scalar(2).mean_dim(1);
        let (m, v) = (
            m.into_data().try_to_vec::<f32>().unwrap(),
            v.into_data().try_to_vec::<f32>().unwrap(),
        );
        for k in 0..c {
            mean[k] += n * m[k] as f64 / data.len() as f64;
            var[k] += n * v[k] as f64 / data.len() as f64;
        }
    }
    let got = tensors(&updated);
    for (path, want) in [
        ("conv1.norm.running_mean", &mean),
        ("conv1.norm.running_var", &var),
    ] {
        let got = get(&got, path);
        for k in 0..64 {
            assert!(
                (got[k] as f64 - want[k]).abs() <= 1e-4 * (1.0 + want[k].abs()),
                "{path}[{k}]: {} vs {}",
                got[k],
                want[k]
            );
        }
    }
    // Every statistic is new, every weight kept.
    let before = tensors(&model);
    for ((path, old), (_, new)) in before.iter().zip(&got) {
        if path.ends_with("running_mean") || path.ends_with("running_var") {
            assert_ne!(old, new, "{path} was not recomputed");
        } else {
            assert_eq!(old, new, "{path} changed");
        }
    }
}

#[test]
fn bad_batch_sizes_and_networks_without_batch_norm() {
    let device = Device::flex();
    let (data, transform) = sample_train();
    let err = update_batch_norm(
        &trained(6, 11),
        data.clone(),
        transform.clone(),
        0,
        0,
        &device,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("batch size 0"), "{err}");
    let err = update_batch_norm(
        &trained(6, 5),
        data.clone(),
        transform.clone(),
        2,
        0,
        &device,
    )
    .unwrap_err();
    assert!(
        matches!(err, TrainError::ClassCount { model: 5, data: 11 }),
        "{err}"
    );
    // Without batch norm there is nothing to recompute: the same network back.
    let plain = SqueezeSegNetConfig::paper().init(&device).unwrap();
    let same = update_batch_norm(&plain, data, transform, 2, 0, &device).unwrap();
    assert_eq!(tensors(&same), tensors(&plain));
}
