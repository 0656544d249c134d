//! CPU reference for kernels::attention_decode.

/// One query row (`q`: `[n_heads * head_dim]`) at position `pos` attending keys
/// `0 ..= min(pos, capacity - 1)` of the caches: attention_prefill with T = 1.
#[allow(clippy::too_many_arguments)]
pub fn attention_decode(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    pos: usize,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    scale: f32,
) -> Vec<f32> {
    super::attention_prefill::attention_prefill(q, k, v, pos, n_heads, n_kv_heads, head_dim, scale)
}
