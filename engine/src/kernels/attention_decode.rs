//! Attention of one query per head over the KV cache, split along the keys (flash-decoding):
//! shaders/attention_decode.wgsl (or attention_decode_subgroup.wgsl) writes one partial softmax
//! state per (split, head) into a scratch tensor, and attention_decode_reduce.wgsl combines them.
//! The number of splits is fixed when the op is built: enough workgroups to fill a large GPU, no
//! more than the cache's capacity can use. At each step the kernels read the position from
//! `pos` and share the keys evenly among the splits (in whole rounds of keys), so a long context
//! keeps every split busy and a short one leaves the trailing splits idle.
//!
//! [`attention_decode_batched`] runs the same kernels over a batch of sequences: query row b has
//! its own position `pos[b]` and its own slot b of a cache laid out `(rows, capacity, kv width)`
//! (the grid gains a dimension; one sequence is the batch of one).

use super::attention_prefill::check_inputs;
use super::{dispatch, expect_shape, shader, Bind, Op, Shader};
use crate::error::{Error, Result};
use crate::{DType, Gpu, Tensor};

const PORTABLE: Shader = shader!("attention_decode");
const SUBGROUP: Shader = shader!("attention_decode_subgroup");
const REDUCE: Shader = shader!("attention_decode_reduce");
const WORKGROUP_SIZE: usize = 128;
const REDUCE_WORKGROUP_SIZE: usize = 128;
/// Workgroups of the split pass to aim for (all heads together): several per multiprocessor of
/// a large GPU (132 on an H100), so that enough loads are in flight. On an H200, 1024 read the
/// 4096-key cache of a Llama-3-8B layer in 16 us, against 27 us with 256.
const TARGET_WORKGROUPS: usize = 1024;
/// The reduce pass's MAX_SPLITS.
const MAX_SPLITS: usize = 256;
/// The split shader's MAX_R (keys per slot per round), and a budget of vec4 registers for a
/// lane's query, sums and one round of K and V units: 2 keys a round with one unit per lane
/// (head_dim <= 256 on 32-lane subgroups) measured best on an H200 (more registers per thread
/// cost more workgroups in flight than the extra loads per round gained).
const MAX_KEYS_PER_ROUND: usize = 8;
const REGISTER_VEC4S: usize = 12;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n_heads: u32,
    /// Query heads per KV head.
    pub group: u32,
    pub capacity: u32,
    pub n_splits: u32,
    /// Split lengths are multiples of this: the keys of one round (slots * keys per slot).
    pub split_align: u32,
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
    pub n_splits: u32,
    pub split_align: u32,
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
    build(gpu, q, k, v, out, pos, Shape { rows: 1, capacity, n_heads, n_kv_heads, head_dim }, scale)
}

/// [`attention_decode`] for a batch: query row b at position `pos[b]` attends to keys
/// `0 ..= min(pos[b], capacity - 1)` of its own cache slot b; two dispatches for all rows.
/// - `q`, `out`: `[rows, n_heads * head_dim]` f32 (distinct buffers).
/// - `k`, `v`: `[rows, capacity, n_kv_heads * head_dim]`, both f32 or both f16: slot b is row b's cache.
/// - `pos`: `[rows]` u32, read on the GPU.
/// - `head_dim % 8 == 0`, `head_dim <= 256`; `n_heads % n_kv_heads == 0`.
#[allow(clippy::too_many_arguments)]
pub fn attention_decode_batched(
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
    const OP: &str = "attention_decode_batched";
    let (rows, capacity, kv_width) = match *k.shape() {
        [rows, capacity, kv_width] if rows > 0 && capacity > 0 => (rows, capacity, kv_width),
        _ => return Err(Error::shape(OP, "k", "[rows, capacity, n_kv_heads * head_dim]", k.shape())),
    };
    expect_shape(OP, "v (same as k)", v, k.shape())?;
    expect_shape(OP, "pos", pos, &[rows])?;
    // The single-row checks, on the caches seen as one 2-D tensor and one position.
    let (k2, v2) = (k.reshape(&[rows * capacity, kv_width])?, v.reshape(&[rows * capacity, kv_width])?);
    let (n_rows, _) = check_inputs(OP, q, &k2, &v2, out, &pos.rows(0, 1)?, n_heads, n_kv_heads, head_dim)?;
    if n_rows != rows {
        return Err(Error::shape(OP, "q rows (one per cache slot)", rows, n_rows));
    }
    build(gpu, q, k, v, out, pos, Shape { rows, capacity, n_heads, n_kv_heads, head_dim }, scale)
}

/// The sizes both entry points have checked.
struct Shape {
    rows: usize,
    capacity: usize,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
}

/// Builds the split and reduce dispatches for checked inputs.
#[allow(clippy::too_many_arguments)]
fn build(gpu: &Gpu, q: &Tensor, k: &Tensor, v: &Tensor, out: &Tensor, pos: &Tensor, shape: Shape, scale: f32) -> Result<Op> {
    const OP: &str = "attention_decode";
    let Shape { rows, capacity, n_heads, n_kv_heads, head_dim } = shape;
    // Lanes per key: enough for the head's 8-element units, at most a subgroup (8 lanes on the
    // portable path, where lane sums go through workgroup memory). At most 4 units per lane.
    let units = head_dim / 8;
    let info = gpu.info();
    let subgroup = info.features.subgroups && info.subgroup_size.0 >= 8;
    let lane_cap = if subgroup { info.subgroup_size.0.min(32) as usize } else { 8 };
    let tpk = units.next_power_of_two().min(lane_cap);
    let units_per_lane = units.div_ceil(tpk);
    let slots = WORKGROUP_SIZE / tpk;
    // Keys per slot per round: as many loads in flight as the registers allow (the portable
    // variant also keeps a round's parts in workgroup memory).
    let storage = info.max_workgroup_storage_bytes as usize;
    let wg_bytes = |r: usize| {
        let lane_parts = if subgroup { 0 } else { 4 * r * WORKGROUP_SIZE };
        16 * slots * head_dim / 4 + 8 * slots + 4 + lane_parts
    };
    let fits = |r: usize| 4 * (r + 1) * units_per_lane <= REGISTER_VEC4S && wg_bytes(r) <= storage;
    let mut keys_per_round = MAX_KEYS_PER_ROUND;
    while keys_per_round > 1 && !fits(keys_per_round) {
        keys_per_round /= 2;
    }
    if wg_bytes(keys_per_round) > storage {
        let (bytes, limit) = (wg_bytes(keys_per_round) as u64, storage as u64);
        let what = format!("{OP}: workgroup memory for head_dim {head_dim}");
        return Err(Error::TooLarge { what, bytes, limit });
    }
    let split_align = slots * keys_per_round;
    // A batch's rows fill the GPU too: the target counts the workgroups of every row.
    let n_splits = (TARGET_WORKGROUPS / (n_heads * rows)).clamp(1, capacity.div_ceil(split_align).min(MAX_SPLITS));
    let partials = Tensor::empty(gpu, &[rows, n_splits, n_heads, head_dim + 4], DType::F32)?;

    let f16 = k.dtype() == DType::F16;
    let params = Params {
        n_heads: n_heads as u32,
        group: (n_heads / n_kv_heads) as u32,
        capacity: capacity as u32,
        n_splits: n_splits as u32,
        split_align: split_align as u32,
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
        ("R", keys_per_round as f64),
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
    let grid = [n_splits as u32, n_heads as u32, rows as u32];
    let splits = dispatch(gpu, OP, shader, &constants, &binds, grid)?;

    let reduce_params = ReduceParams {
        n_heads: n_heads as u32,
        capacity: capacity as u32,
        n_splits: n_splits as u32,
        split_align: split_align as u32,
    };
    let reduce_uniform = gpu.uniform(OP, &reduce_params);
    let constants = [("HEAD_DIM", head_dim as f64), ("WG", REDUCE_WORKGROUP_SIZE as f64)];
    let binds = [Bind::Tensor(&partials), Bind::Tensor(out), Bind::Tensor(pos), Bind::Uniform(&reduce_uniform)];
    let reduce = dispatch(gpu, OP, &REDUCE, &constants, &binds, [n_heads as u32, rows as u32, 1])?;
    Ok(Op { dispatches: vec![splits, reduce] })
}
