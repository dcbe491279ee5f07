//! A dense layer, `x W + b` over the last dimension, with its bias folded into the product.
//!
//! burn-flex allocates a matrix product's output through `FlexTensor::empty`, which builds a
//! zeroed byte vector and then copies it into an aligned one (two passes over fresh pages
//! before the product writes a value), and adds the bias in a pass of its own. Here the
//! output buffer starts as the bias repeated, row by row, and the product accumulates into
//! it: one write before the GEMM. The backward is the usual three products and sums
//! (`dx = g Wᵀ`, `dW = xᵀ g`, `db = Σ_rows g`) written straight into new buffers.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::nn::Linear;
use burn::tensor::Tensor;

use super::{flex_tensor, fused_f32, host_floats};

/// `layer.forward(x)` for `x` `[..., d_in]`: the fused kernel on burn-flex for a layer with
/// a bias, Burn's `Linear::forward` everywhere else.
pub fn linear<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    let Some(bias) = layer.bias.as_ref().filter(|_| fused_f32(&x)) else {
        return layer.forward(x);
    };
    let dims = x.dims();
    let [d_in, d_out] = layer.weight.dims();
    assert_eq!(dims[D - 1], d_in, "linear layer of {d_in} inputs given {dims:?}");
    let rows = dims[..D - 1].iter().product::<usize>();
    let mut out_dims = dims;
    out_dims[D - 1] = d_out;
    dense(x.reshape([rows, d_in]), layer.weight.val(), bias.val()).reshape(out_dims)
}

/// `x W + b` for `x` `[rows, d_in]`, `W` `[d_in, d_out]` (any layout: a transposed or
/// permuted weight is fine) and `b` `[d_out]`: the fused kernel on burn-flex, Burn's
/// product and broadcast sum everywhere else.
pub fn dense(x: Tensor<2>, weight: Tensor<2>, bias: Tensor<1>) -> Tensor<2> {
    if fused_f32(&x) {
        Tensor::from_dispatch(Dispatch::dense(
            x.into_dispatch(),
            weight.into_dispatch(),
            bias.into_dispatch(),
        ))
    } else {
        x.matmul(weight) + bias.unsqueeze_dim(0)
    }
}

#[backend_extension(Flex, Autodiff)]
pub trait FusedLinearOps: Backend {
    /// `x W + b` for `x` `[rows, d_in]`, `W` `[d_in, d_out]`, `b` `[d_out]`.
    fn dense(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

impl FusedLinearOps for Flex {
    fn dense(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        let sizes = Sizes::of(&x, &weight);
        let out =
            kernel::forward(&host_floats(&x), &host_floats(&weight), &host_floats(&bias), sizes);
        flex_tensor(out, [sizes.rows, sizes.d_out])
    }
}

impl<C: CheckpointStrategy> FusedLinearOps for Autodiff<Flex, C> {
    fn dense(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let sizes = Sizes::of(x.primitive(), weight.primitive());
        let out = kernel::forward(
            &host_floats(x.primitive()),
            &host_floats(weight.primitive()),
            &host_floats(bias.primitive()),
            sizes,
        );
        let out = flex_tensor(out, [sizes.rows, sizes.d_out]);
        match DenseBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                prep.finish((sizes, x.primitive().clone(), weight.primitive().clone()), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }
}

#[derive(Debug)]
struct DenseBackward;

impl Backward<Flex, 3> for DenseBackward {
    /// The sizes, the input and the weight.
    type State = (Sizes, FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (sizes, x, weight) = ops.state;
        let grad = grads.consume::<Flex>(&ops.node);
        let grad = host_floats(&grad);
        let [x_node, weight_node, bias_node] = ops.parents;
        if let Some(node) = x_node {
            let d_x = kernel::input_grad(&grad, &host_floats(&weight), sizes);
            grads.register::<Flex>(node.id, flex_tensor(d_x, [sizes.rows, sizes.d_in]));
        }
        if let Some(node) = weight_node {
            let d_w = kernel::weight_grad(&host_floats(&x), &grad, sizes);
            grads.register::<Flex>(node.id, flex_tensor(d_w, [sizes.d_in, sizes.d_out]));
        }
        if let Some(node) = bias_node {
            grads.register::<Flex>(
                node.id,
                flex_tensor(kernel::bias_grad(&grad, sizes), [sizes.d_out]),
            );
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sizes {
    rows: usize,
    d_in: usize,
    d_out: usize,
}

impl Sizes {
    fn of(x: &FlexTensor, weight: &FlexTensor) -> Self {
        let (x, w) = (x.layout().shape(), weight.layout().shape());
        Self { rows: x[0], d_in: x[1], d_out: w[1] }
    }
}

mod kernel {
    use rayon::prelude::*;

    use super::Sizes;
    use crate::ops::matmul::{View, matmul_into};

    pub fn forward(x: &[f32], weight: &[f32], bias: &[f32], sizes: Sizes) -> Vec<f32> {
        let mut out = Vec::with_capacity(sizes.rows * sizes.d_out);
        for _ in 0..sizes.rows {
            out.extend_from_slice(bias);
        }
        matmul_into(
            &mut out,
            sizes.d_out,
            View::row_major(x, sizes.rows, sizes.d_in),
            View::row_major(weight, sizes.d_in, sizes.d_out),
            true,
        );
        out
    }

    /// `g Wᵀ`, `[rows, d_in]`.
    pub fn input_grad(grad: &[f32], weight: &[f32], sizes: Sizes) -> Vec<f32> {
        let grad = View::row_major(grad, sizes.rows, sizes.d_out);
        product(grad, View::transposed(weight, sizes.d_out, sizes.d_in))
    }

    /// `xᵀ g`, `[d_in, d_out]`.
    pub fn weight_grad(x: &[f32], grad: &[f32], sizes: Sizes) -> Vec<f32> {
        let x = View::transposed(x, sizes.d_in, sizes.rows);
        product(x, View::row_major(grad, sizes.rows, sizes.d_out))
    }

    fn column_sums(rows: &[f32], width: usize) -> Vec<f32> {
        let mut sums = vec![0.0f32; width];
        for row in rows.chunks(width) {
            sums.iter_mut().zip(row).for_each(|(sum, g)| *sum += g);
        }
        sums
    }

    /// `lhs · rhs` in a new row-major buffer.
    fn product(lhs: View, rhs: View) -> Vec<f32> {
        let mut out = vec![0.0f32; lhs.rows * rhs.cols];
        matmul_into(&mut out, rhs.cols, lhs, rhs, false);
        out
    }

    /// The column sums of `g`, `[d_out]`: partial sums over runs of rows, then their sum.
    /// A gradient under a million values is summed on the calling thread: waking the
    /// other threads costs more than they save there (the CNN + LSTM's layers).
    pub fn bias_grad(grad: &[f32], sizes: Sizes) -> Vec<f32> {
        const ROWS_PER_TASK: usize = 256;
        const PARALLEL_VALUES: usize = 1 << 20;
        let width = sizes.d_out.max(1);
        if grad.len() < PARALLEL_VALUES {
            return column_sums(grad, width);
        }
        grad.par_chunks(ROWS_PER_TASK * width).map(|rows| column_sums(rows, width)).reduce(
            || vec![0.0f32; sizes.d_out],
            |mut total, part| {
                total.iter_mut().zip(&part).for_each(|(t, p)| *t += p);
                total
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::LinearConfig;
    use burn::tensor::{Device, TensorData};

    use super::*;
    use crate::ops::test_support::{assert_close, spread, values};

    fn layer(device: &Device) -> Linear {
        let mut layer = LinearConfig::new(13, 6).init(device);
        let tracked = device.is_autodiff();
        layer.weight = layer.weight.map(|_| spread([13, 6], 1, device).set_require_grad(tracked));
        layer.bias =
            layer.bias.map(|b| b.map(|_| spread([6], 2, device).set_require_grad(tracked)));
        layer
    }

    #[test]
    fn forward_and_gradients_match_burns_linear() {
        let device = Device::flex().autodiff();
        let layer = layer(&device);
        let x = spread([3, 5, 13], 3, &device).require_grad();
        let weights = spread([3, 5, 6], 4, &device);
        let fused = linear(&layer, x.clone());
        let grads = (fused.clone() * weights.clone()).sum().backward();
        let reference = layer.forward(x.clone());
        let reference_grads = (reference.clone() * weights).sum().backward();
        assert_close(&values(fused), &values(reference), 1e-5, "forward");
        let grad_of = |grads: &_| {
            (
                values(x.grad(grads).unwrap()),
                values(layer.weight.val().grad(grads).unwrap()),
                values(layer.bias.as_ref().unwrap().val().grad(grads).unwrap()),
            )
        };
        let (ours, theirs) = (grad_of(&grads), grad_of(&reference_grads));
        assert_close(&ours.0, &theirs.0, 1e-5, "d_x");
        assert_close(&ours.1, &theirs.1, 1e-5, "d_w");
        assert_close(&ours.2, &theirs.2, 1e-5, "d_b");
    }

    #[test]
    fn gradient_matches_central_differences() {
        let device = Device::flex().autodiff();
        let layer = layer(&device);
        let x = spread([4, 13], 5, &device);
        let weights = spread([4, 6], 6, &device);
        let tracked = x.clone().require_grad();
        let grads = (linear(&layer, tracked.clone()) * weights.clone()).sum().backward();
        let analytic = values(tracked.grad(&grads).unwrap());
        let h = 1e-2f32;
        for probe in [0, 17, 51] {
            let nudged = |delta: f32| {
                let mut flat = values(x.clone());
                flat[probe] += delta;
                let x = Tensor::<2>::from_data(TensorData::new(flat, [4, 13]), &device);
                values((linear(&layer, x) * weights.clone()).sum())[0]
            };
            let numeric = (nudged(h) - nudged(-h)) / (2.0 * h);
            let ours = analytic[probe];
            assert!(
                (ours - numeric).abs() < 1e-3 * (1.0 + numeric.abs()),
                "x[{probe}]: {ours} vs {numeric}"
            );
        }
    }

    #[test]
    fn a_layer_without_bias_and_inference_take_burns_or_the_same_values() {
        let device = Device::flex();
        let with_bias = layer(&device);
        let x = spread([7, 13], 7, &device);
        assert_close(
            &values(linear(&with_bias, x.clone())),
            &values(with_bias.forward(x.clone())),
            1e-5,
            "inference",
        );
        let mut no_bias = layer(&device);
        no_bias.bias = None;
        assert_eq!(values(linear(&no_bias, x.clone())), values(no_bias.forward(x)));
    }
}
