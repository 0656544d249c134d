//! RoPE and the KV-cache write in one dispatch (shaders/rope_kv_cache.wgsl), from the output of a
//! stacked q/k/v projection: the queries are rotated into `q`, the keys rotated and the values
//! copied into the cache. [`rope_kv_cache`] takes a prompt's T rows at consecutive positions
//! `pos[0] + t` of one cache; it replaces four dispatches per layer (`rope::rope` on q and on k,
//! `copy_rows::copy_rows` of k and of v), which stay as its oracle. [`rope_kv_cache_batched`]
//! takes the new tokens of B sequences, row b at its own position `pos[b]` in cache slot b (the
//! batched decode step); the same shader with its `BATCHED` override.

use super::{dims2, dispatch, expect_dtype, expect_shape, shader, Bind, Op, Shader};
use crate::error::{Error, Result};
use crate::{DType, Gpu, Tensor};

const SHADER: Shader = shader!("rope_kv_cache");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n_rows: u32,
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub head_dim: u32,
    /// `rot_dim / 2`: the length of `inv_freq`.
    pub half: u32,
    /// Rows of each cache (of each slot when batched).
    pub capacity: u32,
    pub _pad: [u32; 2],
}
const _: () = assert!(std::mem::size_of::<Params>() == 32);

/// The operands of either entry point.
struct Operands<'a> {
    qkv: &'a Tensor,
    inv_freq: &'a Tensor,
    pos: &'a Tensor,
    q: &'a Tensor,
    k_cache: &'a Tensor,
    v_cache: &'a Tensor,
}

/// Heads of the q/k/v rows.
#[derive(Clone, Copy)]
struct HeadShape {
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
}

/// - `qkv`: f32 `[T, (n_heads + 2 n_kv_heads) * head_dim]`, each row `[q | k | v]`;
/// - `inv_freq`: f32 `[rot_dim / 2]`, `rot_dim <= head_dim`; `pos`: u32 `[1]`, the position of row 0;
/// - `q`: f32 `[T, n_heads * head_dim]`, receives the rotated queries;
/// - `k_cache`, `v_cache`: `[capacity, n_kv_heads * head_dim]`, both f32 or both f16; rows past
///   the capacity are skipped on the GPU.
///
/// `head_dim` must be even. `q` and the caches are buffers other than `qkv`'s, `inv_freq`'s and
/// `pos`'s.
#[allow(clippy::too_many_arguments)]
pub fn rope_kv_cache(
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
    const OP: &str = "rope_kv_cache";
    let ops = Operands { qkv, inv_freq, pos, q, k_cache, v_cache };
    let heads = HeadShape { n_heads, n_kv_heads, head_dim };
    let (n_rows, kv_width) = check(OP, &ops, heads)?;
    expect_shape(OP, "pos", pos, &[1])?;
    let (capacity, k_width) = dims2(OP, "k_cache", k_cache)?;
    expect_shape(OP, "k_cache", k_cache, &[capacity, kv_width])?;
    expect_shape(OP, "v_cache (same as k_cache)", v_cache, &[capacity, k_width])?;
    build(gpu, OP, &ops, heads, n_rows, capacity, false)
}

/// [`rope_kv_cache`] for a batch: row b of `qkv` is sequence b's new token at position `pos[b]`.
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
    let ops = Operands { qkv, inv_freq, pos, q, k_cache, v_cache };
    let heads = HeadShape { n_heads, n_kv_heads, head_dim };
    let (n_rows, kv_width) = check(OP, &ops, heads)?;
    expect_shape(OP, "pos (a position per row)", pos, &[n_rows])?;
    let capacity = match *k_cache.shape() {
        [slots, capacity, _] if slots == n_rows && capacity > 0 => capacity,
        _ => return Err(Error::shape(OP, "k_cache (a slot per row)", [n_rows, 1, kv_width], k_cache.shape())),
    };
    expect_shape(OP, "k_cache", k_cache, &[n_rows, capacity, kv_width])?;
    expect_shape(OP, "v_cache (same as k_cache)", v_cache, &[n_rows, capacity, kv_width])?;
    build(gpu, OP, &ops, heads, n_rows, capacity, true)
}

/// The checks both entry points share (dtypes, heads, qkv and q, inv_freq, no aliasing); returns
/// `(n_rows, kv_width)`.
fn check(op: &'static str, t: &Operands, heads: HeadShape) -> Result<(usize, usize)> {
    let HeadShape { n_heads, n_kv_heads, head_dim } = heads;
    expect_dtype(op, "qkv", t.qkv, &[DType::F32])?;
    expect_dtype(op, "inv_freq", t.inv_freq, &[DType::F32])?;
    expect_dtype(op, "pos", t.pos, &[DType::U32])?;
    expect_dtype(op, "q", t.q, &[DType::F32])?;
    expect_dtype(op, "k_cache", t.k_cache, &[DType::F32, DType::F16])?;
    expect_dtype(op, "v_cache (same as k_cache)", t.v_cache, &[t.k_cache.dtype()])?;
    if head_dim == 0 || !head_dim.is_multiple_of(2) || n_heads == 0 || n_kv_heads == 0 {
        let got = (n_heads, n_kv_heads, head_dim);
        return Err(Error::shape(op, "(n_heads, n_kv_heads, head_dim)", "non-zero, head_dim even", got));
    }
    let (q_width, kv_width) = (n_heads * head_dim, n_kv_heads * head_dim);
    let (n_rows, row_len) = dims2(op, "qkv", t.qkv)?;
    if row_len != q_width + 2 * kv_width || n_rows == 0 {
        return Err(Error::shape(op, "qkv row length (n_heads + 2 n_kv_heads) * head_dim", q_width + 2 * kv_width, row_len));
    }
    expect_shape(op, "q", t.q, &[n_rows, q_width])?;
    if !matches!(*t.inv_freq.shape(), [half] if half >= 1 && 2 * half <= head_dim) {
        return Err(Error::shape(op, "inv_freq (rot_dim / 2, rot_dim <= head_dim)", [head_dim / 2], t.inv_freq.shape()));
    }
    let inputs = [t.qkv, t.inv_freq, t.pos];
    for (what, out) in [("q", t.q), ("k_cache", t.k_cache), ("v_cache", t.v_cache)] {
        if inputs.iter().any(|i| i.same_buffer(out)) {
            return Err(Error::shape(op, format!("{what} buffer"), "not shared with qkv, inv_freq or pos", "shared"));
        }
    }
    Ok((n_rows, kv_width))
}

/// The dispatch for checked operands: a thread per element of q and per word of the cache rows.
fn build(
    gpu: &Gpu,
    op: &'static str,
    t: &Operands,
    heads: HeadShape,
    n_rows: usize,
    capacity: usize,
    batched: bool,
) -> Result<Op> {
    let HeadShape { n_heads, n_kv_heads, head_dim } = heads;
    let (q_width, kv_width) = (n_heads * head_dim, n_kv_heads * head_dim);
    let f16 = t.k_cache.dtype() == DType::F16;
    let params = Params {
        n_rows: n_rows as u32,
        n_heads: n_heads as u32,
        n_kv_heads: n_kv_heads as u32,
        head_dim: head_dim as u32,
        half: t.inv_freq.shape()[0] as u32,
        capacity: capacity as u32,
        _pad: [0; 2],
    };
    let uniform = gpu.uniform(op, &params);
    let cache_words = n_rows * if f16 { kv_width / 2 } else { kv_width };
    let threads = n_rows * q_width + 2 * cache_words;
    let groups = u32::try_from(threads.div_ceil(256)).map_err(|_| Error::shape(op, "qkv elements", "< 2^40", threads))?;
    let binds = [
        Bind::Tensor(t.qkv),
        Bind::Tensor(t.inv_freq),
        Bind::Tensor(t.pos),
        Bind::Tensor(t.q),
        Bind::Tensor(t.k_cache),
        Bind::Tensor(t.v_cache),
        Bind::Uniform(&uniform),
    ];
    let constants = [("CACHE_F16", f16 as u8 as f64), ("BATCHED", batched as u8 as f64)];
    let d = dispatch(gpu, op, &SHADER, &constants, &binds, [groups, 1, 1])?;
    Ok(Op { dispatches: vec![d] })
}
