//! The fuzz targets' seed corpus (`fuzz/corpus/<target>/`) and deterministic mutations of every
//! seed (bit flips, truncations, overwrites with boundary bytes, duplicated and inserted runs)
//! through the same targets libFuzzer runs (`squeeze_segnet_workspace::fuzz`): no input may
//! panic. A failing input is written to `target/fuzz-failures/` and named in the failure.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use squeeze_segnet_workspace::fuzz::{TARGETS, run};

const MUTATIONS_PER_SEED: usize = 300;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus_dir(target))
        .unwrap_or_else(|e| panic!("{}: {e}", corpus_dir(target).display()))
        .map(|e| e.unwrap().path())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    seeds.sort();
    seeds
}

/// SplitMix64: the mutations are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = data.len();
        match rng.below(6) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 => data.truncate(rng.below(len + 1)),
            2 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below(8.min(len - i));
                let v = [0x00, 0xFF, 0x7F, 0x80, b'.', b'/', b'\n'][rng.below(7)];
                data[i..i + n].fill(v);
            }
            3 if len > 0 => {
                let (i, n) = (rng.below(len), 1 + rng.below(64));
                let chunk: Vec<u8> = data[i..(i + n).min(len)].to_vec();
                let at = rng.below(len + 1);
                data.splice(at..at, chunk);
            }
            4 => {
                let at = rng.below(len + 1);
                let bytes: Vec<u8> = (0..1 + rng.below(16)).map(|_| rng.next() as u8).collect();
                data.splice(at..at, bytes);
            }
            _ if len >= 8 => {
                // A length-like field blown up: 8 bytes of 0xFF or a huge little-endian count.
                let i = rng.below(len - 7);
                let v = if rng.below(2) == 0 { u64::MAX } else { 1 << 40 };
                data[i..i + 8].copy_from_slice(&v.to_le_bytes());
            }
            _ => data.push(rng.next() as u8),
        }
    }
    data
}

fn check(target: &str, label: &str, data: &[u8]) {
    if catch_unwind(AssertUnwindSafe(|| run(target, data))).is_err() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-failures");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("{target}-{label}"));
        std::fs::write(&file, data).unwrap();
        panic!(
            "fuzz target {target} panicked on {label}: input saved to {}",
            file.display()
        );
    }
}

fn replay(target: &str) {
    let seeds = seeds(target);
    assert!(seeds.len() >= 4, "{target}: only {} seeds", seeds.len());
    let mut rng = Rng(0x5EED ^ target.len() as u64);
    for (name, seed) in &seeds {
        check(target, name, seed);
        for m in 0..MUTATIONS_PER_SEED {
            let data = mutate(seed, &mut rng);
            check(target, &format!("{name}-mutation{m}"), &data);
        }
    }
}

#[test]
fn list_file_corpus_and_mutations_never_panic() {
    replay("list_file");
}

#[test]
fn mask_corpus_and_mutations_never_panic() {
    replay("mask");
}

#[test]
fn weights_corpus_and_mutations_never_panic() {
    replay("weights");
}

#[test]
fn every_target_has_a_corpus_and_a_libfuzzer_entry() {
    for target in TARGETS {
        assert!(corpus_dir(target).is_dir(), "{target}: no corpus");
        let entry = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/fuzz_targets")
            .join(format!("{target}.rs"));
        let text = std::fs::read_to_string(&entry).unwrap();
        assert!(
            text.contains(&format!("fuzz::run(\"{target}\"")),
            "{}",
            entry.display()
        );
    }
}

/// The seeds that are made rather than hand-written (masks, weights files), written into `root`
/// as `<target>/<name>`: how the committed ones were made (copy them into `fuzz/corpus/` to
/// refresh it).
fn write_generated_seeds(root: &Path) {
    use burn::prelude::*;
    use squeeze_segnet::{Precision, SqueezeSegNetConfig};

    let mask_dir = root.join("mask");
    std::fs::create_dir_all(&mask_dir).unwrap();
    let sample = squeeze_segnet_data::camvid_sample_root();
    std::fs::copy(
        sample.join("trainannot/0001TP_006690.png"),
        mask_dir.join("camvid_mask.png"),
    )
    .unwrap();
    let gray = image::GrayImage::from_fn(16, 12, |x, y| image::Luma([((x + y) % 13) as u8]));
    gray.save(mask_dir.join("labels_up_to_12.png")).unwrap();
    let rgb = image::RgbImage::from_fn(8, 6, |x, _| image::Rgb([x as u8 * 30, 0, 128]));
    rgb.save(mask_dir.join("rgb.png")).unwrap();
    let void = image::GrayImage::from_pixel(480, 360, image::Luma([11]));
    void.save(mask_dir.join("all_void.png")).unwrap();

    // Weights: the shipped network's first layers only (a whole file is 11 MB), in each
    // precision, and the same layers as PyTorch safetensors.
    let weights_dir = root.join("weights");
    std::fs::create_dir_all(&weights_dir).unwrap();
    let device = Device::flex();
    let full = SqueezeSegNetConfig::camvid().init(&device).unwrap();
    let dir = root.join("full");
    std::fs::create_dir_all(&dir).unwrap();
    for precision in Precision::ALL {
        let path = full
            .save_as(dir.join(format!("full-{precision}")), precision)
            .unwrap();
        let keep = ["conv1.conv.weight", "conv1.conv.bias", "conv1.norm.gamma"];
        let tensors: Vec<burn_pack::Tensor> = burn_pack::Reader::from_file(&path)
            .unwrap()
            .into_tensors()
            .unwrap()
            .into_iter()
            .filter(|t| keep.iter().any(|k| t.name.starts_with(k)))
            .collect();
        let mut writer = burn_pack::Writer::new(tensors);
        if precision != Precision::F32 {
            writer = writer.with_metadata(squeeze_segnet::PRECISION_KEY, precision.name());
        }
        writer
            .overwrite(true)
            .write_to_file(weights_dir.join(format!("conv1_{precision}.bpk")))
            .unwrap();
    }
    let bias: Vec<u8> = (0..11)
        .flat_map(|i| (i as f32 * 0.1).to_le_bytes())
        .collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![11], &bias).unwrap();
    let bytes = safetensors::serialize([("deconv1.bias", view)], None).unwrap();
    std::fs::write(weights_dir.join("deconv1_bias.safetensors"), bytes).unwrap();
}

#[test]
fn generated_seeds_are_in_the_corpus_and_never_panic() {
    let root = std::env::temp_dir().join(format!("ssn-fuzz-seeds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    write_generated_seeds(&root);
    for target in ["mask", "weights"] {
        let dir = root.join(target);
        let mut made = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                corpus_dir(target).join(&name).is_file(),
                "{target}/{name} is made but not in fuzz/corpus (copy it there)"
            );
            check(
                target,
                &format!("generated-{name}"),
                &std::fs::read(&path).unwrap(),
            );
            made += 1;
        }
        assert!(made >= 4, "{target}: {made} seeds made");
    }
    let _ = std::fs::remove_dir_all(&root);
}
