//! The ImageNet encoder (the model crate's `imagenet` module): a network given SqueezeNet 1.1's
//! ImageNet weights computes, up to fire9, what the ImageNet network computes on the same pixels
//! (Caffe's convention: BGR, 0–255, mean subtracted, written out here with Burn's convolution),
//! with batch norm calibrated or without it; the rest of the network is left alone; bad inputs
//! and files are errors that name them.

use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use squeeze_segnet::imagenet::IMAGENET_CAFFE_MEAN_BGR;
use squeeze_segnet::ops::max_pool2d_with_indices;
use squeeze_segnet::{
    CAMVID_MEAN, CAMVID_STD, ImageNetEncoder, SegNetError, SqueezeSegNet, SqueezeSegNetConfig,
};

use squeeze_segnet::config::POOL;
const FIRES: [&str; 8] = [
    "fire2", "fire3", "fire4", "fire5", "fire6", "fire7", "fire8", "fire9",
];

fn pool(x: Tensor<4>) -> Tensor<4> {
    max_pool2d_with_indices(x, POOL).unwrap().0
}

/// Inputs as the data pipeline makes them: `(rgb / 255 − mean) / std` of pixels in 0–255.
fn normalised_pixels(seed: u64, device: &Device) -> (Tensor<4>, Tensor<4>) {
    device.seed(seed);
    let pixels = Tensor::<4>::random([2, 3, 67, 83], Distribution::Uniform(0.0, 255.0), device);
    let mean = Tensor::<1>::from_floats(CAMVID_MEAN, device).reshape([1, 3, 1, 1]);
    let std = Tensor::<1>::from_floats(CAMVID_STD, device).reshape([1, 3, 1, 1]);
    let x = (pixels.clone() / 255.0 - mean) / std;
    (pixels, x)
}

/// SqueezeNet 1.1 up to fire9 as the ImageNet network runs it, from the file's own values.
fn imagenet_reference(encoder: &ImageNetEncoder, rgb: Tensor<4>) -> Tensor<4> {
    let device = rgb.device();
    let conv = |x: Tensor<4>, name: &str, stride: usize, padding: usize| {
        let (shape, kernel, bias) = encoder.layer(name).expect(name);
        let k = Tensor::<4>::from_data(TensorData::new(kernel.to_vec(), shape), &device);
        let b = Tensor::<1>::from_floats(bias, &device);
        let options = ConvOptions::new([stride; 2], [padding; 2], [1, 1], 1);
        burn::tensor::activation::relu(conv2d(x, k, Some(b), options))
    };
    let caffe_mean =
        Tensor::<1>::from_floats(IMAGENET_CAFFE_MEAN_BGR, &device).reshape([1, 3, 1, 1]);
    let bgr = rgb.flip([1]) - caffe_mean;
    let mut x = pool(conv(bgr, "conv1", 2, 0));
    for fire in FIRES {
        if fire == "fire4" || fire == "fire6" {
            x = pool(x);
        }
        let s = conv(x, &format!("{fire}.squeeze"), 1, 0);
        let e1 = conv(s.clone(), &format!("{fire}.expand1x1"), 1, 0);
        let e3 = conv(s, &format!("{fire}.expand3x3"), 1, 1);
        x = Tensor::cat(vec![e1, e3], 1);
    }
    x
}

/// The network's own blocks up to fire9.
fn encoder_of(model: &SqueezeSegNet, x: Tensor<4>) -> Tensor<4> {
    let mut x = pool(model.conv1.forward(x));
    for (name, fire) in FIRES.iter().zip(model.encoder_fires()) {
        if *name == "fire4" || *name == "fire6" {
            x = pool(x);
        }
        x = fire.forward(x);
    }
    x
}

fn max_relative_difference(a: Tensor<4>, b: Tensor<4>) -> f32 {
    let scale: f32 = b.clone().abs().max().into_scalar();
    (a - b).abs().max().into_scalar::<f32>() / scale
}

#[test]
fn the_encoder_computes_what_the_imagenet_network_computes_with_and_without_batch_norm() {
    let device = Device::flex();
    let encoder = ImageNetEncoder::shipped().unwrap();
    let (_, calibration) = normalised_pixels(1, &device);
    // Other pixels than the calibration batch's: inference mode uses the calibrated statistics.
    let (pixels, x) = normalised_pixels(2, &device);
    let expected = imagenet_reference(&encoder, pixels);
    for config in [SqueezeSegNetConfig::camvid(), SqueezeSegNetConfig::paper()] {
        let fresh = config.init(&device).unwrap();
        let model = fresh
            .clone()
            .with_imagenet_encoder(&encoder, CAMVID_MEAN, CAMVID_STD, calibration.clone())
            .unwrap()
            .valid();
        let got = encoder_of(&model, x.clone());
        let diff = max_relative_difference(got, expected.clone());
        assert!(
            diff < 1e-4,
            "batch norm {}: fire9 differs by {diff} (relative)",
            config.batch_norm
        );
        // Planted fault: the network before the weights went in is far from it.
        let before =
            max_relative_difference(encoder_of(&fresh.valid(), x.clone()), expected.clone());
        assert!(
            before > 0.1,
            "the check cannot tell networks apart ({before})"
        );
        // conv10 and the decoder keep their weights.
        for (a, b) in [
            (&fresh.conv10.conv.weight, &model.conv10.conv.weight),
            (
                &fresh.dfire2.squeeze.conv.weight,
                &model.dfire2.squeeze.conv.weight,
            ),
        ] {
            assert_eq!(a.val().into_data(), b.val().into_data());
        }
    }
}

#[test]
fn in_training_mode_the_calibration_batch_itself_gives_the_imagenet_features() {
    // Batch norm in training mode normalises with the batch's own statistics: on the
    // calibration batch those are the calibrated ones.
    let device = Device::flex().autodiff();
    let encoder = ImageNetEncoder::shipped().unwrap();
    let (pixels, x) = normalised_pixels(3, &device);
    let model = SqueezeSegNetConfig::camvid()
        .init(&device)
        .unwrap()
        .with_imagenet_encoder(&encoder, CAMVID_MEAN, CAMVID_STD, x.clone())
        .unwrap();
    let got = encoder_of(&model, x);
    let diff = max_relative_difference(got, imagenet_reference(&encoder, pixels));
    assert!(diff < 1e-3, "fire9 differs by {diff} (relative)");
}

#[test]
fn bad_networks_files_and_batches_are_errors_that_name_them() {
    let device = Device::flex();
    let encoder = ImageNetEncoder::shipped().unwrap();
    let (_, x) = normalised_pixels(4, &device);
    // Another number of input channels: conv1 does not fit.
    let gray = SqueezeSegNetConfig::camvid()
        .with_input_channels(1)
        .init(&device)
        .unwrap();
    let err = gray
        .with_imagenet_encoder(&encoder, CAMVID_MEAN, CAMVID_STD, x.clone())
        .unwrap_err();
    assert!(
        matches!(err, SegNetError::WeightsMismatch { .. }) && err.to_string().contains("conv1"),
        "{err}"
    );
    // A calibration batch below the network's minimum size.
    let model = SqueezeSegNetConfig::camvid().init(&device).unwrap();
    let tiny = Tensor::<4>::zeros([1, 3, 16, 16], &device);
    let err = model
        .clone()
        .with_imagenet_encoder(&encoder, CAMVID_MEAN, CAMVID_STD, tiny)
        .unwrap_err();
    assert!(matches!(err, SegNetError::InputTooSmall { .. }), "{err}");
    // A zero standard deviation.
    let err = model
        .with_imagenet_encoder(&encoder, CAMVID_MEAN, [0.3, 0.0, 0.3], x)
        .unwrap_err();
    assert!(err.to_string().contains("standard deviation 0"), "{err}");

    let dir = std::env::temp_dir().join(format!("ssn-imagenet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("missing.safetensors");
    let err = ImageNetEncoder::load(&missing).unwrap_err();
    assert!(
        matches!(err, SegNetError::Load { .. }) && err.to_string().contains("missing.safetensors"),
        "{err}"
    );
    let garbage = dir.join("garbage.safetensors");
    std::fs::write(&garbage, b"not a safetensors file").unwrap();
    let err = ImageNetEncoder::load(&garbage).unwrap_err();
    assert!(err.to_string().contains("garbage.safetensors"), "{err}");
    // A safetensors file of another network: this crate's whole-network export lacks the
    // encoder's conv biases (batch norm replaces them).
    let other = dir.join("camvid.safetensors");
    SqueezeSegNetConfig::camvid()
        .init(&device)
        .unwrap()
        .save_pytorch(&other)
        .unwrap();
    let err = ImageNetEncoder::load(&other).unwrap_err();
    assert!(
        matches!(err, SegNetError::WeightsMismatch { .. })
            && err.to_string().contains("conv1.conv.bias"),
        "{err}"
    );
    // The paper's network (no batch norm: biases) for one input channel: conv1's kernel has
    // another shape than SqueezeNet 1.1's.
    let gray = dir.join("gray.safetensors");
    SqueezeSegNetConfig::paper()
        .with_input_channels(1)
        .init(&device)
        .unwrap()
        .save_pytorch(&gray)
        .unwrap();
    let err = ImageNetEncoder::load(&gray).unwrap_err();
    assert!(
        err.to_string().contains(
            "'conv1.conv.weight' has shape [64, 1, 3, 3], SqueezeNet 1.1's is [64, 3, 3, 3]"
        ),
        "{err}"
    );
    // With three channels the same export is an encoder file (the decoder's tensors unread).
    SqueezeSegNetConfig::paper()
        .init(&device)
        .unwrap()
        .save_pytorch(&gray)
        .unwrap();
    assert!(ImageNetEncoder::load(&gray).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}
