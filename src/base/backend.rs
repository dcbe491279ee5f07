//! The one place a compute device is chosen, from `runtime.device` or `--device`.
//!
//! Burn 0.22 tensors carry no backend type, so everything downstream takes a `Device`.

use std::panic::{AssertUnwindSafe, catch_unwind};

use anyhow::{Result, anyhow, bail};
use burn::tensor::{Device, DeviceKind, Tensor};

use super::config::ConfigDoc;

/// A parsed device name: what `--device` accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSpec {
    /// burn-flex, the pure-Rust CPU backend.
    Cpu,
    /// burn-ndarray, deprecated in 0.22; only for comparing CPU backends.
    #[cfg(feature = "ndarray")]
    Ndarray,
    Wgpu(DeviceKind),
}

impl DeviceSpec {
    pub fn parse(name: &str) -> Result<Self> {
        let lower = name.trim().to_ascii_lowercase();
        let parts: Vec<&str> = lower.split(':').collect();
        let index = |raw: Option<&&str>| -> Result<usize> {
            raw.map_or(Ok(0), |s| {
                s.parse().map_err(|_| anyhow!("device {name:?}: {s:?} is not a device index"))
            })
        };
        Ok(match parts.as_slice() {
            ["cpu"] | ["flex"] => DeviceSpec::Cpu,
            #[cfg(feature = "ndarray")]
            ["ndarray"] => DeviceSpec::Ndarray,
            ["wgpu"] | ["gpu"] => DeviceSpec::Wgpu(DeviceKind::DefaultDevice),
            ["wgpu", "cpu"] => DeviceSpec::Wgpu(DeviceKind::Cpu),
            ["wgpu", "discrete", rest @ ..] => {
                DeviceSpec::Wgpu(DeviceKind::DiscreteGpu(index(rest.first())?))
            }
            ["wgpu", "integrated", rest @ ..] => {
                DeviceSpec::Wgpu(DeviceKind::IntegratedGpu(index(rest.first())?))
            }
            ["wgpu", n] => DeviceSpec::Wgpu(DeviceKind::DiscreteGpu(index(Some(n))?)),
            _ => bail!(
                "unknown device {name:?}: expected cpu, wgpu, wgpu:cpu, wgpu:discrete:N or wgpu:integrated:N{}",
                if cfg!(feature = "ndarray") {
                    " or ndarray"
                } else {
                    " (ndarray needs --features ndarray)"
                }
            ),
        })
    }

    pub fn is_cpu(&self) -> bool {
        !matches!(self, DeviceSpec::Wgpu(_))
    }
}

/// The device of a run or job: `--device` when given, else the config's `runtime.device`;
/// sets the CPU thread pool from `runtime.threads` first.
pub fn open_for_run(flag: Option<&str>, config: &ConfigDoc) -> Result<Device> {
    let runtime = config.runtime()?;
    configure_threads(runtime.threads);
    open(&DeviceSpec::parse(flag.unwrap_or(&runtime.device))?)
}

/// Sets the CPU thread pool size (0 = all cores). Must run before the first tensor op.
pub fn configure_threads(threads: usize) {
    if threads > 0 {
        // A second call (tests running several jobs in one process) keeps the first pool.
        let _ = rayon::ThreadPoolBuilder::new().num_threads(threads).build_global();
    }
}

/// Creates the device and checks that it can run a kernel, so a missing GPU driver is one
/// clear error here rather than a panic deep inside the first training step.
pub fn open(spec: &DeviceSpec) -> Result<Device> {
    // Burn materialises some state on `Device::default()` (optimiser records, when a run
    // resumes), which would otherwise start a GPU backend during a CPU run, or fail on a
    // machine without one. BURN_DEVICE points that default at the chosen backend.
    let default_backend = match spec {
        DeviceSpec::Cpu => "flex",
        #[cfg(feature = "ndarray")]
        DeviceSpec::Ndarray => "ndarray",
        DeviceSpec::Wgpu(_) => "wgpu",
    };
    // SAFETY: called from the main thread before any tensor work; no other thread reads
    // the environment concurrently.
    unsafe { std::env::set_var("BURN_DEVICE", default_backend) };
    let device = match spec {
        DeviceSpec::Cpu => Device::flex(),
        #[cfg(feature = "ndarray")]
        #[allow(deprecated)]
        DeviceSpec::Ndarray => Device::ndarray(),
        DeviceSpec::Wgpu(kind) => Device::wgpu(kind.clone()),
    };
    if !spec.is_cpu() {
        probe(&device).map_err(|reason| {
            anyhow!(
                "device {spec:?} is not usable: {reason}. On a machine without a GPU, Debian's \
                 mesa-vulkan-drivers package provides a software Vulkan device (lavapipe)"
            )
        })?;
    }
    Ok(device)
}

fn probe(device: &Device) -> Result<(), String> {
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let sum = Tensor::<1>::from_floats([1.0, 2.0], device).sum().into_scalar::<f32>();
        (sum - 3.0).abs() < 1e-6
    }));
    std::panic::set_hook(previous_hook);
    match outcome {
        Ok(true) => Ok(()),
        Ok(false) => Err("a test kernel returned a wrong result".into()),
        Err(payload) => Err(payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .map(|s| s.lines().next().unwrap_or_default().to_string())
            .unwrap_or_else(|| "no adapter found".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_names() {
        assert_eq!(DeviceSpec::parse("cpu").unwrap(), DeviceSpec::Cpu);
        assert_eq!(DeviceSpec::parse("WGPU").unwrap(), DeviceSpec::Wgpu(DeviceKind::DefaultDevice));
        assert_eq!(
            DeviceSpec::parse("wgpu:discrete:1").unwrap(),
            DeviceSpec::Wgpu(DeviceKind::DiscreteGpu(1))
        );
        assert_eq!(DeviceSpec::parse("wgpu:cpu").unwrap(), DeviceSpec::Wgpu(DeviceKind::Cpu));
        assert!(
            DeviceSpec::parse("tpu").unwrap_err().to_string().starts_with("unknown device \"tpu\"")
        );
        assert!(DeviceSpec::parse("wgpu:x").is_err());
    }
}
