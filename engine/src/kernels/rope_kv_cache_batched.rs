//! RoPE and the KV-cache write for a batch of sequences in one dispatch
//! (shaders/rope_kv_cache_batched.wgsl): row b of a stacked q/k/v projection is the new token of
//! sequence b, at its own position `pos[b]`; its query is rotated into `q` and its key (rotated)
//! and value stored at row `pos[b]` of cache slot b. The batched decode step's counterpart of
//! `rope_kv_cache`, which takes consecutive positions into one cache (a prompt).

use super::{dims2, dispatch, expect_dtype, expect_shape, shader, Bind, Op, Shader};
use crate::error::{Error, Result};
use crate::{DType, Gpu, Tensor};

const SHADER: Shader = shader!("rope_kv_cache_batched");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n_rows: u32,
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub head_dim: u32,
    /// `rot_dim / 2`: the length of `inv_freq`.
    pub half: u32,
    /// Rows of each cache slot.
    pub capacity: u32,
    pub _pad: [u32; 2],
}
const _: () = assert!(std::mem::size_of::<Params>() == 32);

/// - `qkv`: f32 `[B, (n_heads + 2 n_kv_heads) * head_dim]`, each row `[q | k | v]`;
/// - `inv_freq`: f32 `[rot_dim / 2]`, `rot_dim <= head_dim`; `pos`: u32 `[B]`, each row's position;
/// - `q`: f32 `[B, n_heads * head_dim]`, receives the rotated queries;
/// - `k_cache`, `v_cache`: `[B, capacity, n_kv_heads * head_dim]`, both f32 or both f16; slot b
///   is row b's cache. A row whose position is past the capacity writes nothing to the caches.
///
/// `head_dim` must be even. `q` and the caches are buffers other than `qkv`'s, `inv_freq`'s and
/// `pos`'s.
#[allow(clippy::too_many_arguments)]
pub fn rope_kv_cache_batched(
    gpu: &Gpu,
    qkv: &Tensor,
    inv_freq: &Tensor,
    pos: &Tensor,
    q: &Tensor,
    k_cache: &Tensor,
    v_cache: &Tensor,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
) -> Result<Op> {
    const OP: &str = "rope_kv_cache_batched";
    expect_dtype(OP, "qkv", qkv, &[DType::F32])?;
    expect_dtype(OP, "inv_freq", inv_freq, &[DType::F32])?;
    expect_dtype(OP, "pos", pos, &[DType::U32])?;
    expect_dtype(OP, "q", q, &[DType::F32])?;
    expect_dtype(OP, "k_cache", k_cache, &[DType::F32, DType::F16])?;
    expect_dtype(OP, "v_cache (same as k_cache)", v_cache, &[k_cache.dtype()])?;
    if head_dim == 0 || !head_dim.is_multiple_of(2) || n_heads == 0 || n_kv_heads == 0 {
        let got = (n_heads, n_kv_heads, head_dim);
        return Err(Error::shape(OP, "(n_heads, n_kv_heads, head_dim)", "non-zero, head_dim even", got));
    }
    let (q_width, kv_width) = (n_heads * head_dim, n_kv_heads * head_dim);
    let (n_rows, row_len) = dims2(OP, "qkv", qkv)?;
    if row_len != q_width + 2 * kv_width || n_rows == 0 {
        return Err(Error::shape(OP, "qkv row length (n_heads + 2 n_kv_heads) * head_dim", q_width + 2 * kv_width, row_len));
    }
    expect_shape(OP, "pos (a position per row)", pos, &[n_rows])?;
    expect_shape(OP, "q", q, &[n_rows, q_width])?;
    let capacity = match *k_cache.shape() {
        [slots, capacity, _] if slots == n_rows && capacity > 0 => capacity,
        _ => return Err(Error::shape(OP, "k_cache (a slot per row)", [n_rows, 1, kv_width], k_cache.shape())),
    };
    expect_shape(OP, "k_cache", k_cache, &[n_rows, capacity, kv_width])?;
    expect_shape(OP, "v_cache (same as k_cache)", v_cache, &[n_rows, capacity, kv_width])?;
    let half = match *inv_freq.shape() {
        [half] if half >= 1 && 2 * half <= head_dim => half,
        _ => return Err(Error::shape(OP, "inv_freq (rot_dim / 2, rot_dim <= head_dim)", [head_dim / 2], inv_freq.shape())),
    };
    let inputs = [qkv, inv_freq, pos];
    for (what, out) in [("q", q), ("k_cache", k_cache), ("v_cache", v_cache)] {
        if inputs.iter().any(|t| t.same_buffer(out)) {
            return Err(Error::shape(OP, format!("{what} buffer"), "not shared with qkv, inv_freq or pos", "shared"));
        }
    }
    let f16 = k_cache.dtype() == DType::F16;
    let params = Params {
        n_rows: n_rows as u32,
        n_heads: n_heads as u32,
        n_kv_heads: n_kv_heads as u32,
        head_dim: head_dim as u32,
        half: half as u32,
        capacity: capacity as u32,
        _pad: [0; 2],
    };
    let uniform = gpu.uniform(OP, &params);
    let cache_words = n_rows * if f16 { kv_width / 2 } else { kv_width };
    let threads = n_rows * q_width + 2 * cache_words;
    let groups = u32::try_from(threads.div_ceil(256)).map_err(|_| Error::shape(OP, "qkv elements", "< 2^40", threads))?;
    let binds = [
        Bind::Tensor(qkv),
        Bind::Tensor(inv_freq),
        Bind::Tensor(pos),
        Bind::Tensor(q),
        Bind::Tensor(k_cache),
        Bind::Tensor(v_cache),
        Bind::Uniform(&uniform),
    ];
    let d = dispatch(gpu, OP, &SHADER, &[("CACHE_F16", f16 as u8 as f64)], &binds, [groups, 1, 1])?;
    Ok(Op { dispatches: vec![d] })
}
