//! Principal component analysis to two dimensions, for drawing an embedding space.

/// Rows of a `[rows, dim]` row-major matrix projected onto its two leading principal
/// components, and the share of the variance each explains. Power iteration on the
/// covariance with deflation: `dim` is an embedding width (tens to hundreds), so the
/// `dim x dim` covariance is small and the result exact to float precision.
pub fn pca_2d(values: &[f32], dim: usize) -> (Vec<[f32; 2]>, [f64; 2]) {
    let rows = values.len() / dim.max(1);
    if rows == 0 || dim == 0 {
        return (Vec::new(), [0.0, 0.0]);
    }
    let mean: Vec<f64> = (0..dim)
        .map(|j| values.iter().skip(j).step_by(dim).map(|&v| v as f64).sum::<f64>() / rows as f64)
        .collect();
    let mut covariance = vec![0.0f64; dim * dim];
    for row in values.chunks(dim) {
        for a in 0..dim {
            let da = row[a] as f64 - mean[a];
            for b in 0..dim {
                covariance[a * dim + b] += da * (row[b] as f64 - mean[b]);
            }
        }
    }
    covariance.iter_mut().for_each(|c| *c /= rows as f64);
    let total_variance: f64 = (0..dim).map(|j| covariance[j * dim + j]).sum();
    let first = leading_eigenvector(&covariance, dim);
    let first_value = deflate(&mut covariance, &first, dim);
    let second = leading_eigenvector(&covariance, dim);
    let second_value = deflate(&mut covariance, &second, dim);
    let project = |row: &[f32], axis: &[f64]| -> f32 {
        row.iter().zip(&mean).zip(axis).map(|((&v, m), a)| (v as f64 - m) * a).sum::<f64>() as f32
    };
    let points = values.chunks(dim).map(|row| [project(row, &first), project(row, &second)]);
    let share = |value: f64| if total_variance > 0.0 { value / total_variance } else { 0.0 };
    (points.collect(), [share(first_value), share(second_value)])
}

/// The unit eigenvector of the largest eigenvalue of a symmetric positive semi-definite
/// matrix, its sign fixed so that its largest component is positive.
fn leading_eigenvector(matrix: &[f64], dim: usize) -> Vec<f64> {
    // A start with a component along every axis, so no eigenvector is orthogonal to it.
    let mut vector: Vec<f64> = (0..dim).map(|i| 1.0 + i as f64 / dim as f64).collect();
    for _ in 0..500 {
        let mut next = vec![0.0; dim];
        for (a, value) in next.iter_mut().enumerate() {
            *value = (0..dim).map(|b| matrix[a * dim + b] * vector[b]).sum();
        }
        let norm = next.iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm == 0.0 {
            return vec![0.0; dim];
        }
        next.iter_mut().for_each(|v| *v /= norm);
        let change: f64 = next.iter().zip(&vector).map(|(a, b)| (a - b).abs()).sum();
        vector = next;
        if change < 1e-12 {
            break;
        }
    }
    let largest = vector.iter().copied().fold(0.0f64, |m, v| if v.abs() > m.abs() { v } else { m });
    if largest < 0.0 {
        vector.iter_mut().for_each(|v| *v = -*v);
    }
    vector
}

/// Removes `vector`'s eigen-direction from `matrix`; returns its eigenvalue.
fn deflate(matrix: &mut [f64], vector: &[f64], dim: usize) -> f64 {
    let eigenvalue: f64 = (0..dim)
        .map(|a| vector[a] * (0..dim).map(|b| matrix[a * dim + b] * vector[b]).sum::<f64>())
        .sum();
    for a in 0..dim {
        for b in 0..dim {
            matrix[a * dim + b] -= eigenvalue * vector[a] * vector[b];
        }
    }
    eigenvalue
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_the_axes_of_a_known_spread() {
        // Points spread 3 along (1, 1, 0)/sqrt2, 1 along z, none along (1, -1, 0):
        // variances 9/2 and 1/2 per point pair -> shares 0.9 and 0.1.
        let s = std::f32::consts::FRAC_1_SQRT_2;
        let values = [
            3.0 * s,
            3.0 * s,
            0.0, //
            -3.0 * s,
            -3.0 * s,
            0.0, //
            0.0,
            0.0,
            1.0, //
            0.0,
            0.0,
            -1.0,
        ];
        let (points, shares) = pca_2d(&values, 3);
        assert!((shares[0] - 0.9).abs() < 1e-6 && (shares[1] - 0.1).abs() < 1e-6, "{shares:?}");
        let expected = [[3.0, 0.0], [-3.0, 0.0], [0.0, 1.0], [0.0, -1.0]];
        for (point, want) in points.iter().zip(expected) {
            assert!(
                (point[0] - want[0]).abs() < 1e-5 && (point[1] - want[1]).abs() < 1e-5,
                "{point:?}"
            );
        }
    }

    #[test]
    fn a_single_point_has_no_spread() {
        let (points, shares) = pca_2d(&[1.0, 2.0], 2);
        assert_eq!(points, vec![[0.0, 0.0]]);
        assert_eq!(shares, [0.0, 0.0]);
    }
}
