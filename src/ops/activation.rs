//! Vectorised `exp`, `sigmoid` and `tanh` over `f32` slices, for shopnet's fused CPU kernels.
//!
//! burn-flex evaluates these one element at a time through libm. Here `exp` is Cephes'
//! `expf` (range reduction to `[-ln 2 / 2, ln 2 / 2]`, a degree-6 polynomial, the power of
//! two put into the exponent bits; about 1 ulp), written branch-free so that the compiler
//! vectorises the loops. Each loop is compiled three times, for AVX-512, AVX2 + FMA and the
//! baseline, and the widest the CPU has is picked at run time.

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

/// Defines `$name(values: &mut [f32])` applying `$f` in place, dispatched at run time to
/// the widest instruction set the CPU supports.
macro_rules! vectorised_in_place {
    ($(#[$doc:meta])* $name:ident, $f:ident) => {
        $(#[$doc])*
        pub fn $name(values: &mut [f32]) {
            #[inline(always)]
            fn body(values: &mut [f32]) {
                for value in values.iter_mut() {
                    *value = $f(*value);
                }
            }
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512(values: &mut [f32]) {
                    body(values)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2(values: &mut [f32]) {
                    body(values)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has just been seen to support AVX-512F.
                    return unsafe { avx512(values) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has just been seen to support AVX2 and FMA.
                    return unsafe { avx2(values) };
                }
            }
            body(values)
        }
    };
}

vectorised_in_place!(
    /// `x <- 1 / (1 + e^-x)` for every element.
    sigmoid_in_place,
    sigmoid
);
vectorised_in_place!(
    /// `x <- tanh x` for every element.
    tanh_in_place,
    tanh
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
