//! Builds burn's optimisers from `[train]`.

use burn::grad_clipping::GradientClippingConfig;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, ModuleOptimizer, SgdConfig};

use crate::base::config::{OptimizerKind, TrainConfig};

pub fn build(config: &TrainConfig) -> ModuleOptimizer {
    let clipping = (config.clip_grad_norm > 0.0)
        .then_some(GradientClippingConfig::Norm(config.clip_grad_norm as f32));
    // Adam's and SGD's weight decay is the L2 penalty added to the gradient (as in
    // PyTorch's `weight_decay`, and the GCN/GAT papers); AdamW's is decoupled.
    let l2 =
        (config.weight_decay > 0.0).then(|| WeightDecayConfig::new(config.weight_decay as f32));
    match config.optimizer {
        OptimizerKind::Adam => AdamConfig::new()
            .with_beta_1(config.beta1 as f32)
            .with_beta_2(config.beta2 as f32)
            .with_epsilon(config.eps as f32)
            .with_weight_decay(l2)
            .with_grad_clipping(clipping)
            .init(),
        OptimizerKind::Adamw => AdamWConfig::new()
            .with_beta_1(config.beta1 as f32)
            .with_beta_2(config.beta2 as f32)
            .with_epsilon(config.eps as f32)
            .with_weight_decay(config.weight_decay as f32)
            .with_grad_clipping(clipping)
            .init(),
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
