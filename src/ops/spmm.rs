//! Sparse-dense matrix product: `out[r] = Σ_k values[k] · dense[cols[k]]` over the
//! non-zeros `k` of row `r`, a sparse `[num_rows, K]` matrix in coordinate form (`rows`,
//! `cols`, `values`) times a dense `[K, F]` one; with `heads` values per non-zero
//! (`values` `[nnz, heads]`, `dense` `[K, heads * F]`), one such product per head, side by side.
//!
//! The graph nets' message passing: GCN and LightGCN propagation (`Â H`, values the edge
//! normalisation), the projection of sparse input features (`X W`), and GAT's weighted sum of
//! neighbours (values the attention coefficients, one per head). Composed from Burn ops
//! it gathers a `[nnz, F]` tensor, scales it and scatter-adds it, three passes over the
//! largest tensor of the step; here each output row is summed in place (rows in parallel),
//! and the backward pass is the transposed product for `dense` (each of its rows summed in
//! place too) and one dot product per non-zero for `values`.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::{DType, Int, Tensor};
use rayon::prelude::*;

use super::{flex_tensor, fused_f32, host_floats};

/// `out[rows[k]] += values[k] · dense[cols[k]]` for every `k`, per head: `values`
/// `[nnz, heads]`, `dense` `[K, heads * F]`, the result `[num_rows, heads * F]`.
pub fn sparse_matmul(
    rows: Tensor<1, Int>,
    cols: Tensor<1, Int>,
    values: Tensor<2>,
    dense: Tensor<2>,
    num_rows: usize,
) -> Tensor<2> {
    if fused_f32(&dense) && fused_f32(&values) {
        fused_sparse_matmul(rows, cols, values, dense, num_rows)
    } else {
        composed_sparse_matmul(rows, cols, values, dense, num_rows)
    }
}

/// The fused kernel; burn-flex devices only.
fn fused_sparse_matmul(
    rows: Tensor<1, Int>,
    cols: Tensor<1, Int>,
    values: Tensor<2>,
    dense: Tensor<2>,
    num_rows: usize,
) -> Tensor<2> {
    Tensor::from_dispatch(Dispatch::sparse_matmul(
        rows.into_dispatch(),
        cols.into_dispatch(),
        values.into_dispatch(),
        dense.into_dispatch(),
        num_rows,
    ))
}

/// The same product from Burn ops (gather, scale, scatter-add): the path on other
/// backends, and the kernel's reference in the tests.
pub fn composed_sparse_matmul(
    rows: Tensor<1, Int>,
    cols: Tensor<1, Int>,
    values: Tensor<2>,
    dense: Tensor<2>,
    num_rows: usize,
) -> Tensor<2> {
    let [_, width] = dense.dims();
    let [nnz, heads] = values.dims();
    let messages = (dense.select(0, cols).reshape([nnz, heads, width / heads])
        * values.unsqueeze_dim(2))
    .reshape([nnz, width]);
    Tensor::zeros([num_rows, width], &messages.device()).select_assign(
        0,
        rows,
        messages,
        burn::tensor::IndexingUpdateOp::Add,
    )
}

/// The fused product as a backend operation: burn-flex's kernel, and autodiff over
/// burn-flex with the hand-written backward.
#[backend_extension(Flex, Autodiff)]
pub trait FusedSparseMatmul: Backend {
    fn sparse_matmul(
        rows: IntTensor<Self>,
        cols: IntTensor<Self>,
        values: FloatTensor<Self>,
        dense: FloatTensor<Self>,
        num_rows: usize,
    ) -> FloatTensor<Self>;
}

impl FusedSparseMatmul for Flex {
    fn sparse_matmul(
        rows: FlexTensor,
        cols: FlexTensor,
        values: FlexTensor,
        dense: FlexTensor,
        num_rows: usize,
    ) -> FlexTensor {
        let pattern = Pattern::new(&rows, &cols, num_rows, shape_of(&values, &dense));
        let out = kernel::product(&pattern, &host_floats(&values), &host_floats(&dense));
        flex_tensor(out, [num_rows, pattern.width])
    }
}

impl<C: CheckpointStrategy> FusedSparseMatmul for Autodiff<Flex, C> {
    fn sparse_matmul(
        rows: FlexTensor,
        cols: FlexTensor,
        values: FloatTensor<Self>,
        dense: FloatTensor<Self>,
        num_rows: usize,
    ) -> FloatTensor<Self> {
        let pattern =
            Pattern::new(&rows, &cols, num_rows, shape_of(values.primitive(), dense.primitive()));
        let prepared = SparseMatmulBackward
            .prepare::<C>([values.node(), dense.node()])
            .compute_bound()
            .stateful();
        let value_data = host_floats(values.primitive());
        let dense_data = host_floats(dense.primitive());
        let out = kernel::product(&pattern, &value_data, &dense_data);
        let out = flex_tensor(out, [num_rows, pattern.width]);
        match prepared {
            OpsKind::Tracked(prep) => {
                let state = Saved {
                    pattern: Arc::new(pattern),
                    values: Arc::new(value_data.into_owned()),
                    dense: Arc::new(dense_data.into_owned()),
                };
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }
}

#[derive(Debug)]
struct SparseMatmulBackward;

#[derive(Debug, Clone)]
struct Saved {
    pattern: Arc<Pattern>,
    values: Arc<Vec<f32>>,
    dense: Arc<Vec<f32>>,
}

impl Backward<Flex, 2> for SparseMatmulBackward {
    type State = Saved;

    fn backward(self, ops: Ops<Saved, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let Saved { pattern, values, dense } = ops.state;
        let grad = grads.consume::<Flex>(&ops.node);
        let grad = host_floats(&grad);
        let [values_node, dense_node] = ops.parents;
        if let Some(node) = values_node {
            let d_values = kernel::values_gradient(&pattern, &grad, &dense);
            let nnz = pattern.rows.len();
            grads.register::<Flex>(node.id, flex_tensor(d_values, [nnz, pattern.heads]));
        }
        if let Some(node) = dense_node {
            let d_dense = kernel::transposed_product(&pattern, &values, &grad);
            grads.register::<Flex>(
                node.id,
                flex_tensor(d_dense, [pattern.dense_rows, pattern.width]),
            );
        }
    }
}

/// Where the non-zeros are: their coordinates and their order by row (a counting sort, so
/// that each output row is one thread's contiguous run of non-zeros; the backward pass
/// orders them by column the same way).
#[derive(Debug)]
pub struct Pattern {
    rows: Vec<usize>,
    cols: Vec<usize>,
    by_row: Grouping,
    dense_rows: usize,
    heads: usize,
    width: usize,
}

/// Non-zero indices grouped by a coordinate: group `g` is `order[start[g]..start[g + 1]]`.
#[derive(Debug)]
struct Grouping {
    start: Vec<usize>,
    order: Vec<usize>,
}

impl Grouping {
    fn new(keys: &[usize], groups: usize) -> Self {
        let mut start = vec![0usize; groups + 1];
        for &key in keys {
            start[key + 1] += 1;
        }
        for g in 0..groups {
            start[g + 1] += start[g];
        }
        let mut next = start.clone();
        let mut order = vec![0usize; keys.len()];
        for (k, &key) in keys.iter().enumerate() {
            order[next[key]] = k;
            next[key] += 1;
        }
        Self { start, order }
    }

    fn members(&self, group: usize) -> &[usize] {
        &self.order[self.start[group]..self.start[group + 1]]
    }
}

/// The sizes a product reads from its `values` `[nnz, heads]` and `dense` `[K, heads * F]`.
struct Sizes {
    nnz: usize,
    heads: usize,
    dense_rows: usize,
    width: usize,
}

impl Pattern {
    fn new(rows: &FlexTensor, cols: &FlexTensor, num_rows: usize, sizes: Sizes) -> Self {
        let Sizes { nnz, heads, dense_rows, width } = sizes;
        let rows = indices(rows, num_rows, "row");
        let cols = indices(cols, dense_rows, "column");
        assert!(rows.len() == nnz && cols.len() == nnz, "sparse matrix: one value per non-zero");
        let by_row = Grouping::new(&rows, num_rows);
        Self { rows, cols, by_row, dense_rows, heads, width }
    }
}

fn shape_of(values: &FlexTensor, dense: &FlexTensor) -> Sizes {
    let (values, dense) = (values.layout().shape(), dense.layout().shape());
    assert!(
        values.num_dims() == 2 && dense.num_dims() == 2 && dense[1].is_multiple_of(values[1]),
        "sparse matrix product: values [nnz, heads] and dense [K, heads * F]"
    );
    Sizes { nnz: values[0], heads: values[1], dense_rows: dense[0], width: dense[1] }
}

/// An index tensor's values, each checked against `bound`.
fn indices(tensor: &FlexTensor, bound: usize, what: &str) -> Vec<usize> {
    let tensor = tensor.to_contiguous();
    let values: Vec<usize> = match tensor.dtype() {
        DType::I64 => tensor.storage::<i64>().iter().map(|&i| i as usize).collect(),
        DType::I32 => tensor.storage::<i32>().iter().map(|&i| i as usize).collect(),
        other => panic!("sparse matrix {what} indices must be i64 or i32, got {other:?}"),
    };
    assert!(values.iter().all(|&i| i < bound), "sparse matrix {what} index out of range");
    values
}

/// The products on plain row-major buffers, rows in parallel on rayon's pool. Head `h` of
/// a row is its `h`-th run of `width / heads` columns, weighted by `values[k * heads + h]`.
mod kernel {
    use super::*;

    /// `out += Σ_h value_h · from[head h]`, head by head.
    fn add_scaled(out: &mut [f32], from: &[f32], values: &[f32]) {
        let per_head = out.len() / values.len();
        for ((out, from), value) in
            out.chunks_exact_mut(per_head).zip(from.chunks_exact(per_head)).zip(values)
        {
            for (o, x) in out.iter_mut().zip(from) {
                *o += value * x;
            }
        }
    }

    /// `out[r] = Σ_{k in group r} values[k] · source[gather[k]]`, the groups in parallel:
    /// the product (groups the rows, gathering by column) and its transpose (groups the
    /// columns, gathering by row).
    fn grouped_sum(
        groups: &Grouping,
        gather: &[usize],
        values: &[f32],
        source: &[f32],
        heads: usize,
        width: usize,
    ) -> Vec<f32> {
        let mut out = vec![0.0f32; groups.start.len().saturating_sub(1) * width];
        if width == 0 {
            return out;
        }
        out.par_chunks_mut(width).enumerate().for_each(|(group, out)| {
            for &k in groups.members(group) {
                let from = &source[gather[k] * width..][..width];
                add_scaled(out, from, &values[k * heads..(k + 1) * heads]);
            }
        });
        out
    }

    /// `out[r] = Σ_{k in row r} values[k] · dense[cols[k]]`.
    pub fn product(pattern: &Pattern, values: &[f32], dense: &[f32]) -> Vec<f32> {
        let Pattern { by_row, cols, heads, width, .. } = pattern;
        grouped_sum(by_row, cols, values, dense, *heads, *width)
    }

    /// The gradient of `dense`: `Σ_{k in column c} values[k] · grad[rows[k]]` per row `c`.
    pub fn transposed_product(pattern: &Pattern, values: &[f32], grad: &[f32]) -> Vec<f32> {
        // Ordered by column only here: a forward pass without a backward never needs it.
        let Pattern { cols, rows, dense_rows, heads, width, .. } = pattern;
        grouped_sum(&Grouping::new(cols, *dense_rows), rows, values, grad, *heads, *width)
    }

    /// The gradient of `values`: `grad[rows[k]] · dense[cols[k]]` per non-zero and head.
    pub fn values_gradient(pattern: &Pattern, grad: &[f32], dense: &[f32]) -> Vec<f32> {
        let (width, heads) = (pattern.width, pattern.heads);
        let per_head = width / heads;
        let mut out = vec![0.0f32; pattern.rows.len() * heads];
        if per_head == 0 {
            return out;
        }
        out.par_chunks_mut(heads).enumerate().for_each(|(k, out)| {
            let g = &grad[pattern.rows[k] * width..][..width];
            let d = &dense[pattern.cols[k] * width..][..width];
            for ((out, g), d) in
                out.iter_mut().zip(g.chunks_exact(per_head)).zip(d.chunks_exact(per_head))
            {
                *out = g.iter().zip(d).map(|(a, b)| a * b).sum();
            }
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution, TensorData};

    use super::*;
    use crate::ops::test_support::{assert_close, values};

    /// A random `[5, 4]` sparse matrix with repeated coordinates and an empty row and column.
    fn coordinates(device: &Device) -> (Tensor<1, Int>, Tensor<1, Int>, usize, usize) {
        let rows = vec![0i64, 0, 1, 3, 3, 3, 4, 0];
        let cols = vec![1i64, 3, 0, 1, 1, 2, 0, 1];
        let len = rows.len();
        (
            Tensor::from_data(TensorData::new(rows, [len]), device),
            Tensor::from_data(TensorData::new(cols, [len]), device),
            5,
            4,
        )
    }

    #[test]
    fn product_matches_a_dense_matrix_product() {
        let device = Device::flex();
        let (rows, cols, num_rows, k) = coordinates(&device);
        let nnz = rows.dims()[0];
        let weights = Tensor::<2>::random([nnz, 1], Distribution::Uniform(-1.0, 1.0), &device);
        let dense = Tensor::<2>::random([k, 3], Distribution::Uniform(-1.0, 1.0), &device);
        let fused = fused_sparse_matmul(
            rows.clone(),
            cols.clone(),
            weights.clone(),
            dense.clone(),
            num_rows,
        );
        // The same matrix built densely, repeated coordinates summed.
        let (r, c, w) = (
            rows.into_data().convert::<i64>().try_to_vec::<i64>().unwrap(),
            cols.into_data().convert::<i64>().try_to_vec::<i64>().unwrap(),
            values(weights),
        );
        let mut matrix = vec![0.0f32; num_rows * k];
        for ((r, c), w) in r.iter().zip(&c).zip(&w) {
            matrix[*r as usize * k + *c as usize] += w;
        }
        let matrix = Tensor::<2>::from_data(TensorData::new(matrix, [num_rows, k]), &device);
        assert_close(&values(fused), &values(matrix.matmul(dense)), 1e-5, "product");
    }

    #[test]
    fn heads_and_gradients_match_autodiff_through_the_composed_product() {
        let device = Device::flex().autodiff();
        let (rows, cols, num_rows, k) = coordinates(&device);
        let (nnz, heads, per_head) = (rows.dims()[0], 2, 3);
        let uniform = Distribution::Uniform(-1.0, 1.0);
        let weights = Tensor::<2>::random([nnz, heads], uniform, &device);
        let dense = Tensor::<2>::random([k, heads * per_head], uniform, &device);
        let probe = Tensor::<2>::random([num_rows, heads * per_head], uniform, &device);
        type Product = fn(Tensor<1, Int>, Tensor<1, Int>, Tensor<2>, Tensor<2>, usize) -> Tensor<2>;
        let run = |product: Product| {
            let (w, d) = (weights.clone().require_grad(), dense.clone().require_grad());
            let out = product(rows.clone(), cols.clone(), w.clone(), d.clone(), num_rows);
            let grads = (out.clone() * probe.clone()).sum().backward();
            (values(out), values(w.grad(&grads).unwrap()), values(d.grad(&grads).unwrap()))
        };
        let (ours, reference) = (run(fused_sparse_matmul), run(composed_sparse_matmul));
        assert_close(&ours.0, &reference.0, 1e-5, "product");
        assert_close(&ours.1, &reference.1, 1e-5, "d values");
        assert_close(&ours.2, &reference.2, 1e-5, "d dense");
    }

    #[test]
    fn gradients_match_finite_differences() {
        // The product is linear in each input, so central differences are exact up to
        // rounding: compare them at a step of 1e-2.
        // Two heads of width 1: values [5, 2], dense [2, 2], out [3, 2].
        let (rows, cols) = (vec![0usize, 2, 2, 1, 0], vec![1usize, 0, 1, 1, 1]);
        let pattern = Pattern {
            by_row: Grouping::new(&rows, 3),
            rows,
            cols,
            dense_rows: 2,
            heads: 2,
            width: 2,
        };
        let weights = [0.3f32, -1.2, 0.7, 2.0, -0.4, 1.1, 0.9, -0.6, 0.2, 1.7];
        let dense = [0.5f32, -0.25, 1.5, 0.75];
        let probe = [1.0f32, -2.0, 0.5, 0.25, -1.0, 3.0];
        let loss = |w: &[f32], d: &[f32]| -> f64 {
            let out = kernel::product(&pattern, w, d);
            out.iter().zip(&probe).map(|(o, p)| f64::from(o * p)).sum()
        };
        let d_values = kernel::values_gradient(&pattern, &probe, &dense);
        let d_dense = kernel::transposed_product(&pattern, &weights, &probe);
        let step = 1e-2f32;
        let central = |plus: f64, minus: f64| (plus - minus) / (2.0 * f64::from(step));
        for k in 0..weights.len() {
            let (mut up, mut down) = (weights, weights);
            up[k] += step;
            down[k] -= step;
            let numeric = central(loss(&up, &dense), loss(&down, &dense));
            assert!((f64::from(d_values[k]) - numeric).abs() < 1e-4, "d values[{k}]");
        }
        for k in 0..dense.len() {
            let (mut up, mut down) = (dense, dense);
            up[k] += step;
            down[k] -= step;
            let numeric = central(loss(&weights, &up), loss(&weights, &down));
            assert!((f64::from(d_dense[k]) - numeric).abs() < 1e-4, "d dense[{k}]");
        }
    }
}
