//! 2x2 max-pooling with stride 2 over `[batch, channels, H, W]` (floor mode: an odd last
//! row or column is dropped), the VGG nets' pool.
//!
//! burn-flex's `max_pool2d_with_indices` is a general strided-window loop that keeps an
//! `i64` index per output and divides to find each window; its backward scatters through
//! those indices one element at a time. Here each output reads its four pixels once and
//! keeps which of the four won in a byte, and the backward writes each pixel of the input
//! gradient once.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::nn::pool::MaxPool2dConfig;
use burn::tensor::Tensor;

use super::{flex_tensor, fused_f32, host_floats};

/// `[batch, channels, H, W]` to `[batch, channels, H / 2, W / 2]`, the largest of each 2x2
/// window.
pub fn max_pool_2x2(x: Tensor<4>) -> Tensor<4> {
    if fused_f32(&x) {
        Tensor::from_dispatch(Dispatch::max_pool_2x2(x.into_dispatch()))
    } else {
        burn_max_pool_2x2(x)
    }
}

/// Burn's pool of the same shape: the path off burn-flex, and the tests' reference.
fn burn_max_pool_2x2(x: Tensor<4>) -> Tensor<4> {
    MaxPool2dConfig::new([2, 2]).init().forward(x)
}

/// The pool as a backend operation: burn-flex's kernel, and autodiff over burn-flex with the
/// hand-written backward. Other backends take Burn's `max_pool2d`.
#[backend_extension(Flex, Autodiff)]
pub trait FusedPoolOps: Backend {
    fn max_pool_2x2(x: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl FusedPoolOps for Flex {
    fn max_pool_2x2(x: FlexTensor) -> FlexTensor {
        let shape = Planes::of(&x);
        flex_tensor(kernel::forward(&host_floats(&x), shape, None), shape.pooled_dims())
    }
}

impl<C: CheckpointStrategy> FusedPoolOps for Autodiff<Flex, C> {
    fn max_pool_2x2(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let shape = Planes::of(x.primitive());
        let values = host_floats(x.primitive());
        match PoolBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let mut winners = Vec::new();
                let out = kernel::forward(&values, shape, Some(&mut winners));
                prep.finish((shape, Arc::new(winners)), flex_tensor(out, shape.pooled_dims()))
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(flex_tensor(kernel::forward(&values, shape, None), shape.pooled_dims()))
            }
        }
    }
}

#[derive(Debug)]
struct PoolBackward;

impl Backward<Flex, 1> for PoolBackward {
    /// The input's sizes and, per output, which pixel of its window won (0 to 3).
    type State = (Planes, Arc<Vec<u8>>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (shape, winners) = ops.state;
        let grad = grads.consume::<Flex>(&ops.node);
        if let [Some(node)] = ops.parents {
            let d_x = kernel::backward(&host_floats(&grad), &winners, shape);
            grads.register::<Flex>(node.id, flex_tensor(d_x, shape.dims()));
        }
    }
}

/// Sizes of a `[batch, channels, H, W]` input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planes {
    planes: usize,
    batch: usize,
    channels: usize,
    height: usize,
    width: usize,
}

impl Planes {
    fn of(x: &FlexTensor) -> Self {
        let dims = x.layout().shape();
        Self::new(dims[0], dims[1], dims[2], dims[3])
    }

    fn new(batch: usize, channels: usize, height: usize, width: usize) -> Self {
        Self { planes: batch * channels, batch, channels, height, width }
    }

    fn dims(&self) -> [usize; 4] {
        [self.batch, self.channels, self.height, self.width]
    }

    fn pooled_dims(&self) -> [usize; 4] {
        [self.batch, self.channels, self.height / 2, self.width / 2]
    }
}

/// The kernels on plain row-major `f32` buffers, one `H x W` plane at a time.
mod kernel {
    use rayon::prelude::*;

    use super::Planes;

    /// The pooled planes; `winners` (when given) receives, per output, the winning pixel:
    /// 0 and 1 on the window's top row, 2 and 3 on the bottom one; ties go to the first.
    pub fn forward(x: &[f32], shape: Planes, winners: Option<&mut Vec<u8>>) -> Vec<f32> {
        let pooled = (shape.height / 2) * (shape.width / 2);
        let mut out = vec![0.0f32; shape.planes * pooled];
        let planes = out
            .par_chunks_mut(pooled.max(1))
            .zip(x.par_chunks((shape.height * shape.width).max(1)));
        match winners {
            Some(winners) => {
                winners.resize(shape.planes * pooled, 0);
                planes
                    .zip(winners.par_chunks_mut(pooled.max(1)))
                    .for_each(|((out, plane), won)| pool_plane(out, plane, Some(won), shape));
            }
            None => planes.for_each(|(out, plane)| pool_plane(out, plane, None, shape)),
        }
        out
    }

    /// One plane of [`forward`].
    fn pool_plane(out: &mut [f32], plane: &[f32], mut won: Option<&mut [u8]>, shape: Planes) {
        let out_w = shape.width / 2;
        for (oy, out) in out.chunks_exact_mut(out_w.max(1)).enumerate() {
            let top = &plane[2 * oy * shape.width..][..2 * out_w];
            let bottom = &plane[(2 * oy + 1) * shape.width..][..2 * out_w];
            let candidates = top.chunks_exact(2).zip(bottom.chunks_exact(2));
            match won.as_deref_mut() {
                Some(won) => {
                    let won = &mut won[oy * out_w..][..out_w];
                    for ((o, w), (t, b)) in out.iter_mut().zip(won).zip(candidates) {
                        (*o, *w) = largest([t[0], t[1], b[0], b[1]]);
                    }
                }
                None => {
                    for (o, (t, b)) in out.iter_mut().zip(candidates) {
                        *o = t[0].max(t[1]).max(b[0].max(b[1]));
                    }
                }
            }
        }
    }

    /// The largest of four values and its position; ties to the first.
    fn largest(window: [f32; 4]) -> (f32, u8) {
        let mut best = (window[0], 0);
        for (k, v) in window.into_iter().enumerate().skip(1) {
            if v > best.0 {
                best = (v, k as u8);
            }
        }
        best
    }

    /// Each output's gradient on the pixel that won its window; zero on the others.
    pub fn backward(grad: &[f32], winners: &[u8], shape: Planes) -> Vec<f32> {
        let (out_h, out_w) = (shape.height / 2, shape.width / 2);
        let pooled = out_h * out_w;
        let mut d_x = vec![0.0f32; shape.planes * shape.height * shape.width];
        d_x.par_chunks_mut((shape.height * shape.width).max(1))
            .zip(grad.par_chunks(pooled.max(1)))
            .zip(winners.par_chunks(pooled.max(1)))
            .for_each(|((d_plane, grad), won)| {
                for oy in 0..out_h {
                    let (top, rest) = d_plane[2 * oy * shape.width..].split_at_mut(shape.width);
                    let bottom = &mut rest[..shape.width];
                    let rows = grad[oy * out_w..][..out_w].iter().zip(&won[oy * out_w..][..out_w]);
                    for (ox, (g, w)) in rows.enumerate() {
                        let row = if *w < 2 { &mut *top } else { &mut *bottom };
                        row[2 * ox + usize::from(*w & 1)] = *g;
                    }
                }
            });
        d_x
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution, TensorData};

    use super::*;
    use crate::ops::test_support::{assert_close, values};

    #[test]
    fn pooling_and_its_gradient_match_burns_max_pool() {
        let device = Device::flex().autodiff();
        // Odd sides: the last row and column are dropped.
        let x = Tensor::<4>::random([2, 3, 5, 7], Distribution::Uniform(-1.0, 1.0), &device);
        let probe = Tensor::<4>::random([2, 3, 2, 3], Distribution::Uniform(-1.0, 1.0), &device);
        let run = |fused: bool| {
            let x = x.clone().require_grad();
            let out = if fused { max_pool_2x2(x.clone()) } else { burn_max_pool_2x2(x.clone()) };
            let grads = (out.clone() * probe.clone()).sum().backward();
            (values(out), values(x.grad(&grads).unwrap()))
        };
        let (ours, theirs) = (run(true), run(false));
        assert_close(&ours.0, &theirs.0, 0.0, "output");
        assert_close(&ours.1, &theirs.1, 0.0, "d x");
    }

    #[test]
    fn ties_send_the_gradient_to_the_first_pixel() {
        let device = Device::flex().autodiff();
        let x = Tensor::<4>::from_data(
            TensorData::new(vec![1.0f32, 3.0, 3.0, 2.0], [1, 1, 2, 2]),
            &device,
        )
        .require_grad();
        let out = max_pool_2x2(x.clone());
        let grads = (out.clone() * 5.0).sum().backward();
        assert_eq!(values(out), [3.0]);
        assert_eq!(values(x.grad(&grads).unwrap()), [0.0, 5.0, 0.0, 0.0]);
    }
}
