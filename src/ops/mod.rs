//! shopnet's own fused operations, through Burn's backend extension mechanism.
//!
//! Each op has a hand-written CPU kernel for burn-flex and a hand-written backward for
//! autodiff over it; on other backends (wgpu), or with `runtime.fused_ops = false`, the
//! callers compose the same function from Burn tensor ops, so the two paths can be compared
//! and bisected. [`fused_on`] is the one switch between them.

pub mod activation;
pub mod lstm;

use burn::backend::DispatchDevice;
use burn::tensor::Device;

use crate::base::backend::fused_ops_enabled;

/// Whether a tensor on `device` takes the fused kernels: a burn-flex device, with or
/// without autodiff, while `runtime.fused_ops` is on.
pub fn fused_on(device: &Device) -> bool {
    fused_ops_enabled() && is_flex(device)
}

fn is_flex(device: &Device) -> bool {
    matches!(device.clone().inner().as_dispatch(), DispatchDevice::Flex(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flex_devices_take_the_fused_kernels_with_or_without_autodiff() {
        assert!(is_flex(&Device::flex()) && is_flex(&Device::flex().autodiff()));
    }
}
