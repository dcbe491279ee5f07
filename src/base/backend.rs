//! The one place a compute device is chosen, from `runtime.device` or `--device`.
//!
//! Burn 0.22 tensors carry no backend type, so everything downstream takes a `Device`.
//! `wgpu` means a GPU API (Vulkan, Metal or DX12): wgpu's own automatic choice falls back
//! to OpenGL, which on a machine with Mesa but no Vulkan driver is llvmpipe, a software
//! rasteriser where one GCN epoch takes minutes. OpenGL is used only when named
//! (`wgpu:gl`), and the adapter in use is always said.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, anyhow, bail};
use burn::tensor::wgpu::{WgpuBackend, wgpu};
use burn::tensor::{Device, DeviceKind, Tensor};

use super::config::ConfigDoc;
use super::unwind::{first_line, quietly};

/// A parsed device name: what `--device` accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSpec {
    /// burn-flex, the pure-Rust CPU backend.
    Cpu,
    /// burn-ndarray, deprecated in 0.22; only for comparing CPU backends.
    #[cfg(feature = "ndarray")]
    Ndarray,
    /// A wgpu adapter of `kind`, on a named graphics API or (`None`) the platform's GPU APIs.
    Wgpu { kind: DeviceKind, api: Option<WgpuBackend> },
}

const DEVICE_NAMES: &str = "cpu, wgpu, wgpu:cpu, wgpu:discrete:N, wgpu:integrated:N, \
     optionally with a graphics API after wgpu (wgpu:vulkan, wgpu:metal, wgpu:dx12, wgpu:gl:discrete:0)";

impl DeviceSpec {
    pub fn parse(name: &str) -> Result<Self> {
        let lower = name.trim().to_ascii_lowercase();
        let parts: Vec<&str> = lower.split(':').collect();
        match parts.as_slice() {
            ["cpu"] | ["flex"] => Ok(DeviceSpec::Cpu),
            #[cfg(feature = "ndarray")]
            ["ndarray"] => Ok(DeviceSpec::Ndarray),
            ["wgpu" | "gpu", rest @ ..] => {
                let (api, rest) = match rest.first().and_then(|first| graphics_api(first)) {
                    Some(api) => (Some(api), &rest[1..]),
                    None => (None, rest),
                };
                Ok(DeviceSpec::Wgpu { kind: adapter_kind(name, rest)?, api })
            }
            _ => bail!(
                "unknown device {name:?}: expected {DEVICE_NAMES}{}",
                if cfg!(feature = "ndarray") {
                    " or ndarray"
                } else {
                    " (ndarray needs --features ndarray)"
                }
            ),
        }
    }

    pub fn is_cpu(&self) -> bool {
        !matches!(self, DeviceSpec::Wgpu { .. })
    }
}

fn graphics_api(name: &str) -> Option<WgpuBackend> {
    Some(match name {
        "vulkan" => WgpuBackend::Vulkan,
        "metal" => WgpuBackend::Metal,
        "dx12" => WgpuBackend::Dx12,
        "gl" | "opengl" => WgpuBackend::Gl,
        _ => return None,
    })
}

/// The adapter part of a wgpu device name: nothing, `cpu`, `discrete[:N]`,
/// `integrated[:N]` or a bare index (a discrete GPU).
fn adapter_kind(name: &str, parts: &[&str]) -> Result<DeviceKind> {
    let index = |raw: Option<&&str>| -> Result<usize> {
        raw.map_or(Ok(0), |s| {
            s.parse().map_err(|_| anyhow!("device {name:?}: {s:?} is not a device index"))
        })
    };
    Ok(match parts {
        [] => DeviceKind::DefaultDevice,
        ["cpu"] => DeviceKind::Cpu,
        ["discrete", rest @ ..] if rest.len() <= 1 => DeviceKind::DiscreteGpu(index(rest.first())?),
        ["integrated", rest @ ..] if rest.len() <= 1 => {
            DeviceKind::IntegratedGpu(index(rest.first())?)
        }
        [n] => DeviceKind::DiscreteGpu(index(Some(n))?),
        _ => bail!("unknown device {name:?}: expected {DEVICE_NAMES}"),
    })
}

/// Whether shopnet's fused kernels (`crate::ops`) run where they exist: `runtime.fused_ops`,
/// on unless a run turns it off. Process-wide, like the thread pool: it is chosen once, at
/// the edge, with the device.
static FUSED_OPS: AtomicBool = AtomicBool::new(true);

pub fn set_fused_ops(enabled: bool) {
    FUSED_OPS.store(enabled, Ordering::Relaxed);
}

pub fn fused_ops_enabled() -> bool {
    FUSED_OPS.load(Ordering::Relaxed)
}

/// The device of a run or job: `--device` when given, else the config's `runtime.device`;
/// sets the CPU thread pool from `runtime.threads` and the kernel path from
/// `runtime.fused_ops` first.
pub fn open_for_run(flag: Option<&str>, config: &ConfigDoc) -> Result<Device> {
    let runtime = config.runtime()?;
    configure_threads(runtime.threads);
    set_fused_ops(runtime.fused_ops);
    let (source, name) = match flag {
        Some(name) => ("--device", name),
        None => ("runtime.device", runtime.device.as_str()),
    };
    open(&DeviceSpec::parse(name).map_err(|err| anyhow!("{source}: {err}"))?)
}

/// The devices of a training run: `--device` or `runtime.device`, a comma-separated list
/// for data-parallel training (`wgpu:discrete:0,wgpu:discrete:1`); the first holds the
/// model between steps.
pub fn open_all_for_run(flag: Option<&str>, config: &ConfigDoc) -> Result<Vec<Device>> {
    let runtime = config.runtime()?;
    configure_threads(runtime.threads);
    set_fused_ops(runtime.fused_ops);
    let (source, names) = match flag {
        Some(names) => ("--device", names),
        None => ("runtime.device", runtime.device.as_str()),
    };
    let mut specs = Vec::new();
    for name in names.split(',') {
        let spec = DeviceSpec::parse(name).map_err(|err| anyhow!("{source}: {err}"))?;
        if specs.contains(&spec) {
            bail!("{source}: {:?} is listed twice", name.trim());
        }
        specs.push(spec);
    }
    specs.iter().map(open).collect()
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
        DeviceSpec::Wgpu { .. } => "wgpu",
    };
    // SAFETY: called from the main thread before any tensor work; no other thread reads
    // the environment concurrently.
    unsafe { std::env::set_var("BURN_DEVICE", default_backend) };
    match spec {
        DeviceSpec::Cpu => Ok(Device::flex()),
        #[cfg(feature = "ndarray")]
        #[allow(deprecated)]
        DeviceSpec::Ndarray => Ok(Device::ndarray()),
        DeviceSpec::Wgpu { kind, api } => open_wgpu(kind, *api),
    }
}

/// The first of the candidate APIs that gives an adapter of `kind` able to run a kernel;
/// says which adapter that is on stderr.
fn open_wgpu(kind: &DeviceKind, api: Option<WgpuBackend>) -> Result<Device> {
    let candidates = match api {
        Some(api) => vec![api],
        None if cfg!(target_os = "macos") => vec![WgpuBackend::Metal],
        None => vec![WgpuBackend::Vulkan, WgpuBackend::Dx12],
    };
    let mut reasons = Vec::new();
    for api in candidates {
        match init_wgpu(kind, api) {
            Ok((device, adapter)) => {
                eprintln!("device: wgpu {adapter}");
                return Ok(device);
            }
            Err(reason) => reasons.push(format!("{api:?}: {reason}")),
        }
    }
    bail!(
        "device wgpu ({kind:?}) is not usable: {}. On a machine without a GPU, Debian's mesa-vulkan-drivers \
         package provides a software Vulkan device (lavapipe); OpenGL is used only when named (wgpu:gl)",
        reasons.join("; ")
    )
}

/// Initialises one API's adapter and runs a test kernel on it; returns the device and a
/// description of the adapter (name, API, and whether it is a software renderer).
fn init_wgpu(kind: &DeviceKind, api: WgpuBackend) -> Result<(Device, String), String> {
    let init =
        || Device::wgpu_options().device_kind(kind.clone()).graphics_api(api).init_with_setup();
    let (device, setup) = quietly(init)?.map_err(|err| first_line(&err.to_string()))?;
    let info = setup.adapter.get_info();
    let software =
        if info.device_type == wgpu::DeviceType::Cpu { ", a software renderer" } else { "" };
    probe(&device)?;
    Ok((device, format!("{} ({:?}{software})", info.name, info.backend)))
}

fn probe(device: &Device) -> Result<(), String> {
    let sum = quietly(|| Tensor::<1>::from_floats([1.0, 2.0], device).sum().into_scalar::<f32>())?;
    if (sum - 3.0).abs() < 1e-6 {
        Ok(())
    } else {
        Err("a test kernel returned a wrong result".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_names() {
        let wgpu = |kind, api| DeviceSpec::Wgpu { kind, api };
        assert_eq!(DeviceSpec::parse("cpu").unwrap(), DeviceSpec::Cpu);
        assert_eq!(DeviceSpec::parse("WGPU").unwrap(), wgpu(DeviceKind::DefaultDevice, None));
        assert_eq!(
            DeviceSpec::parse("wgpu:discrete:1").unwrap(),
            wgpu(DeviceKind::DiscreteGpu(1), None)
        );
        assert_eq!(DeviceSpec::parse("wgpu:cpu").unwrap(), wgpu(DeviceKind::Cpu, None));
        assert_eq!(
            DeviceSpec::parse("wgpu:gl").unwrap(),
            wgpu(DeviceKind::DefaultDevice, Some(WgpuBackend::Gl))
        );
        assert_eq!(
            DeviceSpec::parse("wgpu:vulkan:integrated:2").unwrap(),
            wgpu(DeviceKind::IntegratedGpu(2), Some(WgpuBackend::Vulkan))
        );
        assert!(
            DeviceSpec::parse("tpu").unwrap_err().to_string().starts_with("unknown device \"tpu\"")
        );
        assert!(DeviceSpec::parse("wgpu:x").is_err());
        assert!(DeviceSpec::parse("wgpu:discrete:1:2").is_err());
    }
}
