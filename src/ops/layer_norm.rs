//! Layer normalisation of a residual sum (Ba, Kiros and Hinton, 2016), `norm(x + residual)`
//! over the last dimension: BERT's "add & norm".
//!
//! Under autodiff Burn composes layer norm from nine tensor ops (two means, a difference, a
//! square, a square root, a division, a scale and a shift), each kept for the backward, after
//! a separate addition. Here one pass per row adds, normalises and keeps the normalised row
//! and its inverse deviation; the backward is one pass per row for the input gradient, with
//! the scale and shift gradients summed per task.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::nn::LayerNorm;
use burn::tensor::Tensor;

use super::{flex_tensor, fused_f32, host_floats};

/// `norm.forward(x + residual)`: the fused kernel on burn-flex for a norm with a shift,
/// Burn's ops everywhere else. `epsilon` is the one `norm` was configured with (burn-nn
/// keeps it private).
pub fn add_layer_norm<const D: usize>(
    norm: &LayerNorm,
    epsilon: f64,
    x: Tensor<D>,
    residual: Tensor<D>,
) -> Tensor<D> {
    let Some(beta) = norm.beta.as_ref().filter(|_| fused_f32(&x)) else {
        return norm.forward(x + residual);
    };
    let dims = x.dims();
    let width = dims[D - 1];
    let rows = dims[..D - 1].iter().product::<usize>();
    let out = Dispatch::add_layer_norm(
        x.reshape([rows, width]).into_dispatch(),
        residual.reshape([rows, width]).into_dispatch(),
        norm.gamma.val().into_dispatch(),
        beta.val().into_dispatch(),
        epsilon,
    );
    Tensor::<2>::from_dispatch(out).reshape(dims)
}

#[backend_extension(Flex, Autodiff)]
pub trait FusedLayerNormOps: Backend {
    /// `γ ⊙ normalise(x + residual) + β` row by row, for `[rows, width]` inputs.
    fn add_layer_norm(
        x: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self>;
}

impl FusedLayerNormOps for Flex {
    fn add_layer_norm(
        x: FlexTensor,
        residual: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
    ) -> FlexTensor {
        let dims = [x.layout().shape()[0], x.layout().shape()[1]];
        let inputs = [&x, &residual, &gamma, &beta].map(host_floats);
        let out = kernel::forward(&inputs, dims[1], epsilon as f32, None);
        flex_tensor(out, dims)
    }
}

impl<C: CheckpointStrategy> FusedLayerNormOps for Autodiff<Flex, C> {
    fn add_layer_norm(
        x: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        let dims = [x.primitive().layout().shape()[0], x.primitive().layout().shape()[1]];
        let inputs = [x.primitive(), residual.primitive(), gamma.primitive(), beta.primitive()]
            .map(host_floats);
        let nodes = [x.node(), residual.node(), gamma.node(), beta.node()];
        match NormBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let mut saved = kernel::Saved::default();
                let out = kernel::forward(&inputs, dims[1], epsilon as f32, Some(&mut saved));
                let state = (dims, Arc::new(saved), gamma.primitive().clone());
                prep.finish(state, flex_tensor(out, dims))
            }
            OpsKind::UnTracked(prep) => prep
                .finish(flex_tensor(kernel::forward(&inputs, dims[1], epsilon as f32, None), dims)),
        }
    }
}

#[derive(Debug)]
struct NormBackward;

impl Backward<Flex, 4> for NormBackward {
    /// `[rows, width]`, the normalised rows and inverse deviations, and `γ`.
    type State = ([usize; 2], Arc<kernel::Saved>, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (dims, saved, gamma) = ops.state;
        let grad = grads.consume::<Flex>(&ops.node);
        let [x_node, residual_node, gamma_node, beta_node] = ops.parents;
        let (d_input, d_gamma, d_beta) =
            kernel::backward(&host_floats(&grad), &host_floats(&gamma), &saved, dims[1]);
        // The sum's gradient goes to both of its terms.
        let d_input = flex_tensor(d_input, dims);
        for node in [x_node, residual_node].into_iter().flatten() {
            grads.register::<Flex>(node.id, d_input.clone());
        }
        if let Some(node) = gamma_node {
            grads.register::<Flex>(node.id, flex_tensor(d_gamma, [dims[1]]));
        }
        if let Some(node) = beta_node {
            grads.register::<Flex>(node.id, flex_tensor(d_beta, [dims[1]]));
        }
    }
}

mod kernel {
    use rayon::prelude::*;

    /// Rows per task: a few hundred rows of a few hundred values outweigh rayon's overhead.
    const ROWS_PER_TASK: usize = 64;

    /// What the backward reads: each row normalised (before scale and shift), and each
    /// row's `1 / sqrt(variance + ε)`.
    #[derive(Debug, Default)]
    pub struct Saved {
        normalised: Vec<f32>,
        inverse_deviation: Vec<f32>,
    }

    /// `[x, residual, γ, β]` to the normalised, scaled and shifted rows.
    pub fn forward(
        [x, residual, gamma, beta]: &[std::borrow::Cow<[f32]>; 4],
        width: usize,
        epsilon: f32,
        saved: Option<&mut Saved>,
    ) -> Vec<f32> {
        let width = width.max(1);
        let rows = x.len() / width;
        let mut out = vec![0.0f32; x.len()];
        let mut inverse_deviation = vec![0.0f32; rows];
        let chunk = ROWS_PER_TASK * width;
        out.par_chunks_mut(chunk)
            .zip(inverse_deviation.par_chunks_mut(ROWS_PER_TASK))
            .enumerate()
            .for_each(|(task, (out, deviations))| {
                let first = task * chunk;
                for (row, (out, deviation)) in out.chunks_mut(width).zip(deviations).enumerate() {
                    let start = first + row * width;
                    let (x, residual) = (&x[start..start + width], &residual[start..start + width]);
                    for ((out, x), r) in out.iter_mut().zip(x).zip(residual) {
                        *out = x + r;
                    }
                    *deviation = normalise_row(out, epsilon);
                }
            });
        if let Some(saved) = saved {
            *saved = Saved { normalised: out.clone(), inverse_deviation };
        }
        out.par_chunks_mut(chunk).for_each(|out| {
            for row in out.chunks_mut(width) {
                for ((value, g), b) in row.iter_mut().zip(gamma.iter()).zip(beta.iter()) {
                    *value = *value * g + b;
                }
            }
        });
        out
    }

    /// Normalises `row` in place (mean 0, variance 1 with `epsilon` added, two passes for
    /// accuracy) and returns `1 / sqrt(variance + epsilon)`.
    fn normalise_row(row: &mut [f32], epsilon: f32) -> f32 {
        let n = row.len() as f32;
        let mean = lane_sum(row.iter().copied()) / n;
        row.iter_mut().for_each(|v| *v -= mean);
        let variance = lane_sum(row.iter().map(|v| v * v)) / n;
        let inverse = 1.0 / (variance + epsilon).sqrt();
        row.iter_mut().for_each(|v| *v *= inverse);
        inverse
    }

    /// A sum kept in 16 partial sums, so that it vectorises.
    fn lane_sum(values: impl Iterator<Item = f32>) -> f32 {
        let mut lanes = [0.0f32; 16];
        for (k, v) in values.enumerate() {
            lanes[k % 16] += v;
        }
        lanes.iter().sum()
    }

    /// `(d_input, d_γ, d_β)` from the output gradient:
    /// `d_input = σ⁻¹ (g γ - mean(g γ) - x̂ mean(g γ ⊙ x̂))` per row, `d_γ = Σ g ⊙ x̂`,
    /// `d_β = Σ g`.
    pub fn backward(
        grad: &[f32],
        gamma: &[f32],
        saved: &Saved,
        width: usize,
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let width = width.max(1);
        let n = width as f32;
        let mut d_input = vec![0.0f32; grad.len()];
        let chunk = ROWS_PER_TASK * width;
        let (d_gamma, d_beta) = d_input
            .par_chunks_mut(chunk)
            .zip(grad.par_chunks(chunk))
            .zip(saved.normalised.par_chunks(chunk))
            .zip(saved.inverse_deviation.par_chunks(ROWS_PER_TASK))
            .map(|(((d_input, grad), normalised), deviations)| {
                let (mut d_gamma, mut d_beta) = (vec![0.0f32; width], vec![0.0f32; width]);
                let rows =
                    d_input.chunks_mut(width).zip(grad.chunks(width)).zip(normalised.chunks(width));
                for (((d_row, g_row), x_hat), &inverse) in rows.zip(deviations) {
                    let sums = d_gamma.iter_mut().zip(d_beta.iter_mut());
                    for ((((d, g), x), gm), (dg, db)) in
                        d_row.iter_mut().zip(g_row).zip(x_hat).zip(gamma).zip(sums)
                    {
                        *dg += g * x;
                        *db += g;
                        *d = g * gm;
                    }
                    let mean = lane_sum(d_row.iter().copied()) / n;
                    let mean_along = lane_sum(d_row.iter().zip(x_hat).map(|(d, x)| d * x)) / n;
                    for (d, x) in d_row.iter_mut().zip(x_hat) {
                        *d = inverse * (*d - mean - x * mean_along);
                    }
                }
                (d_gamma, d_beta)
            })
            .reduce(
                || (vec![0.0f32; width], vec![0.0f32; width]),
                |(mut g, mut b), (g2, b2)| {
                    g.iter_mut().zip(&g2).for_each(|(a, c)| *a += c);
                    b.iter_mut().zip(&b2).for_each(|(a, c)| *a += c);
                    (g, b)
                },
            );
        (d_input, d_gamma, d_beta)
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::LayerNormConfig;
    use burn::tensor::{Device, TensorData};

    use super::*;
    use crate::ops::test_support::{assert_close, spread, values};

    /// BERT's.
    const EPSILON: f64 = 1e-12;

    fn norm(device: &Device) -> LayerNorm {
        let mut norm = LayerNormConfig::new(24).with_epsilon(EPSILON).init(device);
        let tracked = device.is_autodiff();
        norm.gamma =
            norm.gamma.map(|_| (spread([24], 1, device) * 0.5 + 1.0).set_require_grad(tracked));
        norm.beta = norm.beta.map(|b| b.map(|_| spread([24], 2, device).set_require_grad(tracked)));
        norm
    }

    #[test]
    fn forward_and_gradients_match_burns_layer_norm() {
        let device = Device::flex().autodiff();
        let norm = norm(&device);
        let x = spread([3, 5, 24], 3, &device).require_grad();
        let residual = (spread([3, 5, 24], 4, &device) * 3.0 + 1.0).require_grad();
        let weights = spread([3, 5, 24], 5, &device);
        let fused = add_layer_norm(&norm, EPSILON, x.clone(), residual.clone());
        let grads = (fused.clone() * weights.clone()).sum().backward();
        let reference = norm.forward(x.clone() + residual.clone());
        let reference_grads = (reference.clone() * weights).sum().backward();
        assert_close(&values(fused), &values(reference), 1e-5, "forward");
        let grad_of = |grads: &_| {
            [
                values(x.grad(grads).unwrap()),
                values(residual.grad(grads).unwrap()),
                values(norm.gamma.val().grad(grads).unwrap()),
                values(norm.beta.as_ref().unwrap().val().grad(grads).unwrap()),
            ]
        };
        for (name, (ours, theirs)) in ["d_x", "d_residual", "d_gamma", "d_beta"]
            .iter()
            .zip(grad_of(&grads).iter().zip(&grad_of(&reference_grads)))
        {
            assert_close(ours, theirs, 1e-4, name);
        }
    }

    #[test]
    fn gradient_matches_central_differences() {
        let device = Device::flex().autodiff();
        let norm = norm(&device);
        let x = spread([4, 24], 6, &device);
        let residual = spread([4, 24], 7, &device);
        let weights = spread([4, 24], 8, &device);
        let tracked = x.clone().require_grad();
        let grads = (add_layer_norm(&norm, EPSILON, tracked.clone(), residual.clone())
            * weights.clone())
        .sum()
        .backward();
        let analytic = values(tracked.grad(&grads).unwrap());
        let h = 1e-2f32;
        for probe in [0, 30, 95] {
            let nudged = |delta: f32| {
                let mut flat = values(x.clone());
                flat[probe] += delta;
                let x = Tensor::<2>::from_data(TensorData::new(flat, [4, 24]), &device);
                values(
                    (add_layer_norm(&norm, EPSILON, x, residual.clone()) * weights.clone()).sum(),
                )[0]
            };
            let numeric = (nudged(h) - nudged(-h)) / (2.0 * h);
            let ours = analytic[probe];
            assert!(
                (ours - numeric).abs() < 2e-3 * (1.0 + numeric.abs()),
                "x[{probe}]: {ours} vs {numeric}"
            );
        }
    }

    #[test]
    fn inference_matches_burns_layer_norm() {
        let device = Device::flex();
        let norm = norm(&device);
        let x = spread([130, 24], 9, &device) * 10.0;
        let residual = spread([130, 24], 10, &device);
        assert_close(
            &values(add_layer_norm(&norm, EPSILON, x.clone(), residual.clone())),
            &values(norm.forward(x + residual)),
            1e-5,
            "inference",
        );
    }
}
