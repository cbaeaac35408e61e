//! Data parallelism: a batch split over several devices gives the single-device loss and
//! gradients (exactly, up to float rounding, for a network without batch norm), on two handles
//! of one CPU device and across two backends (Flex and NdArray).

use burn::data::dataloader::batcher::Batcher;
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::prelude::*;
use squeeze_segnet::{SqueezeSegNet, SqueezeSegNetConfig};
use squeeze_segnet_data::{SegmentationBatcher, SegmentationItem, SplitMix64};
use squeeze_segnet_train::parallel::DataParallel;
use squeeze_segnet_train::{TrainError, label_weight_sum, segmentation_cross_entropy};

const WEIGHTS: [f32; 11] = [0.3, 0.2, 4.8, 0.15, 1.0, 0.4, 3.8, 2.0, 0.8, 6.4, 8.9];
const VOID: u8 = 11;

/// `n` random 48×64 items whose masks use every class and include void pixels.
fn items(n: usize) -> Vec<SegmentationItem> {
    let mut rng = SplitMix64::new(3);
    (0..n)
        .map(|_| SegmentationItem {
            image: (0..3 * 48 * 64)
                .map(|_| rng.uniform() as f32 * 2.0 - 1.0)
                .collect(),
            size: [48, 64],
            mask: (0..48 * 64).map(|_| rng.below(12) as u8).collect(),
            mask_size: [48, 64],
        })
        .collect()
}

fn single_device(
    model: &SqueezeSegNet,
    items: Vec<SegmentationItem>,
    device: &Device,
) -> (GradientsParams, f32) {
    let batch = SegmentationBatcher.batch(items, device);
    let weights = Tensor::<1>::from_floats(WEIGHTS.as_slice(), device);
    let loss = segmentation_cross_entropy(
        model.forward(batch.images).unwrap(),
        batch.masks,
        weights,
        VOID as usize,
    );
    let value = loss.clone().into_scalar();
    (GradientsParams::from_grads(loss.backward(), model), value)
}

/// Largest relative difference between two gradients over the layers that matter most: the
/// first and last convolutions, a Fire and a DFire.
fn max_relative_difference(model: &SqueezeSegNet, a: &GradientsParams, b: &GradientsParams) -> f32 {
    let ids = [
        model.conv1.conv.weight.id,
        model.fire5.expand3x3.conv.weight.id,
        model.dfire3.squeeze.conv.weight.id,
        model.deconv1.weight.id,
    ];
    ids.iter()
        .map(|&id| {
            let (x, y) = (a.get::<4>(id).unwrap(), b.get::<4>(id).unwrap());
            let scale: f32 = x.clone().abs().max().into_scalar::<f32>().max(1e-12);
            let diff: f32 = (x - y).abs().max().into_scalar();
            diff / scale
        })
        .fold(0.0, f32::max)
}

fn check_split(devices: &[Device]) {
    let main = Device::flex().autodiff();
    main.seed(11);
    let model = SqueezeSegNetConfig::paper_with_batch_norm()
        .with_batch_norm(false)
        .init(&main)
        .unwrap();
    let batch = items(3);
    let (expected, expected_loss) = single_device(&model, batch.clone(), &main);
    let parallel = DataParallel::new(devices, WEIGHTS.to_vec(), VOID as usize).unwrap();
    assert_eq!(parallel.len(), devices.len());
    // Three images over two devices: parts of two and one.
    let (grads, loss) = parallel.gradients(&model, batch).unwrap();
    assert!(
        (loss - expected_loss).abs() <= 1e-4 * expected_loss.abs(),
        "loss {loss} vs {expected_loss}"
    );
    let diff = max_relative_difference(&model, &grads, &expected);
    assert!(diff < 1e-3, "gradients differ by {diff} (relative)");
    // The gradients live on the model's device, ready for its optimiser.
    let g = grads.get::<4>(model.conv1.conv.weight.id).unwrap();
    assert_eq!(g.device(), main.clone().without_autodiff());
}

#[test]
fn two_workers_on_one_device_match_a_single_device() {
    check_split(&[Device::flex(), Device::flex()]);
}

#[test]
#[allow(deprecated)]
fn a_batch_split_over_flex_and_ndarray_matches_a_single_device() {
    check_split(&[Device::flex(), Device::ndarray()]);
}

#[test]
fn the_loss_denominator_counts_labelled_pixels_only() {
    let masks: [&[u8]; 2] = [&[0, 1, VOID, 2], &[VOID, VOID, 10, 0]];
    let expected = (0.3 + 0.2 + 4.8) + (8.9 + 0.3);
    let got = label_weight_sum(masks, &WEIGHTS, VOID as usize);
    assert!((got - expected as f64).abs() < 1e-6, "{got}");
}

#[test]
fn no_devices_is_an_error() {
    let err = DataParallel::new(&[], WEIGHTS.to_vec(), VOID as usize)
        .err()
        .expect("an empty device list is refused");
    assert!(matches!(err, TrainError::Config(_)), "{err}");
}

#[test]
fn more_devices_than_images_leaves_the_extra_ones_idle() {
    let main = Device::flex().autodiff();
    let model = SqueezeSegNetConfig::paper_with_batch_norm()
        .with_batch_norm(false)
        .init(&main)
        .unwrap();
    let (expected, expected_loss) = single_device(&model, items(1), &main);
    let parallel = DataParallel::new(&vec![Device::flex(); 3], WEIGHTS.to_vec(), 11).unwrap();
    let (grads, loss) = parallel.gradients(&model, items(1)).unwrap();
    assert!(
        (loss - expected_loss).abs() <= 1e-4 * expected_loss,
        "{loss} vs {expected_loss}"
    );
    let diff = max_relative_difference(&model, &grads, &expected);
    assert!(diff < 1e-3, "gradients differ by {diff} (relative)");
}

#[test]
#[allow(deprecated)]
fn batch_norm_statistics_from_the_workers_reach_the_model() {
    let main = Device::flex().autodiff();
    let model = SqueezeSegNetConfig::camvid().init(&main).unwrap();
    let parallel = DataParallel::new(
        &[Device::flex(), Device::ndarray()],
        WEIGHTS.to_vec(),
        VOID as usize,
    )
    .unwrap();
    let (_, loss) = parallel.gradients(&model, items(4)).unwrap();
    assert!(loss.is_finite());
    // The workers updated the shared running statistics (from their own devices); inference
    // (batch norm folded on the model's device) sees them.
    let inference = model.for_inference();
    let mean: Vec<f32> = model
        .valid()
        .conv1
        .norm
        .as_ref()
        .unwrap()
        .running_mean
        .value()
        .into_data()
        .to_vec()
        .unwrap();
    assert!(
        mean.iter().any(|m| m.abs() > 1e-4),
        "running means moved: {mean:?}"
    );
    let x = Tensor::<4>::from_data(
        TensorData::new(items(1).remove(0).image, [1, 3, 48, 64]),
        &Device::flex(),
    );
    let y: Vec<f32> = inference.forward(x).unwrap().into_data().to_vec().unwrap();
    assert!(y.iter().all(|v| v.is_finite()));
}
