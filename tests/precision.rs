//! Weights stored in f16 and int8: files a half and a quarter of f32's size that load back within
//! their precision on every CPU backend, and damaged reduced files that are typed errors naming
//! the file and the tensor.

mod common;

use burn::prelude::*;
use burn::tensor::{Bytes, DType};
use common::*;
use squeeze_segnet::{
    BackendKind, PRECISION_KEY, Precision, SegNetError, SqueezeSegNetConfig, weights_precision,
};

#[test]
fn reduced_files_load_back_within_their_precision_on_every_cpu_backend() {
    let dir = tmp_dir("precision_round_trip");
    let model = camvid_with_moved_statistics(11);
    let original = params(&model);
    let mut sizes = Vec::new();
    for precision in Precision::ALL {
        let path = model
            .save_as(dir.join(format!("w-{precision}")), precision)
            .unwrap();
        assert_eq!(weights_precision(&path).unwrap(), precision);
        sizes.push(std::fs::metadata(&path).unwrap().len() as f64);
        for kind in [BackendKind::Flex, BackendKind::NdArray] {
            let device = kind.device().unwrap();
            let loaded = SqueezeSegNetConfig::camvid()
                .init(&device)
                .and_then(|m| m.load(&path))
                .unwrap();
            let got = params(&loaded);
            assert_eq!(got.len(), original.len());
            let mut changed = 0;
            for ((name, shape, want), (gname, gshape, have)) in original.iter().zip(&got) {
                assert_eq!((name, shape), (gname, gshape));
                let reduced = shape.len() == 4 && precision != Precision::F32;
                if !reduced {
                    assert_eq!(want, have, "{precision} on {kind}: {name} changed");
                    continue;
                }
                let per_row = want.len() / shape[0];
                for (row, (w, h)) in want.chunks(per_row).zip(have.chunks(per_row)).enumerate() {
                    let max = w.iter().fold(0f32, |m, v| m.max(v.abs()));
                    for (a, b) in w.iter().zip(h) {
                        let bound = match precision {
                            Precision::F16 => a.abs() / 1024.0 + 6e-8,
                            _ => max / 127.0 / 2.0 * 1.0001 + 1e-9,
                        };
                        assert!(
                            (a - b).abs() <= bound,
                            "{precision} on {kind}: {name} row {row}: {a} -> {b} (bound {bound})"
                        );
                        changed += usize::from(a != b);
                    }
                }
            }
            if precision != Precision::F32 {
                assert!(changed > 1000, "{precision}: nothing was reduced");
            }
        }
    }
    let (f32_size, f16, int8) = (sizes[0], sizes[1] / sizes[0], sizes[2] / sizes[0]);
    assert!(
        f16 < 0.52 && f16 > 0.48,
        "f16 file is {f16:.3} of f32's {f32_size}"
    );
    assert!(
        int8 < 0.27 && int8 > 0.24,
        "int8 file is {int8:.3} of f32's {f32_size}"
    );
}

#[test]
fn an_int8_network_segments_like_the_f32_one() {
    let dir = tmp_dir("precision_logits");
    let device = Device::flex();
    let model = camvid_with_moved_statistics(11);
    let path = model.save_as(dir.join("w"), Precision::Int8).unwrap();
    let int8 = SqueezeSegNetConfig::camvid()
        .init(&device)
        .and_then(|m| m.load(&path))
        .unwrap();
    device.seed(12);
    let x = Tensor::<4>::random([1, 3, 64, 80], burn::tensor::Distribution::Default, &device);
    let (a, b) = (
        host(model.forward(x.clone()).unwrap()),
        host(int8.forward(x).unwrap()),
    );
    // An untrained network's logits are small and close together (largest about 0.2), which
    // magnifies rounding: bound the mean change by the mean logit, and most classes must agree.
    let mean_abs = a.iter().map(|v| v.abs()).sum::<f64>() / a.len() as f64;
    let mean_diff = a.iter().zip(&b).map(|(p, q)| (p - q).abs()).sum::<f64>() / a.len() as f64;
    assert!(
        mean_diff < 0.1 * mean_abs,
        "mean logit change {mean_diff} against mean logit {mean_abs}"
    );
    let plane = 64 * 80;
    let argmax = |l: &[f64], i: usize| {
        (0..11)
            .max_by(|&p, &q| l[p * plane + i].total_cmp(&l[q * plane + i]))
            .unwrap()
    };
    let agree = (0..plane)
        .filter(|&i| argmax(&a, i) == argmax(&b, i))
        .count();
    assert!(
        agree * 10 > plane * 8,
        "{agree} of {plane} pixels keep their class"
    );
    assert_ne!(
        a, b,
        "int8 weights left the logits bit-identical: nothing was quantized"
    );
}

/// A reduced file written by hand: `tensors` as (name, dtype, shape, bytes).
fn write_pack(
    path: &std::path::Path,
    precision: &str,
    tensors: Vec<(&str, DType, Vec<usize>, Vec<u8>)>,
) {
    let tensors = tensors
        .into_iter()
        .map(|(name, dtype, shape, bytes)| {
            burn_pack::Tensor::new(
                name.into(),
                dtype,
                shape,
                None,
                Bytes::from_bytes_vec(bytes),
            )
        })
        .collect();
    burn_pack::Writer::new(tensors)
        .with_metadata(PRECISION_KEY, precision)
        .overwrite(true)
        .write_to_file(path)
        .unwrap();
}

#[test]
fn damaged_reduced_files_are_typed_errors_naming_file_and_tensor() {
    let dir = tmp_dir("precision_damaged");
    let device = Device::flex();
    let config = SqueezeSegNetConfig::camvid();
    let w = "conv1.conv.weight"; // [64, 3, 3, 3] in the CamVid network
    let int8 = |n: usize| (DType::I8, vec![n, 3, 3, 3], vec![1u8; n * 27]);
    let scales = |v: &[f32]| {
        let bytes = v.iter().flat_map(|f| f.to_le_bytes()).collect();
        (DType::F32, vec![v.len()], bytes)
    };
    let scale_name = format!("{w}:scale");
    let weight = |(d, s, b): (DType, Vec<usize>, Vec<u8>)| (w, d, s, b);
    let scale = |(d, s, b): (DType, Vec<usize>, Vec<u8>)| (scale_name.as_str(), d, s, b);
    let mut nan = [1.0f32; 64];
    nan[9] = f32::NAN;
    let cases: Vec<(&str, &str, Vec<(&str, DType, Vec<usize>, Vec<u8>)>, &str)> = vec![
        ("no_scale", "int8", vec![weight(int8(64))], "has no scales"),
        (
            "short_scale",
            "int8",
            vec![weight(int8(64)), scale(scales(&[1.0, 1.0]))],
            "must be 64 f32 values",
        ),
        (
            "nan_scale",
            "int8",
            vec![weight(int8(64)), scale(scales(&nan))],
            "bad int8 scale",
        ),
        (
            "orphan_scale",
            "int8",
            vec![scale(scales(&[1.0]))],
            "scales no int8 tensor",
        ),
        // Burn's record loader panicked on this one: an int8 tensor in a file that says f32.
        ("i8_in_f32", "f32", vec![weight(int8(64))], "has no scales"),
        (
            "unknown",
            "int4",
            vec![weight(int8(64))],
            "unknown precision 'int4'",
        ),
        (
            "wrong_dtype",
            "f16",
            vec![weight((
                DType::I32,
                vec![64, 3, 3, 3],
                vec![0u8; 64 * 27 * 4],
            ))],
            "not a float or int8",
        ),
    ];
    for (file, precision, tensors, message) in cases {
        let path = dir.join(format!("{file}.bpk"));
        write_pack(&path, precision, tensors);
        let err = config
            .init(&device)
            .and_then(|m| m.load(&path))
            .unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(&err, SegNetError::Load { path: p, .. } if *p == path),
            "{file}: {text}"
        );
        assert!(text.contains(message), "{file}: '{text}' lacks '{message}'");
        assert!(text.contains(&format!("{file}.bpk")), "{file}: {text}");
    }
    // Tensors the network does not have, or of another shape, are refused before their data is
    // read: a file cannot make the load allocate more than the network.
    for (file, tensors, message) in [
        (
            "foreign",
            vec![("head.weight", DType::F32, vec![1 << 20], vec![0u8; 4 << 20])],
            "tensor 'head.weight' belongs to no parameter",
        ),
        (
            "reshaped",
            vec![(w, DType::F32, vec![27, 64], vec![0u8; 64 * 27 * 4])],
            "tensor 'conv1.conv.weight' has shape [27, 64], the network needs [64, 3, 3, 3]",
        ),
    ] {
        let path = dir.join(format!("{file}.bpk"));
        write_pack(&path, "f32", tensors);
        let err = config
            .init(&device)
            .and_then(|m| m.load(&path))
            .unwrap_err();
        assert!(
            matches!(&err, SegNetError::WeightsMismatch { .. }),
            "{file}: {err}"
        );
        assert!(err.to_string().contains(message), "{file}: {err}");
    }
    // Names with the other kind of file are refused rather than written unreadably.
    let model = SqueezeSegNetConfig::camvid().init(&device).unwrap();
    assert!(matches!(
        model.save_as(dir.join("x.safetensors"), Precision::Int8),
        Err(SegNetError::Save { .. })
    ));
    assert!(matches!(
        model.save(dir.join("x.safetensors")),
        Err(SegNetError::Save { .. })
    ));
    assert!(matches!(
        model.save_pytorch(dir.join("x.bpk")),
        Err(SegNetError::Save { .. })
    ));
    assert_eq!(
        model.save_pytorch(dir.join("x")).unwrap(),
        dir.join("x.safetensors")
    );
    // A well-formed reduced file of another network is a mismatch, as for f32.
    let other = SqueezeSegNetConfig::paper().init(&device).unwrap();
    let path = other
        .save_as(dir.join("paper-int8"), Precision::Int8)
        .unwrap();
    let err = config
        .init(&device)
        .and_then(|m| m.load(&path))
        .unwrap_err();
    assert!(matches!(&err, SegNetError::WeightsMismatch { .. }), "{err}");
}
