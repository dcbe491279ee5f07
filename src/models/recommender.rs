//! Graph recommender: user and item embeddings propagated over the user-item graph.
//!
//! The default encoder is LightGCN (He et al., "LightGCN: Simplifying and Powering Graph
//! Convolution Network for Recommendation", SIGIR 2020): each of the K layers propagates
//! embeddings with the symmetric normalisation `D^-1/2 A D^-1/2`, with no weights and no
//! non-linearity. The alternatives put the engine's [`GcnConv`] (self-loops added, a
//! weight and a bias per layer) or [`GatConv`] (attention over neighbours) in each layer.
//! In every case the final embedding is the mean of layers 0..=K, and the score of a
//! (user, item) pair is the dot product of their embeddings.
//!
//! Users and items share one table named `embedding` (`[users + items, dim]`, users
//! first); LightGCN-PyTorch's `embedding_user.weight` and `embedding_item.weight` are its
//! two row blocks.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::gat::{GatConfig, GatConv, GatConvShape};
use super::gcn::GcnConv;
use super::message_passing::{LayerInput, NormalizedAdjacency};
use crate::base::rng::HostRng;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoder {
    Lightgcn,
    Gcn,
    Gat,
}

#[derive(Debug, Clone)]
pub struct RecommenderNetConfig {
    pub encoder: Encoder,
    pub embedding_size: usize,
    /// Propagation layers K.
    pub layers: usize,
    /// Attention heads per GAT layer (concatenated back to `embedding_size`).
    pub heads: usize,
    /// Standard deviation of the normal initialisation of the embedding table.
    pub init_std: f64,
}

#[derive(Module, Debug)]
pub struct GraphRecommender {
    pub embedding: Param<Tensor<2>>,
    /// One per layer with the GCN encoder, empty otherwise.
    pub gcn: Vec<GcnConv>,
    /// One per layer with the GAT encoder, empty otherwise.
    pub gat: Vec<GatConv>,
    pub num_users: usize,
    pub layers: usize,
}

impl GraphRecommender {
    pub fn new(
        config: &RecommenderNetConfig,
        num_users: usize,
        num_items: usize,
        rng: &mut HostRng,
        device: &Device,
    ) -> Self {
        let rows = num_users + num_items;
        let d = config.embedding_size;
        let embedding = rng.normal_param([rows, d], config.init_std, device);
        let layers = 0..config.layers;
        let gcn = match config.encoder {
            Encoder::Gcn => layers.clone().map(|_| GcnConv::new(d, d, rng, device)).collect(),
            _ => Vec::new(),
        };
        // The recommender's attention layers are regularised by the embedding L2 alone.
        let attention =
            GatConfig { attention_dropout: 0.0, feature_dropout: 0.0, ..GatConfig::default() };
        let gat = match config.encoder {
            Encoder::Gat => layers
                .map(|_| {
                    let shape = GatConvShape {
                        d_in: d,
                        out_features: d / config.heads,
                        heads: config.heads,
                        concat: true,
                    };
                    GatConv::new(shape, &attention, rng, device)
                })
                .collect(),
            _ => Vec::new(),
        };
        Self { embedding, gcn, gat, num_users, layers: config.layers }
    }

    /// The user-item graph over `users + items` nodes, each interaction used in both
    /// directions with its weight; with self-loops for the GCN and GAT encoders, without
    /// for LightGCN.
    pub fn adjacency(
        encoder: Encoder,
        num_users: usize,
        num_items: usize,
        interactions: &[(u32, u32)],
        weights: &[f32],
        device: &Device,
    ) -> NormalizedAdjacency {
        let offset = num_users as u32;
        let mut edges = Vec::with_capacity(interactions.len() * 2);
        let mut edge_weights = Vec::with_capacity(interactions.len() * 2);
        for (&(user, item), &weight) in interactions.iter().zip(weights) {
            edges.extend([(user, offset + item), (offset + item, user)]);
            edge_weights.extend([weight, weight]);
        }
        NormalizedAdjacency::weighted(
            num_users + num_items,
            &edges,
            Some(&edge_weights),
            encoder != Encoder::Lightgcn,
            device,
        )
    }

    /// Final embeddings of every user and item: the mean over layers 0..=K.
    pub fn propagate(&self, adjacency: &NormalizedAdjacency) -> Tensor<2> {
        let mut layer = self.embedding.val();
        let mut sum = layer.clone();
        for k in 0..self.layers {
            layer = if let Some(conv) = self.gcn.get(k) {
                conv.forward(LayerInput::Dense(layer), adjacency)
            } else if let Some(conv) = self.gat.get(k) {
                conv.forward(LayerInput::Dense(layer), adjacency, None)
            } else {
                adjacency.propagate(layer)
            };
            sum = sum + layer.clone();
        }
        sum / (self.layers + 1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lightgcn_propagation_is_the_mean_of_normalised_layers() {
        let device = Device::flex();
        // One user (node 0) and two items (nodes 1, 2); the user interacted with both.
        let adjacency = GraphRecommender::adjacency(
            Encoder::Lightgcn,
            1,
            2,
            &[(0, 0), (0, 1)],
            &[1.0, 1.0],
            &device,
        );
        let model = GraphRecommender {
            embedding: Param::from_tensor(Tensor::from_floats([[1.0], [2.0], [4.0]], &device)),
            gcn: Vec::new(),
            gat: Vec::new(),
            num_users: 1,
            layers: 1,
        };
        let out = model.propagate(&adjacency).into_data().try_to_vec::<f32>().unwrap();
        // deg(user) = 2, deg(items) = 1: each edge weighs 1/sqrt(2).
        let w = 1.0 / 2f32.sqrt();
        let layer1 = [w * (2.0 + 4.0), w * 1.0, w * 1.0];
        let expected = [(1.0 + layer1[0]) / 2.0, (2.0 + layer1[1]) / 2.0, (4.0 + layer1[2]) / 2.0];
        for (g, e) in out.iter().zip(expected) {
            assert!((g - e).abs() < 1e-6, "{out:?}");
        }
    }

    #[test]
    fn every_encoder_keeps_the_embedding_shape() {
        let device = Device::flex();
        for encoder in [Encoder::Lightgcn, Encoder::Gcn, Encoder::Gat] {
            let config = RecommenderNetConfig {
                encoder,
                embedding_size: 8,
                layers: 2,
                heads: 2,
                init_std: 0.1,
            };
            let model = GraphRecommender::new(&config, 3, 4, &mut HostRng::new(0), &device);
            let adjacency = GraphRecommender::adjacency(
                encoder,
                3,
                4,
                &[(0, 1), (1, 2), (2, 3)],
                &[1.0, 2.0, 1.0],
                &device,
            );
            assert_eq!(model.propagate(&adjacency).dims(), [7, 8], "{encoder:?}");
            assert_eq!(model.gcn.len(), if encoder == Encoder::Gcn { 2 } else { 0 });
            assert_eq!(model.gat.len(), if encoder == Encoder::Gat { 2 } else { 0 });
        }
    }
}
