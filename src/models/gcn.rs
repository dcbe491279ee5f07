//! Graph Convolutional Network (Kipf and Welling, "Semi-Supervised Classification with
//! Graph Convolutional Networks", ICLR 2017).
//!
//! Each layer computes `D^-1/2 (A + I) D^-1/2 X W + b` by message passing over the edge
//! list: the normalised adjacency is never materialised.
//!
//! Weight names follow PyG's `GCNConv` (`convs.0.weight`, `convs.0.bias`) with the weight
//! stored `[in, out]`, the transpose of PyG's `lin.weight`.

use burn::module::{Module, Param};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::message_passing::{GraphTensors, LayerInput, NormalizedAdjacency};
use crate::base::rng::{HostRng, dropout};
use crate::base::tensor::zeros_param;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcnConfig {
    pub hidden: usize,
    /// Number of graph convolutions (the paper uses 2).
    pub layers: usize,
    /// Dropout on each layer's input (the paper's 0.5).
    pub dropout: f64,
}

impl Default for GcnConfig {
    fn default() -> Self {
        Self { hidden: 16, layers: 2, dropout: 0.5 }
    }
}

/// One graph convolution.
#[derive(Module, Debug)]
pub struct GcnConv {
    pub weight: Param<Tensor<2>>,
    pub bias: Param<Tensor<1>>,
}

impl GcnConv {
    pub fn new(d_in: usize, d_out: usize, rng: &mut HostRng, device: &Device) -> Self {
        Self {
            weight: rng.glorot([d_in, d_out], d_in, d_out, device),
            bias: zeros_param([d_out], device),
        }
    }

    pub fn forward(&self, input: LayerInput<'_>, adjacency: &NormalizedAdjacency) -> Tensor<2> {
        let projected = input.project(self.weight.val());
        adjacency.propagate(projected) + self.bias.val().unsqueeze_dim(0)
    }
}

#[derive(Module, Debug)]
pub struct Gcn {
    pub convs: Vec<GcnConv>,
    pub dropout: f64,
}

impl Gcn {
    pub fn new(
        config: &GcnConfig,
        d_in: usize,
        num_classes: usize,
        rng: &mut HostRng,
        device: &Device,
    ) -> Self {
        let layers = config.layers.max(1);
        let convs = (0..layers)
            .map(|i| {
                let d_layer_in = if i == 0 { d_in } else { config.hidden };
                let d_layer_out = if i + 1 == layers { num_classes } else { config.hidden };
                GcnConv::new(d_layer_in, d_layer_out, rng, device)
            })
            .collect();
        Self { convs, dropout: config.dropout }
    }

    /// Class logits `[N, C]`. `rng` is `Some` in training (dropout on), `None` otherwise.
    pub fn forward(&self, graph: &GraphTensors, mut rng: Option<&mut HostRng>) -> Tensor<2> {
        let mut h: Option<Tensor<2>> = None;
        for (i, conv) in self.convs.iter().enumerate() {
            let input = match h.take() {
                None => LayerInput::features(&graph.features, self.dropout, rng.as_deref_mut()),
                Some(hidden) => {
                    LayerInput::Dense(dropout(hidden, self.dropout, rng.as_deref_mut()))
                }
            };
            let out = conv.forward(input, &graph.adjacency);
            h = Some(if i + 1 < self.convs.len() { relu(out) } else { out });
        }
        h.expect("a GCN has at least one layer")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::sparse::SparseFeatures;
    use crate::models::message_passing::SparseInput;
    use crate::models::message_passing::tests::toy_edges;

    /// `Â X W + b` computed densely, by hand, for the 4-node toy graph.
    fn dense_reference(x: &[[f32; 2]; 4], w: &[[f32; 3]; 2], b: &[f32; 3]) -> Vec<f32> {
        let mut adj = [[0f32; 4]; 4];
        for (s, d) in toy_edges() {
            adj[d as usize][s as usize] = 1.0;
        }
        for (i, row) in adj.iter_mut().enumerate() {
            row[i] = 1.0;
        }
        let deg: Vec<f32> = adj.iter().map(|row| row.iter().sum()).collect();
        let mut out = Vec::new();
        for i in 0..4 {
            for k in 0..3 {
                let mut acc = b[k];
                for j in 0..4 {
                    let xw: f32 = (0..2).map(|f| x[j][f] * w[f][k]).sum();
                    acc += adj[i][j] / (deg[i] * deg[j]).sqrt() * xw;
                }
                out.push(acc);
            }
        }
        out
    }

    #[test]
    fn gcn_conv_matches_dense_formula() {
        let device = Device::flex();
        let x = [[1.0, 0.0], [0.5, 2.0], [0.0, 1.0], [3.0, -1.0]];
        let w = [[0.2, -0.4, 1.0], [0.7, 0.1, -0.3]];
        let b = [0.1, 0.0, -0.2];
        let mut features = SparseFeatures::default();
        for (node, row) in x.iter().enumerate() {
            for (feature, &value) in row.iter().enumerate() {
                if value != 0.0 {
                    features.rows.push(node as u32);
                    features.cols.push(feature as u32);
                    features.values.push(value);
                }
            }
        }
        let graph = GraphTensors::new(4, 2, &toy_edges(), &features, &device);
        let conv = GcnConv {
            weight: Param::from_tensor(Tensor::from_floats(w, &device)),
            bias: Param::from_tensor(Tensor::from_floats(b, &device)),
        };
        let sparse_input = SparseInput::new(&features, 4, 2, &device);
        let sparse = conv.forward(
            LayerInput::Sparse(&sparse_input, sparse_input.values.clone()),
            &graph.adjacency,
        );
        let dense =
            conv.forward(LayerInput::Dense(Tensor::from_floats(x, &device)), &graph.adjacency);
        let expected = dense_reference(&x, &w, &b);
        for out in [sparse, dense] {
            let got = out.into_data().try_to_vec::<f32>().unwrap();
            for (g, e) in got.iter().zip(&expected) {
                assert!((g - e).abs() < 1e-5, "{got:?} vs {expected:?}");
            }
        }
    }
}
