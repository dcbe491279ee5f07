//! Builds the optimisers of `[train]`: Burn's SGD, and Burn's Adam and AdamW with the
//! update of each parameter as one fused pass on burn-flex ([`crate::ops::adam`]). The
//! optimiser states are Burn's own, so checkpoints are the same either way.

use burn::grad_clipping::GradientClippingConfig;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{
    Adam, AdamConfig, AdamState, AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState,
    LearningRate, ModuleOptimizer, Optimizer, SgdConfig,
};
use burn::tensor::{Device, Tensor};

use crate::base::config::{OptimizerKind, TrainConfig};
use crate::ops::adam::{AdamStep, adam_step, applies};

pub fn build(config: &TrainConfig) -> ModuleOptimizer {
    let clipping = (config.clip_grad_norm > 0.0)
        .then_some(GradientClippingConfig::Norm(config.clip_grad_norm as f32));
    // Adam's and SGD's weight decay is the L2 penalty added to the gradient (as in
    // PyTorch's `weight_decay`, and the GCN/GAT papers); AdamW's is decoupled.
    let l2 =
        (config.weight_decay > 0.0).then(|| WeightDecayConfig::new(config.weight_decay as f32));
    let moments = Moments {
        beta_1: config.beta1 as f32,
        beta_2: config.beta2 as f32,
        epsilon: config.eps as f32,
        decay: config.weight_decay as f32,
    };
    let with_clipping = |optimizer: ModuleOptimizer| match &clipping {
        Some(clipping) => optimizer.with_grad_clipping(clipping.init()),
        None => optimizer,
    };
    match config.optimizer {
        OptimizerKind::Adam => with_clipping(
            Fused {
                burn: AdamConfig::new()
                    .with_beta_1(moments.beta_1)
                    .with_beta_2(moments.beta_2)
                    .with_epsilon(moments.epsilon)
                    .with_weight_decay(l2)
                    .build(),
                moments,
            }
            .into(),
        ),
        OptimizerKind::Adamw => with_clipping(
            Fused {
                burn: AdamWConfig::new()
                    .with_beta_1(moments.beta_1)
                    .with_beta_2(moments.beta_2)
                    .with_epsilon(moments.epsilon)
                    .with_weight_decay(moments.decay)
                    .build(),
                moments,
            }
            .into(),
        ),
        OptimizerKind::Sgd => SgdConfig::new()
            .with_weight_decay(l2)
            .with_momentum(
                (config.momentum > 0.0)
                    .then(|| MomentumConfig::new().with_momentum(config.momentum)),
            )
            .with_gradient_clipping(clipping)
            .init(),
    }
}

/// The hyper-parameters both Adams share; `decay` is Adam's L2 penalty or AdamW's decoupled
/// decay.
#[derive(Debug, Clone, Copy)]
struct Moments {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    decay: f32,
}

/// Burn's Adam (L2 decay added to the gradient) or AdamW (decoupled decay), with its update
/// fused where [`applies`] holds and Burn's own everywhere else, keeping Burn's state type.
#[derive(Clone)]
struct Fused<O> {
    burn: O,
    moments: Moments,
}

/// What tells Burn's Adam and AdamW apart for [`Fused`]: their state and their step.
trait AdamKind: Optimizer {
    fn momentum<const D: usize>(state: Self::State<D>) -> AdaptiveMomentumState<D>;
    fn with_momentum<const D: usize>(momentum: AdaptiveMomentumState<D>) -> Self::State<D>;
    fn step_at(lr: LearningRate, moments: Moments, time: usize) -> AdamStep;
}

impl AdamKind for Adam {
    fn momentum<const D: usize>(state: AdamState<D>) -> AdaptiveMomentumState<D> {
        state.momentum
    }
    fn with_momentum<const D: usize>(momentum: AdaptiveMomentumState<D>) -> AdamState<D> {
        AdamState::new(momentum)
    }
    fn step_at(lr: LearningRate, m: Moments, time: usize) -> AdamStep {
        AdamStep::adam(lr, m.beta_1, m.beta_2, m.epsilon, m.decay, time)
    }
}

impl AdamKind for AdamW {
    fn momentum<const D: usize>(state: AdamWState<D>) -> AdaptiveMomentumState<D> {
        state.momentum
    }
    fn with_momentum<const D: usize>(momentum: AdaptiveMomentumState<D>) -> AdamWState<D> {
        AdamWState::new(momentum)
    }
    fn step_at(lr: LearningRate, m: Moments, time: usize) -> AdamStep {
        AdamStep::adam_w(lr, m.beta_1, m.beta_2, m.epsilon, m.decay, time)
    }
}

impl<O: AdamKind> Optimizer for Fused<O> {
    type State<const D: usize> = O::State<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        if !applies(&tensor) {
            return self.burn.step(lr, tensor, grad, state);
        }
        let momentum = state.map(O::momentum);
        let time = momentum.as_ref().map_or(0, |momentum| momentum.time) + 1;
        let moments = momentum.map(|momentum| (momentum.moment_1, momentum.moment_2));
        let step = O::step_at(lr, self.moments, time);
        let (tensor, moment_1, moment_2) = adam_step(tensor, grad, moments, step);
        let momentum = AdaptiveMomentumState::new(time, moment_1, moment_2);
        (tensor, Some(O::with_momentum(momentum)))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        O::to_device(state, device)
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::GradientsParams;
    use burn::tensor::TensorData;

    use super::*;

    fn start(device: &Device) -> (Linear, Tensor<2>) {
        let mut layer = LinearConfig::new(5, 3).init(device);
        let values = |n: usize, at: f32| (0..n).map(|i| ((i as f32 + at) * 0.77).sin()).collect();
        layer.weight = layer.weight.map(|_| {
            Tensor::from_data(TensorData::new(values(15, 0.0), [5, 3]), device).require_grad()
        });
        layer.bias = layer.bias.map(|bias| {
            bias.map(|_| {
                Tensor::from_data(TensorData::new(values(3, 9.0), [3]), device).require_grad()
            })
        });
        (layer, Tensor::from_data(TensorData::new(values(20, 3.0), [4, 5]), device))
    }

    /// The parameters after `steps` steps of `optimizer` on a quadratic loss.
    fn train(mut optimizer: ModuleOptimizer, steps: usize) -> Vec<f32> {
        let device = Device::flex().autodiff();
        let (mut layer, x) = start(&device);
        for _ in 0..steps {
            let loss = layer.forward(x.clone()).powi_scalar(2).sum();
            let grads = GradientsParams::from_grads(loss.backward(), &layer);
            layer = optimizer.step(0.05, layer, grads);
        }
        let mut values = layer.weight.val().into_data().try_to_vec::<f32>().unwrap();
        values.extend(layer.bias.unwrap().val().into_data().try_to_vec::<f32>().unwrap());
        values
    }

    #[test]
    fn fused_adam_and_adamw_follow_burns() {
        for (kind, burn) in [
            (
                OptimizerKind::Adam,
                AdamConfig::new()
                    .with_weight_decay(Some(WeightDecayConfig::new(0.1)))
                    .with_epsilon(1e-8)
                    .init(),
            ),
            (
                OptimizerKind::Adamw,
                AdamWConfig::new().with_weight_decay(0.1).with_epsilon(1e-8).init(),
            ),
        ] {
            let config = TrainConfig {
                optimizer: kind,
                weight_decay: 0.1,
                eps: 1e-8,
                beta1: 0.9,
                beta2: 0.999,
                ..TrainConfig::default()
            };
            let (fused, reference) = (train(build(&config), 7), train(burn, 7));
            let initial = train(build(&config), 0);
            for (k, (ours, theirs)) in fused.iter().zip(&reference).enumerate() {
                assert!(
                    (ours - theirs).abs() < 1e-6,
                    "{kind:?} [{k}]: fused {ours}, Burn {theirs}"
                );
            }
            // And the steps moved the parameters: a no-op optimiser would pass the above.
            let moved = fused.iter().zip(&initial).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(moved > 0.1, "{kind:?}: parameters moved by at most {moved}");
        }
    }
}
