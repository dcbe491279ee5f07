//! Multi-head scaled dot-product self-attention (Vaswani et al., 2017) with a key padding
//! mask and dropout on the attention weights, as one op over the projected `[batch, seq,
//! width]` queries, keys and values.
//!
//! Burn's `MultiHeadAttention` splits heads with reshapes and transposes, then runs the
//! scores, the scaling, the mask, the softmax, the dropout and the weighted sum as separate
//! passes over `[batch, heads, seq, seq]` tensors, each one kept for autodiff. Here each
//! head is read in place as a strided view of the projections, the scores of one head stay
//! in a `seq x seq` buffer through scale, mask, softmax and dropout, and the context is
//! written straight into its columns of the merged output. Training keeps one tensor: the
//! softmax weights before dropout; the backward regenerates the dropout mask from its seed
//! (see [`super::dropout`]).

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::nn::Dropout;
use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Tensor};

use super::dropout::{DropoutMask, is_active};
use super::{flex_tensor, fused_f32, host_floats};

/// The score a padded key gets before the softmax: Burn's `MultiHeadAttention` default
/// `min_float`, so that both paths weigh a fully padded row the same (uniformly).
const MASKED_SCORE: f32 = -1.0e4;

/// `softmax(q_h k_hᵀ / √d) v_h` for each of `heads` heads (`d = width / heads`), the heads'
/// contexts side by side in `[batch, seq, width]`. `key_padding` (`[batch, seq]`, true at
/// padding) masks keys; `dropout` applies to the attention weights while training.
pub fn self_attention(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    heads: usize,
    key_padding: Tensor<2, Bool>,
    dropout: &Dropout,
) -> Tensor<3> {
    if !fused_f32(&q) {
        return composed(q, k, v, heads, key_padding, dropout);
    }
    let mask = is_active(dropout, &q).then(|| DropoutMask::draw(dropout.prob, &q.device()));
    let padding: Vec<bool> = key_padding.into_data().try_to_vec().unwrap_or_default();
    Tensor::from_dispatch(Dispatch::multi_head_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        heads,
        Arc::new(padding),
        mask,
    ))
}

/// The same function from Burn ops, step for step as Burn's `MultiHeadAttention`: the path
/// off burn-flex and the tests' reference.
fn composed(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    heads: usize,
    key_padding: Tensor<2, Bool>,
    dropout: &Dropout,
) -> Tensor<3> {
    let [batch, seq, width] = q.dims();
    let split = |x: Tensor<3>| x.reshape([batch, seq, heads, width / heads]).swap_dims(1, 2);
    let scores = split(q).matmul(split(k).swap_dims(2, 3)) / ((width / heads) as f32).sqrt();
    let scores = scores.mask_fill(key_padding.reshape([batch, 1, 1, seq]), MASKED_SCORE);
    let weights = dropout.forward(softmax(scores, 3));
    weights.matmul(split(v)).swap_dims(1, 2).reshape([batch, seq, width])
}

#[backend_extension(Flex, Autodiff)]
pub trait FusedAttentionOps: Backend {
    fn multi_head_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        heads: usize,
        key_padding: Arc<Vec<bool>>,
        dropout: Option<DropoutMask>,
    ) -> FloatTensor<Self>;
}

impl FusedAttentionOps for Flex {
    fn multi_head_attention(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        heads: usize,
        key_padding: Arc<Vec<bool>>,
        dropout: Option<DropoutMask>,
    ) -> FlexTensor {
        let shape = Heads::of(&q, heads);
        let values = [&q, &k, &v].map(host_floats);
        let out =
            kernel::forward(values.each_ref().map(|v| &v[..]), &key_padding, dropout, shape, None);
        flex_tensor(out, shape.dims())
    }
}

impl<C: CheckpointStrategy> FusedAttentionOps for Autodiff<Flex, C> {
    fn multi_head_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        heads: usize,
        key_padding: Arc<Vec<bool>>,
        dropout: Option<DropoutMask>,
    ) -> FloatTensor<Self> {
        let shape = Heads::of(q.primitive(), heads);
        let inputs = [q.primitive(), k.primitive(), v.primitive()];
        let values = inputs.map(host_floats);
        let run = |weights: Option<&mut Vec<f32>>| {
            let values = values.each_ref().map(|v| &v[..]);
            flex_tensor(
                kernel::forward(values, &key_padding, dropout, shape, weights),
                shape.dims(),
            )
        };
        let nodes = [q.node(), k.node(), v.node()];
        match AttentionBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let mut weights = Vec::new();
                let out = run(Some(&mut weights));
                let saved = Saved {
                    shape,
                    inputs: inputs.map(Clone::clone),
                    weights: Arc::new(weights),
                    key_padding: key_padding.clone(),
                    dropout,
                };
                prep.finish(saved, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(run(None)),
        }
    }
}

/// What the backward needs: the inputs, the softmax weights before dropout, the mask.
#[derive(Debug, Clone)]
struct Saved {
    shape: Heads,
    inputs: [FlexTensor; 3],
    weights: Arc<Vec<f32>>,
    key_padding: Arc<Vec<bool>>,
    dropout: Option<DropoutMask>,
}

#[derive(Debug)]
struct AttentionBackward;

impl Backward<Flex, 3> for AttentionBackward {
    type State = Saved;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let saved = ops.state;
        let grad = grads.consume::<Flex>(&ops.node);
        let values = saved.inputs.each_ref().map(host_floats);
        let [d_q, d_k, d_v] = kernel::backward(
            values.each_ref().map(|v| &v[..]),
            &host_floats(&grad),
            &saved.weights,
            &saved.key_padding,
            saved.dropout,
            saved.shape,
        );
        for (parent, d) in ops.parents.into_iter().zip([d_q, d_k, d_v]) {
            if let Some(node) = parent {
                grads.register::<Flex>(node.id, flex_tensor(d, saved.shape.dims()));
            }
        }
    }
}

/// Sizes of a `[batch, seq, width]` projection split into `heads` heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Heads {
    batch: usize,
    seq: usize,
    width: usize,
    heads: usize,
    head_width: usize,
}

impl Heads {
    fn of(x: &FlexTensor, heads: usize) -> Self {
        let dims = x.layout().shape();
        let (batch, seq, width) = (dims[0], dims[1], dims[2]);
        assert!(heads > 0 && width % heads == 0, "width {width} does not split into {heads} heads");
        Self { batch, seq, width, heads, head_width: width / heads }
    }

    fn dims(&self) -> [usize; 3] {
        [self.batch, self.seq, self.width]
    }
}

/// The kernels on plain row-major `f32` buffers; one task per sequence of the batch, which
/// runs its heads in turn, so that every task writes its own rows of the outputs.
mod kernel {
    use rayon::prelude::*;

    use super::{Heads, MASKED_SCORE};
    use crate::ops::activation::softmax_in_place;
    use crate::ops::dropout::{DropoutMask, apply_in_place};
    use crate::ops::matmul::{View, matmul_into_serial};

    /// Head `head` of sequence `batch` of a `[batch, seq, width]` buffer, as a `seq x
    /// head_width` matrix.
    fn head<'a>(x: &'a [f32], shape: Heads, batch: usize, head: usize) -> View<'a> {
        let start = batch * shape.seq * shape.width + head * shape.head_width;
        View {
            data: &x[start..],
            rows: shape.seq,
            cols: shape.head_width,
            row_stride: shape.width,
            col_stride: 1,
        }
    }

    fn transposed(view: View) -> View {
        View {
            rows: view.cols,
            cols: view.rows,
            row_stride: view.col_stride,
            col_stride: view.row_stride,
            ..view
        }
    }

    /// One head of one sequence: where it reads and writes, and its share of the
    /// `[batch, heads, seq, seq]` weights (what the dropout mask is drawn over).
    #[derive(Clone, Copy)]
    struct Task<'a> {
        shape: Heads,
        batch: usize,
        head: usize,
        padding: Option<&'a [bool]>,
        dropout: Option<DropoutMask>,
    }

    impl Task<'_> {
        fn view<'x>(&self, x: &'x [f32]) -> View<'x> {
            head(x, self.shape, self.batch, self.head)
        }

        fn first_weight(&self) -> u64 {
            ((self.batch * self.shape.heads + self.head) * self.shape.seq * self.shape.seq) as u64
        }

        fn scale(&self) -> f32 {
            1.0 / (self.shape.head_width as f32).sqrt()
        }

        /// The head's columns of a sequence's `[seq, width]` rows.
        fn columns<'o>(&self, rows: &'o mut [f32]) -> &'o mut [f32] {
            &mut rows[self.head * self.shape.head_width..]
        }
    }

    /// The merged contexts `[batch, seq, width]`; `weights` (when given) receives the
    /// softmax weights before dropout, `[batch, heads, seq, seq]`.
    pub fn forward(
        [q, k, v]: [&[f32]; 3],
        key_padding: &[bool],
        dropout: Option<DropoutMask>,
        shape: Heads,
        weights: Option<&mut Vec<f32>>,
    ) -> Vec<f32> {
        let Heads { seq, width, heads, .. } = shape;
        let mut out = vec![0.0f32; shape.batch * seq * width];
        let square = seq * seq;
        let run = |batch: usize, out: &mut [f32], kept: &mut [f32], scratch: &mut Vec<f32>| {
            let padding = key_padding.get(batch * seq..(batch + 1) * seq);
            for (head, kept) in kept.chunks_mut(square.max(1)).enumerate() {
                let task = Task { shape, batch, head, padding, dropout };
                head_forward(task, [q, k, v], out, kept, scratch);
            }
        };
        let rows = out.par_chunks_mut((seq * width).max(1));
        match weights {
            Some(weights) => {
                weights.resize(shape.batch * heads * square, 0.0);
                rows.zip(weights.par_chunks_mut((heads * square).max(1)))
                    .enumerate()
                    .for_each_init(Vec::new, |scratch, (batch, (out, kept))| {
                        run(batch, out, kept, scratch)
                    });
            }
            None => rows.enumerate().for_each_init(
                || (vec![0.0f32; heads * square], Vec::new()),
                |(kept, scratch), (batch, out)| run(batch, out, kept, scratch),
            ),
        }
        out
    }

    /// One head's softmax weights into `kept` and its context into its columns of `out`.
    fn head_forward(
        task: Task,
        [q, k, v]: [&[f32]; 3],
        out: &mut [f32],
        kept: &mut [f32],
        scratch: &mut Vec<f32>,
    ) {
        let seq = task.shape.seq;
        matmul_into_serial(kept, seq, task.view(q), transposed(task.view(k)), false);
        for row in kept.chunks_mut(seq.max(1)) {
            scale_and_mask(row, task.scale(), task.padding);
            softmax_in_place(row);
        }
        let applied: &[f32] = match task.dropout {
            Some(mask) => {
                scratch.clear();
                scratch.extend_from_slice(kept);
                apply_in_place(mask, task.first_weight(), scratch);
                scratch
            }
            None => kept,
        };
        let width = task.shape.width;
        let weights = View::row_major(applied, seq, seq);
        matmul_into_serial(task.columns(out), width, weights, task.view(v), false);
    }

    /// Scores times `scale`, with padded keys set to [`MASKED_SCORE`].
    fn scale_and_mask(row: &mut [f32], scale: f32, padding: Option<&[bool]>) {
        match padding {
            Some(padding) => {
                for (score, &pad) in row.iter_mut().zip(padding) {
                    *score = if pad { MASKED_SCORE } else { *score * scale };
                }
            }
            None => row.iter_mut().for_each(|score| *score *= scale),
        }
    }

    /// `[d_q, d_k, d_v]`, each `[batch, seq, width]`, from the output gradient `grad`.
    pub fn backward(
        [q, k, v]: [&[f32]; 3],
        grad: &[f32],
        weights: &[f32],
        key_padding: &[bool],
        dropout: Option<DropoutMask>,
        shape: Heads,
    ) -> [Vec<f32>; 3] {
        let Heads { seq, width, heads, .. } = shape;
        let square = seq * seq;
        let len = shape.batch * seq * width;
        let (mut d_q, mut d_k, mut d_v) = (vec![0.0f32; len], vec![0.0f32; len], vec![0.0f32; len]);
        let rows = (seq * width).max(1);
        d_q.par_chunks_mut(rows)
            .zip(d_k.par_chunks_mut(rows))
            .zip(d_v.par_chunks_mut(rows))
            .zip(weights.par_chunks((heads * square).max(1)))
            .enumerate()
            .for_each_init(
                || [vec![0.0f32; square], vec![0.0f32; square]],
                |scratch, (batch, (((d_q, d_k), d_v), kept))| {
                    let padding = key_padding.get(batch * seq..(batch + 1) * seq);
                    for (head, kept) in kept.chunks(square.max(1)).enumerate() {
                        let task = Task { shape, batch, head, padding, dropout };
                        head_backward(
                            task,
                            [q, k, v, grad],
                            kept,
                            [&mut *d_q, &mut *d_k, &mut *d_v],
                            scratch,
                        );
                    }
                },
            );
        [d_q, d_k, d_v]
    }

    /// One head's share of `[d_q, d_k, d_v]` from the output gradient and its softmax
    /// weights `kept`.
    fn head_backward(
        task: Task,
        [q, k, v, grad]: [&[f32]; 4],
        kept: &[f32],
        [d_q, d_k, d_v]: [&mut [f32]; 3],
        [d_scores, dropped]: &mut [Vec<f32>; 2],
    ) {
        let (seq, width) = (task.shape.seq, task.shape.width);
        let grad = task.view(grad);
        // d(weights after dropout) = grad · vᵀ
        matmul_into_serial(d_scores, seq, grad, transposed(task.view(v)), false);
        let used: &[f32] = match task.dropout {
            Some(mask) => {
                apply_in_place(mask, task.first_weight(), d_scores);
                dropped.copy_from_slice(kept);
                apply_in_place(mask, task.first_weight(), dropped);
                dropped
            }
            None => kept,
        };
        let used = View::row_major(used, seq, seq);
        matmul_into_serial(task.columns(d_v), width, transposed(used), grad, false);
        for (d_row, row) in d_scores.chunks_mut(seq.max(1)).zip(kept.chunks(seq.max(1))) {
            softmax_backward_row(d_row, row, task.scale(), task.padding);
        }
        let d_scores = View::row_major(d_scores, seq, seq);
        matmul_into_serial(task.columns(d_q), width, d_scores, task.view(k), false);
        matmul_into_serial(task.columns(d_k), width, transposed(d_scores), task.view(q), false);
    }

    /// `d <- scale · p ⊙ (d - Σ d ⊙ p)`: the gradient of the scaled scores from that of the
    /// softmax weights `p`; a padded key's score was replaced, so it passes none.
    fn softmax_backward_row(d: &mut [f32], p: &[f32], scale: f32, padding: Option<&[bool]>) {
        let dot: f32 = d.iter().zip(p).map(|(d, p)| d * p).sum();
        for (d, p) in d.iter_mut().zip(p) {
            *d = scale * p * (*d - dot);
        }
        if let Some(padding) = padding {
            for (d, &pad) in d.iter_mut().zip(padding) {
                if pad {
                    *d = 0.0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::DropoutConfig;
    use burn::tensor::{Device, TensorData};

    use super::*;
    use crate::ops::test_support::{assert_close, spread, values};

    const HEADS: usize = 3;

    fn projections(device: &Device) -> [Tensor<3>; 3] {
        [1, 2, 3].map(|which| spread([2, 7, 12], which, device))
    }

    /// The second sequence has its last three positions padded.
    fn padding(device: &Device) -> Tensor<2, Bool> {
        let pad: Vec<bool> = (0..14).map(|i| i >= 11).collect();
        Tensor::from_data(TensorData::new(pad, [2, 7]), device)
    }

    /// Output and the gradients of q, k and v under a weighted sum of the output.
    fn run(
        attention: impl Fn([Tensor<3>; 3]) -> Tensor<3>,
        device: &Device,
    ) -> (Vec<f32>, [Vec<f32>; 3]) {
        let inputs = projections(device).map(Tensor::require_grad);
        let out = attention(inputs.clone());
        let weights = spread(out.dims(), 4, device);
        let grads = (out.clone() * weights).sum().backward();
        (values(out), inputs.map(|x| values(x.grad(&grads).unwrap())))
    }

    #[test]
    fn forward_and_gradients_match_burns_attention() {
        let device = Device::flex().autodiff();
        let frozen = DropoutConfig::new(0.0).init();
        let fused =
            run(|[q, k, v]| self_attention(q, k, v, HEADS, padding(&device), &frozen), &device);
        let reference =
            run(|[q, k, v]| composed(q, k, v, HEADS, padding(&device), &frozen), &device);
        assert_close(&fused.0, &reference.0, 1e-5, "context");
        for (name, (ours, theirs)) in
            ["d_q", "d_k", "d_v"].iter().zip(fused.1.iter().zip(&reference.1))
        {
            assert_close(ours, theirs, 1e-5, name);
        }
    }

    #[test]
    fn dropout_drops_the_same_weights_forward_and_backward() {
        // With dropout the two paths draw different masks, so the check is internal: the
        // output is linear in v, so with the same seed d_v · v equals Σ grad ⊙ out.
        let device = Device::flex().autodiff();
        let layer = DropoutConfig::new(0.5).init();
        let inputs = projections(&device).map(Tensor::require_grad);
        let out = self_attention(
            inputs[0].clone(),
            inputs[1].clone(),
            inputs[2].clone(),
            HEADS,
            padding(&device),
            &layer,
        );
        let weights = spread(out.dims(), 4, &device);
        let grads = (out.clone() * weights.clone()).sum().backward();
        let d_v = inputs[2].grad(&grads).unwrap();
        let through_v = values((d_v * inputs[2].clone().inner()).sum())[0];
        let direct = values((out.inner() * weights.inner()).sum())[0];
        assert!(
            (through_v - direct).abs() < 1e-3 * (1.0 + direct.abs()),
            "{through_v} vs {direct}"
        );
        // And a different draw than without dropout.
        let frozen = DropoutConfig::new(0.0).init();
        let plain = self_attention(
            inputs[0].clone(),
            inputs[1].clone(),
            inputs[2].clone(),
            HEADS,
            padding(&device),
            &frozen,
        );
        assert_ne!(
            values(plain),
            values(self_attention(
                inputs[0].clone(),
                inputs[1].clone(),
                inputs[2].clone(),
                HEADS,
                padding(&device),
                &layer,
            ))
        );
    }

    #[test]
    fn gradient_matches_central_differences() {
        let device = Device::flex().autodiff();
        let frozen = DropoutConfig::new(0.0).init();
        let inputs = projections(&device);
        let weights = spread([2, 7, 12], 4, &device);
        let loss = |inputs: [Tensor<3>; 3]| {
            let [q, k, v] = inputs;
            (self_attention(q, k, v, HEADS, padding(&device), &frozen) * weights.clone()).sum()
        };
        let tracked = inputs.clone().map(Tensor::require_grad);
        let grads = loss(tracked.clone()).backward();
        let analytic = tracked.map(|x| values(x.grad(&grads).unwrap()));
        let h = 1e-2f32;
        for (which, probe) in [(0, 5), (1, 30), (2, 100), (1, 150)] {
            let nudged = |delta: f32| {
                let mut inputs = inputs.clone();
                let mut flat = values(inputs[which].clone());
                flat[probe] += delta;
                inputs[which] = Tensor::from_data(TensorData::new(flat, [2, 7, 12]), &device);
                values(loss(inputs))[0]
            };
            let numeric = (nudged(h) - nudged(-h)) / (2.0 * h);
            let ours = analytic[which][probe];
            assert!(
                (ours - numeric).abs() < 2e-3 * (1.0 + numeric.abs()),
                "input {which}[{probe}]: {ours} vs {numeric}"
            );
        }
        // A padded key gets no gradient: keys 4-6 of the second sequence.
        for position in 4..7 {
            let start = (7 + position) * 12;
            assert!(analytic[1][start..start + 12].iter().all(|&g| g == 0.0));
        }
    }

    #[test]
    fn inference_matches_burns_attention() {
        let device = Device::flex();
        let frozen = DropoutConfig::new(0.1).init();
        let [q, k, v] = projections(&device);
        let fused =
            self_attention(q.clone(), k.clone(), v.clone(), HEADS, padding(&device), &frozen);
        let reference = composed(q, k, v, HEADS, padding(&device), &frozen);
        assert_close(&values(fused), &values(reference), 1e-5, "context");
    }
}
