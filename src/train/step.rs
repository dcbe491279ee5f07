//! One optimiser step: what `fit` does per batch and what `shopnet bench` times; and its
//! data-parallel form over several devices.

use anyhow::Result;
use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};

/// Reads the scalar `loss` back (which waits for the device), backpropagates it and lets
/// `optimizer` update `model` at rate `lr`. Returns the updated model and the loss value.
pub fn optimizer_step<M: Module>(
    model: M,
    loss: Tensor<1>,
    optimizer: &mut ModuleOptimizer,
    lr: f64,
) -> (M, f64) {
    let value = f64::from(loss.clone().into_scalar::<f32>());
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    (optimizer.step(lr, model, grads), value)
}

/// The gradient of a batch split across devices, on `main`: each part's mean loss, scaled
/// by its share of the batch's examples, is backpropagated through the model's copy on
/// its device, and the gradients are summed on the main device. That is the gradient of
/// the whole batch's mean loss, as one device computes it (up to float rounding and
/// per-device batch-norm statistics). `loss_of(replica, part)` builds a part's loss on the
/// replica's device. Returns the gradient and the batch's loss value.
pub fn data_parallel_gradients<M: Module + Clone, P>(
    model: &M,
    main: &Device,
    parts: Vec<(Device, P, f64)>,
    mut loss_of: impl FnMut(&M, &P) -> Result<Tensor<1>>,
) -> Result<(GradientsParams, f64)> {
    // Every part's work is queued before anything is read back, so that devices whose work
    // runs asynchronously (GPUs) compute their parts at the same time.
    let mut queued = Vec::with_capacity(parts.len());
    for (device, part, share) in parts {
        let replica = model.clone().fork(&device);
        let loss = loss_of(&replica, &part)?.mul_scalar(share);
        let grads = GradientsParams::from_grads(loss.clone().backward(), &replica);
        queued.push((loss, grads));
    }
    let mut accumulator = GradientsAccumulator::new();
    let mut value = 0.0;
    for (loss, grads) in queued {
        accumulator.accumulate(model, grads.to_device(main, model));
        value += f64::from(loss.into_scalar::<f32>());
    }
    Ok((accumulator.grads(), value))
}

/// `batch` cut into at most `parts` contiguous parts, each with its share of the examples.
pub fn split_examples<T: Clone>(batch: &[T], parts: usize) -> Vec<(Vec<T>, f64)> {
    let size = batch.len().div_ceil(parts.max(1)).max(1);
    batch.chunks(size).map(|c| (c.to_vec(), c.len() as f64 / batch.len() as f64)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_batch_and_shares_sum_to_one() {
        let parts = split_examples(&[1, 2, 3, 4, 5], 2);
        assert_eq!(parts, vec![(vec![1, 2, 3], 0.6), (vec![4, 5], 0.4)]);
        assert_eq!(split_examples(&[7], 3), vec![(vec![7], 1.0)]);
    }
}
