//! Inverted dropout whose keep decisions come from a counter-based generator: element `i`
//! of a draw is kept when a SplitMix64 hash of `(seed, i)` falls under `keep · 2^32`.
//!
//! Burn's `Dropout` draws a Bernoulli sample per element from a ChaCha generator through a
//! generic sampler, then multiplies twice: a sixth of a BERT fine-tuning step here. A hash
//! of the element's index vectorises, splits across threads without coordination, and lets
//! a backward pass regenerate the mask from its seed instead of storing it. One seed per
//! call is drawn from the device's generator, so a seeded run still repeats exactly.

use burn::nn::Dropout;
use burn::tensor::{Distribution, Tensor, TensorData};
use rayon::prelude::*;

use super::fused_f32;

/// One draw of dropout decisions: which elements survive, and the factor that keeps the
/// expected value (`1 / keep`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DropoutMask {
    seed: u64,
    /// An element is kept when the high 32 bits of its hash are below this.
    threshold: u64,
    scale: f32,
}

impl DropoutMask {
    /// Decisions for dropping with probability `prob` in `[0, 1)`.
    pub fn new(seed: u64, prob: f64) -> Self {
        let keep = 1.0 - prob;
        Self {
            seed,
            threshold: (keep * 4_294_967_296.0).round() as u64,
            scale: (1.0 / keep) as f32,
        }
    }

    /// A fresh seed from `device`'s generator (what `Device::seed` seeds), so that dropout
    /// follows the run's seed as Burn's does.
    pub fn draw(prob: f64, device: &burn::tensor::Device) -> Self {
        let halves = Tensor::<1>::random([2], Distribution::Default, device)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap_or_default();
        let bits = |k: usize| halves.get(k).map_or(0, |h| h.to_bits() as u64);
        Self::new((bits(0) << 32) | bits(1), prob)
    }

    /// The multiplier of element `index`: `1 / keep` or 0.
    #[inline(always)]
    pub fn factor(&self, index: u64) -> f32 {
        let hash = split_mix(self.seed.wrapping_add(index.wrapping_add(1).wrapping_mul(GOLDEN)));
        if (hash >> 32) < self.threshold { self.scale } else { 0.0 }
    }
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function (Steele, Lea and Flood, OOPSLA 2014): a bijective mix whose
/// outputs for consecutive counters pass BigCrush.
#[inline(always)]
fn split_mix(z: u64) -> u64 {
    let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

widest_simd!(
    /// `values[i] *= mask.factor(first + i)`.
    pub fn apply_in_place(mask: DropoutMask, first: u64, values: &mut [f32]) {
        for (offset, value) in values.iter_mut().enumerate() {
            *value *= mask.factor(first + offset as u64);
        }
    }
);

widest_simd!(
    /// `out[i] = mask.factor(first + i)`.
    pub fn fill_factors(mask: DropoutMask, first: u64, out: &mut [f32]) {
        for (offset, out) in out.iter_mut().enumerate() {
            *out = mask.factor(first + offset as u64);
        }
    }
);

/// `layer.forward(x)`: the identity unless `layer` is training on an autodiff device, as in
/// Burn. On burn-flex the mask comes from [`DropoutMask`]; elsewhere from Burn's `Dropout`.
pub fn dropout<const D: usize>(layer: &Dropout, x: Tensor<D>) -> Tensor<D> {
    if !fused_f32(&x) {
        return layer.forward(x);
    }
    if !is_active(layer, &x) {
        return x;
    }
    let device = x.device();
    let dims = x.dims();
    let mask = DropoutMask::draw(layer.prob, &device);
    const CHUNK: usize = 1 << 14;
    let mut factors = vec![0.0f32; dims.iter().product()];
    factors.par_chunks_mut(CHUNK).enumerate().for_each(|(chunk, out)| {
        fill_factors(mask, (chunk * CHUNK) as u64, out);
    });
    x * Tensor::from_data(TensorData::new(factors, dims), &device)
}

/// Whether `layer` drops anything from `x`: Burn's rule (training, an autodiff device, a
/// non-zero probability).
pub fn is_active<const D: usize>(layer: &Dropout, x: &Tensor<D>) -> bool {
    layer.training.is_enabled() && x.device().is_autodiff() && layer.prob > 0.0
}

#[cfg(test)]
mod tests {
    use burn::nn::DropoutConfig;
    use burn::tensor::Device;

    use super::*;
    use crate::ops::test_support::values;

    #[test]
    fn keeps_the_expected_share_at_the_expected_scale() {
        for prob in [0.1, 0.3, 0.5] {
            let mask = DropoutMask::new(7, prob);
            let mut ones = vec![1.0f32; 200_000];
            apply_in_place(mask, 0, &mut ones);
            let kept = ones.iter().filter(|&&v| v != 0.0).count() as f64 / ones.len() as f64;
            // Binomial standard deviation at n = 200,000 is at most 0.0012; 4 of them.
            assert!((kept - (1.0 - prob)).abs() < 0.005, "p {prob}: kept {kept}");
            let scale = (1.0 / (1.0 - prob)) as f32;
            assert!(ones.iter().all(|&v| v == 0.0 || v == scale));
        }
    }

    #[test]
    fn decisions_depend_on_seed_and_index_only() {
        let mask = DropoutMask::new(42, 0.5);
        let mut whole = vec![0.0f32; 1000];
        fill_factors(mask, 0, &mut whole);
        // The same indices reached in two calls with offsets give the same decisions.
        let mut tail = vec![0.0f32; 600];
        fill_factors(mask, 400, &mut tail);
        assert_eq!(&whole[400..], &tail[..]);
        let mut scaled = vec![3.0f32; 1000];
        apply_in_place(mask, 0, &mut scaled);
        assert!(scaled.iter().zip(&whole).all(|(s, f)| *s == 3.0 * f));
        let mut other = vec![0.0f32; 1000];
        fill_factors(DropoutMask::new(43, 0.5), 0, &mut other);
        let same = whole.iter().zip(&other).filter(|(a, b)| a == b).count();
        assert!((400..600).contains(&same), "{same} of 1000 decisions shared by two seeds");
        // Neighbouring elements are not correlated: the share of kept pairs is keep^2.
        let both = whole.windows(2).filter(|w| w[0] != 0.0 && w[1] != 0.0).count();
        assert!((180..320).contains(&both), "{both} of 999 neighbouring pairs both kept");
    }

    #[test]
    fn passes_the_mask_to_the_gradient() {
        // Whether a device seed repeats a draw is not tested here: every test thread shares
        // burn-flex's generator. `decisions_depend_on_seed_and_index_only` covers the mask.
        let device = Device::flex().autodiff();
        let layer = DropoutConfig::new(0.4).init();
        let x = Tensor::<2>::ones([64, 33], &device).require_grad();
        let y = dropout(&layer, x.clone());
        let grads = (y.clone() * 2.0).sum().backward();
        let (first, grad) = (values(y), values(x.grad(&grads).unwrap()));
        let scale = 1.0 / 0.6f32;
        for (y, g) in first.iter().zip(&grad) {
            assert!(*y == 0.0 || (*y - scale).abs() < 1e-6, "{y}");
            assert!((g - 2.0 * y).abs() < 1e-6, "gradient {g} for output {y}");
        }
        // Off the autodiff device, and once frozen, dropout is the identity.
        let inference = Tensor::<2>::ones([4, 4], &Device::flex());
        assert_eq!(values(dropout(&layer, inference)), vec![1.0; 16]);
    }
}
