//! LightGCN (He et al., "LightGCN: Simplifying and Powering Graph Convolution Network for
//! Recommendation", SIGIR 2020).
//!
//! Users and items share one embedding table (users first). Each of the K layers
//! propagates embeddings over the user-item graph with the symmetric normalisation
//! `D^-1/2 A D^-1/2`, no weights and no non-linearity; the final embedding is the mean of
//! layers 0..=K. The score of a (user, item) pair is the dot product of their embeddings.
//!
//! The table is named `embedding` (`[users + items, dim]`); LightGCN-PyTorch's
//! `embedding_user.weight` and `embedding_item.weight` are its two row blocks.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};
use rand::RngExt;

use super::message_passing::NormalizedAdjacency;
use super::random::HostRng;

#[derive(Debug, Clone)]
pub struct LightGcnConfig {
    pub embedding_size: usize,
    /// Propagation layers K.
    pub layers: usize,
    /// Standard deviation of the normal initialisation.
    pub init_std: f64,
}

#[derive(Module, Debug)]
pub struct LightGcn {
    pub embedding: Param<Tensor<2>>,
    pub num_users: usize,
    pub layers: usize,
}

impl LightGcn {
    pub fn new(config: &LightGcnConfig, num_users: usize, num_items: usize, rng: &mut HostRng, device: &Device) -> Self {
        let rows = num_users + num_items;
        let values: Vec<f32> = (0..rows * config.embedding_size).map(|_| normal(rng) * config.init_std as f32).collect();
        let table = Tensor::from_data(TensorData::new(values, [rows, config.embedding_size]), device);
        Self { embedding: Param::from_tensor(table), num_users, layers: config.layers }
    }

    /// The user-item graph as a normalised adjacency over `users + items` nodes, each
    /// interaction used in both directions.
    pub fn adjacency(num_users: usize, num_items: usize, interactions: &[(u32, u32)], device: &Device) -> NormalizedAdjacency {
        let offset = num_users as u32;
        let mut edges = Vec::with_capacity(interactions.len() * 2);
        for &(user, item) in interactions {
            edges.push((user, offset + item));
            edges.push((offset + item, user));
        }
        NormalizedAdjacency::new(num_users + num_items, &edges, false, device)
    }

    /// Final embeddings of every user and item: the mean over layers 0..=K.
    pub fn propagate(&self, adjacency: &NormalizedAdjacency) -> Tensor<2> {
        let mut layer = self.embedding.val();
        let mut sum = layer.clone();
        for _ in 0..self.layers {
            layer = adjacency.propagate(layer);
            sum = sum + layer.clone();
        }
        sum / (self.layers + 1) as f64
    }
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut HostRng) -> f32 {
    let u1: f64 = rng.inner().random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.inner().random_range(0.0..1.0);
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn propagation_is_the_mean_of_normalised_layers() {
        let device = Device::flex();
        // One user (node 0) and two items (nodes 1, 2); the user interacted with both.
        let adjacency = LightGcn::adjacency(1, 2, &[(0, 0), (0, 1)], &device);
        let model = LightGcn {
            embedding: Param::from_tensor(Tensor::from_floats([[1.0], [2.0], [4.0]], &device)),
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
}
