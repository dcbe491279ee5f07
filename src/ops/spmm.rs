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

use std::sync::{Arc, OnceLock};

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::{Int, Tensor};
use rayon::prelude::*;

use super::{flex_tensor, fused_f32, host_floats, host_indices};

/// Where a sparse `[num_rows, num_cols]` matrix's non-zeros are, built once per graph and
/// shared by every product over it: the coordinates as index tensors on the device (the
/// composed product's), and, on the fused kernel's first use, the same on the host with the
/// non-zeros grouped by row (and on the first backward pass, by column). Grouping 1.6 million
/// edges took a tenth of a LightGCN epoch when every product did it again.
#[derive(Clone)]
pub struct SparsePattern {
    rows: Tensor<1, Int>,
    cols: Tensor<1, Int>,
    num_rows: usize,
    num_cols: usize,
    host: Arc<OnceLock<Arc<Pattern>>>,
}

impl SparsePattern {
    /// Non-zero `k` at (`rows[k]`, `cols[k]`); coordinates may repeat (their products sum).
    pub fn new(
        rows: Tensor<1, Int>,
        cols: Tensor<1, Int>,
        num_rows: usize,
        num_cols: usize,
    ) -> Self {
        assert_eq!(rows.dims(), cols.dims(), "sparse matrix: one column per row index");
        Self { rows, cols, num_rows, num_cols, host: Arc::default() }
    }

    pub fn rows(&self) -> &Tensor<1, Int> {
        &self.rows
    }

    pub fn cols(&self) -> &Tensor<1, Int> {
        &self.cols
    }

    pub fn nnz(&self) -> usize {
        self.rows.dims()[0]
    }

    fn host(&self) -> Arc<Pattern> {
        let build = || Arc::new(Pattern::new(&self.rows, &self.cols, self.num_rows, self.num_cols));
        Arc::clone(self.host.get_or_init(build))
    }
}

/// `out[rows[k]] += values[k] · dense[cols[k]]` for every non-zero `k`, per head: `values`
/// `[nnz, heads]`, `dense` `[num_cols, heads * F]`, the result `[num_rows, heads * F]`.
pub fn sparse_matmul(pattern: &SparsePattern, values: Tensor<2>, dense: Tensor<2>) -> Tensor<2> {
    if fused_f32(&dense) && fused_f32(&values) {
        fused_sparse_matmul(pattern, values, dense)
    } else {
        composed_sparse_matmul(pattern, values, dense)
    }
}

/// The fused kernel; burn-flex devices only.
fn fused_sparse_matmul(pattern: &SparsePattern, values: Tensor<2>, dense: Tensor<2>) -> Tensor<2> {
    Tensor::from_dispatch(Dispatch::sparse_matmul(
        pattern.host(),
        values.into_dispatch(),
        dense.into_dispatch(),
    ))
}

/// The same product from Burn ops (gather, scale, scatter-add): the path on other
/// backends, and the kernel's reference in the tests.
pub fn composed_sparse_matmul(
    pattern: &SparsePattern,
    values: Tensor<2>,
    dense: Tensor<2>,
) -> Tensor<2> {
    let [_, width] = dense.dims();
    let [nnz, heads] = values.dims();
    let messages = (dense.select(0, pattern.cols.clone()).reshape([nnz, heads, width / heads])
        * values.unsqueeze_dim(2))
    .reshape([nnz, width]);
    Tensor::zeros([pattern.num_rows, width], &messages.device()).select_assign(
        0,
        pattern.rows.clone(),
        messages,
        burn::tensor::IndexingUpdateOp::Add,
    )
}

/// The fused product as a backend operation: burn-flex's kernel, and autodiff over
/// burn-flex with the hand-written backward.
#[backend_extension(Flex, Autodiff)]
pub trait FusedSparseMatmul: Backend {
    fn sparse_matmul(
        pattern: Arc<Pattern>,
        values: FloatTensor<Self>,
        dense: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

impl FusedSparseMatmul for Flex {
    fn sparse_matmul(pattern: Arc<Pattern>, values: FlexTensor, dense: FlexTensor) -> FlexTensor {
        let sizes = pattern.sizes(&values, &dense);
        let out = kernel::product(&pattern, sizes, &host_floats(&values), &host_floats(&dense));
        flex_tensor(out, [pattern.num_rows, sizes.width])
    }
}

impl<C: CheckpointStrategy> FusedSparseMatmul for Autodiff<Flex, C> {
    fn sparse_matmul(
        pattern: Arc<Pattern>,
        values: FloatTensor<Self>,
        dense: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let sizes = pattern.sizes(values.primitive(), dense.primitive());
        let prepared = SparseMatmulBackward
            .prepare::<C>([values.node(), dense.node()])
            .compute_bound()
            .stateful();
        let value_data = host_floats(values.primitive());
        let dense_data = host_floats(dense.primitive());
        let out = kernel::product(&pattern, sizes, &value_data, &dense_data);
        let out = flex_tensor(out, [pattern.num_rows, sizes.width]);
        match prepared {
            OpsKind::Tracked(prep) => {
                let state = Saved {
                    pattern,
                    sizes,
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
    sizes: Sizes,
    values: Arc<Vec<f32>>,
    dense: Arc<Vec<f32>>,
}

impl Backward<Flex, 2> for SparseMatmulBackward {
    type State = Saved;

    fn backward(self, ops: Ops<Saved, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let Saved { pattern, sizes, values, dense } = ops.state;
        let grad = grads.consume::<Flex>(&ops.node);
        let grad = host_floats(&grad);
        let [values_node, dense_node] = ops.parents;
        if let Some(node) = values_node {
            let d_values = kernel::values_gradient(&pattern, sizes, &grad, &dense);
            grads.register::<Flex>(node.id, flex_tensor(d_values, [pattern.nnz(), sizes.heads]));
        }
        if let Some(node) = dense_node {
            let d_dense = kernel::transposed_product(&pattern, sizes, &values, &grad);
            grads.register::<Flex>(node.id, flex_tensor(d_dense, [pattern.num_cols, sizes.width]));
        }
    }
}

/// A [`SparsePattern`] on the host: the coordinates, and the non-zeros grouped by row
/// (a counting sort, so that each output row is one thread's contiguous run of non-zeros);
/// the backward pass groups them by column the same way, once.
#[derive(Debug)]
pub struct Pattern {
    rows: Vec<u32>,
    cols: Vec<u32>,
    by_row: Grouping,
    by_col: OnceLock<Grouping>,
    num_rows: usize,
    num_cols: usize,
}

/// Non-zero indices grouped by a coordinate: group `g` is positions `start[g]..start[g + 1]`
/// of `order`, or of the identity where the coordinates already come sorted.
#[derive(Debug)]
struct Grouping {
    start: Vec<usize>,
    order: Option<Vec<u32>>,
}

impl Grouping {
    fn new(keys: &[u32], groups: usize) -> Self {
        let mut start = vec![0usize; groups + 1];
        for &key in keys {
            start[key as usize + 1] += 1;
        }
        for g in 0..groups {
            start[g + 1] += start[g];
        }
        if keys.is_sorted() {
            return Self { start, order: None };
        }
        let mut next = start.clone();
        let mut order = vec![0u32; keys.len()];
        for (k, &key) in keys.iter().enumerate() {
            order[next[key as usize]] = k as u32;
            next[key as usize] += 1;
        }
        Self { start, order: Some(order) }
    }

    fn groups(&self) -> usize {
        self.start.len() - 1
    }

    /// The non-zero at position `position` of the grouped order.
    #[inline(always)]
    fn member(&self, position: usize) -> usize {
        match &self.order {
            Some(order) => order[position] as usize,
            None => position,
        }
    }
}

/// The sizes a product reads from its `values` `[nnz, heads]` and `dense` `[num_cols, width]`.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    heads: usize,
    width: usize,
}

impl Pattern {
    fn new(rows: &Tensor<1, Int>, cols: &Tensor<1, Int>, num_rows: usize, num_cols: usize) -> Self {
        let rows = indices(rows, num_rows, "row");
        let cols = indices(cols, num_cols, "column");
        let by_row = Grouping::new(&rows, num_rows);
        Self { rows, cols, by_row, by_col: OnceLock::new(), num_rows, num_cols }
    }

    fn nnz(&self) -> usize {
        self.rows.len()
    }

    fn by_col(&self) -> &Grouping {
        self.by_col.get_or_init(|| Grouping::new(&self.cols, self.num_cols))
    }

    fn sizes(&self, values: &FlexTensor, dense: &FlexTensor) -> Sizes {
        let (values, dense) = (values.layout().shape(), dense.layout().shape());
        assert!(
            values.num_dims() == 2
                && dense.num_dims() == 2
                && values[0] == self.nnz()
                && dense[0] == self.num_cols
                && dense[1].is_multiple_of(values[1]),
            "sparse matrix product: values [nnz, heads] and dense [num_cols, heads * F]"
        );
        Sizes { heads: values[1], width: dense[1] }
    }
}

/// An index tensor's values, each checked against `bound`.
fn indices(tensor: &Tensor<1, Int>, bound: usize, what: &str) -> Vec<u32> {
    host_indices(tensor.clone().into_data(), bound)
        .unwrap_or_else(|i| panic!("sparse matrix {what} index {i} out of range"))
}

/// The products on plain row-major buffers, rows in parallel on rayon's pool. Head `h` of
/// a row is its `h`-th run of `width / heads` columns, weighted by `values[k * heads + h]`.
mod kernel {
    use super::*;

    /// Output rows per rayon task: enough to amortise the task and the SIMD dispatch.
    const ROWS_PER_TASK: usize = 64;

    widest_simd! {
        /// `out[g] = Σ_{k in group first + g} values[k] · source[gather[k]]` for the rows of
        /// `out` (`width` each), head by head.
        pub fn grouped_sum_rows(
            out: &mut [f32],
            first: usize,
            groups: &Grouping,
            gather: &[u32],
            values: &[f32],
            source: &[f32],
            sizes: Sizes,
        ) {
            let Sizes { heads, width } = sizes;
            let per_head = width / heads;
            for (g, out) in out.chunks_exact_mut(width).enumerate() {
                let group = first + g;
                for position in groups.start[group]..groups.start[group + 1] {
                    let k = groups.member(position);
                    let from = &source[gather[k] as usize * width..][..width];
                    for ((out, from), &value) in out
                        .chunks_exact_mut(per_head)
                        .zip(from.chunks_exact(per_head))
                        .zip(&values[k * heads..(k + 1) * heads])
                    {
                        for (o, x) in out.iter_mut().zip(from) {
                            *o += value * x;
                        }
                    }
                }
            }
        }
    }

    /// `out[r] = Σ_{k in group r} values[k] · source[gather[k]]`, runs of groups in
    /// parallel: the product (groups the rows, gathering by column) and its transpose
    /// (groups the columns, gathering by row).
    fn grouped_sum(
        groups: &Grouping,
        gather: &[u32],
        values: &[f32],
        source: &[f32],
        sizes: Sizes,
    ) -> Vec<f32> {
        let width = sizes.width;
        let mut out = vec![0.0f32; groups.groups() * width];
        if width == 0 {
            return out;
        }
        out.par_chunks_mut(width * ROWS_PER_TASK).enumerate().for_each(|(task, out)| {
            grouped_sum_rows(out, task * ROWS_PER_TASK, groups, gather, values, source, sizes)
        });
        out
    }

    /// `out[r] = Σ_{k in row r} values[k] · dense[cols[k]]`.
    pub fn product(pattern: &Pattern, sizes: Sizes, values: &[f32], dense: &[f32]) -> Vec<f32> {
        grouped_sum(&pattern.by_row, &pattern.cols, values, dense, sizes)
    }

    /// The gradient of `dense`: `Σ_{k in column c} values[k] · grad[rows[k]]` per row `c`.
    pub fn transposed_product(
        pattern: &Pattern,
        sizes: Sizes,
        values: &[f32],
        grad: &[f32],
    ) -> Vec<f32> {
        grouped_sum(pattern.by_col(), &pattern.rows, values, grad, sizes)
    }

    /// The gradient of `values`: `grad[rows[k]] · dense[cols[k]]` per non-zero and head.
    pub fn values_gradient(
        pattern: &Pattern,
        sizes: Sizes,
        grad: &[f32],
        dense: &[f32],
    ) -> Vec<f32> {
        let Sizes { heads, width } = sizes;
        let per_head = width / heads;
        let mut out = vec![0.0f32; pattern.nnz() * heads];
        if per_head == 0 {
            return out;
        }
        out.par_chunks_mut(heads).enumerate().for_each(|(k, out)| {
            let g = &grad[pattern.rows[k] as usize * width..][..width];
            let d = &dense[pattern.cols[k] as usize * width..][..width];
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

    /// A `[5, 4]` sparse matrix with repeated coordinates, an empty row and column, and
    /// rows out of order.
    fn coordinates(device: &Device) -> SparsePattern {
        let rows = vec![0i64, 0, 1, 3, 3, 3, 4, 0];
        let cols = vec![1i64, 3, 0, 1, 1, 2, 0, 1];
        let len = rows.len();
        SparsePattern::new(
            Tensor::from_data(TensorData::new(rows, [len]), device),
            Tensor::from_data(TensorData::new(cols, [len]), device),
            5,
            4,
        )
    }

    #[test]
    fn product_matches_a_dense_matrix_product() {
        let device = Device::flex();
        let pattern = coordinates(&device);
        let (num_rows, k) = (pattern.num_rows, pattern.num_cols);
        let weights =
            Tensor::<2>::random([pattern.nnz(), 1], Distribution::Uniform(-1.0, 1.0), &device);
        let dense = Tensor::<2>::random([k, 3], Distribution::Uniform(-1.0, 1.0), &device);
        let fused = fused_sparse_matmul(&pattern, weights.clone(), dense.clone());
        // The same matrix built densely, repeated coordinates summed.
        let (r, c, w) = (
            pattern.rows.into_data().convert::<i64>().try_to_vec::<i64>().unwrap(),
            pattern.cols.into_data().convert::<i64>().try_to_vec::<i64>().unwrap(),
            values(weights),
        );
        let mut matrix = vec![0.0f32; num_rows * k];
        for ((r, c), w) in r.iter().zip(&c).zip(&w) {
            matrix[*r as usize * k + *c as usize] += w;
        }
        let matrix = Tensor::<2>::from_data(TensorData::new(matrix, [num_rows, k]), &device);
        assert_close(&values(fused), &values(matrix.matmul(dense)), 1e-5, "product");
    }

    /// The fused product, its gradients for `values` `[nnz, heads]` and `dense`, against
    /// autodiff through the composed one.
    fn assert_matches_the_composed_product(pattern: &SparsePattern, heads: usize, per_head: usize) {
        let device = pattern.rows.device();
        let (num_rows, k, nnz) = (pattern.num_rows, pattern.num_cols, pattern.nnz());
        let uniform = Distribution::Uniform(-1.0, 1.0);
        let weights = Tensor::<2>::random([nnz, heads], uniform, &device);
        let dense = Tensor::<2>::random([k, heads * per_head], uniform, &device);
        let probe = Tensor::<2>::random([num_rows, heads * per_head], uniform, &device);
        type Product = fn(&SparsePattern, Tensor<2>, Tensor<2>) -> Tensor<2>;
        let run = |product: Product| {
            let (w, d) = (weights.clone().require_grad(), dense.clone().require_grad());
            let out = product(pattern, w.clone(), d.clone());
            let grads = (out.clone() * probe.clone()).sum().backward();
            (values(out), values(w.grad(&grads).unwrap()), values(d.grad(&grads).unwrap()))
        };
        let (ours, reference) = (run(fused_sparse_matmul), run(composed_sparse_matmul));
        assert_close(&ours.0, &reference.0, 1e-5, "product");
        assert_close(&ours.1, &reference.1, 1e-5, "d values");
        assert_close(&ours.2, &reference.2, 1e-5, "d dense");
    }

    #[test]
    fn heads_and_gradients_match_autodiff_through_the_composed_product() {
        assert_matches_the_composed_product(&coordinates(&Device::flex().autodiff()), 2, 3);
    }

    #[test]
    fn many_rows_sorted_or_not_match_the_composed_product() {
        // More rows than one parallel task takes, coordinates scattered, then the same
        // non-zeros ordered by row (which the kernel reads without a sort of its own).
        let device = Device::flex().autodiff();
        let (num_rows, num_cols, nnz) = (300usize, 200usize, 2000usize);
        let scattered: Vec<(i64, i64)> = (0..nnz)
            .map(|k| (((k * 7919) % num_rows) as i64, ((k * 104_729 + 13) % num_cols) as i64))
            .collect();
        let mut sorted = scattered.clone();
        sorted.sort_unstable();
        for coordinates in [scattered, sorted] {
            let (rows, cols): (Vec<i64>, Vec<i64>) = coordinates.into_iter().unzip();
            let rows_sorted = rows.is_sorted();
            let pattern = SparsePattern::new(
                Tensor::from_data(TensorData::new(rows, [nnz]), &device),
                Tensor::from_data(TensorData::new(cols, [nnz]), &device),
                num_rows,
                num_cols,
            );
            assert_matches_the_composed_product(&pattern, 2, 8);
            let host = pattern.host();
            assert_eq!(host.by_row.order.is_none(), rows_sorted, "row order kept when sorted");
            assert!(host.by_col().order.is_some(), "columns are never sorted here");
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        // The product is linear in each input, so central differences are exact up to
        // rounding: compare them at a step of 1e-2.
        // Two heads of width 1: values [5, 2], dense [2, 2], out [3, 2].
        let (rows, cols) = (vec![0u32, 2, 2, 1, 0], vec![1u32, 0, 1, 1, 1]);
        let pattern = Pattern {
            by_row: Grouping::new(&rows, 3),
            by_col: OnceLock::new(),
            rows,
            cols,
            num_rows: 3,
            num_cols: 2,
        };
        let sizes = Sizes { heads: 2, width: 2 };
        let weights = [0.3f32, -1.2, 0.7, 2.0, -0.4, 1.1, 0.9, -0.6, 0.2, 1.7];
        let dense = [0.5f32, -0.25, 1.5, 0.75];
        let probe = [1.0f32, -2.0, 0.5, 0.25, -1.0, 3.0];
        let loss = |w: &[f32], d: &[f32]| -> f64 {
            let out = kernel::product(&pattern, sizes, w, d);
            out.iter().zip(&probe).map(|(o, p)| f64::from(o * p)).sum()
        };
        let d_values = kernel::values_gradient(&pattern, sizes, &probe, &dense);
        let d_dense = kernel::transposed_product(&pattern, sizes, &weights, &probe);
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
