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

/// kernels::attention_decode_batched: query row b (`q`: `[rows, n_heads * head_dim]`) at
/// position `pos[b]` attends to its own slot b of the caches (`[rows, capacity, kv width]`).
#[allow(clippy::too_many_arguments)]
pub fn attention_decode_batched(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    pos: &[u32],
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    scale: f32,
) -> Vec<f32> {
    let slot = k.len() / pos.len().max(1);
    let q_width = n_heads * head_dim;
    let mut out = Vec::with_capacity(q.len());
    for (b, &p) in pos.iter().enumerate() {
        let (k, v) = (&k[b * slot..(b + 1) * slot], &v[b * slot..(b + 1) * slot]);
        let q = &q[b * q_width..(b + 1) * q_width];
        out.extend(attention_decode(q, k, v, p as usize, n_heads, n_kv_heads, head_dim, scale));
    }
    out
}
