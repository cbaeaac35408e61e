//! Choosing where the network runs: the same model code on NdArray, Flex or WGPU.

use std::fmt;
use std::str::FromStr;
use std::sync::{Once, OnceLock};

use burn::prelude::*;

use crate::SegNetError;

/// The backends this crate is built and tested with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum BackendKind {
    /// Burn's NdArray CPU backend (deprecated by Burn 0.22 in favour of Flex; kept on request).
    NdArray,
    /// Burn's Flex CPU backend: the fast CPU choice.
    Flex,
    /// WGPU: Vulkan, Metal, DX12 or WebGPU on a GPU — or Mesa's software Vulkan on a CPU.
    Wgpu,
}

impl BackendKind {
    /// Every backend, in the order of the tests and benchmarks.
    pub const ALL: [BackendKind; 3] = [BackendKind::NdArray, BackendKind::Flex, BackendKind::Wgpu];

    /// Lower-case name, as accepted by [`FromStr`].
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::NdArray => "ndarray",
            BackendKind::Flex => "flex",
            BackendKind::Wgpu => "wgpu",
        }
    }

    /// The backend `device` runs on (an autodiff device answers for the one it wraps), or `None`
    /// for a backend this crate is not built with.
    pub fn of(device: &Device) -> Option<BackendKind> {
        use burn::backend::DispatchDevice;
        match device.clone().without_autodiff().as_dispatch() {
            DispatchDevice::NdArray(_) => Some(BackendKind::NdArray),
            DispatchDevice::Flex(_) => Some(BackendKind::Flex),
            DispatchDevice::Cube(_) => Some(BackendKind::Wgpu),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// The device, without checking that it works (see [`device`](Self::device)).
    pub fn device_unchecked(self) -> Device {
        match self {
            #[allow(deprecated)]
            BackendKind::NdArray => Device::ndarray(),
            BackendKind::Flex => Device::flex(),
            BackendKind::Wgpu => Device::wgpu(DeviceKind::DefaultDevice),
        }
    }

    /// `n` devices of this backend for data-parallel training: the discrete GPUs `0..n` for WGPU
    /// (each checked with a tiny computation; the default adapter when `n` is 1), `n` handles on
    /// the one CPU device for NdArray and Flex (parallel threads sharing the CPU: a way to test
    /// the split, rarely faster). Use the first as the trainer's device.
    ///
    /// # Errors
    /// [`SegNetError::Config`] when `n` is 0; [`SegNetError::NoAdapter`] as for
    /// [`device`](Self::device).
    pub fn devices(self, n: usize) -> Result<Vec<Device>, SegNetError> {
        if n == 0 {
            return Err(SegNetError::Config(
                "data parallelism needs at least one device".into(),
            ));
        }
        let first = self.device()?;
        if n == 1 || self != BackendKind::Wgpu {
            return Ok(vec![first; n]);
        }
        (0..n)
            .map(|i| {
                probe(DeviceKind::DiscreteGpu(i))
                    .map(|()| Device::wgpu(DeviceKind::DiscreteGpu(i)))
                    .map_err(|reason| SegNetError::NoAdapter {
                        reason: format!("discrete GPU {i} of the {n} asked for: {reason}"),
                    })
            })
            .collect()
    }

    /// The device, checked: for WGPU, a tiny computation runs to make sure an adapter exists.
    ///
    /// # Errors
    /// [`SegNetError::NoAdapter`] when WGPU finds no GPU or software driver;
    /// [`SegNetError::Config`] for a bad `BURN_DEVICE` or [`crate::SIMD_ENV`].
    pub fn device(self) -> Result<Device, SegNetError> {
        check_burn_device_env()?;
        crate::simd::check_simd_env()?;
        let device = self.device_unchecked();
        if self != BackendKind::Wgpu {
            return Ok(device);
        }
        match wgpu_probe() {
            Ok(()) => Ok(device),
            Err(reason) => Err(SegNetError::NoAdapter {
                reason: reason.clone(),
            }),
        }
    }
}

/// Checks Burn's `BURN_DEVICE` override, which Burn reads wherever it falls back to its default
/// device (loading an optimiser's state, for one) and where it panics on a name it does not know
/// or a backend this build lacks.
///
/// # Errors
/// [`SegNetError::Config`] naming the variable, its value and the accepted ones.
pub fn check_burn_device_env() -> Result<(), SegNetError> {
    match std::env::var("BURN_DEVICE") {
        Err(std::env::VarError::NotPresent) => Ok(()),
        Ok(v)
            if BackendKind::ALL
                .iter()
                .any(|b| b.name() == v.to_lowercase()) =>
        {
            Ok(())
        }
        Ok(v) => Err(SegNetError::Config(format!(
            "BURN_DEVICE={v:?}: this build knows flex, ndarray and wgpu (or leave it unset)"
        ))),
        Err(e) => Err(SegNetError::Config(format!("BURN_DEVICE: {e}"))),
    }
}

/// Name of the thread that probes WGPU; its panics (a missing adapter) are silenced.
const PROBE_THREAD: &str = "squeeze-segnet-wgpu-probe";

/// Runs a tiny computation on the default WGPU device once per process (see [`probe`]) and
/// remembers the outcome.
fn wgpu_probe() -> &'static Result<(), String> {
    static RESULT: OnceLock<Result<(), String>> = OnceLock::new();
    RESULT.get_or_init(|| probe(DeviceKind::DefaultDevice))
}

/// Runs a tiny computation on a WGPU device on its own thread. A panic hook is chained (once)
/// that silences panics of that thread only, so other threads' panic messages are never lost.
fn probe(kind: DeviceKind) -> Result<(), String> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() != Some(PROBE_THREAD) {
                previous(info);
            }
        }));
    });
    let probe = std::thread::Builder::new()
        .name(PROBE_THREAD.into())
        .spawn(move || {
            let device = Device::wgpu(kind);
            Tensor::<1>::ones([4], &device)
                .sum()
                .into_data()
                .try_to_vec::<f32>()
        })
        .map_err(|e| format!("cannot start the probe thread: {e}"))?;
    match probe.join() {
        Ok(Ok(v)) if v == [4.0] => Ok(()),
        Ok(Ok(v)) => Err(format!("a test sum of four ones gave {v:?}")),
        Ok(Err(e)) => Err(format!("{e:?}")),
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the WGPU runtime failed to start".into())),
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = SegNetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "ndarray" => Ok(BackendKind::NdArray),
            "flex" => Ok(BackendKind::Flex),
            "wgpu" => Ok(BackendKind::Wgpu),
            _ => Err(SegNetError::UnknownBackend(s.to_string())),
        }
    }
}
