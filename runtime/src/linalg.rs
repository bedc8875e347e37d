//! The little dense linear algebra the built-in templates and the advisor's Gaussian process
//! need: tens to a few hundred rows and columns, where plain loops over a row-major `Vec<f64>` are
//! fast enough and keep the workspace free of BLAS.

use serde::{Deserialize, Serialize};

/// A dense row-major matrix of encoded feature rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Matrix {
    n_cols: usize,
    data: Vec<f64>,
}

impl Matrix {
    /// An empty matrix whose rows will have `n_cols` values; `n_cols` is at least 1.
    pub(crate) fn with_columns(n_cols: usize, row_capacity: usize) -> Self {
        let n_cols = n_cols.max(1);
        Self {
            n_cols,
            data: Vec::with_capacity(n_cols * row_capacity),
        }
    }

    /// Appends a row; its length must be `n_cols`.
    pub(crate) fn push_row(&mut self, row: &[f64]) {
        debug_assert_eq!(row.len(), self.n_cols);
        self.data.extend_from_slice(row);
    }

    pub(crate) fn n_rows(&self) -> usize {
        self.data.len() / self.n_cols
    }

    pub(crate) fn n_cols(&self) -> usize {
        self.n_cols
    }

    pub(crate) fn row(&self, index: usize) -> &[f64] {
        &self.data[index * self.n_cols..(index + 1) * self.n_cols]
    }

    pub(crate) fn rows(&self) -> std::slice::ChunksExact<'_, f64> {
        self.data.chunks_exact(self.n_cols)
    }

    pub(crate) fn rows_mut(&mut self) -> std::slice::ChunksExactMut<'_, f64> {
        self.data.chunks_exact_mut(self.n_cols)
    }

    /// True when the shape is usable: at least one column and whole rows only. Checked on load,
    /// because parameters come from outside.
    pub(crate) fn is_well_formed(&self) -> bool {
        self.n_cols > 0 && self.data.len().is_multiple_of(self.n_cols)
    }
}

/// `Σ aᵢbᵢ` over the shorter length, in four independent sums so that it vectorises (a plain
/// sum must keep its order and cannot).
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    let len = a.len().min(b.len());
    let (a, b) = (&a[..len], &b[..len]);
    let mut sums = [0.0; 4];
    for (x, y) in a.chunks_exact(4).zip(b.chunks_exact(4)) {
        for k in 0..4 {
            sums[k] += x[k] * y[k];
        }
    }
    let tail = len - len % 4;
    let rest: f64 = a[tail..].iter().zip(&b[tail..]).map(|(x, y)| x * y).sum();
    (sums[0] + sums[2]) + (sums[1] + sums[3]) + rest
}

/// In-place lower Cholesky factor `L` (`A = L Lᵀ`) of a symmetric positive definite `n × n`
/// matrix, the upper triangle zeroed; false when the matrix is not positive definite.
pub fn cholesky(a: &mut [f64], n: usize) -> bool {
    for j in 0..n {
        let row_j = a[j * n..j * n + j].to_vec();
        let pivot = a[j * n + j] - dot(&row_j, &row_j);
        if pivot.is_nan() || pivot <= 0.0 {
            return false;
        }
        let diagonal = pivot.sqrt();
        a[j * n + j] = diagonal;
        a[j * n + j + 1..(j + 1) * n].fill(0.0);
        for i in (j + 1)..n {
            let row_i = &mut a[i * n..i * n + j + 1];
            row_i[j] = (row_i[j] - dot(&row_i[..j], &row_j)) / diagonal;
        }
    }
    true
}

/// Solves `L Lᵀ x = b` given the lower Cholesky factor `L`.
pub fn solve_cholesky(l: &[f64], n: usize, b: &[f64]) -> Vec<f64> {
    let mut x = b.to_vec();
    for i in 0..n {
        x[i] = (x[i] - dot(&l[i * n..i * n + i], &x[..i])) / l[i * n + i];
    }
    for i in (0..n).rev() {
        let mut sum = x[i];
        for j in (i + 1)..n {
            sum -= l[j * n + i] * x[j];
        }
        x[i] = sum / l[i * n + i];
    }
    x
}

/// `(L Lᵀ)⁻¹` given the lower Cholesky factor `L`.
pub fn inverse_from_cholesky(l: &[f64], n: usize) -> Vec<f64> {
    // M = L⁻¹ (lower), row by row: M_i = (e_i − Σ_{k<i} L_ik M_k) / L_ii.
    let mut m = vec![0.0; n * n];
    for i in 0..n {
        let (done, rest) = m.split_at_mut(i * n);
        let row = &mut rest[..n];
        row[i] = 1.0;
        for k in 0..i {
            let factor = l[i * n + k];
            for (x, y) in row[..=k].iter_mut().zip(&done[k * n..k * n + k + 1]) {
                *x -= factor * y;
            }
        }
        let diagonal = l[i * n + i];
        for x in &mut row[..=i] {
            *x /= diagonal;
        }
    }
    // K⁻¹ = Mᵀ M: (K⁻¹)_ij = Σ_k M_ki M_kj, accumulated row by row of M (lower triangle first).
    let mut inverse = vec![0.0; n * n];
    for k in 0..n {
        let row = &m[k * n..k * n + k + 1];
        for (i, mi) in row.iter().enumerate() {
            if *mi != 0.0 {
                for (x, mj) in inverse[i * n..i * n + i + 1].iter_mut().zip(row) {
                    *x += mi * mj;
                }
            }
        }
    }
    for i in 0..n {
        for j in 0..i {
            inverse[j * n + i] = inverse[i * n + j];
        }
    }
    inverse
}

/// Solves `a · x = b` for a symmetric positive definite `a` (row-major `n × n`) by Cholesky
/// factorisation. Returns `None` when `a` is not positive definite.
pub fn solve_spd(a: &[f64], b: &[f64]) -> Option<Vec<f64>> {
    let n = b.len();
    debug_assert_eq!(a.len(), n * n);
    let mut l = a.to_vec();
    cholesky(&mut l, n).then(|| solve_cholesky(&l, n, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves_a_small_system() {
        let a = [4.0, 2.0, 0.6, 2.0, 5.0, 1.0, 0.6, 1.0, 3.0];
        let expected = [1.0, -2.0, 0.5];
        let b: Vec<f64> = (0..3)
            .map(|i| dot(&a[i * 3..i * 3 + 3], &expected))
            .collect();
        let x = solve_spd(&a, &b).unwrap();
        for (got, want) in x.iter().zip(expected) {
            assert!((got - want).abs() < 1e-12, "{x:?}");
        }
    }

    #[test]
    fn cholesky_rejects_a_singular_matrix() {
        assert!(solve_spd(&[1.0, 1.0, 1.0, 1.0], &[1.0, 2.0]).is_none());
    }

    #[test]
    fn matrix_rows_are_slices() {
        let mut m = Matrix::with_columns(2, 2);
        m.push_row(&[1.0, 2.0]);
        m.push_row(&[3.0, 4.0]);
        assert_eq!(m.n_rows(), 2);
        assert_eq!(m.row(1), &[3.0, 4.0]);
        assert_eq!(m.rows().count(), 2);
        assert!(m.is_well_formed());
    }

    /// A random-looking symmetric positive definite matrix: B Bᵀ + I.
    fn spd(n: usize) -> Vec<f64> {
        let b: Vec<f64> = (0..n * n)
            .map(|i| ((i * 7919) % 23) as f64 / 23.0 - 0.5)
            .collect();
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = (0..n).map(|k| b[i * n + k] * b[j * n + k]).sum::<f64>()
                    + if i == j { 1.0 } else { 0.0 };
            }
        }
        a
    }

    #[test]
    fn cholesky_solves_and_inverts() {
        let n = 12;
        let a = spd(n);
        let mut l = a.clone();
        assert!(cholesky(&mut l, n));
        for i in 0..n {
            for j in 0..n {
                let llt: f64 = (0..n).map(|k| l[i * n + k] * l[j * n + k]).sum();
                assert!((llt - a[i * n + j]).abs() < 1e-12);
            }
        }
        let b: Vec<f64> = (0..n).map(|i| i as f64 - 3.0).collect();
        let x = solve_cholesky(&l, n, &b);
        for i in 0..n {
            let ax: f64 = (0..n).map(|j| a[i * n + j] * x[j]).sum();
            assert!((ax - b[i]).abs() < 1e-10);
        }
        let inverse = inverse_from_cholesky(&l, n);
        for i in 0..n {
            for j in 0..n {
                let e: f64 = (0..n).map(|k| a[i * n + k] * inverse[k * n + j]).sum();
                let identity = if i == j { 1.0 } else { 0.0 };
                assert!((e - identity).abs() < 1e-10);
            }
        }
    }

    #[test]
    fn dot_products_of_any_length() {
        for len in 0..11 {
            let a: Vec<f64> = (0..len).map(|i| i as f64 + 0.5).collect();
            let b: Vec<f64> = (0..len).map(|i| 2.0 - i as f64).collect();
            let plain: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - plain).abs() < 1e-12);
        }
    }

    #[test]
    fn a_singular_matrix_has_no_cholesky_factor() {
        let mut singular = vec![1.0, 1.0, 1.0, 1.0];
        assert!(!cholesky(&mut singular, 2));
        let mut nan = vec![f64::NAN];
        assert!(!cholesky(&mut nan, 1));
    }
}
