//! The little dense linear algebra the built-in templates need. Tabular problems have tens to a
//! few hundred encoded columns, where plain loops over a row-major `Vec<f64>` are fast enough and
//! keep the crate free of BLAS.

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

pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Solves `a · x = b` for a symmetric positive definite `a` (row-major `n × n`) by Cholesky
/// factorisation. Returns `None` when `a` is not positive definite.
pub(crate) fn solve_spd(a: &[f64], b: &[f64]) -> Option<Vec<f64>> {
    let n = b.len();
    debug_assert_eq!(a.len(), n * n);
    // Lower-triangular factor, row-major.
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let partial: f64 = (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum();
            let value = a[i * n + j] - partial;
            if i == j {
                if value <= 0.0 || !value.is_finite() {
                    return None;
                }
                l[i * n + i] = value.sqrt();
            } else {
                l[i * n + j] = value / l[j * n + j];
            }
        }
    }
    // Forward substitution: l · y = b.
    let mut y = vec![0.0; n];
    for i in 0..n {
        let partial: f64 = (0..i).map(|k| l[i * n + k] * y[k]).sum();
        y[i] = (b[i] - partial) / l[i * n + i];
    }
    // Back substitution: lᵀ · x = y.
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let partial: f64 = (i + 1..n).map(|k| l[k * n + i] * x[k]).sum();
        x[i] = (y[i] - partial) / l[i * n + i];
    }
    Some(x)
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
}
