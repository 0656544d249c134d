//! Attention of one query per head over the KV cache, split along the keys (flash-decoding):
//! shaders/attention_decode.wgsl (or attention_decode_subgroup.wgsl) writes one partial softmax
//! state per (split, head) into a scratch tensor, and attention_decode_reduce.wgsl combines them.
//! The number of splits is fixed when the op is built (from the cache capacity); at each step the
//! kernels read the position from `pos`, and the splits past it do nothing.

use super::attention_prefill::check_inputs;
use super::{dispatch, shader, Bind, Op, Shader};
use crate::error::{Error, Result};
use crate::{DType, Gpu, Tensor};

const PORTABLE: Shader = shader!("attention_decode");
const SUBGROUP: Shader = shader!("attention_decode_subgroup");
const REDUCE: Shader = shader!("attention_decode_reduce");
const WORKGROUP_SIZE: usize = 128;
const REDUCE_WORKGROUP_SIZE: usize = 64;
/// Keys per split: at least this many, more when the cache would need more than MAX_SPLITS.
const MIN_SPLIT_LEN: usize = 64;
const MAX_SPLITS: usize = 64;
/// Register bounds of the shader (its MAX_U, MAX_G, MAX_GU).
const MAX_UNITS_PER_LANE: usize = 4;
const MAX_HEADS_PER_GROUP: usize = 8;
const MAX_HEAD_UNITS: usize = 8;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n_heads: u32,
    /// Query heads per KV head.
    pub group: u32,
    /// Workgroups per KV head (each takes up to GC of its query heads).
    pub n_chunks: u32,
    pub capacity: u32,
    pub split_len: u32,
    /// `vec4<u32>` words per cache row: `n_kv_heads * head_dim / 4` (f32) or `/ 8` (f16).
    pub kv_row_vec4s: u32,
    /// `scale * log2(e)`: the kernel uses exp2.
    pub q_scale: f32,
    pub _pad: u32,
}
const _: () = assert!(std::mem::size_of::<Params>() == 32);

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ReduceParams {
    pub n_heads: u32,
    pub capacity: u32,
    pub split_len: u32,
    pub n_splits: u32,
}
const _: () = assert!(std::mem::size_of::<ReduceParams>() == 16);

/// `out = softmax(scale * q K[0 ..= pos]^T) V[0 ..= pos]` for each head; two dispatches.
/// - `q`, `out`: `[1, n_heads * head_dim]` f32 (distinct buffers).
/// - `k`, `v`: `[capacity, n_kv_heads * head_dim]`, both f32 or both f16; row `p` is position `p`.
/// - `pos`: `[1]` u32, read on the GPU, so the op can be built once and replayed every step.
///   Keys past the capacity are never read (the caller keeps `pos[0] < capacity`).
/// - `head_dim % 8 == 0`, `head_dim <= 256`; `n_heads % n_kv_heads == 0`.
#[allow(clippy::too_many_arguments)]
pub fn attention_decode(
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
    const OP: &str = "attention_decode";
    let (n_rows, capacity) = check_inputs(OP, q, k, v, out, pos, n_heads, n_kv_heads, head_dim)?;
    if n_rows != 1 {
        return Err(Error::shape(OP, "q rows (one query per head)", 1, n_rows));
    }
    // Lanes per key: enough for the head's 8-element units, at most a subgroup.
    let units = head_dim / 8;
    let info = gpu.info();
    let subgroup = info.features.subgroups && info.subgroup_size.0 >= 8;
    let lane_cap = if subgroup { info.subgroup_size.0.min(32) as usize } else { 8 };
    let tpk = units.next_power_of_two().min(lane_cap);
    let units_per_lane = units.div_ceil(tpk);
    let slots = WORKGROUP_SIZE / tpk;
    debug_assert!(units_per_lane <= MAX_UNITS_PER_LANE);
    // Query heads per workgroup: all that share the KV head when registers allow.
    let group = n_heads / n_kv_heads;
    let max_heads = (MAX_HEAD_UNITS / units_per_lane).min(MAX_HEADS_PER_GROUP);
    let n_chunks = group.div_ceil(max_heads);
    let heads_per_wg = group.div_ceil(n_chunks);

    let wg_bytes = 16 * slots * head_dim / 4 + 8 * slots + 4 + if subgroup { 0 } else { 4 * heads_per_wg * WORKGROUP_SIZE };
    if wg_bytes > info.max_workgroup_storage_bytes as usize {
        let limit = info.max_workgroup_storage_bytes as u64;
        return Err(Error::TooLarge { what: format!("{OP}: workgroup memory for head_dim {head_dim}"), bytes: wg_bytes as u64, limit });
    }
    let split_len = MIN_SPLIT_LEN.max(capacity.div_ceil(MAX_SPLITS)).next_multiple_of(slots);
    let n_splits = capacity.div_ceil(split_len);
    let partials = Tensor::empty(gpu, &[n_splits, n_heads, head_dim + 4], DType::F32)?;

    let f16 = k.dtype() == DType::F16;
    let params = Params {
        n_heads: n_heads as u32,
        group: group as u32,
        n_chunks: n_chunks as u32,
        capacity: capacity as u32,
        split_len: split_len as u32,
        kv_row_vec4s: (n_kv_heads * head_dim / if f16 { 8 } else { 4 }) as u32,
        q_scale: scale * std::f32::consts::LOG2_E,
        _pad: 0,
    };
    let uniform = gpu.uniform(OP, &params);
    let constants = [
        ("HEAD_DIM", head_dim as f64),
        ("KV_F16", f16 as u8 as f64),
        ("TPK", tpk as f64),
        ("SLOTS", slots as f64),
        ("GC", heads_per_wg as f64),
    ];
    let binds = [
        Bind::Tensor(q),
        Bind::Tensor(k),
        Bind::Tensor(v),
        Bind::Tensor(&partials),
        Bind::Tensor(pos),
        Bind::Uniform(&uniform),
    ];
    let shader = if subgroup { &SUBGROUP } else { &PORTABLE };
    let grid = [n_splits as u32, (n_kv_heads * n_chunks) as u32, 1];
    let splits = dispatch(gpu, OP, shader, &constants, &binds, grid)?;

    let reduce_params = ReduceParams {
        n_heads: n_heads as u32,
        capacity: capacity as u32,
        split_len: split_len as u32,
        n_splits: n_splits as u32,
    };
    let reduce_uniform = gpu.uniform(OP, &reduce_params);
    let constants = [("HEAD_DIM", head_dim as f64), ("WG", REDUCE_WORKGROUP_SIZE as f64)];
    let binds = [Bind::Tensor(&partials), Bind::Tensor(out), Bind::Tensor(pos), Bind::Uniform(&reduce_uniform)];
    let reduce = dispatch(gpu, OP, &REDUCE, &constants, &binds, [n_heads as u32, 1, 1])?;
    Ok(Op { dispatches: vec![splits, reduce] })
}
