//! shopnet's own fused operations, through Burn's backend extension mechanism.
//!
//! - [`lstm`]: a one-layer LSTM over a whole sequence;
//! - [`sequence`]: the sliding windows and the ReLU + max-pooling of a convolution over time;
//! - [`spmm`]: the sparse-dense product of graph message passing;
//! - [`token_conv`]: an embedding and a 1-d convolution folded into tap tables, for inference;
//! - [`conv`]: a stride-1 2-d convolution as one matrix product per image;
//! - [`batch_norm`]: batch normalisation and ReLU as one pass;
//! - [`pool`]: 2x2 max-pooling with a one-byte record of each window's winner;
//! - [`attention`]: multi-head self-attention with a padding mask and attention dropout;
//! - [`linear`]: a dense layer with its bias folded into the product;
//! - [`layer_norm`]: a residual sum and its layer normalisation as one pass;
//! - [`gelu`]: the exact GELU;
//! - [`dropout`]: inverted dropout from a counter-based generator;
//! - [`adam`]: one Adam or AdamW update of a parameter as one pass;
//! - [`activation`]: vectorised `exp`, sigmoid, tanh, softmax and GELU for the kernels;
//! - [`matmul`]: the kernels' matrix products on host buffers.
//!
//! Each op has a hand-written CPU kernel for burn-flex and a hand-written backward for
//! autodiff over it; on other backends (wgpu), or with `runtime.fused_ops = false`, the
//! callers compose the same function from Burn tensor ops, so the two paths can be compared
//! and bisected. [`fused_on`] is the one switch between them.

/// Defines `pub fn $name(args)` whose body is compiled three times, for AVX-512 (F and DQ,
/// which has the 64-bit multiplies), AVX2 + FMA and the baseline, and runs the widest the
/// CPU has, picked at run time: the crate is built for the baseline, so a loop only
/// vectorises to the CPU's width inside such a function.
macro_rules! widest_simd {
    ($(#[$doc:meta])* pub fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$doc])*
        pub fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512dq")]
                fn avx512($($arg: $ty),*) {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) {
                    body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                {
                    // SAFETY: the CPU has just been seen to support AVX-512F and DQ.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has just been seen to support AVX2 and FMA.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

pub mod activation;
pub mod adam;
pub mod attention;
pub mod batch_norm;
pub mod conv;
pub mod dropout;
pub mod gelu;
pub mod layer_norm;
pub mod linear;
pub mod lstm;
pub mod matmul;
pub mod pool;
pub mod sequence;
pub mod spmm;
pub mod token_conv;

use std::borrow::Cow;

use burn::backend::DispatchDevice;
use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Device, Shape, Tensor, TensorData};

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

/// `tensor` itself when its buffer is its own and in order, else a contiguous copy: what
/// a kernel may write in place.
fn writable(mut tensor: FlexTensor) -> FlexTensor {
    let layout = tensor.layout();
    let whole = layout.contiguous_offsets() == Some((0, layout.num_elements()));
    if whole && tensor.try_storage_mut::<f32>().is_some() {
        return tensor;
    }
    let shape = tensor.layout().shape().clone();
    flex_tensor(host_floats(&tensor).into_owned(), shape)
}

/// An index tensor's values on the host as `u32`, or the first one outside `0..bound`
/// (which must itself fit a `u32`): the coordinates and token ids the kernels read.
fn host_indices(data: TensorData, bound: usize) -> Result<Vec<u32>, i64> {
    assert!(u32::try_from(bound).is_ok(), "index bound {bound} over 2^32");
    let values = data.convert::<i64>();
    let values = values.as_slice::<i64>().expect("i64 after conversion");
    values
        .iter()
        .map(|&i| match usize::try_from(i) {
            Ok(at) if at < bound => Ok(at as u32),
            _ => Err(i),
        })
        .collect()
}

/// A burn-flex float tensor of `shape` holding `values`, row-major.
fn flex_tensor(values: Vec<f32>, shape: impl Into<Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

fn is_flex(device: &Device) -> bool {
    matches!(device.clone().inner().as_dispatch(), DispatchDevice::Flex(_))
}

/// What the fused ops' tests share.
#[cfg(test)]
mod test_support {
    use burn::tensor::Tensor;

    /// Deterministic values spread over about [-2, 2], different for each `which`: test
    /// inputs that do not come from the device's generator, which every test thread shares.
    pub fn spread<const D: usize>(
        dims: [usize; D],
        which: usize,
        device: &burn::tensor::Device,
    ) -> Tensor<D> {
        let len = dims.iter().product::<usize>();
        let values: Vec<f32> =
            (0..len).map(|i| 2.0 * ((i * 31 + which * 1013) as f32 * 0.618_034).sin()).collect();
        Tensor::from_data(burn::tensor::TensorData::new(values, dims), device)
    }

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

    /// `max |ours - reference| <= tolerance * max(1, max |reference|)`: relative to the
    /// tensor's scale rather than each element's, for a kernel whose rounding error follows
    /// the magnitude of the terms it sums (Winograd's F(4x4, 3x3) rounds each output to about
    /// 1e-6 of its layer's largest, so an output that cancels to near zero carries an
    /// absolute error its own size cannot bound).
    pub fn assert_close_to_scale(ours: &[f32], reference: &[f32], tolerance: f32, what: &str) {
        assert_eq!(ours.len(), reference.len(), "{what}: lengths");
        let scale = reference.iter().fold(1.0f32, |scale, value| scale.max(value.abs()));
        for (k, (a, b)) in ours.iter().zip(reference).enumerate() {
            assert!(
                (a - b).abs() <= tolerance * scale,
                "{what}[{k}]: fused {a}, reference {b}, scale {scale}"
            );
        }
    }

    /// `||ours - reference||₂ <= tolerance * ||reference||₂`: the norm-wise relative error by
    /// which oneDNN's benchdnn judges its Winograd convolutions (at 2e-5), since a few outputs
    /// that cancel to near zero carry a large error of their own size and say nothing of the
    /// algorithm.
    pub fn assert_relative_l2(ours: &[f32], reference: &[f32], tolerance: f64, what: &str) {
        assert_eq!(ours.len(), reference.len(), "{what}: lengths");
        fn l2(values: impl Iterator<Item = f32>) -> f64 {
            values.map(|v| f64::from(v).powi(2)).sum::<f64>().sqrt()
        }
        let error = l2(ours.iter().zip(reference).map(|(a, b)| a - b));
        let norm = l2(reference.iter().copied());
        assert!(
            error <= tolerance * norm,
            "{what}: relative L2 error {:.2e} over {tolerance:.0e}",
            error / norm
        );
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
