//! The shipped CamVid weights: one call loads them, and they segment real CamVid images (the
//! embedded sample's four validation images) far better than chance.

use std::sync::Arc;

use squeeze_segnet::{SqueezeSegNet, SqueezeSegNetConfig, camvid_weights_path};
use squeeze_segnet_data::{TransformConfig, camvid, camvid_sample_root};
use squeeze_segnet_train::{TrainingConfig, evaluate, load_model_config, loader::CachedDataset};

use burn::prelude::*;

#[test]
fn shipped_weights_segment_the_sample_sensibly() {
    let device = Device::flex();
    let model = SqueezeSegNet::pretrained_camvid(&device).expect("the weights ship with the crate");
    let folder = camvid_weights_path().parent().unwrap().to_path_buf();
    // The files next to the weights describe them.
    assert_eq!(
        load_model_config(folder.join("model.json")).unwrap(),
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
        false,
        &device,
    )
    .unwrap()
    .scores();
    // Chance is 1/11 class-average; an untrained network scores about 0.1–0.2 here (the sample's
    // 4 validation images), the shipped weights 0.674 (global 0.776) when they were committed.
    assert!(
        scores.global_accuracy > 0.65 && scores.class_average_accuracy > 0.55,
        "global {:.3}, class average {:.3}",
        scores.global_accuracy,
        scores.class_average_accuracy
    );
}
