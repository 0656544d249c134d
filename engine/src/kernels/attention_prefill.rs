//! Causal attention of a block of queries over a KV cache (shaders/attention_prefill.wgsl),
//! tiled with an online softmax: query row `t` (position `pos[0] + t`) attends keys
//! `0 ..= pos[0] + t`. Grouped-query: head `h` reads KV head `h / (n_heads / n_kv_heads)`.
//! Also holds the input checks that attention_decode shares.

use super::{dims2, dispatch, expect_dtype, expect_shape, shader, Bind, Op, Shader};
use crate::error::{Error, Result};
use crate::{DType, Gpu, Tensor};

const SHADER: Shader = shader!("attention_prefill");
const WORKGROUP_SIZE: usize = 128;
/// (query rows, keys, query rows per thread) per tile, best first; the first that fits workgroup
/// memory is used. Two rows a thread (32-row tiles) ran 1.6x faster than one on an H200.
const TILES: [(usize, usize, usize); 4] = [(32, 32, 2), (16, 32, 1), (16, 16, 1), (8, 16, 1)];
/// Largest head_dim the kernels hold in registers (attention_decode shares it).
pub(crate) const MAX_HEAD_DIM: usize = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n_rows: u32,
    pub n_heads: u32,
    /// Query heads per KV head.
    pub group: u32,
    pub capacity: u32,
    /// `vec4<u32>` words per cache row: `n_kv_heads * head_dim / 4` (f32) or `/ 8` (f16).
    pub kv_row_vec4s: u32,
    /// `scale * log2(e)`: the kernel uses exp2.
    pub q_scale: f32,
    pub _pad: [u32; 2],
}
const _: () = assert!(std::mem::size_of::<Params>() == 32);

/// `out[t] = softmax(scale * q[t] K^T, causal) V` for every query row `t` and head.
/// - `q`, `out`: `[T, n_heads * head_dim]` f32 (distinct buffers); row `t` is position `pos[0] + t`.
/// - `k`, `v`: `[capacity, n_kv_heads * head_dim]`, both f32 or both f16; row `p` is position `p`.
/// - `pos`: `[1]` u32, read on the GPU. Keys past the capacity are never read (the caller
///   keeps `pos[0] + T <= capacity`).
/// - `head_dim % 8 == 0`, `head_dim <= 256`; `n_heads % n_kv_heads == 0`.
#[allow(clippy::too_many_arguments)]
pub fn attention_prefill(
    gpu: &Gpu,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    out: &Tensor,
    pos: &Tensor,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    scale: f32,
) -> Result<Op> {
    const OP: &str = "attention_prefill";
    let (n_rows, capacity) = check_inputs(OP, q, k, v, out, pos, n_heads, n_kv_heads, head_dim)?;
    let storage = gpu.info().max_workgroup_storage_bytes as usize;
    let (bq, bk, rpt) = TILES
        .into_iter()
        .find(|&(bq, bk, rpt)| workgroup_bytes(bq, bk, rpt, head_dim) <= storage)
        .ok_or_else(|| Error::TooLarge {
            what: format!("{OP}: workgroup memory for head_dim {head_dim}"),
            bytes: workgroup_bytes(8, 16, 1, head_dim) as u64,
            limit: storage as u64,
        })?;
    let f16 = k.dtype() == DType::F16;
    let params = Params {
        n_rows: n_rows as u32,
        n_heads: n_heads as u32,
        group: (n_heads / n_kv_heads) as u32,
        capacity: capacity as u32,
        kv_row_vec4s: (n_kv_heads * head_dim / if f16 { 8 } else { 4 }) as u32,
        q_scale: scale * std::f32::consts::LOG2_E,
        _pad: [0; 2],
    };
    let uniform = gpu.uniform(OP, &params);
    let constants = [
        ("HEAD_DIM", head_dim as f64),
        ("KV_F16", f16 as u8 as f64),
        ("WG", WORKGROUP_SIZE as f64),
        ("BQ", bq as f64),
        ("BK", bk as f64),
        ("RPT", rpt as f64),
    ];
    let binds = [
        Bind::Tensor(q),
        Bind::Tensor(k),
        Bind::Tensor(v),
        Bind::Tensor(out),
        Bind::Tensor(pos),
        Bind::Uniform(&uniform),
    ];
    let grid = [n_rows.div_ceil(bq) as u32, n_heads as u32, 1];
    let d = dispatch(gpu, OP, &SHADER, &constants, &binds, grid)?;
    Ok(Op { dispatches: vec![d] })
}

/// Workgroup memory of the prefill kernel for a tile shape (mirrors the shader's arrays).
fn workgroup_bytes(bq: usize, bk: usize, rpt: usize, head_dim: usize) -> usize {
    let d4 = head_dim / 4;
    16 * bq * d4 + 16 * bk * (d4 + 1) + 4 * bq * (bk + 1) + 4 * rpt * WORKGROUP_SIZE + 4
}

/// Checks the inputs both attention kernels take; returns `(T, capacity)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_inputs(
    op: &'static str,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    out: &Tensor,
    pos: &Tensor,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
) -> Result<(usize, usize)> {
    expect_dtype(op, "q", q, &[DType::F32])?;
    expect_dtype(op, "k", k, &[DType::F32, DType::F16])?;
    expect_dtype(op, "v (same as k)", v, &[k.dtype()])?;
    expect_dtype(op, "out", out, &[DType::F32])?;
    expect_dtype(op, "pos", pos, &[DType::U32])?;
    expect_shape(op, "pos", pos, &[1])?;
    if n_heads == 0 || n_kv_heads == 0 || !n_heads.is_multiple_of(n_kv_heads) {
        return Err(Error::shape(op, "n_heads (a multiple of n_kv_heads)", n_kv_heads, n_heads));
    }
    if head_dim == 0 || !head_dim.is_multiple_of(8) || head_dim > MAX_HEAD_DIM {
        return Err(Error::shape(op, "head_dim", "a multiple of 8, at most 256", head_dim));
    }
    let (n_rows, q_width) = dims2(op, "q", q)?;
    if q_width != n_heads * head_dim || n_rows == 0 {
        return Err(Error::shape(op, "q", [n_rows.max(1), n_heads * head_dim], q.shape()));
    }
    expect_shape(op, "out (same as q)", out, q.shape())?;
    let (capacity, kv_width) = dims2(op, "k", k)?;
    if kv_width != n_kv_heads * head_dim || capacity == 0 {
        return Err(Error::shape(op, "k", [capacity.max(1), n_kv_heads * head_dim], k.shape()));
    }
    expect_shape(op, "v (same as k)", v, k.shape())?;
    if [q, k, v, pos].iter().any(|t| out.same_buffer(t)) {
        return Err(Error::shape(op, "out buffer", "a buffer other than q, k, v and pos", "shared"));
    }
    Ok((n_rows, capacity))
}
