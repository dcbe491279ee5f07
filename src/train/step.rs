//! One optimiser step: what `fit` does per batch and what `shopnet bench` times.

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;

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
