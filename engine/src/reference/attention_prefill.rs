//! CPU reference for kernels::attention_prefill.

/// Causal grouped-query attention, f64 throughout. `q`: `[T, n_heads * head_dim]`; `k`, `v`:
/// the caches `[capacity, n_kv_heads * head_dim]` (as f32; round them through f16 first when the
/// GPU's cache is f16). Query row `t` attends keys `0 ..= min(pos + t, capacity - 1)`, as the
/// kernel does. Returns `[T, n_heads * head_dim]`.
#[allow(clippy::too_many_arguments)]
pub fn attention_prefill(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    pos: usize,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    scale: f32,
) -> Vec<f32> {
    let q_width = n_heads * head_dim;
    let kv_width = n_kv_heads * head_dim;
    let capacity = k.len() / kv_width;
    let group = n_heads / n_kv_heads;
    let mut out = vec![0f32; q.len()];
    for (t, q_row) in q.chunks(q_width).enumerate() {
        let n_keys = (pos + t).min(capacity - 1) + 1;
        for h in 0..n_heads {
            let qh = &q_row[h * head_dim..][..head_dim];
            let at = |cache: &[f32], j: usize, d: usize| cache[j * kv_width + (h / group) * head_dim + d] as f64;
            let scores: Vec<f64> = (0..n_keys)
                .map(|j| scale as f64 * (0..head_dim).map(|d| qh[d] as f64 * at(k, j, d)).sum::<f64>())
                .collect();
            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let sum: f64 = weights.iter().sum();
            for d in 0..head_dim {
                let o: f64 = weights.iter().enumerate().map(|(j, w)| w * at(v, j, d)).sum();
                out[t * q_width + h * head_dim + d] = (o / sum) as f32;
            }
        }
    }
    out
}
