//! Graph Attention Network (Velickovic et al., "Graph Attention Networks", ICLR 2018).
//!
//! Attention is computed per edge of the edge list: `e_ij = LeakyReLU(a_src . W h_j +
//! a_dst . W h_i)`, normalised by a softmax over the edges entering node `i`
//! ([`segment_softmax`]), then used to weight the scatter-add of the neighbours' rows.
//!
//! Weight names follow PyG's `GATConv` (`att_src`, `att_dst`, `bias`); `weight` is
//! `[in, heads * out]`, the transpose of PyG's `lin.weight`.

use burn::module::{Module, Param};
use burn::tensor::activation::{elu, leaky_relu};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::message_passing::{
    GraphTensors, LayerInput, NormalizedAdjacency, scatter_add, segment_softmax,
};
use crate::base::rng::{HostRng, dropout};
use crate::base::tensor::zeros_param;

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
    /// Dropout on the normalised attention coefficients.
    pub attention_dropout: f64,
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
            attention_dropout: 0.6,
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
}

impl GatConv {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        d_in: usize,
        out_features: usize,
        heads: usize,
        concat: bool,
        negative_slope: f64,
        attention_dropout: f64,
        rng: &mut HostRng,
        device: &Device,
    ) -> Self {
        let width = heads * out_features;
        Self {
            weight: rng.glorot([d_in, width], d_in, width, device),
            att_src: rng.glorot([heads, out_features], heads, out_features, device),
            att_dst: rng.glorot([heads, out_features], heads, out_features, device),
            bias: zeros_param([if concat { width } else { out_features }], device),
            heads,
            out_features,
            concat,
            negative_slope,
            attention_dropout,
        }
    }

    pub fn forward(
        &self,
        input: LayerInput<'_>,
        adjacency: &NormalizedAdjacency,
        rng: Option<&mut HostRng>,
    ) -> Tensor<2> {
        let n = adjacency.num_nodes;
        let (heads, features) = (self.heads, self.out_features);
        let h = input.project(self.weight.val(), n).reshape([n, heads, features]);
        let score_src =
            (h.clone() * self.att_src.val().unsqueeze_dim(0)).sum_dim(2).reshape([n, heads]);
        let score_dst =
            (h.clone() * self.att_dst.val().unsqueeze_dim(0)).sum_dim(2).reshape([n, heads]);
        let scores =
            score_src.select(0, adjacency.src.clone()) + score_dst.select(0, adjacency.dst.clone());
        let attention =
            segment_softmax(leaky_relu(scores, self.negative_slope), adjacency.dst.clone(), n);
        let attention = dropout(attention, self.attention_dropout, rng);
        let edges = adjacency.num_edges();
        let messages = h.select(0, adjacency.src.clone()) * attention.reshape([edges, heads, 1]);
        let out = scatter_add(messages, adjacency.dst.clone(), n);
        let out = if self.concat {
            out.reshape([n, heads * features])
        } else {
            out.mean_dim(1).reshape([n, features])
        };
        out + self.bias.val().unsqueeze_dim(0)
    }
}

#[derive(Module, Debug)]
pub struct Gat {
    pub conv1: GatConv,
    pub conv2: GatConv,
    pub dropout: f64,
}

impl Gat {
    pub fn new(
        config: &GatConfig,
        d_in: usize,
        num_classes: usize,
        rng: &mut HostRng,
        device: &Device,
    ) -> Self {
        let conv1 = GatConv::new(
            d_in,
            config.hidden,
            config.heads,
            true,
            config.negative_slope,
            config.attention_dropout,
            rng,
            device,
        );
        let conv2 = GatConv::new(
            config.hidden * config.heads,
            num_classes,
            config.out_heads,
            false,
            config.negative_slope,
            config.attention_dropout,
            rng,
            device,
        );
        Self { conv1, conv2, dropout: config.dropout }
    }

    /// Class logits `[N, C]`. `rng` is `Some` in training (dropout on), `None` otherwise.
    pub fn forward(&self, graph: &GraphTensors, mut rng: Option<&mut HostRng>) -> Tensor<2> {
        let input = LayerInput::features(&graph.features, self.dropout, rng.as_deref_mut());
        let hidden = elu(self.conv1.forward(input, &graph.adjacency, rng.as_deref_mut()), 1.0);
        let hidden = dropout(hidden, self.dropout, rng.as_deref_mut());
        self.conv2.forward(LayerInput::Dense(hidden), &graph.adjacency, rng)
    }
}

#[cfg(test)]
mod tests {
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
}
