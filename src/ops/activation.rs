//! Vectorised `exp`, `sigmoid`, `tanh` and the exact GELU over `f32` slices, for shopnet's
//! fused CPU kernels.
//!
//! burn-flex evaluates these one element at a time through libm. Here `exp` is Cephes'
//! `expf` (range reduction to `[-ln 2 / 2, ln 2 / 2]`, a degree-6 polynomial, the power of
//! two put into the exponent bits; about 1 ulp), written branch-free so that the compiler
//! vectorises the loops. The GELU's normal CDF is `erfc` as Numerical Recipes' `erfcc` (a
//! Chebyshev fit of `ln(erfc(z) / t)`, relative error under 1.2e-7 for every `z >= 0`), so
//! that the far negative tail keeps its relative accuracy. Each loop is compiled three times,
//! for AVX-512, AVX2 + FMA and the baseline, and the widest the CPU has is picked at run time.

/// Arguments are clamped to this range, where `exp` is a finite, normal `f32`: beyond it
/// the result would overflow, below it underflow to subnormals.
const EXP_HIGH: f32 = 88.37;
const EXP_LOW: f32 = -87.33;

/// `e^x`, branch-free; exact to about one unit in the last place over the clamped range.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so that `n * LN2_HIGH` is exact for every n in range.
    const LN2_HIGH: f32 = 0.693_359_4;
    const LN2_LOW: f32 = -2.121_944_4e-4;
    // Not `clamp`: that keeps a NaN, which the exponent conversion below must not see.
    #[allow(clippy::manual_clamp)]
    let clamped = x.max(EXP_LOW).min(EXP_HIGH);
    let n = (clamped * LOG2_E + 0.5).floor();
    let r = clamped - n * LN2_HIGH - n * LN2_LOW;
    let p = 1.987_569_1e-4_f32;
    let p = p.mul_add(r, 1.398_199_9e-3);
    let p = p.mul_add(r, 8.333_452e-3);
    let p = p.mul_add(r, 4.166_579_6e-2);
    let p = p.mul_add(r, 1.666_666_5e-1);
    let p = p.mul_add(r, 0.5);
    let p = p.mul_add(r * r, r) + 1.0;
    // n + 127 is in [1, 254] after the clamp: a normal number's biased exponent, so 2^n is
    // built in the exponent bits, with no saturating conversion to keep the loop scalar.
    // SAFETY: the value is an integer in [1, 254], representable as i32.
    let biased = unsafe { (n + 127.0).to_int_unchecked::<i32>() };
    let result = p * f32::from_bits((biased as u32) << 23);
    // max/min above turned NaN into a bound; a NaN input must stay NaN.
    if x.is_nan() { x } else { result }
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

#[inline(always)]
fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (1.0 + exp(2.0 * x))
}

/// `erfc(z)` for `z >= 0`.
#[inline(always)]
fn erfc_non_negative(z: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.5 * z);
    let p = 0.170_872_77_f32;
    let p = p.mul_add(t, -0.822_152_23);
    let p = p.mul_add(t, 1.488_515_9);
    let p = p.mul_add(t, -1.135_204);
    let p = p.mul_add(t, 0.278_868_07);
    let p = p.mul_add(t, -0.186_288_06);
    let p = p.mul_add(t, 0.096_784_18);
    let p = p.mul_add(t, 0.374_091_96);
    let p = p.mul_add(t, 1.000_023_7);
    let p = p.mul_add(t, -1.265_512_2);
    t * exp(p - z * z)
}

/// `Φ(x)`, the standard normal distribution function: `erfc(-x / √2) / 2`.
#[inline(always)]
fn normal_cdf(x: f32) -> f32 {
    let tail = 0.5 * erfc_non_negative(x.abs() * std::f32::consts::FRAC_1_SQRT_2);
    if x < 0.0 { tail } else { 1.0 - tail }
}

/// `1 / √(2π)`, the standard normal density at 0.
const NORMAL_DENSITY_AT_0: f32 = 0.398_942_3;

widest_simd!(
    /// `out <- x Φ(x)`, the exact GELU (Burn's `gelu`, transformers' `"gelu"`), element-wise.
    pub fn gelu_into(x: &[f32], out: &mut [f32]) {
        for (out, &x) in out.iter_mut().zip(x) {
            *out = x * normal_cdf(x);
        }
    }
);

widest_simd!(
    /// `grad <- grad (Φ(x) + x φ(x))`: the exact GELU's backward, in place.
    pub fn gelu_backward_in_place(x: &[f32], grad: &mut [f32]) {
        for (grad, &x) in grad.iter_mut().zip(x) {
            // Past |x| = 13 the density is below 1e-37 and `exp`'s clamp would keep it
            // from reaching 0, which `x φ(x)` needs as x grows without bound.
            let density =
                if x.abs() < 13.0 { NORMAL_DENSITY_AT_0 * exp(-0.5 * x * x) } else { 0.0 };
            *grad *= normal_cdf(x) + x * density;
        }
    }
);

/// Reductions keep this many partial results, one per lane of an AVX-512 register, so that
/// the loops vectorise without reordering a single running sum.
const LANES: usize = 16;

widest_simd!(
    /// `x <- e^(x - max) / Σ e^(x - max)` over the whole slice.
    pub fn softmax_in_place(values: &mut [f32]) {
        let mut highest = [f32::NEG_INFINITY; LANES];
        let mut chunks = values.chunks_exact(LANES);
        for chunk in &mut chunks {
            for (high, &v) in highest.iter_mut().zip(chunk) {
                *high = high.max(v);
            }
        }
        let max =
            chunks.remainder().iter().chain(&highest).fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let mut sums = [0.0f32; LANES];
        let mut chunks = values.chunks_exact_mut(LANES);
        for chunk in &mut chunks {
            for (sum, v) in sums.iter_mut().zip(chunk) {
                *v = exp(*v - max);
                *sum += *v;
            }
        }
        let mut total: f32 = sums.iter().sum();
        for v in chunks.into_remainder() {
            *v = exp(*v - max);
            total += *v;
        }
        let inverse = 1.0 / total;
        values.iter_mut().for_each(|v| *v *= inverse);
    }
);

widest_simd!(
    /// `x <- 1 / (1 + e^-x)` for every element.
    pub fn sigmoid_in_place(values: &mut [f32]) {
        for value in values.iter_mut() {
            *value = sigmoid(*value);
        }
    }
);

widest_simd!(
    /// `x <- tanh x` for every element.
    pub fn tanh_in_place(values: &mut [f32]) {
        for value in values.iter_mut() {
            *value = tanh(*value);
        }
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    /// Points across the whole useful range, including both clamping bounds and zero.
    fn grid() -> Vec<f32> {
        let mut points: Vec<f32> = (-2000..=2000).map(|i| i as f32 * 0.05).collect();
        points.extend([0.0, -0.0, 1e-6, -1e-6, 88.0, -87.0, 200.0, -200.0, f32::MIN, f32::MAX]);
        points.extend([f32::INFINITY, f32::NEG_INFINITY]);
        points
    }

    #[test]
    fn exp_is_within_two_ulp_of_libm() {
        for x in (-8700..=8830).map(|i| i as f32 * 0.01) {
            let (ours, libm) = (exp(x), x.exp());
            assert!(((ours - libm) / libm).abs() < 2.5e-7, "exp({x}) = {ours}, libm {libm}");
        }
    }

    #[test]
    fn sigmoid_matches_the_definition() {
        let points = grid();
        let mut ours = points.clone();
        sigmoid_in_place(&mut ours);
        for (x, ours) in points.iter().zip(ours) {
            let exact = 1.0 / (1.0 + (-(*x as f64)).exp());
            assert!((ours as f64 - exact).abs() <= 1e-6 * exact.max(1e-30) + 1e-37, "{x}: {ours}");
        }
    }

    #[test]
    fn tanh_matches_libm_to_a_few_ulp_of_one() {
        let points = grid();
        let mut ours = points.clone();
        tanh_in_place(&mut ours);
        for (x, ours) in points.iter().zip(ours) {
            let exact = (*x as f64).tanh();
            assert!((ours as f64 - exact).abs() < 3e-7, "tanh({x}) = {ours}, exact {exact}");
        }
    }

    /// The exact GELU and its derivative in f64, from libm's `erfc`-free series-free route:
    /// `Φ(x) = erfc(-x / √2) / 2` through the complementary error function of the C library.
    fn gelu_f64(x: f64) -> (f64, f64) {
        let cdf = 0.5 * libm_erfc(-x / std::f64::consts::SQRT_2);
        let density = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
        (x * cdf, cdf + x * density)
    }

    fn libm_erfc(x: f64) -> f64 {
        unsafe extern "C" {
            fn erfc(x: f64) -> f64;
        }
        // SAFETY: the C library's erfc is a pure function of one double.
        unsafe { erfc(x) }
    }

    #[test]
    fn gelu_and_its_derivative_match_the_definition() {
        let points = grid();
        let mut ours = vec![0.0; points.len()];
        gelu_into(&points, &mut ours);
        let mut slope = vec![1.0; points.len()];
        gelu_backward_in_place(&points, &mut slope);
        for ((x, ours), slope) in points.iter().zip(ours).zip(slope) {
            if !x.is_finite() {
                continue;
            }
            let (value, derivative) = gelu_f64(*x as f64);
            // Relative in the tails (the value is x times a tiny probability), absolute near 0.
            let tolerance = 1e-6 * value.abs().max(1e-30) + 1e-7;
            assert!((ours as f64 - value).abs() <= tolerance, "gelu({x}) = {ours}, exact {value}");
            assert!(
                (slope as f64 - derivative).abs() <= 2e-6,
                "gelu'({x}) = {slope}, exact {derivative}"
            );
        }
        // The far negative tail keeps its relative accuracy, where 1 + erf(x) would cancel.
        let mut tail = [0.0f32];
        gelu_into(&[-6.0], &mut tail);
        let exact = gelu_f64(-6.0).0;
        assert!(
            ((tail[0] as f64 - exact) / exact).abs() < 1e-5,
            "gelu(-6) = {}, exact {exact}",
            tail[0]
        );
    }

    #[test]
    fn softmax_matches_the_definition_for_every_remainder() {
        for len in [1, 5, 16, 17, 40, 128] {
            let values: Vec<f32> = (0..len).map(|i| ((i * 37 % 11) as f32 - 5.0) * 1.7).collect();
            let mut ours = values.clone();
            softmax_in_place(&mut ours);
            let max = values.iter().cloned().fold(f64::NEG_INFINITY, |m, v| m.max(v as f64));
            let total: f64 = values.iter().map(|&v| (v as f64 - max).exp()).sum();
            for (v, ours) in values.iter().zip(&ours) {
                let exact = (*v as f64 - max).exp() / total;
                assert!(
                    (*ours as f64 - exact).abs() < 1e-6 * (1.0 + exact),
                    "len {len}: {ours} vs {exact}"
                );
            }
        }
    }

    #[test]
    fn nan_stays_nan() {
        let mut values = [f32::NAN; 17];
        sigmoid_in_place(&mut values);
        assert!(values.iter().all(|v| v.is_nan()));
        tanh_in_place(&mut values);
        assert!(values.iter().all(|v| v.is_nan()));
    }

    #[test]
    fn every_dispatch_path_agrees_with_the_scalar_one() {
        // Lengths around the vector widths leave remainders of every size.
        for len in [1, 7, 15, 16, 17, 33, 100] {
            let values: Vec<f32> = (0..len).map(|i| i as f32 * 0.37 - 5.0).collect();
            let mut vectorised = values.clone();
            sigmoid_in_place(&mut vectorised);
            let scalar: Vec<f32> = values.iter().map(|x| sigmoid(*x)).collect();
            assert_eq!(vectorised, scalar);
        }
    }
}
