//! Inference at any output size (the model crate's `predict` module): flip test-time
//! augmentation (the mean of the logits of an image and of its mirror image) and the
//! low-memory full-size path against Burn's interpolation; a photo in, its classes out, with
//! the input the evaluation pipeline prepares.

use burn::prelude::*;
use burn::tensor::{Distribution, Tolerance};
use squeeze_segnet::{
    SegNetError, SqueezeSegNetConfig, logits, photo_input, predict_at, predict_full_size,
    segment_photo,
};
use squeeze_segnet_data::{SplitMix64, TransformConfig, camvid, camvid_sample_root};

#[test]
fn a_photo_is_segmented_from_the_input_the_evaluation_pipeline_prepares() {
    let device = Device::flex();
    let model = SqueezeSegNetConfig::camvid()
        .init(&device)
        .unwrap()
        .for_inference();
    let sample = camvid(camvid_sample_root(), "val")
        .unwrap()
        .load(0)
        .unwrap();
    let photo = &sample.image;
    let (h, w) = (photo.height() as usize, photo.width() as usize);
    let size = [90, 120];
    // The data crate's evaluation transform: resize and normalise, what `evaluate` scores.
    let item = TransformConfig::eval(size).apply(&sample, &mut SplitMix64::new(7));
    let input = photo_input(photo, size, &device).unwrap();
    assert_eq!(input.dims(), [1, 3, 90, 120]);
    assert_eq!(input.to_data().try_to_vec::<f32>().unwrap(), item.image);
    for flip in [false, true] {
        let expected = predict_full_size(&model, input.clone(), [h, w], flip).unwrap();
        let classes = segment_photo(&model, photo, size, flip).unwrap();
        assert_eq!(classes.len(), h * w);
        assert_eq!(classes, expected, "flip {flip}");
    }
    // An empty photo or size, and a size below the network's minimum, are errors.
    let empty = image::RgbImage::new(0, 4);
    let err = segment_photo(&model, &empty, size, false).unwrap_err();
    assert!(matches!(err, SegNetError::Config(_)), "{err}");
    let err = segment_photo(&model, photo, [0, 120], false).unwrap_err();
    assert!(err.to_string().contains("0x120"), "{err}");
    let err = segment_photo(&model, photo, [9000, 120], false).unwrap_err();
    assert!(err.to_string().contains("at most 8192"), "{err}");
    let err = segment_photo(&model, photo, [16, 16], false).unwrap_err();
    assert!(matches!(err, SegNetError::InputTooSmall { .. }), "{err}");
}

#[test]
fn flip_tta_is_mirror_symmetric_and_off_by_default() {
    let device = Device::flex();
    let model = SqueezeSegNetConfig::camvid()
        .init(&device)
        .unwrap()
        .for_inference();
    let x = Tensor::<4>::random([2, 3, 48, 64], Distribution::Normal(0.0, 1.0), &device);
    let plain = logits(&model, x.clone(), false).unwrap();
    plain.clone().into_data().assert_approx_eq::<f32>(
        &model.forward(x.clone()).unwrap().into_data(),
        Tolerance::default(),
    );
    let tta = logits(&model, x.clone(), true).unwrap();
    // By hand: forward(x) + mirror(forward(mirror(x))).
    let by_hand =
        model.forward(x.clone()).unwrap() + model.forward(x.clone().flip([3])).unwrap().flip([3]);
    tta.clone()
        .into_data()
        .assert_approx_eq::<f32>(&by_hand.into_data(), Tolerance::default());
    // The augmented model is exactly mirror-symmetric: TTA of the mirror image is the mirror of TTA.
    let mirrored = logits(&model, x.clone().flip([3]), true).unwrap();
    mirrored
        .into_data()
        .assert_approx_eq::<f32>(&tta.flip([3]).into_data(), Tolerance::default());
    // A random network is not.
    let plain_mirrored = logits(&model, x.clone().flip([3]), false).unwrap();
    let diff = (plain_mirrored - plain.flip([3]))
        .abs()
        .max()
        .into_scalar::<f32>();
    assert!(
        diff > 1e-3,
        "an untrained network should not be symmetric ({diff})"
    );
    let classes = predict_at(&model, x, [96, 128], true).unwrap();
    assert_eq!(classes.dims(), [2, 96, 128]);
}

#[test]
fn full_size_prediction_matches_upsampled_logits() {
    use squeeze_segnet::{predict_full_size, upsample_argmax};
    let device = Device::flex();
    let model = SqueezeSegNetConfig::camvid()
        .init(&device)
        .unwrap()
        .for_inference();
    for (input, output) in [
        ([40, 56], [97, 131]),
        ([64, 80], [64, 80]),
        ([48, 48], [200, 33]),
    ] {
        let x = Tensor::<4>::random(
            [1, 3, input[0], input[1]],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        for flip in [false, true] {
            let by_burn: Vec<i64> = predict_at(&model, x.clone(), output, flip)
                .unwrap()
                .into_data()
                .convert::<i64>()
                .try_into_vec::<i64>()
                .unwrap();
            let ours = predict_full_size(&model, x.clone(), output, flip).unwrap();
            assert_eq!(ours.len(), by_burn.len());
            // Equal up to float rounding: a pixel may differ only where two classes tie.
            let logits: Vec<f32> = logits(&model, x.clone(), flip)
                .unwrap()
                .into_data()
                .try_into_vec::<f32>()
                .unwrap();
            let [h, w] = input;
            let differ = ours
                .iter()
                .zip(&by_burn)
                .filter(|(a, b)| **a as i64 != **b)
                .count();
            assert!(
                differ * 1000 <= ours.len(),
                "{differ} of {} pixels differ ({input:?} → {output:?}, flip {flip})",
                ours.len()
            );
            assert_eq!(upsample_argmax(&logits, [11, h, w], output).unwrap(), ours);
        }
    }
    // Same size in and out: the plain argmax.
    let logits = [0.0f32, 5.0, 1.0, 2.0, /* class 1 */ 1.0, 0.0, 3.0, 2.0];
    assert_eq!(
        upsample_argmax(&logits, [2, 2, 2], [2, 2]).unwrap(),
        vec![1, 0, 1, 0]
    );
    // Logits that are not [classes, h, w] are an error, not a panic.
    assert!(upsample_argmax(&logits, [3, 2, 2], [2, 2]).is_err());
    assert!(upsample_argmax(&[], [1, 0, 0], [4, 4]).is_err());
}
