//! Dense matrix products on host buffers, through the gemm crate (burn-flex's own GEMM,
//! AVX-512 kernels chosen at run time where the CPU has them), for the kernels that work on
//! slices and views Burn tensors cannot express without a copy.

/// A matrix operand: `data[row * row_stride + col * col_stride]`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> View<'a> {
    /// `data` as a row-major `rows x cols` matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self { data, rows, cols, row_stride: cols, col_stride: 1 }
    }

    /// The transpose of `data` read as a row-major `cols x rows` matrix.
    pub fn transposed(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self { data, rows, cols, row_stride: 1, col_stride: rows }
    }

    fn check(&self) {
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride;
            assert!(last < self.data.len(), "matrix view reaches past its buffer");
        }
    }
}

/// `dst = lhs · rhs` (or `dst += lhs · rhs` with `accumulate`), `dst` row-major with row
/// stride `dst_stride`, threaded only for products big enough to pay for it, as burn-flex
/// does.
pub fn matmul_into(dst: &mut [f32], dst_stride: usize, lhs: View, rhs: View, accumulate: bool) {
    const PARALLEL_WORK: usize = 192 * 192 * 192;
    let threaded = lhs.rows * rhs.cols * lhs.cols >= PARALLEL_WORK;
    product(dst, dst_stride, lhs, rhs, accumulate, threaded);
}

/// [`matmul_into`] on the calling thread only: for kernels that already run one product
/// per thread.
pub fn matmul_into_serial(
    dst: &mut [f32],
    dst_stride: usize,
    lhs: View,
    rhs: View,
    accumulate: bool,
) {
    product(dst, dst_stride, lhs, rhs, accumulate, false);
}

fn product(
    dst: &mut [f32],
    dst_stride: usize,
    lhs: View,
    rhs: View,
    accumulate: bool,
    threaded: bool,
) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert!(rhs.rows == k, "matrix product of mismatched shapes");
    lhs.check();
    rhs.check();
    assert!(m == 0 || n == 0 || (m - 1) * dst_stride + n <= dst.len(), "output too small");
    let parallelism = if threaded { gemm::Parallelism::Rayon(0) } else { gemm::Parallelism::None };
    // SAFETY: every index the product reads or writes was bounds-checked above.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_stride as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_of_views_match_the_textbook_sum() {
        // lhs [2, 3], rhs read transposed from a row-major [2, 3] buffer.
        let lhs = [1.0f32, 2.0, 3.0, -1.0, 0.5, 2.0];
        let rhs_t = [2.0f32, 0.0, 1.0, -1.0, 3.0, 0.5];
        let mut dst = [10.0f32; 4];
        matmul_into(&mut dst, 2, View::row_major(&lhs, 2, 3), View::transposed(&rhs_t, 3, 2), true);
        // [[1*2+3*1, -1+6+1.5], [-2+2, 1+1.5+1]] plus the 10 already there.
        assert_eq!(dst, [15.0, 16.5, 10.0, 13.5]);
        matmul_into_serial(
            &mut dst,
            2,
            View::row_major(&lhs, 2, 3),
            View::transposed(&rhs_t, 3, 2),
            false,
        );
        assert_eq!(dst, [5.0, 6.5, 0.0, 3.5]);
    }
}
