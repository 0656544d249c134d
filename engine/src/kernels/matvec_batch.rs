//! Matrix product for a few rows of x, read like a matvec: `y[b, n] = sum_k x[b, k] * W[n, k]`
//! (shaders/matvec_batch.wgsl). This is the linear layer of a batched decode step (one new token
//! for each of 2..64 sequences): a tiled matmul makes too few output tiles there to fill a large
//! GPU, while this kernel spreads the rows of W over the workgroups as the single-row matvec does
//! and reads each weight word once for every `batch` rows of x.
//!
//! [`crate::kernels::matmul::matmul`] takes this kernel by itself for float and packed (Q8, Q4,
//! Q4G128) weights and `m <= SMALL_M`; [`matvec_batch_accumulate`] is the residual-add form
//! (`y += ...`). Packed weights take shaders/matvec_batch_quant.wgsl, which dequantizes each
//! 4-byte quant word once for all the rows of x it serves.
//! A weight larger than one storage binding is bound in row chunks, one dispatch each.

use super::{dims2, dispatch, expect_dtype, expect_shape, shader, Bind, Op, Shader};
use crate::error::{Error, Result};
use crate::{DType, Gpu, Tensor};

const SHADER: Shader = shader!("matvec_batch");
const QUANT: Shader = shader!("matvec_batch_quant");

/// The shader's accumulator array: `rows_per_workgroup * batch` may not exceed it.
pub const MAX_ACC: u32 = 16;
/// The shader's array of unpacked weight words.
pub const MAX_ROWS: u32 = 8;

/// Rows of x up to which `matmul` prefers this kernel for float weights.
pub const SMALL_M: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Rows of W in this dispatch (one row chunk).
    pub rows: u32,
    /// Elements per row of W and of x.
    pub k: u32,
    /// Words per row of W: 16-byte words, `k / 8` (F16) or `k / 4` (F32); 4-byte quant words,
    /// `k / 4` (Q8) or `k / 8` (Q4, Q4G128).
    pub row_words: u32,
    /// Column of y of this dispatch's first row of W.
    pub row_offset: u32,
    /// Rows of x and y.
    pub m: u32,
    /// Elements per row of y (all of W's rows).
    pub y_stride: u32,
    pub _pad: [u32; 2],
}
const _: () = assert!(std::mem::size_of::<Params>() == 32);

/// Pipeline-time shape (WGSL `override`s): threads per workgroup, rows of W and rows of x each
/// workgroup owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatvecBatchConfig {
    /// Threads per workgroup; a power of two.
    pub workgroup_size: u32,
    /// Consecutive rows of W per workgroup.
    pub rows_per_workgroup: u32,
    /// Rows of x per workgroup (the grid's third dimension covers the rest).
    pub batch: u32,
}

impl MatvecBatchConfig {
    /// 128 threads x 2 rows x 8 rows of x on a GPU (one weight read serving 8 sequences; the
    /// fastest of `engine_bench --batch-sweep` on the H200 at every shape for M >= 2, e.g.
    /// 4096 x 4096 at M = 8 in 35 us against 46 us at 256 x 2 x 8); 32 threads x 4 rows x 4 on a
    /// CPU adapter, where a workgroup runs as a loop on one core. Never more rows of x than
    /// there are.
    pub fn for_gpu(gpu: &Gpu, m: usize) -> MatvecBatchConfig {
        let (workgroup_size, rows_per_workgroup, batch) =
            if gpu.info().device_type == "Cpu" { (32, 4, 4) } else { (128, 2, 8) };
        MatvecBatchConfig { workgroup_size, rows_per_workgroup, batch: batch.min(m.max(1) as u32) }
    }
}

/// Whether [`matvec_batch`] takes these operands: a float weight whose rows are whole 16-byte
/// words or a Q8 / Q4 / Q4G128 one, x of at most [`SMALL_M`] rows, 16-byte aligned bindings.
pub fn fits(gpu: &Gpu, x: &Tensor, w: &Tensor) -> bool {
    let (Some(&m), Some(&k)) = (x.shape().first(), w.shape().last()) else { return false };
    let Some(per_word) = elements_per_word(w.dtype()) else { return false };
    let aligned = |t: &Tensor| t.offset().is_multiple_of(16);
    (1..=SMALL_M).contains(&m)
        && x.shape().len() == 2
        && k > 0
        && k.is_multiple_of(per_word)
        && aligned(x)
        && (w.dtype().is_packed() || w.row_chunks(gpu).is_ok_and(|chunks| chunks.iter().all(|(_, c)| aligned(c))))
}

/// Elements per word the kernel reads: a 16-byte word of F16 (8) or F32 (4), a 4-byte quant
/// word of Q8 (4) or Q4 / Q4G128 (8); `None` for what it does not take.
fn elements_per_word(dtype: DType) -> Option<usize> {
    match dtype {
        DType::F16 | DType::Q4 | DType::Q4G128 => Some(8),
        DType::F32 | DType::Q8 => Some(4),
        _ => None,
    }
}

/// `y[b, n] = sum_k x[b, k] * w[n, k]`. `x`: `[M, K]` F32; `w`: `[N, K]` F32 or F16 with
/// `K % 8 == 0` (F16) or `K % 4 == 0` (F32), or Q8, Q4, Q4G128; `y`: `[M, N]` F32, a buffer
/// distinct from `x` and `w`.
pub fn matvec_batch(gpu: &Gpu, x: &Tensor, w: &Tensor, y: &Tensor) -> Result<Op> {
    let config = MatvecBatchConfig::for_gpu(gpu, x.shape().first().copied().unwrap_or(1));
    matvec_batch_with(gpu, x, w, y, config, false)
}

/// `y[b, n] += sum_k x[b, k] * w[n, k]`: [`matvec_batch`] adding into `y` (a residual connection).
pub fn matvec_batch_accumulate(gpu: &Gpu, x: &Tensor, w: &Tensor, y: &Tensor) -> Result<Op> {
    let config = MatvecBatchConfig::for_gpu(gpu, x.shape().first().copied().unwrap_or(1));
    matvec_batch_with(gpu, x, w, y, config, true)
}

/// [`matvec_batch`] (or its accumulating form) with an explicit shape, for tuning and tests.
pub fn matvec_batch_with(
    gpu: &Gpu,
    x: &Tensor,
    w: &Tensor,
    y: &Tensor,
    config: MatvecBatchConfig,
    accumulate: bool,
) -> Result<Op> {
    const OP: &str = "matvec_batch";
    expect_dtype(OP, "x", x, &[DType::F32])?;
    expect_dtype(OP, "w", w, &[DType::F32, DType::F16, DType::Q8, DType::Q4, DType::Q4G128])?;
    expect_dtype(OP, "y", y, &[DType::F32])?;
    let (m, k) = dims2(OP, "x", x)?;
    let (n, wk) = dims2(OP, "w", w)?;
    if wk != k {
        return Err(Error::shape(OP, "w columns (= x columns)", k, wk));
    }
    expect_shape(OP, "y", y, &[m, n])?;
    if y.same_buffer(x) || y.same_buffer(w) {
        return Err(Error::shape(OP, "y buffer (must not alias x or w)", "a distinct buffer", "shared"));
    }
    let per_word = elements_per_word(w.dtype()).unwrap_or(4);
    if !k.is_multiple_of(per_word) {
        return Err(Error::shape(OP, "k (rows of whole 16-byte words)", format!("a multiple of {per_word}"), k));
    }
    if !x.offset().is_multiple_of(16) {
        return Err(Error::shape(OP, "x offset (16-byte aligned)", 0, x.offset() % 16));
    }
    let MatvecBatchConfig { workgroup_size, rows_per_workgroup, batch } = config;
    let max_threads = gpu.info().max_invocations_per_workgroup;
    if !workgroup_size.is_power_of_two() || workgroup_size > max_threads {
        return Err(Error::shape(OP, "workgroup_size (a power of two)", format!("<= {max_threads}"), workgroup_size));
    }
    if !(1..=MAX_ROWS).contains(&rows_per_workgroup) || batch == 0 || rows_per_workgroup * batch > MAX_ACC {
        let expected = format!("rows 1..={MAX_ROWS}, batch >= 1, rows x batch <= {MAX_ACC}");
        return Err(Error::shape(OP, "rows_per_workgroup x batch", expected, format!("{rows_per_workgroup} x {batch}")));
    }
    let shared = 4 * (workgroup_size * rows_per_workgroup * batch) as u64;
    let limit = gpu.info().max_workgroup_storage_bytes as u64;
    if shared > limit {
        let what = format!("{OP}: workgroup memory for {workgroup_size} threads x {rows_per_workgroup} x {batch}");
        return Err(Error::TooLarge { what, bytes: shared, limit });
    }
    if m == 0 || n == 0 {
        return Ok(Op::empty());
    }
    let packed = w.dtype().is_packed();
    let mut constants = vec![
        ("WORKGROUP_SIZE", workgroup_size as f64),
        ("ROWS", rows_per_workgroup as f64),
        ("BATCH", batch as f64),
        ("ACCUMULATE", accumulate as u8 as f64),
    ];
    if packed {
        constants.push(("Q4", (w.dtype() != DType::Q8) as u8 as f64));
        constants.push(("GROUP", w.dtype().group().unwrap_or(32) as f64));
    } else {
        constants.push(("W_F16", (w.dtype() == DType::F16) as u8 as f64));
    }
    let batches = (m as u32).div_ceil(batch);
    let mut dispatches = Vec::new();
    for (first_row, chunk) in w.row_chunks(gpu)? {
        if !packed && !chunk.offset().is_multiple_of(16) {
            return Err(Error::shape(OP, "w chunk offset (16-byte aligned)", 0, chunk.offset() % 16));
        }
        let rows = chunk.shape()[0];
        let params = Params {
            rows: rows as u32,
            k: k as u32,
            row_words: (k / per_word) as u32,
            row_offset: first_row as u32,
            m: m as u32,
            y_stride: n as u32,
            _pad: [0; 2],
        };
        let uniform = gpu.uniform(OP, &params);
        let groups = (rows as u32).div_ceil(rows_per_workgroup);
        let grid = [groups, 1, batches];
        let d = if packed {
            let binds = [Bind::Quants(&chunk), Bind::Scales(&chunk), Bind::Tensor(x), Bind::Tensor(y), Bind::Uniform(&uniform)];
            dispatch(gpu, OP, &QUANT, &constants, &binds, grid)?
        } else {
            let binds = [Bind::Tensor(&chunk), Bind::Tensor(x), Bind::Tensor(y), Bind::Uniform(&uniform)];
            dispatch(gpu, OP, &SHADER, &constants, &binds, grid)?
        };
        dispatches.push(d);
    }
    Ok(Op { dispatches })
}
