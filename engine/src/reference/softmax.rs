//! CPU reference for kernels::softmax.

/// Softmax of each row of length `n`, in place (the row max subtracted first).
pub fn softmax(x: &mut [f32], n: usize) {
    for row in x.chunks_mut(n) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
        let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
        for v in row.iter_mut() {
            *v = ((*v as f64 - max).exp() / sum) as f32;
        }
    }
}
