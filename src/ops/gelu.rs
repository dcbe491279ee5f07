//! The exact GELU, `x Φ(x)` (Hendrycks and Gimpel, 2016), BERT's feed-forward activation.
//!
//! burn-flex composes it from five element-wise passes with a libm `erf` per element, and
//! autodiff keeps their intermediates; here the forward is one vectorised pass (in place when
//! the input is not shared) and the backward one more, from the saved input.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::activation::{gelu_backward_in_place, gelu_into};
use super::{flex_tensor, fused_f32, host_floats};

/// Elements per task: large enough that a task outweighs rayon's overhead.
const CHUNK: usize = 1 << 14;

/// `x Φ(x)` element-wise: Burn's `activation::gelu`, through the fused kernel on burn-flex.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if fused_f32(&x) {
        Tensor::from_dispatch(Dispatch::gelu_exact(x.into_dispatch()))
    } else {
        burn::tensor::activation::gelu(x)
    }
}

#[backend_extension(Flex, Autodiff)]
pub trait FusedGeluOps: Backend {
    fn gelu_exact(x: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl FusedGeluOps for Flex {
    fn gelu_exact(mut x: FlexTensor) -> FlexTensor {
        let in_place = x.layout().contiguous_offsets() == Some((0, x.layout().num_elements()));
        if in_place && let Some(values) = x.try_storage_mut::<f32>() {
            values.par_chunks_mut(CHUNK).for_each(|chunk| {
                let input = chunk.to_vec();
                gelu_into(&input, chunk);
            });
            return x;
        }
        gelu_new(&x)
    }
}

/// The GELU of `x` in a new tensor.
fn gelu_new(x: &FlexTensor) -> FlexTensor {
    let input = host_floats(x);
    let mut out = vec![0.0f32; input.len()];
    out.par_chunks_mut(CHUNK)
        .zip(input.par_chunks(CHUNK))
        .for_each(|(out, input)| gelu_into(input, out));
    flex_tensor(out, x.layout().shape().clone())
}

impl<C: CheckpointStrategy> FusedGeluOps for Autodiff<Flex, C> {
    fn gelu_exact(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let out = gelu_new(x.primitive());
        match GeluBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(x.primitive().clone(), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }
}

#[derive(Debug)]
struct GeluBackward;

impl Backward<Flex, 1> for GeluBackward {
    /// The input.
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let x = ops.state;
        let grad = grads.consume::<Flex>(&ops.node);
        if let [Some(node)] = ops.parents {
            let input = host_floats(&x);
            let mut d_x = host_floats(&grad).into_owned();
            d_x.par_chunks_mut(CHUNK)
                .zip(input.par_chunks(CHUNK))
                .for_each(|(d_x, input)| gelu_backward_in_place(input, d_x));
            grads.register::<Flex>(node.id, flex_tensor(d_x, x.layout().shape().clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use super::*;
    use crate::ops::test_support::{assert_close, spread, values};

    fn input(device: &Device) -> Tensor<3> {
        spread([3, 70, 41], 1, device) * 3.0
    }

    #[test]
    fn forward_and_gradient_match_burns_gelu() {
        let device = Device::flex().autodiff();
        let x = input(&device).require_grad();
        let weights = input(&device) * 0.5 + 1.0;
        let fused = gelu(x.clone());
        let grads = (fused.clone() * weights.clone()).sum().backward();
        let reference = burn::tensor::activation::gelu(x.clone());
        let reference_grads = (reference.clone() * weights).sum().backward();
        assert_close(&values(fused), &values(reference), 1e-5, "forward");
        assert_close(
            &values(x.grad(&grads).unwrap()),
            &values(x.grad(&reference_grads).unwrap()),
            1e-5,
            "gradient",
        );
    }

    #[test]
    fn gradient_matches_central_differences() {
        let device = Device::flex().autodiff();
        let points = [-4.0f32, -1.3, -0.2, 0.0, 0.4, 1.7, 5.0];
        let x = Tensor::<1>::from_floats(points, &device).require_grad();
        let grads = gelu(x.clone()).sum().backward();
        let slope = values(x.grad(&grads).unwrap());
        let value = |x: f64| {
            let at = Tensor::<1>::from_floats([x as f32], &Device::flex());
            values(gelu(at))[0] as f64
        };
        for (x, slope) in points.iter().zip(slope) {
            let h = 1e-2;
            let numeric = (value(*x as f64 + h) - value(*x as f64 - h)) / (2.0 * h);
            assert!((slope as f64 - numeric).abs() < 1e-3, "x {x}: {slope} vs {numeric}");
        }
    }

    #[test]
    fn a_shared_input_is_left_alone_and_views_are_read_in_order() {
        let device = Device::flex();
        let x = input(&device);
        let kept = x.clone();
        let transposed = x.clone().swap_dims(1, 2);
        assert_close(
            &values(gelu(x)),
            &values(burn::tensor::activation::gelu(kept.clone())),
            1e-5,
            "in place",
        );
        assert_close(
            &values(gelu(transposed.clone())),
            &values(burn::tensor::activation::gelu(transposed)),
            1e-5,
            "transposed view",
        );
        assert_eq!(values(kept.clone()), values(input(&device)), "the shared input changed");
    }
}
