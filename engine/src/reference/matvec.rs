//! CPU reference for kernels::matvec: `y[n] = sum_k W[n, k] * x[k]`, accumulated in f64.
//!
//! The weight is given as f32 values; a test of an F16 weight rounds it through f16 first, so the
//! reference sees exactly what the GPU reads.

/// `y[n] = sum_k w[n * k_len + k] * x[k]` with `k_len = x.len()` and `n < y.len()`.
/// Panics if `w.len() != y.len() * x.len()` (a test bug, not an input error).
pub fn matvec(w: &[f32], x: &[f32], y: &mut [f32]) {
    let k = x.len();
    assert_eq!(w.len(), y.len() * k, "reference::matvec: w must hold y.len() rows of x.len()");
    for (n, out) in y.iter_mut().enumerate() {
        let row = &w[n * k..(n + 1) * k];
        let sum: f64 = row.iter().zip(x).map(|(&a, &b)| a as f64 * b as f64).sum();
        *out = sum as f32;
    }
}

/// `sum_k |W[n, k] * x[k]|` per row: the scale of the rounding error an f32 accumulation can
/// make, which tests use to set a per-element tolerance.
pub fn matvec_abs(w: &[f32], x: &[f32], y: &mut [f32]) {
    let k = x.len();
    assert_eq!(w.len(), y.len() * k, "reference::matvec_abs: w must hold y.len() rows of x.len()");
    for (n, out) in y.iter_mut().enumerate() {
        let row = &w[n * k..(n + 1) * k];
        let sum: f64 = row.iter().zip(x).map(|(&a, &b)| (a as f64 * b as f64).abs()).sum();
        *out = sum as f32;
    }
}
