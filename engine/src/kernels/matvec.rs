//! Matrix-vector product for decode: `y[n] = sum_k W[n, k] * x[k]` (shaders/matvec*.wgsl).
//!
//! Three shaders for float weights, one picked per call in one line:
//! - `matvec_subgroup`: 16-byte weight words, partial sums folded with `subgroupAdd` (fast path);
//! - `matvec`: the same loads, folded by a tree in workgroup memory (portable path);
//! - `matvec_scalar`: one element per load, for a `k` whose rows do not start on 16-byte words
//!   (F16 with `k % 8 != 0`, F32 with `k % 4 != 0`).
//!
//! Packed weights (Q8, Q4, Q4G128) are dequantized inside the kernel, by one of two paths
//! ([`QuantPath`], chosen by [`QuantMatvecConfig`]); rows are always whole 16-byte words, so
//! there is no scalar variant:
//! - `Float`: `matvec_q8[_subgroup]` and `matvec_q4[_subgroup]` turn every quant into an f32 and
//!   multiply it by x in f32 (every adapter);
//! - `Dot4`: `matvec_q8_dot4` and `matvec_q4_dot4` round x to int8 per block of 32 inside the
//!   kernel and multiply it with the quants four at a time (`dot4I8Packed`); far less ALU and x
//!   traffic per weight byte, at the cost of x's rounding (subgroup adapters; the default there).
//!
//! 2:4 sparse weights (S24F16, S24Q4) take `matvec_s24[_subgroup]` (`Float`: each kept value
//! picks its x by its position, up to [`MAX_S24_ROWS`] rows per workgroup), and S24Q4 also
//! `matvec_s24q4_dot4` (`Dot4`: x rounded to int8 per block of 32, each group's two kept quants
//! placed at their byte positions and multiplied by `dot4I8Packed`). [`QuantMatvecConfig::for_weight`]
//! picks; `engine_bench --s24-sweep` measures every path and shape.
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
const Q8_DOT4: Shader = shader!("matvec_q8_dot4");
const Q4_DOT4: Shader = shader!("matvec_q4_dot4");
const S24Q4_DOT4: Shader = shader!("matvec_s24q4_dot4");

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Rows of W in this dispatch (one row chunk).
    pub rows: u32,
    /// Elements per row, the length of x.
    pub k: u32,
    /// 16-byte words per row (`k / 8` for F16, `k / 4` for F32, `k / 16` for Q8, `k / 32` for
    /// Q4); the vectorized shaders' stride.
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

/// Largest `rows_per_workgroup` of the `Dot4` shaders (their accumulator array).
pub const MAX_DOT4_ROWS: u32 = 16;

/// Largest `rows_per_workgroup` of the 2:4 sparse `Float` shaders (`matvec_s24[_subgroup]`):
/// more rows than the dense ones allow, since a thread's x (64 or 256 bytes per 16-byte value
/// word) is what many rows amortize.
pub const MAX_S24_ROWS: u32 = 16;

/// How a packed (Q8, Q4, Q4G128, S24F16, S24Q4) matvec forms its dot products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantPath {
    /// Every quant turned into an f32 and multiplied by x in f32 (`matvec_q8[_subgroup]`,
    /// `matvec_q4[_subgroup]`, `matvec_s24[_subgroup]`): the dequantized weight times x up to f32
    /// rounding; every adapter.
    Float,
    /// x rounded to int8 per block of 32 inside the kernel, then integer dot products of four
    /// (`dot4I8Packed`) with the quants (`matvec_q8_dot4`, `matvec_q4_dot4`, `matvec_s24q4_dot4`;
    /// not for S24F16, whose values are f16): a quant costs a
    /// fraction of an instruction and x is read once per workgroup's rows, where the float path
    /// converts each quant and reads 4-8 bytes of x per weight byte. Each product then errs by
    /// at most |w| amax / 254 (amax: the largest |x| of its block), as in llama.cpp's Q8_1
    /// activations. Needs the subgroup feature.
    Dot4,
}

/// Path and workgroup shape of a packed matvec (WGSL `override`s); `engine_bench --quant-sweep`
/// measures the alternatives on the GPU at hand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuantMatvecConfig {
    /// Threads per workgroup; a power of two.
    pub workgroup_size: u32,
    /// Consecutive rows of W each workgroup reduces (at most [`MAX_ROWS`] for `Float`,
    /// [`MAX_S24_ROWS`] for `Float` of a 2:4 sparse weight, [`MAX_DOT4_ROWS`] for `Dot4`).
    pub rows_per_workgroup: u32,
    pub path: QuantPath,
}

impl QuantMatvecConfig {
    /// What `matvec` uses for the packed `w` on `gpu` (2:4 sparse weights: [`Self::for_sparse`]).
    /// Without subgroups: `Float` in [`MatvecConfig::for_weight`]'s shape. On a CPU adapter:
    /// `Dot4`, 32 threads x 4 rows. On a GPU, a weight under 4M elements (launch-bound) takes `Float`, 128
    /// threads x 1 row; a larger one `Dot4`, one thread per block of 32 elements of a row (32 to
    /// 256 threads) and 8 rows, so that a thread's rounded x serves 8 rows with 8 quant loads in
    /// flight, fewer for a weight of under 4096 rows (N / 512, at least 1) so it still spreads over
    /// 512 workgroups. Chosen from `engine_bench --quant-sweep` on the H200 (BENCHMARKS.md).
    pub fn for_weight(gpu: &Gpu, w: &Tensor) -> QuantMatvecConfig {
        let float = MatvecConfig::for_weight(gpu, w);
        if w.dtype().is_sparse() {
            return QuantMatvecConfig::for_sparse(gpu, w);
        }
        if !gpu.info().features.subgroups {
            return QuantMatvecConfig {
                workgroup_size: float.workgroup_size,
                rows_per_workgroup: float.rows_per_workgroup,
                path: QuantPath::Float,
            };
        }
        if gpu.info().device_type == "Cpu" {
            return QuantMatvecConfig { workgroup_size: 32, rows_per_workgroup: 4, path: QuantPath::Dot4 };
        }
        // Small weights (SmolLM2's 576 x 1536) are launch-bound, not byte-bound: there the
        // float path with one row per workgroup measured 1.2-1.4x faster than Dot4 on the H200
        // (`engine_bench --quant-sweep`, BENCHMARKS.md).
        if w.numel() < (1 << 22) {
            return QuantMatvecConfig { workgroup_size: 128, rows_per_workgroup: 1, path: QuantPath::Float };
        }
        let blocks = w.shape().last().map_or(32, |&k| k / 32) as u32;
        let workgroup_size = blocks.next_power_of_two().clamp(32, 256);
        let rows = w.shape().first().copied().unwrap_or(0) as u32;
        let rows_per_workgroup = (rows / 512).clamp(1, 8);
        QuantMatvecConfig { workgroup_size, rows_per_workgroup, path: QuantPath::Dot4 }
    }

    /// What `matvec` uses for a 2:4 sparse `w` (S24F16, S24Q4) on `gpu`. Without subgroups:
    /// `Float` in [`MatvecConfig::for_weight`]'s shape; on a CPU adapter `Float`, 32 threads x
    /// 4 rows. On a GPU, a weight under 4M elements (launch-bound) takes `Float`, 128 threads x
    /// 1 row; a larger one `Float`, 128 threads x 2 rows (S24F16) or 64 x 4 (S24Q4), the best of
    /// `engine_bench --s24-sweep` on the H200. (`Dot4` stays available to S24Q4 through
    /// [`matvec_quant_with`].)
    pub fn for_sparse(gpu: &Gpu, w: &Tensor) -> QuantMatvecConfig {
        let float = MatvecConfig::for_weight(gpu, w);
        if !gpu.info().features.subgroups {
            let (workgroup_size, rows_per_workgroup) = (float.workgroup_size, float.rows_per_workgroup);
            return QuantMatvecConfig { workgroup_size, rows_per_workgroup, path: QuantPath::Float };
        }
        if gpu.info().device_type == "Cpu" {
            return QuantMatvecConfig { workgroup_size: 32, rows_per_workgroup: 4, path: QuantPath::Float };
        }
        if w.numel() < (1 << 22) {
            return QuantMatvecConfig { workgroup_size: 128, rows_per_workgroup: 1, path: QuantPath::Float };
        }
        // `engine_bench --s24-sweep` on the H200 (BENCHMARKS.md): S24F16 was fastest at 128 x 2
        // on every 7B shape (1.13-1.21x the f16 matvec); S24Q4 at 64 x 4 on the Float path
        // (Dot4 was no faster at its best shapes and slower at most).
        let (workgroup_size, rows_per_workgroup) = if w.dtype() == DType::S24Q4 { (64, 4) } else { (128, 2) };
        let path = QuantPath::Float;
        QuantMatvecConfig { workgroup_size, rows_per_workgroup, path }
    }
}

/// `y[n] = sum_k w[n, k] * x[k]`. `w`: `[N, K]` F32, F16, Q8, Q4 or Q4G128; `x`: F32, `[K]` or
/// `[1, K]` (16-byte aligned for a packed `w`); `y`: F32, `[N]` or `[1, N]`, a buffer distinct
/// from `x` and `w`. A packed `w` takes [`QuantMatvecConfig::for_weight`]'s path.
pub fn matvec(gpu: &Gpu, w: &Tensor, x: &Tensor, y: &Tensor) -> Result<Op> {
    if w.dtype().is_packed() {
        return matvec_quant_with(gpu, w, x, y, QuantMatvecConfig::for_weight(gpu, w));
    }
    matvec_with(gpu, w, x, y, MatvecConfig::for_weight(gpu, w))
}

/// `y[n] += sum_k w[n, k] * x[k]`: [`matvec`] adding into `y` instead of overwriting it (a
/// residual connection folded into the projection: the shaders' ACCUMULATE epilogue).
pub fn matvec_accumulate(gpu: &Gpu, w: &Tensor, x: &Tensor, y: &Tensor) -> Result<Op> {
    if w.dtype().is_packed() {
        return matvec_quant_accumulate_with(gpu, w, x, y, QuantMatvecConfig::for_weight(gpu, w));
    }
    matvec_epilogue(gpu, w, x, y, MatvecConfig::for_gpu(gpu), true)
}

/// [`matvec`] with an explicit workgroup shape (for tuning and benchmarks). A packed `w` takes
/// the `Float` path with this shape ([`matvec_quant_with`] chooses the path too).
pub fn matvec_with(gpu: &Gpu, w: &Tensor, x: &Tensor, y: &Tensor, config: MatvecConfig) -> Result<Op> {
    if w.dtype().is_packed() {
        let quant = QuantMatvecConfig {
            workgroup_size: config.workgroup_size,
            rows_per_workgroup: config.rows_per_workgroup,
            path: QuantPath::Float,
        };
        return matvec_quant_with(gpu, w, x, y, quant);
    }
    matvec_epilogue(gpu, w, x, y, config, false)
}

/// [`matvec`] of a packed weight (Q8, Q4, Q4G128, S24F16, S24Q4) with an explicit path and
/// workgroup shape.
pub fn matvec_quant_with(gpu: &Gpu, w: &Tensor, x: &Tensor, y: &Tensor, config: QuantMatvecConfig) -> Result<Op> {
    matvec_packed(gpu, w, x, y, config, false)
}

/// [`matvec_accumulate`] of a packed weight with an explicit path and workgroup shape.
pub fn matvec_quant_accumulate_with(
    gpu: &Gpu,
    w: &Tensor,
    x: &Tensor,
    y: &Tensor,
    config: QuantMatvecConfig,
) -> Result<Op> {
    matvec_packed(gpu, w, x, y, config, true)
}

/// Checks w, x and y (shared by every path) and returns w's `(n, k)`.
fn check_operands(op: &'static str, w: &Tensor, x: &Tensor, y: &Tensor) -> Result<(usize, usize)> {
    let weights = [DType::F32, DType::F16, DType::Q8, DType::Q4, DType::Q4G128, DType::S24F16, DType::S24Q4];
    expect_dtype(op, "w", w, &weights)?;
    expect_dtype(op, "x", x, &[DType::F32])?;
    expect_dtype(op, "y", y, &[DType::F32])?;
    let (n, k) = dims2(op, "w", w)?;
    expect_vector(op, "x", x, k)?;
    expect_vector(op, "y", y, n)?;
    if y.same_buffer(x) || y.same_buffer(w) {
        return Err(Error::shape(op, "y buffer (must not alias x or w)", "a distinct buffer", "shared"));
    }
    Ok((n, k))
}

fn matvec_epilogue(gpu: &Gpu, w: &Tensor, x: &Tensor, y: &Tensor, config: MatvecConfig, accumulate: bool) -> Result<Op> {
    const OP: &str = "matvec";
    let (n, k) = check_operands(OP, w, x, y)?;
    expect_dtype(OP, "w (a float weight here)", w, &[DType::F32, DType::F16])?;
    check_config(gpu, OP, config.workgroup_size, config.rows_per_workgroup, MAX_ROWS)?;

    if n == 0 {
        return Ok(Op::empty());
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

/// matvec of a packed weight: one dispatch per row chunk, binding the chunk's quants and scales.
fn matvec_packed(
    gpu: &Gpu,
    w: &Tensor,
    x: &Tensor,
    y: &Tensor,
    config: QuantMatvecConfig,
    accumulate: bool,
) -> Result<Op> {
    const OP: &str = "matvec";
    let (n, k) = check_operands(OP, w, x, y)?;
    let packed = [DType::Q8, DType::Q4, DType::Q4G128, DType::S24F16, DType::S24Q4];
    expect_dtype(OP, "w (a packed weight here)", w, &packed)?;
    let sparse = w.dtype().is_sparse();
    if w.dtype() == DType::S24F16 && config.path == QuantPath::Dot4 {
        return Err(Error::shape(OP, "quant path of an S24F16 weight", "Float", "Dot4"));
    }
    let max_rows = match (config.path, sparse) {
        (QuantPath::Float, false) => MAX_ROWS,
        (QuantPath::Float, true) => MAX_S24_ROWS,
        (QuantPath::Dot4, _) => MAX_DOT4_ROWS,
    };
    check_config(gpu, OP, config.workgroup_size, config.rows_per_workgroup, max_rows)?;
    let subgroups = gpu.info().features.subgroups;
    if config.path == QuantPath::Dot4 && !subgroups {
        return Err(Error::shape(OP, "quant path (Dot4 needs the subgroup feature)", "Float", "Dot4"));
    }
    if !x.offset().is_multiple_of(16) {
        return Err(Error::shape(OP, "x offset for a packed weight (16-byte aligned)", 0, x.offset() % 16));
    }
    if n == 0 {
        return Ok(Op::empty());
    }
    let row_words = (w.dtype().quant_bytes(k) / 16) as u32;
    let shader = match (w.dtype(), config.path, subgroups) {
        (DType::S24Q4, QuantPath::Dot4, _) => &S24Q4_DOT4,
        (DType::S24F16 | DType::S24Q4, _, true) => &S24_SUBGROUP,
        (DType::S24F16 | DType::S24Q4, _, false) => &S24,
        (DType::Q8, QuantPath::Dot4, _) => &Q8_DOT4,
        (DType::Q8, QuantPath::Float, true) => &Q8_SUBGROUP,
        (DType::Q8, QuantPath::Float, false) => &Q8,
        (_, QuantPath::Dot4, _) => &Q4_DOT4,
        (_, QuantPath::Float, true) => &Q4_SUBGROUP,
        (_, QuantPath::Float, false) => &Q4,
    };
    let mut constants = vec![
        ("WORKGROUP_SIZE", config.workgroup_size as f64),
        ("ROWS", config.rows_per_workgroup as f64),
        ("ACCUMULATE", accumulate as u8 as f64),
    ];
    if sparse {
        // The float shader reads both formats; the Dot4 one only S24Q4.
        if config.path == QuantPath::Float {
            constants.push(("S24Q4", (w.dtype() == DType::S24Q4) as u8 as f64));
        }
    } else {
        constants.extend(super::q4_group_words(w.dtype()));
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

/// Checks that `t` is a vector of `len` elements, shaped `[len]` or `[1, len]`.
pub(crate) fn expect_vector(op: &'static str, what: &str, t: &Tensor, len: usize) -> Result<()> {
    match *t.shape() {
        [l] | [1, l] if l == len => Ok(()),
        _ => Err(Error::shape(op, format!("{what} shape"), format!("[{len}] or [1, {len}]"), t.shape())),
    }
}

fn check_config(gpu: &Gpu, op: &'static str, workgroup_size: u32, rows: u32, max_rows: u32) -> Result<()> {
    let max_threads = gpu.info().max_invocations_per_workgroup;
    if !workgroup_size.is_power_of_two() || workgroup_size > max_threads {
        return Err(Error::shape(op, "workgroup_size (a power of two)", format!("<= {max_threads}"), workgroup_size));
    }
    if !(1..=max_rows).contains(&rows) {
        return Err(Error::shape(op, "rows_per_workgroup", format!("1 ..= {max_rows}"), rows));
    }
    let shared = 4 * workgroup_size as u64 * rows as u64;
    let limit = gpu.info().max_workgroup_storage_bytes as u64;
    if shared > limit {
        let what = format!("{op}: workgroup memory for {workgroup_size} threads x {rows} rows");
        return Err(Error::TooLarge { what, bytes: shared, limit });
    }
    Ok(())
}
