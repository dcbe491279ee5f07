//! A one-layer LSTM over a whole sequence as one operation (Hochreiter and Schmidhuber,
//! 1997; PyTorch's gate layout: input, forget, cell, output).
//!
//! Input: the input projection of every step, `P = x W_ihᵀ + b_ih + b_hh` as `[batch, time,
//! 4H]`, and the recurrent weight `W_hh` `[4H, H]`; output: the last hidden state
//! `[batch, H]`, starting from zero state. The forward pass is one small matrix product per
//! step plus vectorised gate math, and saves the gates and cells; the backward pass is
//! backpropagation through time in one autodiff node, with the recurrent weight's gradient
//! one matrix product over all steps. Composed from Burn ops instead, the same LSTM is about
//! ten tensor ops per step, and autodiff turns each per-step slice of `P` into a full-size
//! zero gradient.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Tensor, TensorData};

use super::activation::{sigmoid_in_place, tanh_in_place};
use super::{flex_tensor, fused_f32, host_floats, writable};

/// The last hidden state `[batch, H]` of an LSTM run over `projected` `[batch, time, 4H]`
/// (input projection plus both biases) with recurrent weight `weight_hh` `[4H, H]`.
pub fn last_hidden(projected: Tensor<3>, weight_hh: Tensor<2>) -> Tensor<2> {
    if fused_f32(&projected) {
        fused_last_hidden(projected, weight_hh)
    } else {
        composed_last_hidden(projected, weight_hh)
    }
}

/// The fused kernel; burn-flex devices only.
fn fused_last_hidden(projected: Tensor<3>, weight_hh: Tensor<2>) -> Tensor<2> {
    Tensor::from_dispatch(Dispatch::lstm_last_hidden(
        projected.into_dispatch(),
        weight_hh.into_dispatch(),
    ))
}

/// The same function from Burn tensor ops: the path on every backend without the fused
/// kernel, and the reference the kernel is tested against.
///
/// Every gate goes through one sigmoid over the whole `[batch, 4H]` slab, with
/// `tanh(x) = 2 sigmoid(2x) - 1` for the cell gate and the cell output: one wide call costs
/// less than four narrow ones.
pub fn composed_last_hidden(projected: Tensor<3>, weight_hh: Tensor<2>) -> Tensor<2> {
    let [batch, time, gates] = projected.dims();
    let hidden = gates / 4;
    let device = projected.device();
    let mut scale = vec![1.0f32; gates];
    scale[2 * hidden..3 * hidden].fill(2.0);
    let scale =
        Tensor::<1>::from_data(TensorData::new(scale, [gates]), &device).unsqueeze_dim::<2>(0);
    let projected = projected * scale.clone().unsqueeze_dim(0);
    let recurrent = weight_hh.transpose() * scale;
    let mut h = Tensor::<2>::zeros([batch, hidden], &device);
    let mut c = Tensor::<2>::zeros([batch, hidden], &device);
    for t in 0..time {
        let step = projected.clone().slice([0..batch, t..t + 1, 0..gates]).reshape([batch, gates])
            + h.matmul(recurrent.clone());
        let mut chunks = sigmoid(step).chunk(4, 1).into_iter();
        let (Some(i), Some(f), Some(g), Some(o)) =
            (chunks.next(), chunks.next(), chunks.next(), chunks.next())
        else {
            unreachable!("chunk(4) of a [batch, 4H] tensor gives four parts")
        };
        c = f * c + i * g.mul_scalar(2.0).sub_scalar(1.0);
        h = o * sigmoid(c.clone().mul_scalar(2.0)).mul_scalar(2.0).sub_scalar(1.0);
    }
    h
}

/// The fused LSTM as a backend operation: burn-flex's kernel, and autodiff over burn-flex
/// with the hand-written backward. Other backends never reach it ([`last_hidden`] composes
/// the LSTM there).
#[backend_extension(Flex, Autodiff)]
pub trait FusedLstm: Backend {
    fn lstm_last_hidden(
        projected: FloatTensor<Self>,
        weight_hh: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

impl FusedLstm for Flex {
    fn lstm_last_hidden(projected: FlexTensor, weight_hh: FlexTensor) -> FlexTensor {
        let shape = Shape::of(&projected);
        // The projection is consumed: the steps' gates are computed in its place (no copy
        // when, as in the intent net, nothing else holds it).
        let mut gates = writable(projected);
        let weight = host_floats(&weight_hh);
        let last = kernel::forward(gates.storage_mut::<f32>(), &weight, shape, None);
        flex_tensor(last, [shape.batch, shape.hidden])
    }
}

impl<C: CheckpointStrategy> FusedLstm for Autodiff<Flex, C> {
    fn lstm_last_hidden(
        projected: FloatTensor<Self>,
        weight_hh: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let shape = Shape::of(projected.primitive());
        let prepared = LstmBackward
            .prepare::<C>([projected.node(), weight_hh.node()])
            .compute_bound()
            .stateful();
        let mut gates = host_floats(projected.primitive()).into_owned();
        let weight = host_floats(weight_hh.primitive());
        match prepared {
            OpsKind::Tracked(prep) => {
                let (trace, last) = kernel::Trace::record(gates, &weight, shape);
                let weight = Arc::new(weight.into_owned());
                let state = SavedForward { trace: Arc::new(trace), weight, shape };
                prep.finish(state, flex_tensor(last, [shape.batch, shape.hidden]))
            }
            OpsKind::UnTracked(prep) => {
                let last = kernel::forward(&mut gates, &weight, shape, None);
                prep.finish(flex_tensor(last, [shape.batch, shape.hidden]))
            }
        }
    }
}

#[derive(Debug)]
struct LstmBackward;

/// What the backward pass needs of the forward one, shared rather than copied when autodiff
/// clones the state.
#[derive(Debug, Clone)]
struct SavedForward {
    trace: Arc<kernel::Trace>,
    weight: Arc<Vec<f32>>,
    shape: Shape,
}

impl Backward<Flex, 2> for LstmBackward {
    type State = SavedForward;

    fn backward(self, ops: Ops<SavedForward, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let SavedForward { trace, weight, shape } = ops.state;
        let grad_last = grads.consume::<Flex>(&ops.node);
        let (d_projected, d_weight) =
            kernel::backward(&trace, &weight, &host_floats(&grad_last), shape);
        let [projected_node, weight_node] = ops.parents;
        if let Some(node) = projected_node {
            let grad = flex_tensor(d_projected, [shape.batch, shape.time, 4 * shape.hidden]);
            grads.register::<Flex>(node.id, grad);
        }
        if let Some(node) = weight_node {
            grads
                .register::<Flex>(node.id, flex_tensor(d_weight, [4 * shape.hidden, shape.hidden]));
        }
    }
}

/// Sizes of one LSTM call, read from the `[batch, time, 4H]` projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub batch: usize,
    pub time: usize,
    pub hidden: usize,
}

impl Shape {
    fn of(projected: &FlexTensor) -> Self {
        let dims = projected.layout().shape();
        assert!(
            dims.num_dims() == 3 && dims[2].is_multiple_of(4),
            "LSTM input must be [batch, time, 4H]"
        );
        Self { batch: dims[0], time: dims[1], hidden: dims[2] / 4 }
    }
}

/// The kernels on plain row-major `f32` buffers.
mod kernel {
    use super::{Shape, sigmoid_in_place, tanh_in_place};
    use crate::ops::matmul::{View, matmul_into, matmul_into_serial};

    /// What the forward pass saves for the backward: the activated gates `[batch, time,
    /// 4H]`, and per step the cell state, its tanh and the hidden state the step started
    /// from.
    #[derive(Debug)]
    pub struct Trace {
        gates: Vec<f32>,
        states: States,
    }

    /// The cell state, its tanh and the hidden state each step started from, each `[batch,
    /// time, H]`.
    #[derive(Debug)]
    pub struct States {
        cells: Vec<f32>,
        cells_tanh: Vec<f32>,
        hidden_before: Vec<f32>,
    }

    impl Trace {
        /// Runs [`forward`] on `projected` `[batch, time, 4H]`, keeping what the backward
        /// pass reads; returns the trace and the last hidden state.
        pub fn record(projected: Vec<f32>, weight: &[f32], shape: Shape) -> (Self, Vec<f32>) {
            let states = shape.batch * shape.time * shape.hidden;
            let mut trace = Self {
                gates: projected,
                states: States {
                    cells: vec![0.0; states],
                    cells_tanh: vec![0.0; states],
                    hidden_before: vec![0.0; states],
                },
            };
            let last = forward(&mut trace.gates, weight, shape, Some(&mut trace.states));
            (trace, last)
        }
    }

    impl States {
        /// The states of each run of `rows` sequences, in order (the last may be shorter).
        fn split_rows(&mut self, rows: usize, shape: Shape) -> Vec<StateRows<'_>> {
            let states = rows * shape.time * shape.hidden;
            self.cells
                .chunks_mut(states)
                .zip(self.cells_tanh.chunks_mut(states))
                .zip(self.hidden_before.chunks_mut(states))
                .map(|((cells, cells_tanh), hidden_before)| StateRows {
                    cells,
                    cells_tanh,
                    hidden_before,
                })
                .collect()
        }
    }

    /// The part of [`States`] that belongs to some consecutive sequences of the batch.
    struct StateRows<'a> {
        cells: &'a mut [f32],
        cells_tanh: &'a mut [f32],
        hidden_before: &'a mut [f32],
    }

    /// Runs the LSTM with `weight` `[4H, H]` from zero state over `gates`, which holds the
    /// projection `[batch, time, 4H]` on entry and each step's activated gates on return:
    /// each step's product accumulates into its rows in place. Fills `states` when given;
    /// returns the last hidden state `[batch, H]`.
    ///
    /// Sequences are independent, so the batch is cut into one run of rows per thread, each
    /// running the whole recurrence: one small product per step on each thread instead of
    /// a product split across threads (and the gate math on one) at every step.
    pub fn forward(
        gates: &mut [f32],
        weight: &[f32],
        shape: Shape,
        states: Option<&mut States>,
    ) -> Vec<f32> {
        use rayon::prelude::*;

        let Shape { batch, time, hidden } = shape;
        if batch == 0 || time == 0 {
            return vec![0.0; batch * hidden];
        }
        let rows = batch.div_ceil(rayon::current_num_threads()).max(MIN_ROWS_PER_THREAD);
        // W_hhᵀ `[H, 4H]` row-major, once: gemm reads it in place at every step, where the
        // stored `[4H, H]` read transposed was copied into packed form at each step (a
        // quarter of the recurrence's time on the `cnn_lstm` workload).
        let width = 4 * hidden;
        let mut weight_t = vec![0.0f32; hidden * width];
        for (n, row) in weight.chunks_exact(hidden).enumerate() {
            for (k, value) in row.iter().enumerate() {
                weight_t[k * width + n] = *value;
            }
        }
        let mut last = vec![0.0f32; batch * hidden];
        let runs =
            last.par_chunks_mut(rows * hidden).zip(gates.par_chunks_mut(rows * time * width));
        let run = |(last, gates): (&mut [f32], &mut [f32]), states| {
            let shape = Shape { batch: last.len() / hidden, ..shape };
            forward_rows(last, gates, &weight_t, shape, states);
        };
        match states {
            None => runs.for_each(|run_of| run(run_of, None)),
            Some(states) => runs
                .zip(states.split_rows(rows, shape))
                .for_each(|(run_of, states)| run(run_of, Some(states))),
        }
        last
    }

    /// Fewer sequences than this per thread cost more in smaller matrix products than the
    /// second thread saves. With `W_hhᵀ` read in place, a training batch of 32 runs about a
    /// tenth faster in two runs of 16 (when gemm copied it into packed form at every step, it
    /// was no faster); an inference batch of 256 runs in two thirds of the time in two runs
    /// of 128.
    const MIN_ROWS_PER_THREAD: usize = 16;

    // long: one step's product, gate functions, state update and trace, kept together so
    // the order of the recurrence reads top to bottom.
    fn forward_rows(
        h: &mut [f32],
        gates: &mut [f32],
        weight_t: &[f32],
        shape: Shape,
        mut states: Option<StateRows<'_>>,
    ) {
        let Shape { batch, time, hidden } = shape;
        let width = 4 * hidden;
        let mut c = vec![0.0f32; batch * hidden];
        let mut c_tanh = vec![0.0f32; batch * hidden];
        for t in 0..time {
            // Step t's rows of `gates`, one per sequence, `time * width` apart.
            let step = |row: usize| (row * time + t) * width..(row * time + t + 1) * width;
            // z_t += h · W_hhᵀ
            let h_view =
                View { data: h, rows: batch, cols: hidden, row_stride: hidden, col_stride: 1 };
            let w_t = View::row_major(weight_t, hidden, width);
            matmul_into_serial(&mut gates[t * width..], time * width, h_view, w_t, true);
            if let Some(states) = states.as_mut() {
                for row in 0..batch {
                    let at = (row * time + t) * hidden;
                    states.hidden_before[at..at + hidden]
                        .copy_from_slice(&h[row * hidden..(row + 1) * hidden]);
                }
            }
            for row in 0..batch {
                let z = &mut gates[step(row)];
                let (ifg, o) = z.split_at_mut(3 * hidden);
                let (i_f, g) = ifg.split_at_mut(2 * hidden);
                sigmoid_in_place(i_f);
                tanh_in_place(g);
                sigmoid_in_place(o);
                let (i, f) = i_f.split_at(hidden);
                let c = &mut c[row * hidden..(row + 1) * hidden];
                for j in 0..hidden {
                    c[j] = f[j] * c[j] + i[j] * g[j];
                }
            }
            c_tanh.copy_from_slice(&c);
            tanh_in_place(&mut c_tanh);
            for row in 0..batch {
                let o = &gates[step(row)][3 * hidden..];
                let range = row * hidden..(row + 1) * hidden;
                for ((h, o), tc) in h[range.clone()].iter_mut().zip(o).zip(&c_tanh[range]) {
                    *h = o * tc;
                }
            }
            if let Some(states) = states.as_mut() {
                for row in 0..batch {
                    let at = (row * time + t) * hidden;
                    let from = row * hidden..(row + 1) * hidden;
                    states.cells[at..at + hidden].copy_from_slice(&c[from.clone()]);
                    states.cells_tanh[at..at + hidden].copy_from_slice(&c_tanh[from]);
                }
            }
        }
    }

    /// Backpropagation through time from the gradient of the last hidden state: the
    /// gradients of the projection `[batch, time, 4H]` and of `W_hh` `[4H, H]`. The
    /// sequences' recurrences run in parallel as in [`forward`], then `W_hh`'s gradient is
    /// one product over every step of every sequence.
    pub fn backward(
        trace: &Trace,
        weight: &[f32],
        grad_last: &[f32],
        shape: Shape,
    ) -> (Vec<f32>, Vec<f32>) {
        use rayon::prelude::*;

        let Shape { batch, time, hidden } = shape;
        let gates = 4 * hidden;
        let mut d_projected = vec![0.0f32; batch * time * gates];
        if time > 0 {
            let rows = batch.div_ceil(rayon::current_num_threads()).max(MIN_ROWS_PER_THREAD);
            d_projected
                .par_chunks_mut(rows * time * gates)
                .zip(grad_last.par_chunks(rows * hidden))
                .enumerate()
                .for_each(|(run, (d_projected, grad_last))| {
                    let shape = Shape { batch: grad_last.len() / hidden, ..shape };
                    backward_rows(trace, run * rows, weight, grad_last, shape, d_projected);
                });
        }
        // dW_hh = Σ_t dz_tᵀ · h_(t-1), every step at once: [4H, B·T] · [B·T, H].
        let steps = batch * time;
        let mut d_weight = vec![0.0f32; gates * hidden];
        let dz_all_t =
            View { data: &d_projected, rows: gates, cols: steps, row_stride: 1, col_stride: gates };
        let h_before = View {
            data: &trace.states.hidden_before,
            rows: steps,
            cols: hidden,
            row_stride: hidden,
            col_stride: 1,
        };
        matmul_into(&mut d_weight, hidden, dz_all_t, h_before, false);
        (d_projected, d_weight)
    }

    /// The recurrence of [`backward`] for the `shape.batch` sequences from `first` on: their
    /// rows of the projection's gradient, `d_projected`.
    // long: the per-step gate derivatives and the product back through W_hh belong to one
    // recurrence.
    fn backward_rows(
        trace: &Trace,
        first: usize,
        weight: &[f32],
        grad_last: &[f32],
        shape: Shape,
        d_projected: &mut [f32],
    ) {
        let Shape { batch, time, hidden } = shape;
        let gates = 4 * hidden;
        let mut dh = grad_last.to_vec();
        let mut dc = vec![0.0f32; batch * hidden];
        let no_cell = vec![0.0f32; hidden];
        for t in (0..time).rev() {
            for row in 0..batch {
                let at = ((first + row) * time + t) * hidden;
                let gate = &trace.gates[at * 4..(at + hidden) * 4];
                let (i, f, g, o) = (
                    &gate[..hidden],
                    &gate[hidden..2 * hidden],
                    &gate[2 * hidden..3 * hidden],
                    &gate[3 * hidden..],
                );
                let c_tanh = &trace.states.cells_tanh[at..at + hidden];
                let c_before =
                    if t == 0 { &no_cell[..] } else { &trace.states.cells[at - hidden..at] };
                let dz = &mut d_projected[(row * time + t) * gates..][..gates];
                let (dz_i, rest) = dz.split_at_mut(hidden);
                let (dz_f, rest) = rest.split_at_mut(hidden);
                let (dz_g, dz_o) = rest.split_at_mut(hidden);
                let dh = &dh[row * hidden..(row + 1) * hidden];
                let dc = &mut dc[row * hidden..(row + 1) * hidden];
                for j in 0..hidden {
                    let d_cell = dc[j] + dh[j] * o[j] * (1.0 - c_tanh[j] * c_tanh[j]);
                    dz_i[j] = d_cell * g[j] * i[j] * (1.0 - i[j]);
                    dz_f[j] = d_cell * c_before[j] * f[j] * (1.0 - f[j]);
                    dz_g[j] = d_cell * i[j] * (1.0 - g[j] * g[j]);
                    dz_o[j] = dh[j] * c_tanh[j] * o[j] * (1.0 - o[j]);
                    dc[j] = d_cell * f[j];
                }
            }
            if t > 0 {
                // dh = dz_t · W_hh, with dz_t the rows of step t in d_projected.
                let dz_t = View {
                    data: &d_projected[t * gates..],
                    rows: batch,
                    cols: gates,
                    row_stride: time * gates,
                    col_stride: 1,
                };
                let w = View::row_major(weight, gates, hidden);
                matmul_into_serial(&mut dh, hidden, dz_t, w, false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution};

    use super::*;
    use crate::ops::test_support::{assert_close, values};

    fn random<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
        Tensor::random(shape, Distribution::Uniform(-1.0, 1.0), device)
    }

    #[test]
    fn forward_matches_the_composed_lstm() {
        let device = Device::flex();
        // 131 sequences: more than one thread's run of rows (at least MIN_ROWS_PER_THREAD
        // each, on two or more threads), the last short.
        let projected = random([131, 7, 4 * 5], &device).mul_scalar(2.0);
        let weight = random([4 * 5, 5], &device);
        let fused = fused_last_hidden(projected.clone(), weight.clone());
        let composed = composed_last_hidden(projected, weight);
        assert_close(&values(fused), &values(composed), 1e-5, "last hidden");
    }

    /// Gradients of `sum(h_T * R)` for a fixed random `R`, through `lstm`.
    fn gradients(
        lstm: fn(Tensor<3>, Tensor<2>) -> Tensor<2>,
        projected: &Tensor<3>,
        weight: &Tensor<2>,
        probe: &Tensor<2>,
    ) -> (Vec<f32>, Vec<f32>) {
        let projected = projected.clone().require_grad();
        let weight = weight.clone().require_grad();
        let grads = (lstm(projected.clone(), weight.clone()) * probe.clone()).sum().backward();
        (values(projected.grad(&grads).unwrap()), values(weight.grad(&grads).unwrap()))
    }

    #[test]
    fn backward_matches_autodiff_through_the_composed_lstm() {
        let device = Device::flex().autodiff();
        let (batch, time, hidden) = (131, 9, 6);
        let projected = random([batch, time, 4 * hidden], &device).mul_scalar(2.0);
        let weight = random([4 * hidden, hidden], &device);
        let probe = random([batch, hidden], &device);
        let fused = gradients(fused_last_hidden, &projected, &weight, &probe);
        let composed = gradients(composed_last_hidden, &projected, &weight, &probe);
        assert_close(&fused.0, &composed.0, 1e-5, "d projected");
        assert_close(&fused.1, &composed.1, 1e-5, "d weight_hh");
    }

    #[test]
    fn backward_matches_finite_differences() {
        // Central differences of the kernel's own forward pass, in f64 arithmetic on the
        // f32 results: a step of 1e-2 keeps rounding error near 1e-5 and truncation error
        // (third derivative times 1e-4) below 1e-4.
        let shape = Shape { batch: 2, time: 4, hidden: 3 };
        let gates = 4 * shape.hidden;
        let device = Device::flex();
        let projected = values(random([shape.batch, shape.time, gates], &device).mul_scalar(2.0));
        let weight = values(random([gates, shape.hidden], &device));
        let probe = values(random([shape.batch, shape.hidden], &device));
        let loss = |projected: &[f32], weight: &[f32]| -> f64 {
            let last = kernel::forward(&mut projected.to_vec(), weight, shape, None);
            last.iter().zip(&probe).map(|(h, r)| f64::from(h * r)).sum()
        };
        let (trace, _) = kernel::Trace::record(projected.clone(), &weight, shape);
        let (d_projected, d_weight) = kernel::backward(&trace, &weight, &probe, shape);
        let step = 1e-2f32;
        let numeric = |values: &[f32], k: usize, in_weight: bool| {
            let (mut plus, mut minus) = (values.to_vec(), values.to_vec());
            plus[k] += step;
            minus[k] -= step;
            let (up, down) = if in_weight {
                (loss(&projected, &plus), loss(&projected, &minus))
            } else {
                (loss(&plus, &weight), loss(&minus, &weight))
            };
            (up - down) / (2.0 * f64::from(step))
        };
        for (k, analytic) in d_projected.iter().enumerate() {
            let numeric = numeric(&projected, k, false);
            assert!(
                (f64::from(*analytic) - numeric).abs() < 2e-4,
                "dP[{k}]: {analytic} vs {numeric}"
            );
        }
        for (k, analytic) in d_weight.iter().enumerate() {
            let numeric = numeric(&weight, k, true);
            assert!(
                (f64::from(*analytic) - numeric).abs() < 2e-4,
                "dW[{k}]: {analytic} vs {numeric}"
            );
        }
    }
}
