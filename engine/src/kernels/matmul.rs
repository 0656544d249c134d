//! Matrix product for prefill: `y[m, n] = sum_k x[m, k] * W[n, k]` (shaders/matmul.wgsl).
//!
//! Tiled through workgroup memory: each workgroup computes a 64 x 64 tile of y, each thread a
//! 4 x 4 block of it. A weight larger than one storage binding is bound in row chunks, one
//! dispatch each; every dispatch writes its columns of `y` at `row_offset`.
//!
//! Packed weights (Q8, Q4, Q4G128) take `matmul_q8` / `matmul_q4`: the same tiling, with the
//! W tile dequantized a quant word at a time while it is staged. 2:4 sparse weights (S24F16,
//! S24Q4) take `matmul_s24`: the W tile unpacked a group of four at a time.

use super::{dims2, dispatch, expect_dtype, shader, Bind, Op, Shader};
use crate::error::{Error, Result};
use crate::{DType, Gpu, Tensor};

const SHADER: Shader = shader!("matmul");
const Q8: Shader = shader!("matmul_q8");
const Q4: Shader = shader!("matmul_q4");
const S24: Shader = shader!("matmul_s24");

/// Threads per workgroup along m and n (WGSL overrides `THREADS_M`, `THREADS_N`), the tile
/// depth along k (`TILE_K`), and the outputs per thread along each axis (fixed in the shader).
const THREADS_M: u32 = 16;
const THREADS_N: u32 = 16;
const TILE_K: u32 = 16;
const PER_THREAD: u32 = 4;

/// Threads per workgroup along m and n; each thread owns 4 x 4 outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulConfig {
    pub threads_m: u32,
    pub threads_n: u32,
}

impl Default for MatmulConfig {
    fn default() -> Self {
        MatmulConfig { threads_m: THREADS_M, threads_n: THREADS_N }
    }
}

impl MatmulConfig {
    /// The default, except 8 x 8 for f32/f16 weights on a CPU adapter (lavapipe runs a
    /// workgroup as a loop; SmolLM2's 32-token prefill took 3.6 s there against 6.5 s at 16 x 16,
    /// BENCHMARKS.md). Packed weights keep the default.
    pub fn for_weight(gpu: &Gpu, w: &Tensor) -> MatmulConfig {
        if gpu.info().device_type == "Cpu" && !w.dtype().is_packed() {
            MatmulConfig { threads_m: 8, threads_n: 8 }
        } else {
            MatmulConfig::default()
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Rows of x and y.
    pub m: u32,
    /// Rows of W in this dispatch (one row chunk).
    pub n: u32,
    /// The reduced dimension.
    pub k: u32,
    /// Elements per row of y (all of W's rows).
    pub y_stride: u32,
    /// Column of y of this dispatch's first row of W.
    pub row_offset: u32,
    pub _pad: [u32; 3],
}
const _: () = assert!(std::mem::size_of::<Params>() == 32);

/// `y[m, n] = sum_k x[m, k] * w[n, k]`. `x`: `[M, K]` F32; `w`: `[N, K]` F32, F16, Q8, Q4,
/// Q4G128, S24F16 or S24Q4; `y`: `[M, N]` F32, a buffer distinct from `x` and `w`. Any sizes,
/// `M == 1` included (packed weights have `K` a multiple of their group).
pub fn matmul(gpu: &Gpu, x: &Tensor, w: &Tensor, y: &Tensor) -> Result<Op> {
    matmul_with(gpu, x, w, y, MatmulConfig::for_weight(gpu, w))
}

/// [`matmul`] with an explicit workgroup shape (for tuning and tests).
pub fn matmul_with(gpu: &Gpu, x: &Tensor, w: &Tensor, y: &Tensor, config: MatmulConfig) -> Result<Op> {
    const OP: &str = "matmul";
    if !(1..=32).contains(&config.threads_m) || !(1..=32).contains(&config.threads_n) {
        return Err(Error::shape(OP, "threads per workgroup (1..=32 each way)", "1..=32", config));
    }
    expect_dtype(OP, "x", x, &[DType::F32])?;
    let weights = [DType::F32, DType::F16, DType::Q8, DType::Q4, DType::Q4G128, DType::S24F16, DType::S24Q4];
    expect_dtype(OP, "w", w, &weights)?;
    expect_dtype(OP, "y", y, &[DType::F32])?;
    let (m, k) = dims2(OP, "x", x)?;
    let (n, wk) = dims2(OP, "w", w)?;
    if wk != k {
        return Err(Error::shape(OP, "w columns (= x columns)", k, wk));
    }
    super::expect_shape(OP, "y", y, &[m, n])?;
    if y.same_buffer(x) || y.same_buffer(w) {
        return Err(Error::shape(OP, "y buffer (must not alias x or w)", "a distinct buffer", "shared"));
    }

    let (threads_m, threads_n) = (config.threads_m, config.threads_n);
    let mut constants = vec![("THREADS_M", threads_m as f64), ("THREADS_N", threads_n as f64), ("TILE_K", TILE_K as f64)];
    let shader = match w.dtype() {
        DType::Q8 => &Q8,
        DType::S24F16 | DType::S24Q4 => {
            constants.push(("S24Q4", (w.dtype() == DType::S24Q4) as u8 as f64));
            &S24
        }
        DType::Q4 | DType::Q4G128 => {
            constants.push(("GROUP", w.dtype().group().unwrap_or(32) as f64));
            &Q4
        }
        _ => {
            constants.push(("W_F16", if w.dtype() == DType::F16 { 1.0 } else { 0.0 }));
            &SHADER
        }
    };
    let max_groups = gpu.info().max_workgroups_per_dimension;
    let groups_m = (m as u32).div_ceil(PER_THREAD * threads_m);
    let mut dispatches = Vec::new();
    for (first_row, chunk) in w.row_chunks(gpu)? {
        let rows = chunk.shape()[0];
        let groups_n = (rows as u32).div_ceil(PER_THREAD * threads_n);
        // The shader reads its tile from workgroup_id.x/.y directly: the grid must not be folded.
        if groups_n > max_groups || groups_m > max_groups {
            let what = format!("{OP}: workgroup grid [{groups_n}, {groups_m}]");
            return Err(Error::TooLarge { what, bytes: groups_n.max(groups_m) as u64, limit: max_groups as u64 });
        }
        let params = Params {
            m: m as u32,
            n: rows as u32,
            k: k as u32,
            y_stride: n as u32,
            row_offset: first_row as u32,
            _pad: [0; 3],
        };
        let uniform = gpu.uniform(OP, &params);
        let grid = [groups_n.max(1), groups_m.max(1), 1];
        let op = if w.dtype().is_packed() {
            let binds = [
                Bind::Tensor(x),
                Bind::Quants(&chunk),
                Bind::Scales(&chunk),
                Bind::Tensor(y),
                Bind::Uniform(&uniform),
            ];
            dispatch(gpu, OP, shader, &constants, &binds, grid)?
        } else {
            let binds = [Bind::Tensor(x), Bind::Tensor(&chunk), Bind::Tensor(y), Bind::Uniform(&uniform)];
            dispatch(gpu, OP, shader, &constants, &binds, grid)?
        };
        dispatches.push(op);
    }
    Ok(Op { dispatches })
}
