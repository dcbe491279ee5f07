//! One Adam or AdamW update of a parameter (Kingma and Ba, 2015; Loshchilov and Hutter,
//! 2019) as a single pass over the parameter, its gradient and both moments.
//!
//! Burn's optimisers run the update as about a dozen tensor ops per parameter, each writing
//! a new tensor (a fifth of a CNN+LSTM training epoch here). Here each element is read and
//! written once, in place when the tensors are not shared, and the arithmetic is Burn's
//! (the same bias corrections and the same place for epsilon), so a run follows the same
//! path with either implementation.

use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, backend_extension};
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::{fused_f32, host_floats, writable};

/// The constants of one step, for every element of one parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamStep {
    pub beta_1: f32,
    pub beta_2: f32,
    /// Added to `g` as `l2 · p` before the moments (Adam's coupled weight decay).
    pub l2: f32,
    /// `p <- decay · p - step_size · m / (√v · v_scale + denominator_epsilon)`.
    pub decay: f32,
    pub step_size: f32,
    pub v_scale: f32,
    pub denominator_epsilon: f32,
}

impl AdamStep {
    /// Burn's `Adam` at step `time` (from 1): `p -= lr · m c / (√v + ε √(1 - β₂ᵗ))`, with
    /// `c = √(1 - β₂ᵗ) / (1 - β₁ᵗ)`.
    pub fn adam(lr: f64, beta_1: f32, beta_2: f32, epsilon: f32, l2: f32, time: usize) -> Self {
        let time = time as i32;
        let correction_2 = (1.0 - beta_2.powi(time)).sqrt();
        let combined = correction_2 / (1.0 - beta_1.powi(time));
        Self {
            beta_1,
            beta_2,
            l2,
            decay: 1.0,
            step_size: (lr * combined as f64) as f32,
            v_scale: 1.0,
            denominator_epsilon: epsilon * correction_2,
        }
    }

    /// Burn's `AdamW` at step `time` (from 1): `p <- p (1 - lr λ) - lr m̂ / (√v̂ + ε)`.
    pub fn adam_w(
        lr: f64,
        beta_1: f32,
        beta_2: f32,
        epsilon: f32,
        decay: f32,
        time: usize,
    ) -> Self {
        let time = time as i32;
        Self {
            beta_1,
            beta_2,
            l2: 0.0,
            decay: (1.0 - lr * decay as f64) as f32,
            step_size: (lr / (1.0 - beta_1.powi(time)) as f64) as f32,
            v_scale: 1.0 / (1.0 - beta_2.powi(time)).sqrt(),
            denominator_epsilon: epsilon,
        }
    }
}

/// Whether [`adam_step`] applies to `param`: on burn-flex, in `f32`, with fused ops on.
/// Elsewhere the caller runs Burn's optimiser.
pub fn applies<const D: usize>(param: &Tensor<D>) -> bool {
    fused_f32(param)
}

/// `(parameter, first moment, second moment)` after one step from `grad`; moments `None`
/// before the first step. Only where [`applies`] holds.
pub fn adam_step<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    moments: Option<(Tensor<D>, Tensor<D>)>,
    step: AdamStep,
) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    let (moment_1, moment_2) = moments.unwrap_or_else(|| (param.zeros_like(), param.zeros_like()));
    let (param, moment_1, moment_2) = Dispatch::adam_update(
        param.into_dispatch(),
        grad.into_dispatch(),
        moment_1.into_dispatch(),
        moment_2.into_dispatch(),
        step,
    );
    (Tensor::from_dispatch(param), Tensor::from_dispatch(moment_1), Tensor::from_dispatch(moment_2))
}

#[backend_extension(Flex)]
pub trait FusedAdamOps: Backend {
    fn adam_update(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        step: AdamStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

impl FusedAdamOps for Flex {
    fn adam_update(
        param: FlexTensor,
        grad: FlexTensor,
        moment_1: FlexTensor,
        moment_2: FlexTensor,
        step: AdamStep,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let [mut param, mut moment_1, mut moment_2] = [param, moment_1, moment_2].map(writable);
        let grad = host_floats(&grad);
        const CHUNK: usize = 1 << 14;
        let [p, m, v] = [&mut param, &mut moment_1, &mut moment_2].map(|t| t.storage_mut::<f32>());
        p.par_chunks_mut(CHUNK)
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .zip(grad.par_chunks(CHUNK))
            .for_each(|(((p, m), v), g)| update(step, p, m, v, g));
        (param, moment_1, moment_2)
    }
}

widest_simd!(
    /// One step for a run of elements.
    pub fn update(step: AdamStep, p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32]) {
        let AdamStep { beta_1, beta_2, l2, decay, step_size, v_scale, denominator_epsilon } = step;
        for (((p, m), v), g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
            let g = g + l2 * *p;
            *m = beta_1 * *m + (1.0 - beta_1) * g;
            *v = beta_2 * *v + (1.0 - beta_2) * g * g;
            *p = decay * *p - step_size * *m / (v.sqrt() * v_scale + denominator_epsilon);
        }
    }
);
