//! Weights in PyTorch's names (safetensors): a round trip keeps every value, a state dict laid
//! out as PyTorch saves it (f16 and f32 tensors, `num_batches_tracked`) loads, and files that do
//! not fit are typed errors naming the tensor.

mod common;

use std::collections::BTreeMap;

use burn::prelude::*;
use common::{camvid_with_moved_statistics as model, params, tmp_dir};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use squeeze_segnet::{SegNetError, SqueezeSegNet, SqueezeSegNetConfig};

/// The name PyTorch's `state_dict()` gives a Burn path, written out here independently of the
/// crate's own mapping.
fn torch_name(burn_path: &str) -> String {
    burn_path
        .replace(".norm.gamma", ".norm.weight")
        .replace(".norm.beta", ".norm.bias")
}

#[test]
fn a_round_trip_keeps_every_value_and_writes_pytorch_names() {
    let dir = tmp_dir("pytorch_round_trip");
    let device = Device::flex();
    let original = model(1);
    let path = original.save_pytorch(dir.join("w.safetensors")).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let names: Vec<String> = file.names().into_iter().map(String::from).collect();
    let want = params(&original);
    let norms = want
        .iter()
        .filter(|(p, _, _)| p.ends_with(".norm.running_mean"))
        .count();
    assert!(norms > 40, "{norms} batch norms");
    assert_eq!(names.len(), want.len() + norms, "{names:?}");
    for (p, shape, _) in &want {
        let view = file.tensor(&torch_name(p)).unwrap();
        assert_eq!(view.shape(), shape.as_slice(), "{p}");
        assert_eq!(view.dtype(), Dtype::F32);
    }
    assert!(
        names
            .iter()
            .all(|n| !n.contains("gamma") && !n.contains("beta"))
    );
    let tracked = file
        .tensor("fire2.squeeze.norm.num_batches_tracked")
        .unwrap();
    assert_eq!((tracked.dtype(), tracked.shape()), (Dtype::I64, &[][..]));

    let fresh = SqueezeSegNetConfig::camvid().init(&device).unwrap();
    assert_ne!(
        params(&fresh),
        want,
        "the fresh network must differ to see the load"
    );
    let loaded = fresh.load(&path).unwrap();
    assert_eq!(params(&loaded), want);
    // `load` (and so every example's --weights) reads .safetensors files too.
    let loaded = SqueezeSegNetConfig::camvid()
        .init(&device)
        .and_then(|m| m.load(&path))
        .unwrap();
    assert_eq!(params(&loaded), want);
}

/// Writes `model` as PyTorch would: its names, `num_batches_tracked`, some tensors in f16.
fn write_like_pytorch(
    path: &std::path::Path,
    model: &SqueezeSegNet,
    edit: impl FnOnce(&mut BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>),
) {
    let mut tensors = BTreeMap::new();
    for (p, shape, values) in params(model) {
        let name = torch_name(&p);
        let entry = if p.starts_with("fire") && shape.len() == 4 {
            let bytes = values
                .iter()
                .flat_map(|v| burn::tensor::f16::from_f32(*v).to_le_bytes())
                .collect();
            (Dtype::F16, shape, bytes)
        } else {
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (Dtype::F32, shape, bytes)
        };
        if let Some(owner) = name.strip_suffix(".running_mean") {
            tensors.insert(
                format!("{owner}.num_batches_tracked"),
                (Dtype::I64, vec![], 7i64.to_le_bytes().to_vec()),
            );
        }
        tensors.insert(name, entry);
    }
    edit(&mut tensors);
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, (d, s, b))| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

#[test]
fn a_state_dict_saved_like_pytorch_loads_within_f16_rounding() {
    let dir = tmp_dir("pytorch_state_dict");
    let source = model(2);
    let path = dir.join("torch.safetensors");
    write_like_pytorch(&path, &source, |_| {});
    let loaded = SqueezeSegNetConfig::camvid()
        .init(&Device::flex())
        .unwrap()
        .load(&path)
        .unwrap();
    for ((p, _, want), (_, _, got)) in params(&source).iter().zip(params(&loaded)) {
        for (a, b) in want.iter().zip(&got) {
            assert!((a - b).abs() <= a.abs() / 1024.0 + 6e-8, "{p}: {a} -> {b}");
        }
    }
}

#[test]
fn files_that_do_not_fit_are_typed_errors_naming_the_tensor() {
    let dir = tmp_dir("pytorch_bad");
    let source = model(3);
    let config = SqueezeSegNetConfig::camvid();
    let device = Device::flex();
    type Edit = Box<dyn FnOnce(&mut BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "missing",
            Box::new(|t| {
                t.remove("conv1.conv.weight");
            }),
            "tensor 'conv1.conv.weight' is missing",
        ),
        (
            "unexpected",
            Box::new(|t| {
                t.insert("head.weight".into(), (Dtype::F32, vec![1], vec![0; 4]));
            }),
            "tensor 'head.weight' belongs to no parameter",
        ),
        (
            "shape",
            Box::new(|t| {
                t.insert("deconv1.bias".into(), (Dtype::F32, vec![12], vec![0; 48]));
            }),
            "tensor 'deconv1.bias' has shape [12], the network needs [11]",
        ),
        (
            "dtype",
            Box::new(|t| {
                t.insert("deconv1.bias".into(), (Dtype::I32, vec![11], vec![0; 44]));
            }),
            "tensor 'deconv1.bias' has dtype I32, not a float",
        ),
    ];
    for (name, edit, message) in cases {
        let path = dir.join(format!("{name}.safetensors"));
        write_like_pytorch(&path, &source, edit);
        let err = config
            .init(&device)
            .and_then(|m| m.load(&path))
            .unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(&err, SegNetError::WeightsMismatch { path: p, .. } if *p == path),
            "{name}: {text}"
        );
        assert!(text.contains(message), "{name}: '{text}' lacks '{message}'");
    }
    let garbage = dir.join("garbage.safetensors");
    std::fs::write(&garbage, b"not safetensors at all").unwrap();
    let err = config
        .init(&device)
        .and_then(|m| m.load(&garbage))
        .unwrap_err();
    assert!(
        matches!(&err, SegNetError::Load { path, .. } if *path == garbage),
        "{err}"
    );
    assert!(err.to_string().contains("not a safetensors file"), "{err}");
}
