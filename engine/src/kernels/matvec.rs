//! Matrix-vector product for decode: `y[n] = sum_k W[n, k] * x[k]` (shaders/matvec*.wgsl).
//!
//! Three shaders for float weights, one picked per call in one line:
//! - `matvec_subgroup`: 16-byte weight words, partial sums folded with `subgroupAdd` (fast path);
//! - `matvec`: the same loads, folded by a tree in workgroup memory (portable path);
//! - `matvec_scalar`: one element per load, for a `k` whose rows do not start on 16-byte words
//!   (F16 with `k % 8 != 0`, F32 with `k % 4 != 0`).
//!
//! Packed weights (Q8, Q4, Q4G128) are dequantized inside the kernel: `matvec_q8[_subgroup]` and
//! `matvec_q4[_subgroup]` read 16-byte quant words and one scale per group (rows are always whole
//! 16-byte words, so there is no scalar variant).
//!
//! 2:4 sparse weights (S24F16, S24Q4) take `matvec_s24[_subgroup]`: a thread reads a 16-byte
//! word of kept values (16 or 64 elements' worth) and their positions at a time and picks each
//! kept value's x by its position, so only the stored bytes are read.
//!
//! A weight larger than one storage binding is bound in row chunks, one dispatch each; every
//! dispatch writes its rows of `y` at `row_offset`.

use super::{dims2, dispatch, expect_dtype, shader, Bind, Op, Shader};
use crate::error::{Error, Result};
use crate::{DType, Gpu, Tensor};

const VECTOR: Shader = shader!("matvec");
const VECTOR_SUBGROUP: Shader = shader!("matvec_subgroup");
const SCALAR: Shader = shader!("matvec_scalar");
const Q8: Shader = shader!("matvec_q8");
const Q8_SUBGROUP: Shader = shader!("matvec_q8_subgroup");
const Q4: Shader = shader!("matvec_q4");
const Q4_SUBGROUP: Shader = shader!("matvec_q4_subgroup");
const S24: Shader = shader!("matvec_s24");
const S24_SUBGROUP: Shader = shader!("matvec_s24_subgroup");

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Rows of W in this dispatch (one row chunk).
    pub rows: u32,
    /// Elements per row, the length of x.
    pub k: u32,
    /// 16-byte words per row (`k / 8` for F16, `k / 4` for F32, `k / 16` for Q8, `k / 32` for
    /// Q4, `k / 16` for S24F16, `k / 64` for S24Q4); the vectorized shaders' stride.
    pub row_words: u32,
    /// Index in y of this dispatch's first row.
    pub row_offset: u32,
}
const _: () = assert!(std::mem::size_of::<Params>() == 16);

/// Largest `rows_per_workgroup`: the size of the shaders' per-thread accumulator array.
pub const MAX_ROWS: u32 = 8;

/// Pipeline-time shape of the kernel (WGSL `override`s): threads per workgroup and the rows
/// each workgroup owns. The default is meant for a large GPU; `engine_bench --sweep` measures
/// the alternatives on the GPU at hand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatvecConfig {
    /// Threads per workgroup; a power of two.
    pub workgroup_size: u32,
    /// Consecutive rows of W each workgroup reduces.
    pub rows_per_workgroup: u32,
}

/// 256 threads x 2 rows: the best f16 shape of `engine_bench --sweep` on the H200
/// (BENCHMARKS.md), within 1% of the best for f32.
impl Default for MatvecConfig {
    fn default() -> Self {
        MatvecConfig { workgroup_size: 256, rows_per_workgroup: 2 }
    }
}

impl MatvecConfig {
    /// The shape `matvec` uses on `gpu`: the default, except on a CPU adapter (lavapipe), where
    /// a workgroup runs as a loop on one core and 32 threads were measured about twice as fast.
    pub fn for_gpu(gpu: &Gpu) -> MatvecConfig {
        if gpu.info().device_type == "Cpu" {
            MatvecConfig { workgroup_size: 32, rows_per_workgroup: 4 }
        } else {
            MatvecConfig::default()
        }
    }

    /// The shape `matvec` uses for `w` on `gpu`: `for_gpu`, with no more threads than a row of
    /// a packed weight has 16-byte words (Q4 rows are short: 128 words at k = 4096).
    pub fn for_weight(gpu: &Gpu, w: &Tensor) -> MatvecConfig {
        let mut c = MatvecConfig::for_gpu(gpu);
        if let (Some(&k), true) = (w.shape().last(), w.dtype().is_packed()) {
            let words = (w.dtype().quant_bytes(k) / 16) as u32;
            c.workgroup_size = c.workgroup_size.min(words.next_power_of_two().max(32));
        }
        c
    }
}

/// `y[n] = sum_k w[n, k] * x[k]`. `w`: `[N, K]` F32, F16, Q8, Q4, Q4G128, S24F16 or S24Q4; `x`:
/// F32, `[K]` or `[1, K]` (16-byte aligned for a packed `w`); `y`: F32, `[N]` or `[1, N]`, a buffer distinct
/// from `x` and `w`.
pub fn matvec(gpu: &Gpu, w: &Tensor, x: &Tensor, y: &Tensor) -> Result<Op> {
    matvec_with(gpu, w, x, y, MatvecConfig::for_weight(gpu, w))
}

/// `y[n] += sum_k w[n, k] * x[k]`: [`matvec`] adding into `y` instead of overwriting it (a
/// residual connection folded into the projection: the shaders' ACCUMULATE epilogue).
pub fn matvec_accumulate(gpu: &Gpu, w: &Tensor, x: &Tensor, y: &Tensor) -> Result<Op> {
    matvec_epilogue(gpu, w, x, y, MatvecConfig::for_weight(gpu, w), true)
}

/// [`matvec`] with an explicit workgroup shape (for tuning and benchmarks).
pub fn matvec_with(gpu: &Gpu, w: &Tensor, x: &Tensor, y: &Tensor, config: MatvecConfig) -> Result<Op> {
    matvec_epilogue(gpu, w, x, y, config, false)
}

fn matvec_epilogue(gpu: &Gpu, w: &Tensor, x: &Tensor, y: &Tensor, config: MatvecConfig, accumulate: bool) -> Result<Op> {
    const OP: &str = "matvec";
    let weights = [DType::F32, DType::F16, DType::Q8, DType::Q4, DType::Q4G128, DType::S24F16, DType::S24Q4];
    expect_dtype(OP, "w", w, &weights)?;
    expect_dtype(OP, "x", x, &[DType::F32])?;
    expect_dtype(OP, "y", y, &[DType::F32])?;
    let (n, k) = dims2(OP, "w", w)?;
    expect_vector(OP, "x", x, k)?;
    expect_vector(OP, "y", y, n)?;
    if y.same_buffer(x) || y.same_buffer(w) {
        return Err(Error::shape(OP, "y buffer (must not alias x or w)", "a distinct buffer", "shared"));
    }
    check_config(gpu, OP, config)?;

    if n == 0 {
        return Ok(Op::empty());
    }
    if w.dtype().is_sparse() {
        return matvec_s24(gpu, w, x, y, config, accumulate);
    }
    if w.dtype().is_packed() {
        return matvec_packed(gpu, w, x, y, config);
    }
    let chunks = w.row_chunks(gpu)?;
    // 16-byte words per row; the vectorized shaders need every row and binding on a word.
    let elements_per_word = if w.dtype() == DType::F16 { 8 } else { 4 };
    let vectorized = k > 0
        && k.is_multiple_of(elements_per_word)
        && x.offset().is_multiple_of(16)
        && chunks.iter().all(|(_, c)| c.offset().is_multiple_of(16));
    let shader = match (vectorized, gpu.info().features.subgroups) {
        (true, true) => &VECTOR_SUBGROUP,
        (true, false) => &VECTOR,
        (false, _) => &SCALAR,
    };
    let constants = [
        ("WORKGROUP_SIZE", config.workgroup_size as f64),
        ("ROWS", config.rows_per_workgroup as f64),
        ("W_F16", if w.dtype() == DType::F16 { 1.0 } else { 0.0 }),
        ("ACCUMULATE", accumulate as u8 as f64),
    ];

    let mut dispatches = Vec::with_capacity(chunks.len());
    for (first_row, chunk) in &chunks {
        let rows = chunk.shape()[0];
        let params = Params {
            rows: rows as u32,
            k: k as u32,
            row_words: (k / elements_per_word) as u32,
            row_offset: *first_row as u32,
        };
        let uniform = gpu.uniform(OP, &params);
        let groups = (rows as u32).div_ceil(config.rows_per_workgroup);
        let binds = [Bind::Tensor(chunk), Bind::Tensor(x), Bind::Tensor(y), Bind::Uniform(&uniform)];
        dispatches.push(dispatch(gpu, OP, shader, &constants, &binds, [groups, 1, 1])?);
    }
    Ok(Op { dispatches })
}

/// matvec of a packed weight (checked by `matvec_with`): one dispatch per row chunk, binding
/// the chunk's quants and scales.
fn matvec_packed(gpu: &Gpu, w: &Tensor, x: &Tensor, y: &Tensor, config: MatvecConfig) -> Result<Op> {
    const OP: &str = "matvec";
    if !x.offset().is_multiple_of(16) {
        return Err(Error::shape(OP, "x offset for a packed weight (16-byte aligned)", 0, x.offset() % 16));
    }
    let k = w.shape()[1];
    let row_words = (w.dtype().quant_bytes(k) / 16) as u32;
    let shader = match (w.dtype(), gpu.info().features.subgroups) {
        (DType::Q8, true) => &Q8_SUBGROUP,
        (DType::Q8, false) => &Q8,
        (_, true) => &Q4_SUBGROUP,
        (_, false) => &Q4,
    };
    let mut constants = vec![("WORKGROUP_SIZE", config.workgroup_size as f64), ("ROWS", config.rows_per_workgroup as f64)];
    if w.dtype() != DType::Q8 {
        // Quant words per scale group: 32 elements per word.
        constants.push(("GROUP_WORDS", (w.dtype().group().unwrap_or(32) / 32) as f64));
    }
    let mut dispatches = Vec::new();
    for (first_row, chunk) in w.row_chunks(gpu)? {
        let rows = chunk.shape()[0];
        let params = Params { rows: rows as u32, k: k as u32, row_words, row_offset: first_row as u32 };
        let uniform = gpu.uniform(OP, &params);
        let groups = (rows as u32).div_ceil(config.rows_per_workgroup);
        let binds = [
            Bind::Quants(&chunk),
            Bind::Scales(&chunk),
            Bind::Tensor(x),
            Bind::Tensor(y),
            Bind::Uniform(&uniform),
        ];
        dispatches.push(dispatch(gpu, OP, shader, &constants, &binds, [groups, 1, 1])?);
    }
    Ok(Op { dispatches })
}

/// matvec of a 2:4 sparse weight (S24F16, S24Q4; checked by `matvec_epilogue`): one dispatch
/// per row chunk, binding the chunk's kept values and meta (positions, and S24Q4's scales).
fn matvec_s24(gpu: &Gpu, w: &Tensor, x: &Tensor, y: &Tensor, config: MatvecConfig, accumulate: bool) -> Result<Op> {
    const OP: &str = "matvec";
    if !x.offset().is_multiple_of(16) {
        return Err(Error::shape(OP, "x offset for a sparse weight (16-byte aligned)", 0, x.offset() % 16));
    }
    let k = w.shape()[1];
    let row_words = (w.dtype().quant_bytes(k) / 16) as u32;
    let shader = if gpu.info().features.subgroups { &S24_SUBGROUP } else { &S24 };
    let constants = [
        ("WORKGROUP_SIZE", config.workgroup_size as f64),
        ("ROWS", config.rows_per_workgroup as f64),
        ("S24Q4", (w.dtype() == DType::S24Q4) as u8 as f64),
        ("ACCUMULATE", accumulate as u8 as f64),
    ];
    let mut dispatches = Vec::new();
    for (first_row, chunk) in w.row_chunks(gpu)? {
        let rows = chunk.shape()[0];
        let params = Params { rows: rows as u32, k: k as u32, row_words, row_offset: first_row as u32 };
        let uniform = gpu.uniform(OP, &params);
        let groups = (rows as u32).div_ceil(config.rows_per_workgroup);
        let binds = [
            Bind::Quants(&chunk),
            Bind::Scales(&chunk),
            Bind::Tensor(x),
            Bind::Tensor(y),
            Bind::Uniform(&uniform),
        ];
        dispatches.push(dispatch(gpu, OP, shader, &constants, &binds, [groups, 1, 1])?);
    }
    Ok(Op { dispatches })
}

/// Checks that `t` is a vector of `len` elements, shaped `[len]` or `[1, len]`.
pub(crate) fn expect_vector(op: &'static str, what: &str, t: &Tensor, len: usize) -> Result<()> {
    match *t.shape() {
        [l] | [1, l] if l == len => Ok(()),
        _ => Err(Error::shape(op, format!("{what} shape"), format!("[{len}] or [1, {len}]"), t.shape())),
    }
}

fn check_config(gpu: &Gpu, op: &'static str, c: MatvecConfig) -> Result<()> {
    let max_threads = gpu.info().max_invocations_per_workgroup;
    if !c.workgroup_size.is_power_of_two() || c.workgroup_size > max_threads {
        return Err(Error::shape(op, "workgroup_size (a power of two)", format!("<= {max_threads}"), c.workgroup_size));
    }
    if !(1..=MAX_ROWS).contains(&c.rows_per_workgroup) {
        return Err(Error::shape(op, "rows_per_workgroup", format!("1 ..= {MAX_ROWS}"), c.rows_per_workgroup));
    }
    let shared = 4 * c.workgroup_size as u64 * c.rows_per_workgroup as u64;
    let limit = gpu.info().max_workgroup_storage_bytes as u64;
    if shared > limit {
        return Err(Error::TooLarge { what: format!("{op}: workgroup memory for {c:?}"), bytes: shared, limit });
    }
    Ok(())
}
