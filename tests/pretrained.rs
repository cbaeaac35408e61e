//! The shipped CamVid weights: one call loads them, and they segment real CamVid images (the
//! embedded sample's four validation images) far better than chance; the int8 file beside them
//! is the same network within int8 rounding.

use std::sync::Arc;

mod common;

use squeeze_segnet::{
    Precision, SqueezeSegNet, SqueezeSegNetConfig, TestTimeAugmentation, camvid_int8_weights_path,
    camvid_weights_path, weights_precision,
};
use squeeze_segnet_data::loader::CachedDataset;
use squeeze_segnet_data::{TransformConfig, camvid, camvid_sample_root};
use squeeze_segnet_train::{TrainingConfig, evaluate};

use burn::prelude::*;

#[test]
fn shipped_weights_segment_the_sample_sensibly() {
    let device = Device::flex();
    let model = SqueezeSegNet::pretrained_camvid(&device).expect("the weights ship with the crate");
    let folder = camvid_weights_path().parent().unwrap().to_path_buf();
    // The files next to the weights describe them.
    assert_eq!(
        SqueezeSegNetConfig::load_json(folder.join("model.json")).unwrap(),
        SqueezeSegNetConfig::camvid()
    );
    let size = TrainingConfig::load_compatible(folder.join("config.json"))
        .unwrap()
        .size;
    let val = camvid(camvid_sample_root(), "val").unwrap();
    let scores = evaluate(
        &model,
        Arc::new(CachedDataset::new(val, false)),
        TransformConfig::eval(size),
        4,
        &TestTimeAugmentation::none(),
        &device,
    )
    .unwrap()
    .scores();
    // Chance is 1/11 class-average; an untrained network scores about 0.1–0.2 here (the sample's
    // 4 validation images); trained weights clear the bounds below by a wide margin.
    assert!(
        scores.global_accuracy > 0.8 && scores.class_average_accuracy > 0.6,
        "global {:.3}, class average {:.3}",
        scores.global_accuracy,
        scores.class_average_accuracy
    );
}

#[test]
fn shipped_int8_weights_are_the_shipped_weights_in_a_quarter_of_the_size() {
    let device = Device::flex();
    let path = camvid_int8_weights_path();
    assert_eq!(weights_precision(&path).unwrap(), Precision::Int8);
    let (int8_len, f32_len) = (
        std::fs::metadata(&path).unwrap().len(),
        std::fs::metadata(camvid_weights_path()).unwrap().len(),
    );
    // 3.0 M parameters: about one byte each, plus f32 biases, batch norm and row scales.
    assert!(int8_len <= 3_300_000, "int8 file is {int8_len} bytes");
    assert!(int8_len * 3 < f32_len, "{int8_len} vs {f32_len} bytes");
    let a = common::params(&SqueezeSegNet::pretrained_camvid(&device).unwrap());
    let b = common::params(
        &squeeze_segnet::SavedModel::camvid_int8()
            .unwrap()
            .init(&device)
            .unwrap(),
    );
    assert_eq!(a.len(), b.len());
    // Made from these f32 weights: each value within half an int8 step of its row's scale
    // (regenerate it with the convert_weights example when the f32 weights change).
    for ((_, shape, want), (_, _, have)) in a.iter().zip(&b) {
        if shape.len() != 4 {
            assert_eq!(want, have);
            continue;
        }
        let per_row = want.len() / shape[0];
        for (w, h) in want.chunks(per_row).zip(have.chunks(per_row)) {
            let step = w.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
            for (x, y) in w.iter().zip(h) {
                assert!(
                    (x - y).abs() <= step * 0.5001 + 1e-9,
                    "{shape:?}: {x} -> {y}"
                );
            }
        }
    }
}
