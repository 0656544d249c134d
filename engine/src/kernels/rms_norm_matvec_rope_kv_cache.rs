//! A decode step's attention input in one dispatch (shaders/rms_norm_matvec_rope_kv_cache*.wgsl):
//! RMSNorm of `x`, the stacked q/k/v projection, RoPE on q and k, and this position's keys and
//! values written into the cache. It replaces `rms_norm_matvec::rms_norm_matvec` into a qkv
//! vector followed by `rope_kv_cache::rope_kv_cache`, which stay as its oracle. Each workgroup
//! reduces 8 rows of the weight chosen so that the RoPE pairs (elements i and i + head_dim / 2 of
//! a head) meet in one workgroup. Decode only; full rotary only, no q/k/v bias (a model runs the
//! unfused ops otherwise: see [`fits`]). A packed weight (Q8, Q4, Q4G128) that
//! [`rms_norm_matvec::fits_packed`] goes through the `Dot4` projection
//! (shaders/rms_norm_matvec_rope_kv_cache_{q8,q4}_dot4.wgsl).

use super::matvec::{MatvecConfig, QuantMatvecConfig};
use super::rms_norm_matvec;
use super::{dims2, dispatch, expect_dtype, expect_shape, shader, Bind, Op, Shader};
use crate::error::{Error, Result};
use crate::{DType, Gpu, Tensor};

const PORTABLE: Shader = shader!("rms_norm_matvec_rope_kv_cache");
const SUBGROUP: Shader = shader!("rms_norm_matvec_rope_kv_cache_subgroup");
const Q8_DOT4: Shader = shader!("rms_norm_matvec_rope_kv_cache_q8_dot4");
const Q4_DOT4: Shader = shader!("rms_norm_matvec_rope_kv_cache_q4_dot4");
/// Weight rows per workgroup (the shaders' ROWS): four RoPE pairs, or eight rows of v.
const ROWS: usize = 8;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub k: u32,
    /// 16-byte words per row (`k / 8` for F16, `k / 4` for F32; quant words: `k / 16` for Q8,
    /// `k / 32` for Q4).
    pub row_words: u32,
    pub eps: f32,
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub head_dim: u32,
    /// Rows of each cache.
    pub capacity: u32,
    pub _pad: u32,
}
const _: () = assert!(std::mem::size_of::<Params>() == 32);

/// Shapes of the attention heads.
#[derive(Clone, Copy, Debug)]
pub struct Heads {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

/// Whether the fused op takes these: what `rms_norm_matvec` takes, `head_dim % 8 == 0`, and a
/// full rotary (`inv_freq` of `head_dim / 2`).
pub fn fits(gpu: &Gpu, w: &Tensor, x: &Tensor, g: &Tensor, inv_freq: &Tensor, heads: Heads) -> bool {
    heads.head_dim > 0
        && heads.head_dim.is_multiple_of(8)
        && inv_freq.shape() == [heads.head_dim / 2]
        && (rms_norm_matvec::fits(gpu, w, x, g) || rms_norm_matvec::fits_packed(gpu, w, x, g))
}

/// `q = rope(q part)`, `k_cache[p] = rope(k part)`, `v_cache[p] = v part` of
/// `w . rms_norm(x, g, eps)`, with `p = pos[0]` (cache rows skipped when `p >= capacity`).
/// - `x`, `g`: F32 `[K]` or `[1, K]`; `w`: `[(n_heads + 2 n_kv_heads) * head_dim, K]`, F32, F16
///   or packed, the stacked q/k/v projection, that [`fits`];
/// - `inv_freq`: F32 `[head_dim / 2]`; `pos`: U32 `[1]`;
/// - `q`: F32 `[n_heads * head_dim]` or `[1, n_heads * head_dim]`;
/// - `k_cache`, `v_cache`: `[capacity, n_kv_heads * head_dim]`, both F32 or both F16.
#[allow(clippy::too_many_arguments)]
pub fn rms_norm_matvec_rope_kv_cache(
    gpu: &Gpu,
    x: &Tensor,
    g: &Tensor,
    w: &Tensor,
    inv_freq: &Tensor,
    pos: &Tensor,
    q: &Tensor,
    k_cache: &Tensor,
    v_cache: &Tensor,
    heads: Heads,
    eps: f32,
) -> Result<Op> {
    const OP: &str = "rms_norm_matvec_rope_kv_cache";
    let Heads { n_heads, n_kv_heads, head_dim } = heads;
    let (q_width, kv_width) = (n_heads * head_dim, n_kv_heads * head_dim);
    let (rows, k) = rms_norm_matvec::check(OP, gpu, x, g, w, q)?;
    if rows != q_width + 2 * kv_width || n_heads == 0 || n_kv_heads == 0 {
        return Err(Error::shape(OP, "w rows ((n_heads + 2 n_kv_heads) * head_dim)", q_width + 2 * kv_width, rows));
    }
    super::matvec::expect_vector(OP, "q", q, q_width)?;
    expect_dtype(OP, "inv_freq", inv_freq, &[DType::F32])?;
    expect_dtype(OP, "pos", pos, &[DType::U32])?;
    expect_shape(OP, "pos", pos, &[1])?;
    expect_dtype(OP, "k_cache", k_cache, &[DType::F32, DType::F16])?;
    expect_dtype(OP, "v_cache (same as k_cache)", v_cache, &[k_cache.dtype()])?;
    let (capacity, _) = dims2(OP, "k_cache", k_cache)?;
    expect_shape(OP, "k_cache", k_cache, &[capacity, kv_width])?;
    expect_shape(OP, "v_cache (same as k_cache)", v_cache, &[capacity, kv_width])?;
    if !fits(gpu, w, x, g, inv_freq, heads) {
        let expected = "head_dim % 8 == 0 and inv_freq of head_dim / 2 (full rotary)";
        return Err(Error::shape(OP, "heads and inv_freq", expected, (head_dim, inv_freq.shape())));
    }
    let inputs = [x, g, w, inv_freq, pos];
    for (what, out) in [("k_cache", k_cache), ("v_cache", v_cache)] {
        if inputs.iter().chain([&q]).any(|t| t.same_buffer(out)) {
            return Err(Error::shape(OP, format!("{what} buffer"), "not shared with another binding", "shared"));
        }
    }
    if [inv_freq, pos].iter().any(|t| t.same_buffer(q)) {
        return Err(Error::shape(OP, "q buffer", "not shared with another binding", "shared"));
    }

    let row_words = match w.dtype() {
        DType::F16 => k / 8,
        DType::F32 => k / 4,
        packed => (packed.quant_bytes(k) / 16) as usize,
    };
    let params = Params {
        k: k as u32,
        row_words: row_words as u32,
        eps,
        n_heads: n_heads as u32,
        n_kv_heads: n_kv_heads as u32,
        head_dim: head_dim as u32,
        capacity: capacity as u32,
        _pad: 0,
    };
    let uniform = gpu.uniform(OP, &params);
    let groups = (rows / ROWS) as u32;
    let cache_f16 = ("CACHE_F16", (k_cache.dtype() == DType::F16) as u8 as f64);
    let packed = w.dtype().is_packed();
    let (shader, constants) = if packed {
        let shader = if w.dtype() == DType::Q8 { &Q8_DOT4 } else { &Q4_DOT4 };
        let threads = QuantMatvecConfig::for_weight(gpu, w).workgroup_size;
        let mut constants = vec![("WORKGROUP_SIZE", threads as f64), cache_f16];
        constants.extend(super::q4_group_words(w.dtype()));
        (shader, constants)
    } else {
        let shader = if gpu.info().features.subgroups { &SUBGROUP } else { &PORTABLE };
        let threads = MatvecConfig::for_gpu(gpu).workgroup_size;
        (shader, vec![("WORKGROUP_SIZE", threads as f64), ("W_F16", (w.dtype() == DType::F16) as u8 as f64), cache_f16])
    };
    // A packed weight binds its quants and scales, a float one its values; the rest is shared.
    let mut binds = if packed { vec![Bind::Quants(w), Bind::Scales(w)] } else { vec![Bind::Tensor(w)] };
    binds.extend([
        Bind::Tensor(x),
        Bind::Tensor(g),
        Bind::Tensor(inv_freq),
        Bind::Tensor(pos),
        Bind::Tensor(q),
        Bind::Tensor(k_cache),
        Bind::Tensor(v_cache),
        Bind::Uniform(&uniform),
    ]);
    let d = dispatch(gpu, OP, shader, &constants, &binds, [groups, 1, 1])?;
    Ok(Op { dispatches: vec![d] })
}
