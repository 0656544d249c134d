//! CPU reference for kernels::rms_norm_matvec_rope_kv_cache: reference::rms_norm_matvec into a
//! qkv row, then reference::rope_kv_cache.

/// Returns the rotated q and writes the cache rows at `pos`, from `w . rms_norm(x, g, eps)` with
/// `w` the stacked q/k/v projection (`inv_freq` of `head_dim / 2`: full rotary).
#[allow(clippy::too_many_arguments)]
pub fn rms_norm_matvec_rope_kv_cache(
    x: &[f32],
    g: &[f32],
    w: &[f32],
    inv_freq: &[f32],
    pos: u32,
    k_cache: &mut [f32],
    v_cache: &mut [f32],
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    eps: f32,
) -> Vec<f32> {
    let rows = (n_heads + 2 * n_kv_heads) * head_dim;
    let qkv = super::rms_norm_matvec::rms_norm_matvec(x, g, w, rows, eps);
    super::rope_kv_cache::rope_kv_cache(&qkv, inv_freq, pos, k_cache, v_cache, n_heads, n_kv_heads, head_dim)
}
