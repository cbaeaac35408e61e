//! Helpers shared by the integration tests: the backends under test, a seeded RNG, host copies,
//! the built examples as commands.
#![allow(dead_code)]

use burn::prelude::*;
use burn::tensor::DType;
use squeeze_segnet::BackendKind;

/// Every backend the workspace runs on, with its device. WGPU must have an adapter (Mesa's
/// software Vulkan on machines without a GPU): a missing one fails the test, it is never skipped.
pub fn backends() -> Vec<(BackendKind, Device)> {
    BackendKind::ALL
        .iter()
        .map(|&kind| {
            let device = kind.device().unwrap_or_else(|e| {
                panic!("backend {kind} is unavailable: {e} (CI installs mesa-vulkan-drivers)")
            });
            (kind, device)
        })
        .collect()
}

/// The data crate's seeded generator (SplitMix64) with the draws the tests need.
pub struct Rng(squeeze_segnet_data::SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(squeeze_segnet_data::SplitMix64::new(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        self.0.uniform()
    }

    /// Uniform integer in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    /// Values from a few levels, so that windows hold many ties.
    pub fn tied(&mut self, n: usize, levels: usize) -> Vec<f64> {
        (0..n).map(|_| self.range(0, levels - 1) as f64).collect()
    }

    /// Distinct values at least 0.1 apart in random order, so that a small perturbation never
    /// changes which element is a maximum (for finite differences).
    pub fn distinct(&mut self, n: usize) -> Vec<f64> {
        let mut v: Vec<f64> = (0..n).map(|i| i as f64 * 0.1 - n as f64 * 0.05).collect();
        for i in (1..n).rev() {
            let j = self.range(0, i);
            v.swap(i, j);
        }
        v
    }

    /// Standard-normal-ish values (sum of uniforms), for weights of a loss.
    pub fn normal(&mut self, n: usize) -> Vec<f64> {
        (0..n)
            .map(|_| (0..4).map(|_| self.uniform()).sum::<f64>() - 2.0)
            .collect()
    }
}

/// A float tensor from host values, in the device's default float dtype (f32).
pub fn float(values: &[f64], shape: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::from_data(
        TensorData::new(values.to_vec(), shape).convert::<f32>(),
        device,
    )
}

/// A float tensor from host values, in f64.
pub fn float64(values: &[f64], shape: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::from_data(
        TensorData::new(values.to_vec(), shape),
        (device, DType::F64),
    )
}

/// An int tensor from host indices, in the device's default int dtype.
pub fn int(values: &[i64], shape: [usize; 4], device: &Device) -> Tensor<4, Int> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), device)
}

/// An int tensor from host indices, in the given int dtype.
pub fn int_as(values: &[i64], shape: [usize; 4], device: &Device, dtype: DType) -> Tensor<4, Int> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), (device, dtype))
}

pub fn host<const D: usize>(x: Tensor<D>) -> Vec<f64> {
    x.into_data().convert::<f64>().try_to_vec::<f64>().unwrap()
}

pub fn host_int<const D: usize>(x: Tensor<D, Int>) -> Vec<i64> {
    x.into_data().convert::<i64>().try_to_vec::<i64>().unwrap()
}

/// Asserts two float vectors agree within `atol + rtol·|b|` elementwise, naming the first miss.
pub fn assert_close(a: &[f64], b: &[f64], atol: f64, rtol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let ok = x == y || (x - y).abs() <= atol + rtol * y.abs() || (x.is_nan() && y.is_nan());
        assert!(
            ok,
            "{what}: element {i}: {x} vs {y} (atol {atol}, rtol {rtol})"
        );
    }
}

/// Logits of two paths through max-pooling: where two window values differ only by float
/// rounding, different summation orders can pick different maxima and move a few outputs. So:
/// the relative L2 error is at most `rel_l2`, and at most one element in a thousand misses
/// `atol + rtol·|b|`.
pub fn assert_mostly_close(a: &[f64], b: &[f64], atol: f64, rtol: f64, rel_l2: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    let off = a
        .iter()
        .zip(b)
        .filter(|(x, y)| (*x - *y).abs() > atol + rtol * y.abs())
        .count();
    let norm = b.iter().map(|v| v * v).sum::<f64>().sqrt();
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt();
    assert!(
        diff <= rel_l2 * norm,
        "{what}: relative L2 error {:.2e}",
        diff / norm
    );
    assert!(
        off * 1000 <= b.len(),
        "{what}: {off} of {} elements differ",
        b.len()
    );
}

/// A built example as a command (`cargo test` builds the examples first; they are run from
/// `target/<profile>/examples/`), with Mesa's runtime folder set and no fault injection.
pub fn example(name: &str) -> std::process::Command {
    // target/<profile>/deps/<this test> → target/<profile>/examples/<name>
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} not built (cargo test builds examples)",
        path.display()
    );
    let mut cmd = std::process::Command::new(path);
    cmd.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    cmd.env_remove(squeeze_segnet_train::checkpoint::FAULT_ENV);
    cmd
}

/// A fresh, empty-to-be temporary path unique to this test process.
pub fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ssn-tests-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A fresh, empty temporary folder for one test ([`tmp`], created).
pub fn tmp_dir(name: &str) -> std::path::PathBuf {
    let dir = tmp(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every float parameter and statistic of `model`: (record path, shape, values), in module order.
pub fn params<M: burn::module::Module>(model: &M) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut all = Vec::new();
    squeeze_segnet::visit_float_params(model, |path, shape, value| {
        let values = value()
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        all.push((path.to_string(), shape.to_vec(), values));
    });
    all
}

/// A CamVid network (batch norm, context, refinement) whose running statistics have moved off their
/// defaults after one training-mode forward, seeded.
pub fn camvid_with_moved_statistics(seed: u64) -> squeeze_segnet::SqueezeSegNet {
    let ad = Device::flex().autodiff();
    ad.seed(seed);
    let model = squeeze_segnet::SqueezeSegNetConfig::camvid()
        .init(&ad)
        .unwrap()
        .train();
    let x = Tensor::<4>::random([2, 3, 48, 64], burn::tensor::Distribution::Default, &ad);
    let _ = model.forward(x).unwrap();
    model.valid()
}

/// Runs the named tests of this test binary again in child processes, once with this crate's
/// host kernels capped at each of the lower vector levels (`SQUEEZE_SEGNET_SIMD`: AVX2, then
/// the baseline), and fails unless every one passes there. On an AVX-512 machine the parent
/// process ran them with AVX-512, so every path the dispatch can take is held to the same
/// checks. Does nothing inside such a child.
pub fn rerun_at_lower_vector_levels(tests: &[&str]) {
    if std::env::var_os(squeeze_segnet::SIMD_ENV).is_some() {
        return;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    for level in ["avx2", "baseline"] {
        for test in tests {
            let out = std::process::Command::new(&exe)
                .args(["--exact", test, "--test-threads", "1"])
                .env(squeeze_segnet::SIMD_ENV, level)
                .output()
                .expect("the test binary runs");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains("1 passed"),
                "{test} at {}={level}:\n{stdout}\n{}",
                squeeze_segnet::SIMD_ENV,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
