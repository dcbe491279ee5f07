//! Batch normalisation (Ioffe and Szegedy, 2015) followed by ReLU over `[batch, channels,
//! H, W]`, as one pass forward and two backward.
//!
//! Burn composes the training batch norm from about a dozen tensor ops (a transposed copy
//! for each statistic, then subtract, multiply, divide, scale and shift as separate passes),
//! and the ReLU after it is one more pass each way. Here the per-channel statistics take one
//! read of the input, the normalisation, affine map and ReLU one write, and the backward
//! recomputes the ReLU mask from the input instead of keeping the output.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::module::RunningState;
use burn::nn::BatchNorm;
use burn::tensor::Tensor;
use burn::tensor::activation::relu;

use super::{flex_tensor, fused_f32, host_floats};

/// `relu(norm.forward(x))` for `x` `[batch, channels, H, W]`, with the same running
/// statistics update as Burn's `BatchNorm` (batch statistics on an autodiff device while
/// the layer trains, the running ones otherwise).
pub fn batch_norm_relu(x: Tensor<4>, norm: &BatchNorm) -> Tensor<4> {
    if !fused_f32(&x) {
        return relu(norm.forward(x));
    }
    let (gamma, beta) = (norm.gamma.val().into_dispatch(), norm.beta.val().into_dispatch());
    if !(x.device().is_autodiff() && norm.training.is_enabled()) {
        let device = x.device();
        let mean = norm.running_mean.value().to_device(&device);
        let variance = norm.running_var.value().to_device(&device);
        return Tensor::from_dispatch(Dispatch::batch_norm_relu_eval(
            x.into_dispatch(),
            gamma,
            beta,
            mean.into_dispatch(),
            variance.into_dispatch(),
            norm.epsilon,
        ));
    }
    let device = x.device();
    let (out, mean, variance) =
        Dispatch::batch_norm_relu_train(x.into_dispatch(), gamma, beta, norm.epsilon);
    let blend = |running: &RunningState<Tensor<1>>, batch| -> Tensor<1> {
        let running = running.value_sync().to_device(&device).mul_scalar(1.0 - norm.momentum);
        running.add(Tensor::<1>::from_dispatch(batch).mul_scalar(norm.momentum))
    };
    norm.running_mean.update(blend(&norm.running_mean, mean));
    norm.running_var.update(blend(&norm.running_var, variance));
    Tensor::from_dispatch(out)
}

/// The fused layer as backend operations: burn-flex's kernels, and autodiff over burn-flex
/// with the hand-written backward. Other backends never reach them.
#[backend_extension(Flex, Autodiff)]
pub trait FusedBatchNormOps: Backend {
    /// Training: normalised by `x`'s own per-channel mean and (biased) variance, which are
    /// returned too, outside the autodiff graph, for the running statistics.
    fn batch_norm_relu_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// Inference, or a frozen layer: normalised by the given (running) statistics.
    fn batch_norm_relu_eval(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self>;
}

/// The batch statistics of `x` and the layer they make.
fn batch_layer(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    epsilon: f64,
) -> (kernel::Affine, [Vec<f32>; 2]) {
    let shape = kernel::Planes::of(x);
    let (mean, variance) = kernel::moments(&host_floats(x), shape);
    let layer =
        kernel::Affine::new(&host_floats(gamma), &host_floats(beta), &mean, &variance, epsilon);
    (layer, [mean, variance])
}

fn running_layer(
    gamma: &FlexTensor,
    beta: &FlexTensor,
    mean: &FlexTensor,
    variance: &FlexTensor,
    epsilon: f64,
) -> kernel::Affine {
    let (mean, variance) = (host_floats(mean), host_floats(variance));
    kernel::Affine::new(&host_floats(gamma), &host_floats(beta), &mean, &variance, epsilon)
}

fn normalised(x: &FlexTensor, layer: &kernel::Affine) -> FlexTensor {
    let shape = kernel::Planes::of(x);
    flex_tensor(kernel::forward(&host_floats(x), layer, shape.positions), shape.dims())
}

impl FusedBatchNormOps for Flex {
    fn batch_norm_relu_train(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (layer, [mean, variance]) = batch_layer(&x, &gamma, &beta, epsilon);
        let channels = mean.len();
        (normalised(&x, &layer), flex_tensor(mean, [channels]), flex_tensor(variance, [channels]))
    }

    fn batch_norm_relu_eval(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        mean: FlexTensor,
        variance: FlexTensor,
        epsilon: f64,
    ) -> FlexTensor {
        normalised(&x, &running_layer(&gamma, &beta, &mean, &variance, epsilon))
    }
}

impl<C: CheckpointStrategy> FusedBatchNormOps for Autodiff<Flex, C> {
    fn batch_norm_relu_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (layer, [mean, variance]) =
            batch_layer(x.primitive(), gamma.primitive(), beta.primitive(), epsilon);
        let channels = mean.len();
        // The statistics leave the graph: untracked autodiff tensors.
        let statistic = |values| FloatTensor::<Self>::new(flex_tensor(values, [channels]));
        let out = tracked::<C>(x, gamma, beta, layer, true);
        (out, statistic(mean), statistic(variance))
    }

    fn batch_norm_relu_eval(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        let layer = running_layer(
            gamma.primitive(),
            beta.primitive(),
            mean.primitive(),
            variance.primitive(),
            epsilon,
        );
        tracked::<C>(x, gamma, beta, layer, false)
    }
}

/// The layer's output as an autodiff node over `x`, `gamma` and `beta`.
fn tracked<C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<Flex, C>>,
    gamma: FloatTensor<Autodiff<Flex, C>>,
    beta: FloatTensor<Autodiff<Flex, C>>,
    layer: kernel::Affine,
    batch_stats: bool,
) -> FloatTensor<Autodiff<Flex, C>> {
    let out = normalised(x.primitive(), &layer);
    match BatchNormBackward
        .prepare::<C>([x.node(), gamma.node(), beta.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let saved = Saved { x: x.primitive().clone(), layer, batch_stats };
            prep.finish(saved, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

#[derive(Debug)]
struct BatchNormBackward;

#[derive(Debug, Clone)]
struct Saved {
    x: FlexTensor,
    layer: kernel::Affine,
    batch_stats: bool,
}

impl Backward<Flex, 3> for BatchNormBackward {
    type State = Saved;

    fn backward(self, ops: Ops<Saved, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let Saved { x, layer, batch_stats } = ops.state;
        let grad = grads.consume::<Flex>(&ops.node);
        let shape = kernel::Planes::of(&x);
        let (dims, channels) = (shape.dims(), shape.channels);
        let gradients =
            kernel::backward(&host_floats(&x), &host_floats(&grad), &layer, shape, batch_stats);
        let [x_node, gamma_node, beta_node] = ops.parents;
        if let Some(node) = x_node {
            grads.register::<Flex>(node.id, flex_tensor(gradients.x, dims));
        }
        if let Some(node) = gamma_node {
            grads.register::<Flex>(node.id, flex_tensor(gradients.gamma, [channels]));
        }
        if let Some(node) = beta_node {
            grads.register::<Flex>(node.id, flex_tensor(gradients.beta, [channels]));
        }
    }
}

/// The kernels on plain row-major `f32` buffers `[batch, channels, positions]`.
mod kernel {
    use rayon::prelude::*;

    use burn::backend::flex::FlexTensor;

    /// Sizes of a `[batch, channels, positions]` buffer.
    #[derive(Debug, Clone, Copy)]
    pub struct Planes {
        pub batch: usize,
        pub channels: usize,
        pub positions: usize,
        height: usize,
        width: usize,
    }

    impl Planes {
        pub fn new(batch: usize, channels: usize, height: usize, width: usize) -> Self {
            Self { batch, channels, positions: height * width, height, width }
        }

        /// The sizes of a `[batch, channels, H, W]` tensor.
        pub fn of(x: &FlexTensor) -> Self {
            let dims = x.layout().shape();
            Self::new(dims[0], dims[1], dims[2], dims[3])
        }

        pub fn dims(&self) -> [usize; 4] {
            [self.batch, self.channels, self.height, self.width]
        }
    }

    /// Per channel: `x̂ = (x - mean) · inv_std` and `y = relu(gamma · x̂ + beta) = relu(x ·
    /// scale + shift)`.
    #[derive(Debug, Clone)]
    pub struct Affine {
        pub gamma: Vec<f32>,
        pub mean: Vec<f32>,
        pub inv_std: Vec<f32>,
        pub scale: Vec<f32>,
        pub shift: Vec<f32>,
    }

    impl Affine {
        pub fn new(
            gamma: &[f32],
            beta: &[f32],
            mean: &[f32],
            variance: &[f32],
            epsilon: f64,
        ) -> Self {
            let inv_std: Vec<f32> =
                variance.iter().map(|v| (1.0 / (f64::from(*v) + epsilon).sqrt()) as f32).collect();
            let scale: Vec<f32> = gamma.iter().zip(&inv_std).map(|(g, s)| g * s).collect();
            let shift = beta.iter().zip(mean).zip(&scale).map(|((b, m), s)| b - m * s).collect();
            Self { gamma: gamma.to_vec(), mean: mean.to_vec(), inv_std, scale, shift }
        }
    }

    /// `(Σ f(a, b).0, Σ f(a, b).1)` over two equal-length slices, in sixteen running sums
    /// side by side so that the compiler vectorises it (a plain `sum()` keeps the sequential
    /// order and stays scalar); also more accurate.
    fn paired_sums(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> (f32, f32)) -> (f32, f32) {
        let (mut first, mut second) = ([0.0f32; 16], [0.0f32; 16]);
        let (a_chunks, b_chunks) = (a.chunks_exact(16), b.chunks_exact(16));
        let (a_rest, b_rest) = (a_chunks.remainder(), b_chunks.remainder());
        for (a, b) in a_chunks.zip(b_chunks) {
            for k in 0..16 {
                let (p, q) = f(a[k], b[k]);
                first[k] += p;
                second[k] += q;
            }
        }
        for (a, b) in a_rest.iter().zip(b_rest) {
            let (p, q) = f(*a, *b);
            first[0] += p;
            second[0] += q;
        }
        (first.iter().sum(), second.iter().sum())
    }

    /// The rows of channel `c`: one `positions`-long slice per image.
    fn channel_rows(data: &[f32], c: usize, shape: Planes) -> impl Iterator<Item = &[f32]> {
        data.chunks_exact(shape.positions).skip(c).step_by(shape.channels)
    }

    /// Per-channel mean and biased variance (two passes: the centred sum of squares keeps
    /// its precision when the mean is large).
    pub fn moments(x: &[f32], shape: Planes) -> (Vec<f32>, Vec<f32>) {
        let count = (shape.batch * shape.positions).max(1) as f32;
        (0..shape.channels)
            .into_par_iter()
            .map(|c| {
                let rows = || channel_rows(x, c, shape);
                let mean =
                    rows().map(|row| paired_sums(row, row, |v, _| (v, 0.0)).0).sum::<f32>() / count;
                let squares: f32 = rows()
                    .map(|row| paired_sums(row, row, |v, _| ((v - mean) * (v - mean), 0.0)).0)
                    .sum();
                (mean, squares / count)
            })
            .unzip()
    }

    /// `relu(x · scale + shift)` per channel.
    pub fn forward(x: &[f32], layer: &Affine, positions: usize) -> Vec<f32> {
        let channels = layer.scale.len();
        let mut out = vec![0.0f32; x.len()];
        out.par_chunks_mut(positions).zip(x.par_chunks(positions)).enumerate().for_each(
            |(plane, (out, x))| {
                let (scale, shift) = (layer.scale[plane % channels], layer.shift[plane % channels]);
                for (o, v) in out.iter_mut().zip(x) {
                    *o = (v * scale + shift).max(0.0);
                }
            },
        );
        out
    }

    pub struct Gradients {
        pub x: Vec<f32>,
        pub gamma: Vec<f32>,
        pub beta: Vec<f32>,
    }

    /// The output gradient `grad` through the ReLU (where `x · scale + shift > 0`) and the
    /// normalisation. With `batch_stats`, the mean and variance are functions of `x`:
    /// `dx = gamma · inv_std / n · (n · g - Σg - x̂ · Σ(g · x̂))`; otherwise
    /// `dx = g · gamma · inv_std`.
    pub fn backward(
        x: &[f32],
        grad: &[f32],
        layer: &Affine,
        shape: Planes,
        batch_stats: bool,
    ) -> Gradients {
        // Per channel, Σ g' and Σ g' · x over the gradient g' that passes the ReLU; then
        // Σ g' · x̂ = (Σ g' · x - mean · Σ g') · inv_std.
        let (beta, gamma): (Vec<f32>, Vec<f32>) = (0..shape.channels)
            .into_par_iter()
            .map(|c| {
                let (scale, shift) = (layer.scale[c], layer.shift[c]);
                let (passed, passed_x) = channel_rows(x, c, shape)
                    .zip(channel_rows(grad, c, shape))
                    .map(|(row, g)| {
                        paired_sums(row, g, |v, g| {
                            let g = if v * scale + shift > 0.0 { g } else { 0.0 };
                            (g, g * v)
                        })
                    })
                    .fold((0.0, 0.0), |(a, b), (p, q)| (a + p, b + q));
                (passed, (passed_x - layer.mean[c] * passed) * layer.inv_std[c])
            })
            .unzip();
        let count = (shape.batch * shape.positions).max(1) as f32;
        let mut d_x = vec![0.0f32; x.len()];
        d_x.par_chunks_mut(shape.positions)
            .zip(x.par_chunks(shape.positions))
            .zip(grad.par_chunks(shape.positions))
            .enumerate()
            .for_each(|(plane, ((d_x, x), g))| {
                let c = plane % shape.channels;
                let (scale, shift) = (layer.scale[c], layer.shift[c]);
                let (mean, inv_std) = (layer.mean[c], layer.inv_std[c]);
                let through = layer.gamma[c] * inv_std;
                let (offset, slope) = if batch_stats {
                    (beta[c] / count, gamma[c] / count * inv_std)
                } else {
                    (0.0, 0.0)
                };
                for ((d, &v), &g) in d_x.iter_mut().zip(x).zip(g) {
                    let passed = if v * scale + shift > 0.0 { g } else { 0.0 };
                    *d = through * (passed - offset - (v - mean) * slope);
                }
            });
        Gradients { x: d_x, gamma, beta }
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Module;
    use burn::nn::BatchNormConfig;
    use burn::tensor::{Device, Distribution};

    use super::*;
    use crate::ops::test_support::{assert_close, values};

    /// Output, gradients and running statistics of the fused layer and of Burn's
    /// `BatchNorm` + ReLU agree, in training and in inference.
    #[test]
    fn matches_burns_batch_norm_and_relu() {
        let device = Device::flex().autodiff();
        let shape = [3, 4, 5, 6];
        let x = Tensor::<4>::random(shape, Distribution::Uniform(-2.0, 3.0), &device);
        let probe = Tensor::<4>::random(shape, Distribution::Uniform(-1.0, 1.0), &device);
        let affine = |norm: BatchNorm| {
            let gamma = Tensor::<1>::random([4], Distribution::Uniform(0.5, 1.5), &device);
            let beta = Tensor::<1>::random([4], Distribution::Uniform(-0.5, 0.5), &device);
            BatchNorm {
                gamma: burn::module::Param::from_tensor(gamma),
                beta: burn::module::Param::from_tensor(beta),
                ..norm
            }
        };
        let fused_norm = affine(BatchNormConfig::new(4).init(&device));
        let reference_norm = BatchNorm {
            gamma: burn::module::Param::from_tensor(fused_norm.gamma.val()),
            beta: burn::module::Param::from_tensor(fused_norm.beta.val()),
            ..BatchNormConfig::new(4).init(&device)
        };
        let run = |norm: &BatchNorm, fused: bool| {
            let x = x.clone().require_grad();
            let out = if fused {
                batch_norm_relu(x.clone(), norm)
            } else {
                relu(norm.forward(x.clone()))
            };
            let grads = (out.clone() * probe.clone()).sum().backward();
            let d_x = values(x.grad(&grads).unwrap());
            let d_gamma = values(norm.gamma.grad(&grads).unwrap());
            let d_beta = values(norm.beta.grad(&grads).unwrap());
            (values(out), d_x, d_gamma, d_beta)
        };
        let ours = run(&fused_norm, true);
        let theirs = run(&reference_norm, false);
        assert_close(&ours.0, &theirs.0, 1e-5, "output");
        assert_close(&ours.1, &theirs.1, 1e-4, "d x");
        assert_close(&ours.2, &theirs.2, 1e-4, "d gamma");
        assert_close(&ours.3, &theirs.3, 1e-4, "d beta");
        for (ours, theirs, what) in [
            (&fused_norm.running_mean, &reference_norm.running_mean, "running mean"),
            (&fused_norm.running_var, &reference_norm.running_var, "running variance"),
        ] {
            assert_close(&values(ours.value()), &values(theirs.value()), 1e-5, what);
        }
        // Inference (no autodiff): the running statistics, no batch ones.
        let plain = Device::flex();
        let (fused_norm, reference_norm) = (fused_norm.valid(), reference_norm.valid());
        let x = x.inner().to_device(&plain);
        assert_close(
            &values(batch_norm_relu(x.clone(), &fused_norm)),
            &values(relu(reference_norm.forward(x))),
            1e-5,
            "inference output",
        );
    }

    #[test]
    fn gradients_match_finite_differences() {
        // x [2, 2, 3]: two images, two channels, three positions; batch statistics.
        let shape = kernel::Planes::new(2, 2, 3, 1);
        let x = [0.5f32, -1.0, 2.0, 0.25, -0.75, 1.5, 1.0, 0.3, -0.2, -1.25, 0.8, 2.5];
        let (gamma, beta) = ([1.5f32, -0.5], [0.2f32, 0.1]);
        let probe = [1.0f32, -2.0, 0.5, 3.0, -1.0, 0.25, 2.0, -0.5, 1.5, 0.75, -1.25, 0.5];
        let loss = |x: &[f32], gamma: &[f32], beta: &[f32]| -> f64 {
            let (mean, variance) = kernel::moments(x, shape);
            let layer = kernel::Affine::new(gamma, beta, &mean, &variance, 1e-5);
            let out = kernel::forward(x, &layer, 3);
            out.iter().zip(&probe).map(|(o, p)| f64::from(o * p)).sum()
        };
        let (mean, variance) = kernel::moments(&x, shape);
        let layer = kernel::Affine::new(&gamma, &beta, &mean, &variance, 1e-5);
        let grads = kernel::backward(&x, &probe, &layer, shape, true);
        let step = 1e-3f32;
        let inputs = [x.to_vec(), gamma.to_vec(), beta.to_vec()];
        for (which, analytic) in [&grads.x, &grads.gamma, &grads.beta].into_iter().enumerate() {
            for (k, value) in analytic.iter().enumerate() {
                let (mut up, mut down) = (inputs.clone(), inputs.clone());
                up[which][k] += step;
                down[which][k] -= step;
                let numeric = (loss(&up[0], &up[1], &up[2]) - loss(&down[0], &down[1], &down[2]))
                    / (2.0 * f64::from(step));
                assert!(
                    (f64::from(*value) - numeric).abs() < 2e-2 * (1.0 + numeric.abs()),
                    "input {which}[{k}]: {value} vs {numeric}"
                );
            }
        }
    }
}
