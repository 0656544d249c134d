//! CPU reference for kernels::cross_entropy.

/// `nll[m] = log(sum_j exp(x[m, j])) - x[m, target[m]]`, in f64.
pub fn cross_entropy(x: &[f32], n: usize, target: &[u32]) -> Vec<f32> {
    x.chunks(n)
        .zip(target)
        .map(|(row, &t)| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let log_z = max + row.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
            (log_z - row[t as usize] as f64) as f32
        })
        .collect()
}
