//! Randomness drawn on the host from one seeded generator.
//!
//! Burn's device RNGs differ between backends, so a CPU run and a GPU run with the same
//! seed would start from different weights and drop different units. Drawing initial
//! weights and dropout masks here makes a seed mean the same run on every device, and
//! makes a resumed run replay exactly (the trainer derives one generator per epoch).

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub struct HostRng(ChaCha8Rng);

impl HostRng {
    pub fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }

    /// A generator for one (seed, epoch) pair, independent of how many numbers earlier
    /// epochs drew: this is what lets `--resume` replay the uninterrupted run.
    pub fn for_epoch(seed: u64, epoch: usize) -> Self {
        Self::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(epoch as u64 + 1))
    }

    pub fn inner(&mut self) -> &mut ChaCha8Rng {
        &mut self.0
    }

    /// `items` shuffled and cut into mini-batches of `batch_size` (the last may be smaller).
    pub fn shuffled_batches<T: Clone>(
        &mut self,
        mut items: Vec<T>,
        batch_size: usize,
    ) -> Vec<Vec<T>> {
        items.shuffle(&mut self.0);
        items.chunks(batch_size).map(<[T]>::to_vec).collect()
    }

    /// Inverted-dropout multipliers: 0 with probability `p`, else `1 / (1 - p)`.
    pub fn dropout_mask(&mut self, len: usize, p: f64) -> Vec<f32> {
        let keep = 1.0 - p;
        let scale = (1.0 / keep) as f32;
        (0..len).map(|_| if self.0.random_bool(keep) { scale } else { 0.0 }).collect()
    }

    /// Glorot (Xavier) uniform, the initialiser of the GCN and GAT papers.
    pub fn glorot<const D: usize>(
        &mut self,
        shape: [usize; D],
        fan_in: usize,
        fan_out: usize,
        device: &Device,
    ) -> Param<Tensor<D>> {
        self.uniform(shape, (6.0 / (fan_in + fan_out) as f64).sqrt(), device)
    }

    /// Uniform on `[-bound, bound)`: PyTorch's default for linear, convolution and LSTM
    /// weights, with `bound = 1 / sqrt(fan_in)`.
    pub fn uniform<const D: usize>(
        &mut self,
        shape: [usize; D],
        bound: f64,
        device: &Device,
    ) -> Param<Tensor<D>> {
        let bound = bound as f32;
        let len = shape.iter().product();
        let values: Vec<f32> = (0..len).map(|_| self.0.random_range(-bound..bound)).collect();
        Param::from_tensor(Tensor::from_data(TensorData::new(values, shape), device))
    }

    /// One standard normal draw (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        let u1: f64 = self.0.random_range(f64::EPSILON..1.0);
        let u2: f64 = self.0.random_range(0.0..1.0);
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }

    /// A tensor of normal draws with standard deviation `std`: PyTorch's default for
    /// embedding tables is `std = 1`.
    pub fn normal_param<const D: usize>(
        &mut self,
        shape: [usize; D],
        std: f64,
        device: &Device,
    ) -> Param<Tensor<D>> {
        let len = shape.iter().product();
        let values: Vec<f32> = (0..len).map(|_| self.normal() * std as f32).collect();
        Param::from_tensor(Tensor::from_data(TensorData::new(values, shape), device))
    }
}

/// Applies inverted dropout with a host-drawn mask; the identity outside training.
pub fn dropout<const D: usize>(x: Tensor<D>, p: f64, rng: Option<&mut HostRng>) -> Tensor<D> {
    match rng {
        Some(rng) if p > 0.0 => {
            let shape = x.dims();
            let mask = rng.dropout_mask(shape.iter().product(), p);
            let mask = Tensor::<D>::from_data(TensorData::new(mask, shape), &x.device());
            x * mask
        }
        _ => x,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropout_mask_keeps_expected_fraction_and_scale() {
        let mask = HostRng::new(7).dropout_mask(100_000, 0.6);
        let kept = mask.iter().filter(|&&m| m > 0.0).count() as f64 / mask.len() as f64;
        assert!((kept - 0.4).abs() < 0.01, "kept {kept}");
        assert!(mask.iter().all(|&m| m == 0.0 || (m - 2.5).abs() < 1e-6));
    }

    #[test]
    fn normal_has_requested_moments() {
        let values = HostRng::new(3)
            .normal_param([50_000], 0.5, &Device::flex())
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let mean = values.iter().map(|&v| v as f64).sum::<f64>() / values.len() as f64;
        let var =
            values.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / values.len() as f64;
        assert!(
            mean.abs() < 0.01 && (var.sqrt() - 0.5).abs() < 0.01,
            "mean {mean} std {}",
            var.sqrt()
        );
    }

    #[test]
    fn epoch_generators_are_reproducible_and_distinct() {
        let a = HostRng::for_epoch(1, 5).dropout_mask(64, 0.5);
        assert_eq!(a, HostRng::for_epoch(1, 5).dropout_mask(64, 0.5));
        assert_ne!(a, HostRng::for_epoch(1, 6).dropout_mask(64, 0.5));
        assert_ne!(a, HostRng::for_epoch(2, 5).dropout_mask(64, 0.5));
    }
}
