//! CPU reference for kernels::rms_norm.

/// `out[m, i] = x[m, i] / sqrt(mean_i(x[m, :]^2) + eps) * weight[i]` for each row of length
/// `weight.len()`.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32) -> Vec<f32> {
    let n = weight.len();
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(n) {
        let mean_sq = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / n as f64;
        let scale = 1.0 / (mean_sq + eps as f64).sqrt();
        out.extend(row.iter().zip(weight).map(|(&v, &w)| (v as f64 * scale * w as f64) as f32));
    }
    out
}
