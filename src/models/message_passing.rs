//! Message passing on an edge list: gather at sources, scatter-add into destinations.
//!
//! Nothing here builds an N x N matrix: memory grows with the number of edges. The
//! tensors a graph needs (edge endpoints with self-loops, GCN's normalisation, the sparse
//! input features) are built once per graph by [`GraphTensors::new`], not per epoch.

use burn::tensor::{Device, IndexingUpdateOp, Int, Tensor, TensorData};

use crate::base::rng::{HostRng, dropout};
use crate::base::sparse::SparseFeatures;
use crate::ops::spmm::{SparsePattern, sparse_matmul};

/// A graph's structure and features on a device, ready for the layers.
#[derive(Clone)]
pub struct GraphTensors {
    pub num_nodes: usize,
    pub num_features: usize,
    /// Edges with one self-loop per node, and GCN's normalisation of `A + I`.
    pub adjacency: NormalizedAdjacency,
    pub features: NodeFeatures,
}

/// An edge list with the symmetric normalisation `w / sqrt(deg(src) deg(dst))` per edge
/// of weight `w` (1 by default), degrees summing the weights of incoming edges:
/// `D^-1/2 A D^-1/2` without building `A`.
#[derive(Clone)]
pub struct NormalizedAdjacency {
    pub num_nodes: usize,
    pub src: Tensor<1, Int>,
    pub dst: Tensor<1, Int>,
    /// `[E, 1]`, so it broadcasts over a row of features.
    pub norm: Tensor<2>,
    /// The `[N, N]` matrix's non-zeros: row `dst`, column `src`.
    pub pattern: SparsePattern,
}

impl NormalizedAdjacency {
    /// With `self_loops`, one loop per node is appended (GCN's `A + I`).
    pub fn new(num_nodes: usize, edges: &[(u32, u32)], self_loops: bool, device: &Device) -> Self {
        Self::weighted(num_nodes, edges, None, self_loops, device)
    }

    /// As [`new`](Self::new), with one weight per edge (self-loops weigh 1).
    pub fn weighted(
        num_nodes: usize,
        edges: &[(u32, u32)],
        weights: Option<&[f32]>,
        self_loops: bool,
        device: &Device,
    ) -> Self {
        let loops = if self_loops { num_nodes } else { 0 };
        let weight_of = |e: usize| weights.map_or(1.0, |w| w[e]);
        // Ordered by destination, then source: each row of the product is then one run of
        // edges whose source rows ascend, and the fused kernel needs no sort of its own.
        let mut order: Vec<(u32, u32, f32)> = Vec::with_capacity(edges.len() + loops);
        order.extend(edges.iter().enumerate().map(|(e, &(s, d))| (d, s, weight_of(e))));
        if self_loops {
            order.extend((0..num_nodes as u32).map(|node| (node, node, 1.0)));
        }
        order.sort_by_key(|&(d, s, _)| (d, s));
        let src: Vec<i64> = order.iter().map(|&(_, s, _)| i64::from(s)).collect();
        let dst: Vec<i64> = order.iter().map(|&(d, _, _)| i64::from(d)).collect();
        let weight: Vec<f32> = order.iter().map(|&(_, _, w)| w).collect();
        let mut degree = vec![0f32; num_nodes];
        for (&d, &w) in dst.iter().zip(&weight) {
            degree[d as usize] += w;
        }
        let norm: Vec<f32> = src
            .iter()
            .zip(&dst)
            .zip(&weight)
            .map(|((&s, &d), &w)| w / (degree[s as usize] * degree[d as usize]).sqrt())
            .collect();
        let num_edges = src.len();
        let (src, dst) = (int_tensor(src, device), int_tensor(dst, device));
        Self {
            num_nodes,
            pattern: SparsePattern::new(dst.clone(), src.clone(), num_nodes, num_nodes),
            src,
            dst,
            norm: Tensor::from_data(TensorData::new(norm, [num_edges, 1]), device),
        }
    }

    pub fn num_edges(&self) -> usize {
        self.src.dims()[0]
    }

    /// `Â H`: each node sums its in-neighbours' rows, scaled by the edge normalisation
    /// (one sparse product: the fused kernel on CPU).
    pub fn propagate(&self, h: Tensor<2>) -> Tensor<2> {
        sparse_matmul(&self.pattern, self.norm.clone(), h)
    }
}

/// Node features, stored sparse or dense by their density.
// One value per graph: the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub enum NodeFeatures {
    Sparse(SparseInput),
    Dense(Tensor<2>),
}

impl NodeFeatures {
    /// Dense storage once more than a quarter of the entries are non-zero: there a
    /// coordinate list costs more memory and time than the matrix itself.
    pub fn new(
        features: &SparseFeatures,
        num_nodes: usize,
        num_features: usize,
        device: &Device,
    ) -> Self {
        if features.values.len() * 4 > num_nodes * num_features {
            let mut dense = vec![0f32; num_nodes * num_features];
            for ((&r, &c), &v) in features.rows.iter().zip(&features.cols).zip(&features.values) {
                dense[r as usize * num_features + c as usize] = v;
            }
            NodeFeatures::Dense(Tensor::from_data(
                TensorData::new(dense, [num_nodes, num_features]),
                device,
            ))
        } else {
            NodeFeatures::Sparse(SparseInput::new(features, num_nodes, num_features, device))
        }
    }
}

/// Sparse node features: row (node) and column (feature) of each non-zero, and its value.
#[derive(Clone)]
pub struct SparseInput {
    pub pattern: SparsePattern,
    /// `[nnz, 1]`, so it broadcasts over a weight row.
    pub values: Tensor<2>,
    pub nnz: usize,
}

impl GraphTensors {
    pub fn new(
        num_nodes: usize,
        num_features: usize,
        edges: &[(u32, u32)],
        features: &SparseFeatures,
        device: &Device,
    ) -> Self {
        Self {
            num_nodes,
            num_features,
            adjacency: NormalizedAdjacency::new(num_nodes, edges, true, device),
            features: NodeFeatures::new(features, num_nodes, num_features, device),
        }
    }
}

impl SparseInput {
    pub fn new(
        features: &SparseFeatures,
        num_nodes: usize,
        num_features: usize,
        device: &Device,
    ) -> Self {
        let nnz = features.values.len();
        let rows = int_tensor(features.rows.iter().map(|&r| r as i64).collect(), device);
        let cols = int_tensor(features.cols.iter().map(|&c| c as i64).collect(), device);
        Self {
            pattern: SparsePattern::new(rows, cols, num_nodes, num_features),
            values: Tensor::from_data(TensorData::new(features.values.clone(), [nnz, 1]), device),
            nnz,
        }
    }

    /// `X W` for sparse `X` (its values given, after dropout): each node sums the weight
    /// rows of its non-zeros, scaled. Its cost is `nnz x d_out`, not `N x d_in x d_out`.
    pub fn matmul(&self, values: Tensor<2>, weight: Tensor<2>) -> Tensor<2> {
        sparse_matmul(&self.pattern, values, weight)
    }
}

/// What a layer reads: the graph's sparse input features (with their dropout already
/// applied to the non-zeros) or a dense hidden representation.
pub enum LayerInput<'a> {
    Sparse(&'a SparseInput, Tensor<2>),
    Dense(Tensor<2>),
}

impl<'a> LayerInput<'a> {
    /// The graph's input features after dropout. Sparse features drop only their
    /// non-zeros: the same distribution as dense dropout, at a fraction of the cost.
    pub fn features(features: &'a NodeFeatures, p: f64, rng: Option<&mut HostRng>) -> Self {
        match features {
            NodeFeatures::Sparse(sparse) => {
                LayerInput::Sparse(sparse, dropout(sparse.values.clone(), p, rng))
            }
            NodeFeatures::Dense(dense) => LayerInput::Dense(dropout(dense.clone(), p, rng)),
        }
    }

    /// `X W`, by sparse gather-scatter or a dense product.
    pub fn project(self, weight: Tensor<2>) -> Tensor<2> {
        match self {
            LayerInput::Sparse(features, values) => features.matmul(values, weight),
            LayerInput::Dense(x) => x.matmul(weight),
        }
    }
}

fn int_tensor(values: Vec<i64>, device: &Device) -> Tensor<1, Int> {
    let len = values.len();
    Tensor::from_data(TensorData::new(values, [len]), device)
}

/// Sums `values[e]` into row `index[e]` of an `[num_nodes, ...]` result. The gradient
/// flows back to every edge, as in PyG's `scatter(reduce="sum")`.
pub fn scatter_add<const D: usize>(
    values: Tensor<D>,
    index: Tensor<1, Int>,
    num_nodes: usize,
) -> Tensor<D> {
    let mut shape = values.dims();
    shape[0] = num_nodes;
    Tensor::zeros(shape, &values.device()).select_assign(0, index, values, IndexingUpdateOp::Add)
}

/// Softmax of edge scores `[E, H]` over the edges entering each destination node.
///
/// The per-destination maximum only keeps `exp` in range; it is computed on detached
/// values because Burn's Max-scatter has no defined gradient with repeated indices.
/// Subtracting a constant per group leaves the softmax unchanged, so the gradient that
/// flows through the Add-scatter of the denominator is the exact one.
pub fn segment_softmax(scores: Tensor<2>, dst: Tensor<1, Int>, num_nodes: usize) -> Tensor<2> {
    let [_, heads] = scores.dims();
    let device = scores.device();
    let detached = scores.clone().detach();
    let max = Tensor::<2>::full([num_nodes, heads], f32::MIN, &device).detach().select_assign(
        0,
        dst.clone(),
        detached,
        IndexingUpdateOp::Max,
    );
    let shifted = scores - max.select(0, dst.clone());
    let exp = shifted.exp();
    let denominator = scatter_add(exp.clone(), dst.clone(), num_nodes);
    exp / denominator.select(0, dst)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn device() -> Device {
        Device::flex()
    }

    fn host(t: Tensor<2>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    /// The 4-node path 0 - 1 - 2 - 3 plus the edge 1 - 3, both directions.
    pub(crate) fn toy_edges() -> Vec<(u32, u32)> {
        vec![(0, 1), (1, 0), (1, 2), (2, 1), (2, 3), (3, 2), (1, 3), (3, 1)]
    }

    #[test]
    fn gcn_normalisation_matches_hand_computation() {
        let features = SparseFeatures { rows: vec![0], cols: vec![0], values: vec![1.0] };
        let graph = GraphTensors::new(4, 1, &toy_edges(), &features, &device());
        // Degrees with self-loops: node0 2, node1 4, node2 3, node3 3.
        let adjacency = graph.adjacency;
        assert_eq!(adjacency.num_edges(), 12);
        let endpoints =
            |t: Tensor<1, Int>| t.into_data().convert::<i64>().try_to_vec::<i64>().unwrap();
        let (src, dst) = (endpoints(adjacency.src), endpoints(adjacency.dst));
        let edges: Vec<(i64, i64)> = src.into_iter().zip(dst).collect();
        let mut sorted = edges.clone();
        sorted.sort_by_key(|&(s, d)| (d, s));
        assert_eq!(edges, sorted, "edges ordered by destination, then source");
        let norm = host(adjacency.norm);
        let norm_of = |edge| norm[edges.iter().position(|&e| e == edge).unwrap()];
        assert!((norm_of((0, 1)) - 1.0 / (2.0f32 * 4.0).sqrt()).abs() < 1e-6);
        assert!((norm_of((1, 1)) - 1.0 / 4.0).abs() < 1e-6, "self-loop of node 1");
        assert!((norm_of((3, 1)) - 1.0 / (3.0f32 * 4.0).sqrt()).abs() < 1e-6);
    }

    #[test]
    fn scatter_add_sums_repeated_indices() {
        let device = device();
        let values = Tensor::<2>::from_floats([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], &device);
        let index = Tensor::<1, Int>::from_ints([2, 0, 2], &device);
        let out = host(scatter_add(values, index, 3));
        assert_eq!(out, vec![3.0, 4.0, 0.0, 0.0, 6.0, 8.0]);
    }

    #[test]
    fn sparse_matmul_equals_dense_product() {
        let device = device();
        // X = [[1, 0, 2], [0, 0, 0], [0, 3, 0]]
        let features = SparseFeatures {
            rows: vec![0, 0, 2],
            cols: vec![0, 2, 1],
            values: vec![1.0, 2.0, 3.0],
        };
        let input = SparseInput::new(&features, 3, 3, &device);
        assert!(matches!(NodeFeatures::new(&features, 3, 3, &device), NodeFeatures::Dense(_)));
        let weight = Tensor::<2>::from_floats([[1.0, -1.0], [0.5, 2.0], [4.0, 0.0]], &device);
        let out = host(input.matmul(input.values.clone(), weight));
        assert_eq!(out, vec![9.0, -1.0, 0.0, 0.0, 1.5, 6.0]);
    }

    #[test]
    fn segment_softmax_normalises_per_destination() {
        let device = device();
        // Edges into node 0: scores 1 and 2; into node 1: score 5 (alone); 2 heads, the
        // second head large enough that a plain exp would overflow.
        let scores = Tensor::<2>::from_floats([[1.0, 1000.0], [2.0, 1001.0], [5.0, 3.0]], &device);
        let dst = Tensor::<1, Int>::from_ints([0, 0, 1], &device);
        let out = host(segment_softmax(scores, dst, 2));
        let (a, b) = (1.0f32.exp(), 2.0f32.exp());
        let expected = [a / (a + b), a / (a + b), b / (a + b), b / (a + b), 1.0, 1.0];
        for (got, want) in out.iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "{out:?}");
        }
    }

    #[test]
    fn segment_softmax_gradient_matches_analytic() {
        let device = device().autodiff();
        let scores = Tensor::<2>::from_floats([[1.0], [2.0], [5.0]], &device).require_grad();
        let dst = Tensor::<1, Int>::from_ints([0, 0, 1], &device);
        let weights = Tensor::<2>::from_floats([[1.0], [0.0], [3.0]], &device);
        let loss = (segment_softmax(scores.clone(), dst, 2) * weights).sum();
        let grads = loss.backward();
        let grad = scores.grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap();
        // d/ds_i of sum_j w_j p_j = p_i (w_i - sum_j w_j p_j), within each group.
        let (a, b) = (1.0f32.exp(), 2.0f32.exp());
        let (p0, p1) = (a / (a + b), b / (a + b));
        let mean = p0 * 1.0;
        let expected = [p0 * (1.0 - mean), p1 * (0.0 - mean), 0.0];
        for (got, want) in grad.iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "{grad:?}");
        }
    }
}
