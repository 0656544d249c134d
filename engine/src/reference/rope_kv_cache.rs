//! CPU reference for kernels::rope_kv_cache: reference::rope on the q and k parts of each row,
//! then reference::copy_rows of k and v into the caches.

/// Splits each `qkv` row into `[q | k | v]`, rotates q and k to positions `pos + t`, returns the
/// rotated q (`[T, n_heads * head_dim]`) and writes k and v at rows `pos + t` of the caches
/// (rows past their end dropped). The caller rounds through f16 where the GPU's cache is f16.
#[allow(clippy::too_many_arguments)]
pub fn rope_kv_cache(
    qkv: &[f32],
    inv_freq: &[f32],
    pos: u32,
    k_cache: &mut [f32],
    v_cache: &mut [f32],
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
) -> Vec<f32> {
    let (q_width, kv_width) = (n_heads * head_dim, n_kv_heads * head_dim);
    let mut q = Vec::new();
    let mut k = Vec::new();
    let mut v = Vec::new();
    for row in qkv.chunks(q_width + 2 * kv_width) {
        q.extend_from_slice(&row[..q_width]);
        k.extend_from_slice(&row[q_width..q_width + kv_width]);
        v.extend_from_slice(&row[q_width + kv_width..]);
    }
    super::rope::rope(&mut q, inv_freq, pos, n_heads, head_dim);
    super::rope::rope(&mut k, inv_freq, pos, n_kv_heads, head_dim);
    super::copy_rows::copy_rows(&k, k_cache, kv_width, pos as usize);
    super::copy_rows::copy_rows(&v, v_cache, kv_width, pos as usize);
    q
}
