//! Choosing where the network runs: the same model code on NdArray, Flex or WGPU.

use std::fmt;
use std::str::FromStr;

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

    /// The device, without checking that it works (see [`device`](Self::device)).
    pub fn device_unchecked(self) -> Device {
        match self {
            #[allow(deprecated)]
            BackendKind::NdArray => Device::ndarray(),
            BackendKind::Flex => Device::flex(),
            BackendKind::Wgpu => Device::wgpu(DeviceKind::DefaultDevice),
        }
    }

    /// The device, checked: for WGPU, a tiny computation runs to make sure an adapter exists.
    ///
    /// # Errors
    /// [`SegNetError::NoAdapter`] when WGPU finds no GPU or software driver.
    pub fn device(self) -> Result<Device, SegNetError> {
        let device = self.device_unchecked();
        if self != BackendKind::Wgpu {
            return Ok(device);
        }
        let probe = device.clone();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let result = std::panic::catch_unwind(move || {
            Tensor::<1>::ones([4], &probe)
                .sum()
                .into_data()
                .try_to_vec::<f32>()
        });
        std::panic::set_hook(previous);
        match result {
            Ok(Ok(v)) if v == [4.0] => Ok(device),
            Ok(Ok(v)) => Err(SegNetError::NoAdapter {
                reason: format!("a test sum of four ones gave {v:?}"),
            }),
            Ok(Err(e)) => Err(SegNetError::NoAdapter {
                reason: format!("{e:?}"),
            }),
            Err(panic) => Err(SegNetError::NoAdapter {
                reason: panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "the WGPU runtime failed to start".into()),
            }),
        }
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
