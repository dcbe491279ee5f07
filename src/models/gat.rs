//! Graph Attention Network (Velickovic et al., "Graph Attention Networks", ICLR 2018).
//!
//! Attention is computed per edge of the edge list: `e_ij = LeakyReLU(a_src . W h_j +
//! a_dst . W h_i)`, normalised by a softmax over the edges entering node `i`
//! ([`segment_softmax`]), then used to weight the sum of the neighbours' rows (one sparse
//! product with a value per edge and head, [`sparse_matmul`]: the fused kernel on CPU).
//!
//! Weight names follow PyG's `GATConv` (`att_src`, `att_dst`, `bias`); `weight` is
//! `[in, heads * out]`, the transpose of PyG's `lin.weight`.

use burn::module::{Module, Param};
use burn::tensor::activation::{elu, leaky_relu};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::message_passing::{
    GraphTensors, LayerInput, NodeFeatures, NormalizedAdjacency, segment_softmax,
};
use crate::base::rng::{HostRng, dropout};
use crate::base::tensor::zeros_param;
use crate::ops::spmm::sparse_matmul;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatConfig {
    /// Features per head in the hidden layer.
    pub hidden: usize,
    /// Attention heads in the hidden layer, concatenated.
    pub heads: usize,
    /// Attention heads in the output layer, averaged.
    pub out_heads: usize,
    /// Dropout on each layer's input.
    pub dropout: f64,
    /// Draw that input dropout's mask anew for each attention head, as the reference code
    /// does (each head is its own layer there); otherwise one mask serves every head, as in
    /// PyG's example.
    pub dropout_per_head: bool,
    /// Dropout on the normalised attention coefficients.
    pub attention_dropout: f64,
    /// Dropout on each node's projected features `W h` where they enter the weighted sum
    /// (the attention scores still see them whole): the reference code's second use of its
    /// input dropout rate, on `seq_fts`, which PyG's `GATConv` leaves out.
    pub feature_dropout: f64,
    /// Slope of the LeakyReLU in the attention score.
    pub negative_slope: f64,
}

impl Default for GatConfig {
    fn default() -> Self {
        Self {
            hidden: 8,
            heads: 8,
            out_heads: 1,
            dropout: 0.6,
            dropout_per_head: false,
            attention_dropout: 0.6,
            feature_dropout: 0.0,
            negative_slope: 0.2,
        }
    }
}

/// One multi-head graph attention layer.
#[derive(Module, Debug)]
pub struct GatConv {
    pub weight: Param<Tensor<2>>,
    pub att_src: Param<Tensor<2>>,
    pub att_dst: Param<Tensor<2>>,
    pub bias: Param<Tensor<1>>,
    pub heads: usize,
    pub out_features: usize,
    /// Concatenate the heads (hidden layers) or average them (output layer).
    pub concat: bool,
    pub negative_slope: f64,
    pub attention_dropout: f64,
    pub feature_dropout: f64,
}

/// The sizes of one GAT layer (its slope and dropout rates come from a [`GatConfig`]).
pub struct GatConvShape {
    pub d_in: usize,
    pub out_features: usize,
    pub heads: usize,
    /// Concatenate the heads (hidden layers) or average them (output layer).
    pub concat: bool,
}

impl GatConv {
    pub fn new(
        shape: GatConvShape,
        config: &GatConfig,
        rng: &mut HostRng,
        device: &Device,
    ) -> Self {
        let GatConvShape { d_in, out_features, heads, concat } = shape;
        let width = heads * out_features;
        Self {
            weight: rng.glorot([d_in, width], d_in, width, device),
            att_src: rng.glorot([heads, out_features], heads, out_features, device),
            att_dst: rng.glorot([heads, out_features], heads, out_features, device),
            bias: zeros_param([if concat { width } else { out_features }], device),
            heads,
            out_features,
            concat,
            negative_slope: config.negative_slope,
            attention_dropout: config.attention_dropout,
            feature_dropout: config.feature_dropout,
        }
    }

    pub fn forward(
        &self,
        input: LayerInput<'_>,
        adjacency: &NormalizedAdjacency,
        rng: Option<&mut HostRng>,
    ) -> Tensor<2> {
        let projected = input.project(self.weight.val());
        self.attend(projected, adjacency, rng)
    }

    /// `X W` with an input-dropout mask of its own for each head: `rng` is `Some` in
    /// training (dropout on), `None` otherwise.
    pub fn project_per_head(
        &self,
        input: &NodeFeatures,
        p: f64,
        mut rng: Option<&mut HostRng>,
    ) -> Tensor<2> {
        let width = self.out_features;
        let heads: Vec<Tensor<2>> = (0..self.heads)
            .map(|head| {
                let weight = self.weight.val().narrow(1, head * width, width);
                LayerInput::features(input, p, rng.as_deref_mut()).project(weight)
            })
            .collect();
        Tensor::cat(heads, 1)
    }

    /// Attention and aggregation over the projected features `X W` `[N, heads * out]`.
    pub fn attend(
        &self,
        projected: Tensor<2>,
        adjacency: &NormalizedAdjacency,
        mut rng: Option<&mut HostRng>,
    ) -> Tensor<2> {
        let n = adjacency.num_nodes;
        let (heads, features) = (self.heads, self.out_features);
        let h = projected.reshape([n, heads, features]);
        let score_src =
            (h.clone() * self.att_src.val().unsqueeze_dim(0)).sum_dim(2).reshape([n, heads]);
        let score_dst =
            (h.clone() * self.att_dst.val().unsqueeze_dim(0)).sum_dim(2).reshape([n, heads]);
        let scores =
            score_src.select(0, adjacency.src.clone()) + score_dst.select(0, adjacency.dst.clone());
        let attention =
            segment_softmax(leaky_relu(scores, self.negative_slope), adjacency.dst.clone(), n);
        let attention = dropout(attention, self.attention_dropout, rng.as_deref_mut());
        let h = dropout(h, self.feature_dropout, rng);
        let h = h.reshape([n, heads * features]);
        let out = sparse_matmul(&adjacency.pattern, attention, h);
        let out = if self.concat {
            out
        } else {
            out.reshape([n, heads, features]).mean_dim(1).reshape([n, features])
        };
        out + self.bias.val().unsqueeze_dim(0)
    }
}

#[derive(Module, Debug)]
pub struct Gat {
    pub conv1: GatConv,
    pub conv2: GatConv,
    pub dropout: f64,
    pub dropout_per_head: bool,
}

impl Gat {
    pub fn new(
        config: &GatConfig,
        d_in: usize,
        num_classes: usize,
        rng: &mut HostRng,
        device: &Device,
    ) -> Self {
        let hidden =
            GatConvShape { d_in, out_features: config.hidden, heads: config.heads, concat: true };
        let conv1 = GatConv::new(hidden, config, rng, device);
        let output = GatConvShape {
            d_in: config.hidden * config.heads,
            out_features: num_classes,
            heads: config.out_heads,
            concat: false,
        };
        let conv2 = GatConv::new(output, config, rng, device);
        Self { conv1, conv2, dropout: config.dropout, dropout_per_head: config.dropout_per_head }
    }

    /// Class logits `[N, C]`. `rng` is `Some` in training (dropout on), `None` otherwise.
    pub fn forward(&self, graph: &GraphTensors, mut rng: Option<&mut HostRng>) -> Tensor<2> {
        let adjacency = &graph.adjacency;
        if self.dropout_per_head && rng.is_some() {
            let projected =
                self.conv1.project_per_head(&graph.features, self.dropout, rng.as_deref_mut());
            let hidden = elu(self.conv1.attend(projected, adjacency, rng.as_deref_mut()), 1.0);
            let hidden = NodeFeatures::Dense(hidden);
            let projected = self.conv2.project_per_head(&hidden, self.dropout, rng.as_deref_mut());
            return self.conv2.attend(projected, adjacency, rng);
        }
        let input = LayerInput::features(&graph.features, self.dropout, rng.as_deref_mut());
        let hidden = elu(self.conv1.forward(input, adjacency, rng.as_deref_mut()), 1.0);
        let hidden = dropout(hidden, self.dropout, rng.as_deref_mut());
        self.conv2.forward(LayerInput::Dense(hidden), adjacency, rng)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::TensorData;

    use super::*;
    use crate::base::sparse::SparseFeatures;
    use crate::models::message_passing::tests::toy_edges;

    fn param<const D: usize>(t: Tensor<D>) -> Param<Tensor<D>> {
        Param::from_tensor(t)
    }

    /// A two-head GAT layer on the 4-node toy graph, computed by hand with plain loops.
    fn reference(
        x: &[[f32; 2]; 4],
        w: &[[f32; 4]; 2],
        a_src: &[[f32; 2]; 2],
        a_dst: &[[f32; 2]; 2],
        concat: bool,
    ) -> Vec<f32> {
        let mut edges = toy_edges();
        edges.extend((0..4).map(|i| (i, i)));
        let h: Vec<[f32; 4]> = x
            .iter()
            .map(|row| std::array::from_fn(|k| row[0] * w[0][k] + row[1] * w[1][k]))
            .collect();
        let mut out = [[0f32; 4]; 4];
        for head in 0..2 {
            let feature = |node: usize, f: usize| h[node][head * 2 + f];
            let score = |s: usize, d: usize| {
                let raw: f32 = (0..2)
                    .map(|f| a_src[head][f] * feature(s, f) + a_dst[head][f] * feature(d, f))
                    .sum();
                if raw > 0.0 { raw } else { 0.2 * raw }
            };
            for (i, out_row) in out.iter_mut().enumerate() {
                let incoming: Vec<usize> =
                    edges.iter().filter(|e| e.1 as usize == i).map(|e| e.0 as usize).collect();
                let total: f32 = incoming.iter().map(|&j| score(j, i).exp()).sum();
                for &j in &incoming {
                    let alpha = score(j, i).exp() / total;
                    for f in 0..2 {
                        out_row[head * 2 + f] += alpha * feature(j, f);
                    }
                }
            }
        }
        if concat {
            out.iter().flatten().copied().collect()
        } else {
            out.iter().flat_map(|row| [(row[0] + row[2]) / 2.0, (row[1] + row[3]) / 2.0]).collect()
        }
    }

    #[test]
    fn gat_conv_matches_hand_computation() {
        let device = Device::flex();
        let x = [[1.0, 0.0], [0.5, 2.0], [0.0, 1.0], [3.0, -1.0]];
        let w = [[0.2, -0.4, 1.0, 0.3], [0.7, 0.1, -0.3, 0.5]];
        let a_src = [[0.5, -1.0], [0.25, 0.8]];
        let a_dst = [[-0.3, 0.9], [1.1, -0.6]];
        let graph = GraphTensors::new(4, 2, &toy_edges(), &SparseFeatures::default(), &device);
        for concat in [true, false] {
            let conv = GatConv {
                weight: param(Tensor::from_floats(w, &device)),
                att_src: param(Tensor::from_floats(a_src, &device)),
                att_dst: param(Tensor::from_floats(a_dst, &device)),
                bias: param(Tensor::zeros([if concat { 4 } else { 2 }], &device)),
                heads: 2,
                out_features: 2,
                concat,
                negative_slope: 0.2,
                attention_dropout: 0.0,
                feature_dropout: 0.0,
            };
            let got = conv.forward(
                LayerInput::Dense(Tensor::from_floats(x, &device)),
                &graph.adjacency,
                None,
            );
            let got = got.into_data().try_to_vec::<f32>().unwrap();
            let expected = reference(&x, &w, &a_src, &a_dst, concat);
            assert_eq!(got.len(), expected.len());
            for (g, e) in got.iter().zip(&expected) {
                assert!((g - e).abs() < 1e-5, "concat={concat}: {got:?} vs {expected:?}");
            }
        }
    }

    #[test]
    fn per_head_projection_draws_a_mask_for_each_head() {
        // X is all ones and W = [I | I]: each head's block of X W is its dropout mask.
        let device = Device::flex();
        let (nodes, width) = (6, 4);
        let identity: Vec<f32> =
            (0..width * width).map(|k| if k / width == k % width { 1.0 } else { 0.0 }).collect();
        let weight = Tensor::<2>::from_data(TensorData::new(identity, [width, width]), &device);
        let config = GatConfig::default();
        let shape = GatConvShape { d_in: width, out_features: width, heads: 2, concat: true };
        let mut conv = GatConv::new(shape, &config, &mut HostRng::new(0), &device);
        conv.weight = param(Tensor::cat(vec![weight.clone(), weight], 1));
        let features = NodeFeatures::Dense(Tensor::ones([nodes, width], &device));
        let mut rng = HostRng::new(5);
        let dropped = conv.project_per_head(&features, 0.5, Some(&mut rng));
        let values = dropped.into_data().try_to_vec::<f32>().unwrap();
        assert!(values.iter().all(|v| *v == 0.0 || *v == 2.0), "{values:?}");
        let (first, second): (Vec<f32>, Vec<f32>) = values
            .chunks(2 * width)
            .flat_map(|row| row[..width].iter().copied().zip(row[width..].iter().copied()))
            .unzip();
        assert_ne!(first, second, "both heads got the same mask");
        let kept = values.iter().filter(|v| **v > 0.0).count();
        assert!((12..=36).contains(&kept), "{kept} of 48 kept at p = 0.5");
        let whole = conv.project_per_head(&features, 0.5, None);
        assert_eq!(whole.into_data().try_to_vec::<f32>().unwrap(), vec![1.0; nodes * 2 * width]);
    }
}
