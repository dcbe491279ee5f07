//! Small tensor helpers every family uses: host copies, index tensors, cross-entropy.

use anyhow::{Result, anyhow};
use burn::module::{Module, Param};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

/// A float tensor's values on the host, row-major.
pub fn to_host<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>> {
    tensor
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|err| anyhow!("reading a tensor back from the device: {err:?}"))
}

/// A 1-D index tensor.
pub fn index_tensor(values: impl IntoIterator<Item = i64>, device: &Device) -> Tensor<1, Int> {
    let values: Vec<i64> = values.into_iter().collect();
    let len = values.len();
    Tensor::from_data(TensorData::new(values, [len]), device)
}

/// Class labels as the `[n, 1]` index column that `gather` takes.
pub fn label_column(labels: impl IntoIterator<Item = u32>, device: &Device) -> Tensor<2, Int> {
    let values: Vec<i64> = labels.into_iter().map(i64::from).collect();
    let len = values.len();
    Tensor::from_data(TensorData::new(values, [len, 1]), device)
}

/// Mean cross-entropy of `[n, classes]` logits against `[n, 1]` class indices.
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<2, Int>) -> Tensor<1> {
    smoothed_cross_entropy(logits, labels, 0.0)
}

/// Cross-entropy against targets that give the true class `1 - smoothing` plus an equal
/// share of `smoothing` to every class (PyTorch's `label_smoothing`, Szegedy et al. 2016):
/// `(1 - s) * CE + s * mean over classes of -log p`.
pub fn smoothed_cross_entropy(
    logits: Tensor<2>,
    labels: Tensor<2, Int>,
    smoothing: f64,
) -> Tensor<1> {
    let log_probs = log_softmax(logits, 1);
    let true_class = log_probs.clone().gather(1, labels).mean().neg();
    if smoothing == 0.0 {
        return true_class;
    }
    // The mean over all n x classes entries is the mean over examples of the class mean.
    let uniform = log_probs.mean().neg();
    true_class.mul_scalar(1.0 - smoothing) + uniform.mul_scalar(smoothing)
}

/// A copy of loaded (pretrained) weights on `device`, the start of every init of a run.
/// Loaded tensors arrive without gradient tracking; on a training device it is restored.
pub fn fork_pretrained<M: Module>(start: &M, device: &Device) -> M {
    let forked = start.clone().fork(device);
    if device.is_autodiff() { forked.set_require_grad(true).train() } else { forked }
}

pub fn zeros_param<const D: usize>(shape: [usize; D], device: &Device) -> Param<Tensor<D>> {
    Param::from_tensor(Tensor::zeros(shape, device))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_entropy_by_hand() {
        let device = Device::flex();
        let logits =
            Tensor::<2>::from_data(TensorData::new(vec![0.0f32, 0.0, 2.0, 0.0], [2, 2]), &device);
        let loss = cross_entropy(logits, label_column([1, 0], &device)).into_scalar::<f32>() as f64;
        // -(ln 0.5 + ln(e^2 / (e^2 + 1))) / 2
        let expected = -(0.5f64.ln() + (2f64.exp() / (2f64.exp() + 1.0)).ln()) / 2.0;
        assert!((loss - expected).abs() < 1e-6, "{loss} vs {expected}");
    }

    #[test]
    fn smoothed_cross_entropy_by_hand() {
        // One example, logits (2, 0, 0), label 0, smoothing 0.3: target (0.8, 0.1, 0.1).
        let device = Device::flex();
        let logits =
            Tensor::<2>::from_data(TensorData::new(vec![2.0f32, 0.0, 0.0], [1, 3]), &device);
        let loss = smoothed_cross_entropy(logits, label_column([0], &device), 0.3)
            .into_scalar::<f32>() as f64;
        let total = 2f64.exp() + 2.0;
        let log_p = [(2f64.exp() / total).ln(), (1.0 / total).ln(), (1.0 / total).ln()];
        let expected = -(0.8 * log_p[0] + 0.1 * log_p[1] + 0.1 * log_p[2]);
        assert!((loss - expected).abs() < 1e-6, "{loss} vs {expected}");
    }
}
