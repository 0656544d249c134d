//! CPU reference for kernels::rope_kv_cache::rope_kv_cache_batched: reference::rope_kv_cache on each row alone,
//! at its own position, into its own cache slot.

/// Row b of `qkv` (`[B, (n_heads + 2 n_kv_heads) * head_dim]`) is rotated to position `pos[b]`;
/// returns the rotated q (`[B, n_heads * head_dim]`) and writes k and v at row `pos[b]` of slot b
/// of the caches (`[B, capacity, n_kv_heads * head_dim]`; rows past the capacity dropped). The
/// caller rounds through f16 where the GPU's cache is f16.
#[allow(clippy::too_many_arguments)]
pub fn rope_kv_cache_batched(
    qkv: &[f32],
    inv_freq: &[f32],
    pos: &[u32],
    k_cache: &mut [f32],
    v_cache: &mut [f32],
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
) -> Vec<f32> {
    let row_len = (n_heads + 2 * n_kv_heads) * head_dim;
    let slot = k_cache.len() / pos.len().max(1);
    let mut q = Vec::new();
    for (b, &p) in pos.iter().enumerate() {
        let (k, v) = (&mut k_cache[b * slot..(b + 1) * slot], &mut v_cache[b * slot..(b + 1) * slot]);
        let row = &qkv[b * row_len..(b + 1) * row_len];
        q.extend(super::rope_kv_cache::rope_kv_cache(row, inv_freq, p, k, v, n_heads, n_kv_heads, head_dim));
    }
    q
}
