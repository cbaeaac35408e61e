//! Inference at any output size (the model crate's `predict` and `tta` modules): test-time
//! augmentation (flip: the mean of the logits of an image and of its mirror image; scales: of
//! the image rescaled) against the passes summed by hand, and the low-memory full-size path
//! against Burn's interpolation; a photo in, its classes out, with the input the evaluation
//! pipeline prepares.

use burn::prelude::*;
use burn::tensor::{Distribution, Tolerance};
use squeeze_segnet::{
    SegNetError, SqueezeSegNetConfig, TestTimeAugmentation, logits, photo_input, predict_at,
    predict_full_size, segment_photo,
};
use squeeze_segnet_data::{SplitMix64, TransformConfig, camvid, camvid_sample_root};

/// The shipped network's architecture, freshly initialised, in inference mode.
fn untrained(device: &Device) -> squeeze_segnet::SqueezeSegNet {
    SqueezeSegNetConfig::camvid()
        .init(device)
        .unwrap()
        .for_inference()
}

fn none() -> TestTimeAugmentation {
    TestTimeAugmentation::none()
}

fn flip() -> TestTimeAugmentation {
    TestTimeAugmentation::none().with_flip(true)
}

/// One pass, flip, and the measured multi-scale set with flips.
fn augmentations() -> [TestTimeAugmentation; 3] {
    let multi = TestTimeAugmentation::multi_scale(&squeeze_segnet::MULTI_SCALES).unwrap();
    [none(), flip(), multi.with_flip(true)]
}

#[test]
fn a_photo_is_segmented_from_the_input_the_evaluation_pipeline_prepares() {
    let device = Device::flex();
    let model = untrained(&device);
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
    for tta in augmentations() {
        let expected = predict_full_size(&model, input.clone(), [h, w], &tta).unwrap();
        let classes = segment_photo(&model, photo, size, &tta).unwrap();
        assert_eq!(classes.len(), h * w);
        assert_eq!(classes, expected, "{tta}");
    }
    // An empty photo or size, and a size below the network's minimum, are errors.
    let empty = image::RgbImage::new(0, 4);
    let err = segment_photo(&model, &empty, size, &none()).unwrap_err();
    assert!(matches!(err, SegNetError::Config(_)), "{err}");
    let err = segment_photo(&model, photo, [0, 120], &none()).unwrap_err();
    assert!(err.to_string().contains("0x120"), "{err}");
    let err = segment_photo(&model, photo, [9000, 120], &none()).unwrap_err();
    assert!(err.to_string().contains("at most 8192"), "{err}");
    let err = segment_photo(&model, photo, [16, 16], &none()).unwrap_err();
    assert!(matches!(err, SegNetError::InputTooSmall { .. }), "{err}");
}

#[test]
fn flip_tta_is_mirror_symmetric_and_off_by_default() {
    let device = Device::flex();
    let model = untrained(&device);
    let x = Tensor::<4>::random([2, 3, 48, 64], Distribution::Normal(0.0, 1.0), &device);
    let plain = logits(&model, x.clone(), &none()).unwrap();
    plain.clone().into_data().assert_approx_eq::<f32>(
        &model.forward(x.clone()).unwrap().into_data(),
        Tolerance::default(),
    );
    let tta = logits(&model, x.clone(), &flip()).unwrap();
    // By hand: forward(x) + mirror(forward(mirror(x))).
    let by_hand =
        model.forward(x.clone()).unwrap() + model.forward(x.clone().flip([3])).unwrap().flip([3]);
    tta.clone()
        .into_data()
        .assert_approx_eq::<f32>(&by_hand.into_data(), Tolerance::default());
    // The augmented model is exactly mirror-symmetric: TTA of the mirror image is the mirror of TTA.
    let mirrored = logits(&model, x.clone().flip([3]), &flip()).unwrap();
    mirrored
        .into_data()
        .assert_approx_eq::<f32>(&tta.flip([3]).into_data(), Tolerance::default());
    // A random network is not.
    let plain_mirrored = logits(&model, x.clone().flip([3]), &none()).unwrap();
    let diff = (plain_mirrored - plain.flip([3]))
        .abs()
        .max()
        .into_scalar::<f32>();
    assert!(
        diff > 1e-3,
        "an untrained network should not be symmetric ({diff})"
    );
    let classes = predict_at(&model, x, [96, 128], &flip()).unwrap();
    assert_eq!(classes.dims(), [2, 96, 128]);
}

#[test]
fn full_size_prediction_matches_upsampled_logits() {
    use squeeze_segnet::{predict_full_size, upsample_argmax};
    let device = Device::flex();
    let model = untrained(&device);
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
        for tta in augmentations() {
            let by_burn: Vec<i64> = predict_at(&model, x.clone(), output, &tta)
                .unwrap()
                .into_data()
                .convert::<i64>()
                .try_into_vec::<i64>()
                .unwrap();
            let ours = predict_full_size(&model, x.clone(), output, &tta).unwrap();
            assert_eq!(ours.len(), by_burn.len());
            // Equal up to float rounding: a pixel may differ only where two classes tie.
            let logits: Vec<f32> = logits(&model, x.clone(), &tta)
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
                "{differ} of {} pixels differ ({input:?} → {output:?}, {tta})",
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

/// Bilinear resize with corners aligned, written out for a `[batch, channels, h, w]` tensor:
/// the reference the multi-scale passes are checked against (not Burn's `interpolate`).
fn resize_by_hand(x: &Tensor<4>, [oh, ow]: [usize; 2]) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    let v: Vec<f32> = x.to_data().try_into_vec::<f32>().unwrap();
    let tap = |i: usize, out: usize, len: usize| {
        let s = if out > 1 {
            i as f64 * (len - 1) as f64 / (out - 1) as f64
        } else {
            0.0
        };
        let lo = (s.floor() as usize).min(len - 1);
        (lo, (lo + 1).min(len - 1), (s - lo as f64) as f32)
    };
    let mut out = vec![0f32; n * c * oh * ow];
    for plane in 0..n * c {
        let src = &v[plane * h * w..][..h * w];
        for y in 0..oh {
            let (y0, y1, fy) = tap(y, oh, h);
            for xx in 0..ow {
                let (x0, x1, fx) = tap(xx, ow, w);
                let top = src[y0 * w + x0] * (1.0 - fx) + src[y0 * w + x1] * fx;
                let bottom = src[y1 * w + x0] * (1.0 - fx) + src[y1 * w + x1] * fx;
                out[plane * oh * ow + y * ow + xx] = top * (1.0 - fy) + bottom * fy;
            }
        }
    }
    Tensor::<4>::from_data(TensorData::new(out, [n, c, oh, ow]), &x.device())
}

#[test]
fn multi_scale_tta_sums_the_rescaled_passes() {
    let device = Device::flex();
    let model = untrained(&device);
    let x = Tensor::<4>::random([2, 3, 48, 64], Distribution::Normal(0.0, 1.0), &device);
    let tta = TestTimeAugmentation::multi_scale(&[0.75, 1.0, 1.5]).unwrap();
    assert_eq!(tta.passes(), 3);
    // By hand: each scale's input resized (36x48, 48x64, 72x96), run, its logits resized back.
    let by_hand = [[36, 48], [48, 64], [72, 96]]
        .into_iter()
        .map(|size| {
            let y = model.forward(resize_by_hand(&x, size)).unwrap();
            resize_by_hand(&y, [48, 64])
        })
        .reduce(|a, b| a + b)
        .unwrap();
    let ours = logits(&model, x.clone(), &tta).unwrap();
    assert_eq!(ours.dims(), [2, 11, 48, 64]);
    ours.into_data()
        .assert_approx_eq::<f32>(&by_hand.into_data(), Tolerance::absolute(1e-3));
    // Scale 1 alone is the model alone, and the same scale twice is twice it.
    let one = TestTimeAugmentation::multi_scale(&[1.0]).unwrap();
    assert_eq!(one, TestTimeAugmentation::default());
    let plain = model.forward(x.clone()).unwrap();
    let twice = logits(&model, x.clone(), &"1,1".parse().unwrap()).unwrap();
    twice
        .into_data()
        .assert_approx_eq::<f32>(&(plain * 2.0).into_data(), Tolerance::default());
    // With flips every scale also runs mirrored: the sum is exactly mirror-symmetric.
    let both = tta.clone().with_flip(true);
    assert_eq!(both.passes(), 6);
    let a = logits(&model, x.clone().flip([3]), &both).unwrap();
    let b = logits(&model, x.clone(), &both).unwrap().flip([3]);
    a.into_data()
        .assert_approx_eq::<f32>(&b.into_data(), Tolerance::default());
}

#[test]
fn bad_test_time_scales_are_errors_that_name_them() {
    let device = Device::flex();
    let model = untrained(&device);
    for (text, named) in [
        ("0.75,x,1.25", "'x'"),
        ("", "''"),
        ("1,0", "scale 0 "),
        ("-1", "scale -1 "),
        ("1,inf", "scale inf "),
        ("NaN", "scale NaN "),
    ] {
        let err = text.parse::<TestTimeAugmentation>().unwrap_err();
        assert!(matches!(err, SegNetError::Config(_)), "{text}: {err}");
        assert!(err.to_string().contains(named), "{text}: {err}");
    }
    assert!(TestTimeAugmentation::multi_scale(&[]).is_err());
    let parsed: TestTimeAugmentation = " 0.75, 1 ,1.25".parse().unwrap();
    assert_eq!(parsed.scales, squeeze_segnet::MULTI_SCALES);
    assert_eq!(parsed.to_string(), "scales 0.75,1,1.25");
    assert_eq!(
        parsed.with_flip(true).to_string(),
        "scales 0.75,1,1.25 + flip"
    );
    assert_eq!(flip().to_string(), "flip");
    assert_eq!(none().to_string(), "none");
    // A scale that takes the input below the network's minimum, or above the largest side, is
    // the forward pass's error or a configuration error, not a panic.
    let x = Tensor::<4>::random([1, 3, 48, 64], Distribution::Normal(0.0, 1.0), &device);
    let small = TestTimeAugmentation::multi_scale(&[1.0, 0.25]).unwrap();
    let err = logits(&model, x.clone(), &small).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, SegNetError::Config(_)), "{err}");
    assert!(
        message.contains("scale 0.25: input of 12×16 is too small"),
        "{err}"
    );
    let huge = TestTimeAugmentation::multi_scale(&[200.0]).unwrap();
    let err = predict_at(&model, x.clone(), [48, 64], &huge).unwrap_err();
    assert!(err.to_string().contains("scale 200"), "{err}");
    // Fields set by hand are checked too.
    let empty = TestTimeAugmentation {
        scales: vec![],
        flip: true,
    };
    assert!(logits(&model, x, &empty).is_err());
}
