//! shopnet's own fused operations, through Burn's backend extension mechanism.
//!
//! - [`lstm`]: a one-layer LSTM over a whole sequence;
//! - [`sequence`]: the sliding windows and the ReLU + max-pooling of a convolution over time;
//! - [`spmm`]: the sparse-dense product of graph message passing;
//! - [`conv`]: a stride-1 2-d convolution as one matrix product per image;
//! - [`batch_norm`]: batch normalisation and ReLU as one pass;
//! - [`pool`]: 2x2 max-pooling with a one-byte record of each window's winner;
//! - [`activation`]: vectorised `exp`, sigmoid and tanh for the kernels;
//! - [`matmul`]: the kernels' matrix products on host buffers.
//!
//! Each op has a hand-written CPU kernel for burn-flex and a hand-written backward for
//! autodiff over it; on other backends (wgpu), or with `runtime.fused_ops = false`, the
//! callers compose the same function from Burn tensor ops, so the two paths can be compared
//! and bisected. [`fused_on`] is the one switch between them.

pub mod activation;
pub mod batch_norm;
pub mod conv;
pub mod lstm;
pub mod matmul;
pub mod pool;
pub mod sequence;
pub mod spmm;

use std::borrow::Cow;

use burn::backend::DispatchDevice;
use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Device, Tensor, TensorData};

use crate::base::backend::fused_ops_enabled;

/// Whether a tensor on `device` takes the fused kernels: a burn-flex device, with or
/// without autodiff, while `runtime.fused_ops` is on.
pub fn fused_on(device: &Device) -> bool {
    fused_ops_enabled() && is_flex(device)
}

/// Whether an op on `tensor` takes its fused kernel: [`fused_on`] its device, and `f32`,
/// the one float type the kernels are written for.
fn fused_f32<const D: usize>(tensor: &Tensor<D>) -> bool {
    fused_on(&tensor.device()) && tensor.dtype() == DType::F32
}

/// A burn-flex float tensor's values, row-major: borrowed when the tensor already is.
fn host_floats(tensor: &FlexTensor) -> Cow<'_, [f32]> {
    match tensor.as_slice::<f32>() {
        Some(values) => Cow::Borrowed(values),
        None => Cow::Owned(tensor.to_contiguous().storage::<f32>().to_vec()),
    }
}

/// A burn-flex float tensor of `shape` holding `values`, row-major.
fn flex_tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

fn is_flex(device: &Device) -> bool {
    matches!(device.clone().inner().as_dispatch(), DispatchDevice::Flex(_))
}

/// What the fused ops' tests share.
#[cfg(test)]
mod test_support {
    use burn::tensor::Tensor;

    pub fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
        tensor.into_data().try_to_vec::<f32>().unwrap()
    }

    /// Element-wise `|ours - reference| <= tolerance * (1 + |reference|)`.
    pub fn assert_close(ours: &[f32], reference: &[f32], tolerance: f32, what: &str) {
        assert_eq!(ours.len(), reference.len(), "{what}: lengths");
        for (k, (a, b)) in ours.iter().zip(reference).enumerate() {
            assert!(
                (a - b).abs() <= tolerance * (1.0 + b.abs()),
                "{what}[{k}]: fused {a}, reference {b}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flex_devices_take_the_fused_kernels_with_or_without_autodiff() {
        assert!(is_flex(&Device::flex()) && is_flex(&Device::flex().autodiff()));
    }
}
