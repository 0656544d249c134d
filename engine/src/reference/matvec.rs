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

/// x as the `Dot4` matvec shaders (matvec_q8_dot4, matvec_q4_dot4) see it: each block of 32
/// rounded to int8 steps of `d = amax / 127` (amax: the block's largest |x|), i.e.
/// `d * floor(0.5 + 127 * x / amax)` (WGSL's pack4x8snorm). Returns the rounded values and, per
/// element, how far the GPU's value may differ from this one: a whole step `d` where `127 x /
/// amax` lies within 1e-5 of a rounding boundary (the GPU's `1 / amax` is not exactly rounded,
/// so it may round the other way), else 0. Panics if `x.len() % 32 != 0` (a test bug).
pub fn round_x_int8(x: &[f32]) -> (Vec<f32>, Vec<f32>) {
    assert!(x.len().is_multiple_of(32), "reference::round_x_int8: whole blocks of 32");
    let mut rounded = Vec::with_capacity(x.len());
    let mut slack = Vec::with_capacity(x.len());
    for block in x.chunks(32) {
        let amax = block.iter().fold(0f64, |m, &v| m.max((v as f64).abs()));
        let d = amax / 127.0;
        for &v in block {
            let t = if amax > 0.0 { 127.0 * v as f64 / amax } else { 0.0 };
            let q = (t + 0.5).floor();
            rounded.push((d * q) as f32);
            let near_tie = ((t + 0.5) - q).min(q + 1.0 - (t + 0.5)) < 1e-5 * t.abs().max(1.0);
            slack.push(if near_tie { d as f32 } else { 0.0 });
        }
    }
    (rounded, slack)
}
