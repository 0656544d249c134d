//! CPU reference for kernels::matmul: `y[m, n] = sum_k x[m, k] * W[n, k]`, accumulated in f64.
//!
//! Row-major throughout: `x` is `[m, k]`, the weight `[n, k]` (as checkpoints store linear
//! layers, `[out, in]`), `y` is `[m, n]`. The weight is given as f32 values; a test of an F16
//! weight rounds it through f16 first.

/// `y[i * n + j] = sum_k x[i * k + kk] * w[j * k + kk]`.
/// Panics if the slice lengths do not match `(m, n, k)` (a test bug, not an input error).
pub fn matmul(x: &[f32], w: &[f32], y: &mut [f32], (m, n, k): (usize, usize, usize)) {
    assert_eq!(x.len(), m * k, "reference::matmul: x must be [m, k]");
    assert_eq!(w.len(), n * k, "reference::matmul: w must be [n, k]");
    assert_eq!(y.len(), m * n, "reference::matmul: y must be [m, n]");
    for i in 0..m {
        let xr = &x[i * k..(i + 1) * k];
        for j in 0..n {
            let wr = &w[j * k..(j + 1) * k];
            y[i * n + j] = xr.iter().zip(wr).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() as f32;
        }
    }
}

/// `sum_k |x[m, k] * W[n, k]|` per output: the scale of the rounding error an f32 accumulation
/// can make, which tests use to set a per-element tolerance.
pub fn matmul_abs(x: &[f32], w: &[f32], y: &mut [f32], (m, n, k): (usize, usize, usize)) {
    let ax: Vec<f32> = x.iter().map(|v| v.abs()).collect();
    let aw: Vec<f32> = w.iter().map(|v| v.abs()).collect();
    matmul(&ax, &aw, y, (m, n, k));
}
