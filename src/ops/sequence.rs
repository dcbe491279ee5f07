//! The two data-movement steps around a 1-d convolution over time on `[batch, time,
//! channels]` tensors, each as one pass.
//!
//! - [`time_windows`]: the same-padded sliding windows of a sequence laid side by side
//!   (im2col), so that the convolution is one matrix product. Composed from Burn ops it is a
//!   padded copy, `kernel` narrowed views and a concatenation: three full passes and the
//!   same again in the backward.
//! - [`relu_max_pool_time`]: ReLU then non-overlapping max-pooling over time
//!   (`MaxPool1d(k)`, floor mode). burn-flex's `max_pair` is a compare and a masked select
//!   per window slot; here each window is read once and the backward sends each output's
//!   gradient to the one input that won, recorded in the forward.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::Tensor;
use burn::tensor::activation::relu;

use super::{flex_tensor, fused_f32, host_floats};

/// `[batch, time, width]` to `[batch * time, kernel * width]`: row `(b, t)` holds steps
/// `t - kernel / 2 ..= t + kernel / 2` of sequence `b` one after another (zeros past either
/// end), the layout of a PyTorch `Conv1d` weight `[out, in, k]` permuted to `[k * in, out]`.
pub fn time_windows(x: Tensor<3>, kernel: usize) -> Tensor<2> {
    if fused_f32(&x) {
        Tensor::from_dispatch(Dispatch::time_windows(x.into_dispatch(), kernel))
    } else {
        composed_time_windows(x, kernel)
    }
}

/// [`time_windows`] from Burn tensor ops: the path off burn-flex, and the test reference.
pub fn composed_time_windows(x: Tensor<3>, kernel: usize) -> Tensor<2> {
    let [batch, time, width] = x.dims();
    let pad = kernel / 2;
    let device = x.device();
    let padded = Tensor::cat(
        vec![
            Tensor::zeros([batch, pad, width], &device),
            x,
            Tensor::zeros([batch, pad, width], &device),
        ],
        1,
    );
    let shifted: Vec<Tensor<3>> = (0..kernel).map(|k| padded.clone().narrow(1, k, time)).collect();
    Tensor::cat(shifted, 2).reshape([batch * time, kernel * width])
}

/// `max(0, x)` max-pooled over windows of `k` steps: `[batch, time, channels]` to
/// `[batch, time / k, channels]`; a last partial window is dropped.
pub fn relu_max_pool_time(x: Tensor<3>, k: usize) -> Tensor<3> {
    if fused_f32(&x) {
        Tensor::from_dispatch(Dispatch::relu_max_pool_time(x.into_dispatch(), k))
    } else {
        composed_relu_max_pool_time(x, k)
    }
}

/// [`relu_max_pool_time`] from Burn tensor ops: consecutive steps side by side, then an
/// element-wise max of the `k` slices (several times faster on burn-flex than
/// `max_pool1d`, which is what this replaced).
pub fn composed_relu_max_pool_time(x: Tensor<3>, k: usize) -> Tensor<3> {
    let [batch, time, channels] = x.dims();
    let out = time / k;
    let windows = relu(x).narrow(1, 0, out * k).reshape([batch, out, k * channels]);
    (1..k).fold(windows.clone().narrow(2, 0, channels), |max, j| {
        max.max_pair(windows.clone().narrow(2, j * channels, channels))
    })
}

/// Both steps as backend operations: burn-flex's kernels, and autodiff over burn-flex with
/// the hand-written backwards. Other backends take the composed functions.
#[backend_extension(Flex, Autodiff)]
pub trait FusedSequenceOps: Backend {
    fn time_windows(x: FloatTensor<Self>, kernel: usize) -> FloatTensor<Self>;
    fn relu_max_pool_time(x: FloatTensor<Self>, k: usize) -> FloatTensor<Self>;
}

impl FusedSequenceOps for Flex {
    fn time_windows(x: FlexTensor, kernel: usize) -> FlexTensor {
        let shape = Shape::of(&x, kernel);
        flex_tensor(kernel::windows(&host_floats(&x), shape), shape.windows_dims())
    }

    fn relu_max_pool_time(x: FlexTensor, k: usize) -> FlexTensor {
        let shape = Shape::of(&x, k);
        flex_tensor(kernel::relu_max_pool(&host_floats(&x), shape, None), shape.pooled_dims())
    }
}

impl<C: CheckpointStrategy> FusedSequenceOps for Autodiff<Flex, C> {
    fn time_windows(x: FloatTensor<Self>, kernel: usize) -> FloatTensor<Self> {
        let shape = Shape::of(x.primitive(), kernel);
        let out =
            flex_tensor(kernel::windows(&host_floats(x.primitive()), shape), shape.windows_dims());
        match WindowsBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(shape, out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn relu_max_pool_time(x: FloatTensor<Self>, k: usize) -> FloatTensor<Self> {
        let shape = Shape::of(x.primitive(), k);
        let values = host_floats(x.primitive());
        match PoolBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let mut winners = Vec::new();
                let out = kernel::relu_max_pool(&values, shape, Some(&mut winners));
                prep.finish((shape, Arc::new(winners)), flex_tensor(out, shape.pooled_dims()))
            }
            OpsKind::UnTracked(prep) => {
                let out = kernel::relu_max_pool(&values, shape, None);
                prep.finish(flex_tensor(out, shape.pooled_dims()))
            }
        }
    }
}

#[derive(Debug)]
struct WindowsBackward;

impl Backward<Flex, 1> for WindowsBackward {
    type State = Shape;

    fn backward(self, ops: Ops<Shape, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let shape = ops.state;
        let grad = grads.consume::<Flex>(&ops.node);
        if let [Some(node)] = ops.parents {
            let d_x = kernel::windows_backward(&host_floats(&grad), shape);
            grads.register::<Flex>(node.id, flex_tensor(d_x, shape.input_dims()));
        }
    }
}

#[derive(Debug)]
struct PoolBackward;

impl Backward<Flex, 1> for PoolBackward {
    /// The shape and, per output, the step of its window that won (or none).
    type State = (Shape, Arc<Vec<u32>>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (shape, winners) = ops.state;
        let grad = grads.consume::<Flex>(&ops.node);
        if let [Some(node)] = ops.parents {
            let d_x = kernel::relu_max_pool_backward(&host_floats(&grad), &winners, shape);
            grads.register::<Flex>(node.id, flex_tensor(d_x, shape.input_dims()));
        }
    }
}

/// A `[batch, time, width]` input and the window: the convolution's kernel size for
/// [`time_windows`], the pooling size for [`relu_max_pool_time`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    batch: usize,
    time: usize,
    width: usize,
    window: usize,
}

impl Shape {
    fn of(x: &FlexTensor, window: usize) -> Self {
        let dims = x.layout().shape();
        assert!(dims.num_dims() == 3 && window > 0, "a [batch, time, width] input and a window");
        Self { batch: dims[0], time: dims[1], width: dims[2], window }
    }

    fn input_dims(self) -> [usize; 3] {
        [self.batch, self.time, self.width]
    }

    fn windows_dims(self) -> [usize; 2] {
        [self.batch * self.time, self.window * self.width]
    }

    fn pooled_dims(self) -> [usize; 3] {
        [self.batch, self.time / self.window, self.width]
    }
}

/// The kernels on plain row-major `f32` buffers, one sequence per rayon task.
mod kernel {
    use rayon::prelude::*;

    use super::Shape;

    /// A window that no input won: all its values were at most zero, so ReLU passes no
    /// gradient back.
    const NONE: u32 = u32::MAX;

    /// The input step that window slot `slot` of output step `t` reads, if inside.
    fn source(t: usize, slot: usize, shape: Shape) -> Option<usize> {
        (t + slot).checked_sub(shape.window / 2).filter(|&s| s < shape.time)
    }

    pub fn windows(x: &[f32], shape: Shape) -> Vec<f32> {
        let Shape { time, width, window, .. } = shape;
        let row = window * width;
        let mut out = vec![0.0f32; shape.batch * time * row];
        if out.is_empty() {
            return out;
        }
        out.par_chunks_mut(time * row).zip(x.par_chunks(time * width)).for_each(|(out, x)| {
            for t in 0..time {
                for slot in 0..window {
                    if let Some(s) = source(t, slot, shape) {
                        out[t * row + slot * width..][..width]
                            .copy_from_slice(&x[s * width..][..width]);
                    }
                }
            }
        });
        out
    }

    /// Each input step gets the sum of the window slots that copied it.
    pub fn windows_backward(grad: &[f32], shape: Shape) -> Vec<f32> {
        let Shape { time, width, window, .. } = shape;
        let row = window * width;
        let mut d_x = vec![0.0f32; shape.batch * time * width];
        if d_x.is_empty() {
            return d_x;
        }
        d_x.par_chunks_mut(time * width).zip(grad.par_chunks(time * row)).for_each(
            |(d_x, grad)| {
                for t in 0..time {
                    for slot in 0..window {
                        if let Some(s) = source(t, slot, shape) {
                            let from = &grad[t * row + slot * width..][..width];
                            for (d, g) in d_x[s * width..][..width].iter_mut().zip(from) {
                                *d += g;
                            }
                        }
                    }
                }
            },
        );
        d_x
    }

    /// `max(0, max of the window)` per output; with `winners`, the winning step of each
    /// window (the first of equal maxima, as `max_pair` keeps its left side on ties).
    pub fn relu_max_pool(x: &[f32], shape: Shape, winners: Option<&mut Vec<u32>>) -> Vec<f32> {
        let Shape { time, width, window, .. } = shape;
        let steps = time / window;
        let mut out = vec![0.0f32; shape.batch * steps * width];
        let mut won = vec![NONE; if winners.is_some() { out.len() } else { 0 }];
        if !out.is_empty() {
            let pool = |(b, out): (usize, &mut [f32]), mut won: Option<&mut [u32]>| {
                let x = &x[b * time * width..][..time * width];
                for o in 0..steps {
                    let best = &mut out[o * width..][..width];
                    for slot in 0..window {
                        let row = &x[(o * window + slot) * width..][..width];
                        match won.as_deref_mut() {
                            Some(won) => {
                                keep_larger_marked(row, slot as u32, best, &mut won[o * width..])
                            }
                            None => keep_larger(row, best),
                        }
                    }
                }
            };
            let chunk = steps * width;
            if won.is_empty() {
                out.par_chunks_mut(chunk).enumerate().for_each(|job| pool(job, None));
            } else {
                out.par_chunks_mut(chunk)
                    .enumerate()
                    .zip(won.par_chunks_mut(chunk))
                    .for_each(|(job, won)| pool(job, Some(won)));
            }
        }
        if let Some(winners) = winners {
            *winners = won;
        }
        out
    }

    // The window's slots one row of channels at a time, channels innermost, so that the
    // compare-and-keep runs as masked vector moves: a per-channel loop over the slots
    // measured five times slower.
    widest_simd! {
        /// `best = max(best, row)` per channel, keeping `best` where they tie.
        pub fn keep_larger(row: &[f32], best: &mut [f32]) {
            for (best, &value) in best.iter_mut().zip(row) {
                *best = if value > *best { value } else { *best };
            }
        }
    }

    widest_simd! {
        /// [`keep_larger`], marking `slot` in `at` where `row` wins.
        pub fn keep_larger_marked(row: &[f32], slot: u32, best: &mut [f32], at: &mut [u32]) {
            for ((best, at), &value) in best.iter_mut().zip(at.iter_mut()).zip(row) {
                let larger = value > *best;
                *best = if larger { value } else { *best };
                *at = if larger { slot } else { *at };
            }
        }
    }

    pub fn relu_max_pool_backward(grad: &[f32], winners: &[u32], shape: Shape) -> Vec<f32> {
        let Shape { time, width, window, .. } = shape;
        let steps = time / window;
        let mut d_x = vec![0.0f32; shape.batch * time * width];
        if d_x.is_empty() || steps == 0 {
            return d_x;
        }
        let chunk = steps * width;
        d_x.par_chunks_mut(time * width)
            .zip(grad.par_chunks(chunk).zip(winners.par_chunks(chunk)))
            .for_each(|(d_x, (grad, winners))| {
                for (k, (&g, &slot)) in grad.iter().zip(winners).enumerate() {
                    if slot != NONE {
                        let (o, c) = (k / width, k % width);
                        d_x[(o * window + slot as usize) * width + c] = g;
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

    type Op<const D: usize> = fn(Tensor<3>, usize) -> Tensor<D>;

    /// Output and input gradient of `op` under a random linear probe, on autodiff flex.
    fn run<const D: usize>(
        op: Op<D>,
        x: &Tensor<3>,
        window: usize,
        probe: &Tensor<D>,
    ) -> (Vec<f32>, Vec<f32>) {
        let x = x.clone().require_grad();
        let out = op(x.clone(), window);
        let grads = (out.clone() * probe.clone()).sum().backward();
        (values(out), values(x.grad(&grads).unwrap()))
    }

    #[test]
    fn windows_and_their_gradient_match_the_composed_ops() {
        let device = Device::flex().autodiff();
        let uniform = Distribution::Uniform(-1.0, 1.0);
        for (kernel, time) in [(3, 7), (5, 4), (1, 3), (5, 2)] {
            let x = Tensor::<3>::random([2, time, 3], uniform, &device);
            let probe = Tensor::<2>::random([2 * time, kernel * 3], uniform, &device);
            let ours = run(fused_time_windows, &x, kernel, &probe);
            let reference = run(composed_time_windows, &x, kernel, &probe);
            assert_close(&ours.0, &reference.0, 1e-5, &format!("windows k{kernel} t{time}"));
            assert_close(&ours.1, &reference.1, 1e-5, &format!("d x k{kernel} t{time}"));
        }
    }

    #[test]
    fn pooling_and_its_gradient_match_the_composed_ops() {
        let device = Device::flex().autodiff();
        let uniform = Distribution::Uniform(-1.0, 1.0);
        // 7 steps in windows of 2 and 3: a partial window at the end is dropped; about
        // half the values are negative, so some windows pass no gradient at all.
        for k in [1, 2, 3] {
            let x = Tensor::<3>::random([3, 7, 4], uniform, &device);
            let probe = Tensor::<3>::random([3, 7 / k, 4], uniform, &device);
            let ours = run(fused_relu_max_pool_time, &x, k, &probe);
            let reference = run(composed_relu_max_pool_time, &x, k, &probe);
            assert_close(&ours.0, &reference.0, 1e-5, &format!("pooled k{k}"));
            assert_close(&ours.1, &reference.1, 1e-5, &format!("d x k{k}"));
        }
    }

    #[test]
    fn pooling_keeps_the_largest_positive_value_of_each_window() {
        let device = Device::flex();
        // One sequence, 5 steps, 2 channels, windows of 2: the fifth step is dropped.
        let x = [1.0f32, -1.0, 3.0, -2.0, -0.5, -4.0, 0.25, -3.0, 9.0, 9.0];
        let x = Tensor::<3>::from_data(TensorData::new(x.to_vec(), [1, 5, 2]), &device);
        assert_eq!(values(fused_relu_max_pool_time(x, 2)), [3.0, 0.0, 0.25, 0.0]);
    }

    #[test]
    fn ties_send_the_gradient_to_the_first_step_and_zeros_send_none() {
        // Windows of 2 over [2, 2, 0, -1]: a tie at 2, then a window whose best is 0.
        let device = Device::flex().autodiff();
        let x = Tensor::<3>::from_data(
            TensorData::new(vec![2.0f32, 2.0, 0.0, -1.0], [1, 4, 1]),
            &device,
        );
        let probe = Tensor::<3>::ones([1, 2, 1], &device);
        let (pooled, d_x) = run(fused_relu_max_pool_time, &x, 2, &probe);
        assert_eq!((pooled, d_x), (vec![2.0, 0.0], vec![1.0, 0.0, 0.0, 0.0]));
        let (_, composed) = run(composed_relu_max_pool_time, &x, 2, &probe);
        assert_eq!(composed, [1.0, 0.0, 0.0, 0.0]);
    }

    /// A fixed output gradient of `len` values.
    fn probe(len: usize) -> Vec<f32> {
        (0..len).map(|i| ((i * 5 % 7) as f32 - 3.0) * 0.5).collect()
    }

    #[test]
    fn gradients_match_finite_differences() {
        // Both ops are piecewise linear, so central differences are exact up to rounding
        // away from ties and zeros, which these inputs avoid.
        let shape = Shape { batch: 2, time: 5, width: 2, window: 3 };
        let x: Vec<f32> = (0..20).map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.37).collect();
        let step = 1e-3f32;
        let check =
            |forward: &dyn Fn(&[f32]) -> Vec<f32>, probe: &[f32], analytic: &[f32], what| {
                let loss = |input: &[f32]| -> f64 {
                    forward(input).iter().zip(probe).map(|(o, p)| f64::from(o * p)).sum()
                };
                for k in 0..x.len() {
                    let (mut up, mut down) = (x.clone(), x.clone());
                    up[k] += step;
                    down[k] -= step;
                    let numeric = (loss(&up) - loss(&down)) / (2.0 * f64::from(step));
                    assert!((f64::from(analytic[k]) - numeric).abs() < 1e-3, "{what}[{k}]");
                }
            };
        let windows_probe = probe(shape.batch * shape.time * shape.window * shape.width);
        let d_windows = kernel::windows_backward(&windows_probe, shape);
        check(&|input| kernel::windows(input, shape), &windows_probe, &d_windows, "windows");
        let mut winners = Vec::new();
        let pooled = kernel::relu_max_pool(&x, shape, Some(&mut winners));
        let pool_probe = probe(pooled.len());
        let d_pool = kernel::relu_max_pool_backward(&pool_probe, &winners, shape);
        check(&|input| kernel::relu_max_pool(input, shape, None), &pool_probe, &d_pool, "pool");
    }

    fn fused_time_windows(x: Tensor<3>, kernel: usize) -> Tensor<2> {
        Tensor::from_dispatch(Dispatch::time_windows(x.into_dispatch(), kernel))
    }

    fn fused_relu_max_pool_time(x: Tensor<3>, k: usize) -> Tensor<3> {
        Tensor::from_dispatch(Dispatch::relu_max_pool_time(x.into_dispatch(), k))
    }
}
