//! Matrix product for prefill: `y[m, n] = sum_k x[m, k] * W[n, k]` (shaders/matmul.wgsl).
//!
//! Tiled through workgroup memory: each workgroup computes a 64 x 64 tile of y, each thread a
//! 4 x 4 block of it. A weight larger than one storage binding is bound in row chunks, one
//! dispatch each; every dispatch writes its columns of `y` at `row_offset`.
//!
//! Packed weights (Q8, Q4, Q4G128) take `matmul_q8` / `matmul_q4`: the same tiling, with the
//! W tile dequantized a quant word at a time while it is staged. 2:4 sparse weights (S24F16,
//! S24Q4) take `matmul_s24`: the W tile unpacked a group of four at a time.
//!
//! A few rows of x (up to `matvec_batch::SMALL_M`) with a float weight take `matvec_batch`,
//! which spreads the weight's rows over the GPU as a matvec does (the tiles here would be too few).
//!
//! F16 weights take `matmul_coop` (tensor cores) where the adapter has cooperative matrices
//! with a 16x16x16 f16 x f16 -> f32 configuration and one subgroup size, and `k % 4 == 0`;
//! if its pipeline cannot be built there, `matmul` falls back to the tiled kernel.

use super::{dims2, dispatch, expect_dtype, shader, Bind, Op, Shader};
use crate::error::{Error, Result};
use crate::{DType, Gpu, Tensor};

const SHADER: Shader = shader!("matmul");
const Q8: Shader = shader!("matmul_q8");
const Q4: Shader = shader!("matmul_q4");
const COOP: Shader = shader!("matmul_coop");
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
/// `M == 1` included (packed weights have `K` a multiple of their group). Float weights with at
/// most `matvec_batch::SMALL_M` rows of x take `matvec_batch` (a batched decode step); other F16
/// weights run on the tensor cores where [`coop_available`] says so (x is then rounded to f16).
pub fn matmul(gpu: &Gpu, x: &Tensor, w: &Tensor, y: &Tensor) -> Result<Op> {
    if super::matvec_batch::fits(gpu, x, w) {
        return super::matvec_batch::matvec_batch(gpu, x, w, y);
    }
    let k = x.shape().last().copied().unwrap_or(0);
    if w.dtype() == DType::F16 && k.is_multiple_of(4) && coop_available(gpu) {
        // A pipeline the adapter cannot build (or a naga panic writing it) falls back to the
        // tiled kernel below; bad inputs get their error from there too.
        let coop = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| matmul_coop(gpu, x, w, y)));
        if let Ok(Ok(op)) = coop {
            return Ok(op);
        }
    }
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

/// The tensor-core kernel's tile shape (WGSL overrides of matmul_coop.wgsl, named alike): a
/// workgroup of `subgroups_m x subgroups_n` subgroups owns a `tile_m x tile_n` block of y and
/// steps `tile_k` along k; each subgroup owns `tile_m / (16 subgroups_m) x tile_n / (16
/// subgroups_n)` 16x16 accumulators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoopConfig {
    pub tile_m: u32,
    pub tile_n: u32,
    pub tile_k: u32,
    pub subgroups_m: u32,
    pub subgroups_n: u32,
}

impl Default for CoopConfig {
    /// 128 x 128 blocks, 8 subgroups of 4 x 2 accumulators: the fastest of `engine_bench --coop
    /// --sweep` on the H200 at every shape measured (23.2-25.3 TFLOP/s; BENCHMARKS.md).
    fn default() -> Self {
        CoopConfig { tile_m: 128, tile_n: 128, tile_k: 32, subgroups_m: 2, subgroups_n: 4 }
    }
}

/// The shader's function-scope array sizes (`MAX_FRAGS`, `MAX_LOADS` in matmul_coop.wgsl).
const COOP_MAX_FRAGS: u32 = 16;
const COOP_MAX_LOADS: u32 = 16;
const FRAG: u32 = 16;

impl CoopConfig {
    /// The `override` constants for a subgroup size of `subgroup_size`, after checking that the
    /// shape divides as the shader needs.
    pub fn constants(&self, subgroup_size: u32, max_invocations: u32) -> Result<Vec<(&'static str, f64)>> {
        let c = *self;
        let threads = c.subgroups_m * c.subgroups_n * subgroup_size;
        let fits = c.subgroups_m > 0
            && c.subgroups_n > 0
            && subgroup_size > 0
            && c.tile_k > 0
            && c.tile_k.is_multiple_of(FRAG)
            && c.tile_m.is_multiple_of(FRAG * c.subgroups_m)
            && c.tile_n.is_multiple_of(FRAG * c.subgroups_n)
            && (c.tile_m / (FRAG * c.subgroups_m)) * (c.tile_n / (FRAG * c.subgroups_n)) <= COOP_MAX_FRAGS
            && c.tile_n / (FRAG * c.subgroups_n) > 0
            && c.tile_m / (FRAG * c.subgroups_m) > 0
            && threads <= max_invocations
            && (c.tile_m * c.tile_k / 4).is_multiple_of(threads)
            && (c.tile_n * c.tile_k / 4).is_multiple_of(threads)
            && c.tile_m * c.tile_k / 4 / threads <= COOP_MAX_LOADS
            && c.tile_n * c.tile_k / 4 / threads <= COOP_MAX_LOADS;
        if !fits {
            let expected = "tile_k % 16 == 0, tiles whole 16x16 fragments per subgroup (at most 16), \
                            and x (tile_m*tile_k/4) and W (tile_n*tile_k/4) vec4 loads a whole number \
                            (at most 16) per thread";
            return Err(Error::shape("matmul_coop", format!("tile shape (subgroup size {subgroup_size})"), expected, c));
        }
        Ok(vec![
            ("TILE_M", c.tile_m as f64),
            ("TILE_N", c.tile_n as f64),
            ("TILE_K", c.tile_k as f64),
            ("SUBGROUPS_M", c.subgroups_m as f64),
            ("SUBGROUPS_N", c.subgroups_n as f64),
            ("SUBGROUP_SIZE", subgroup_size as f64),
        ])
    }
}

/// Whether `matmul` can take the tensor cores for F16 weights here: cooperative matrices with a
/// 16x16x16 f16 x f16 -> f32 configuration, shader-f16, and subgroups of one fixed size.
pub fn coop_available(gpu: &Gpu) -> bool {
    use wgpu::CooperativeScalarType::{F16, F32};
    let info = gpu.info();
    let (min, max) = info.subgroup_size;
    info.features.shader_f16
        && info.features.subgroups
        && min == max
        && min > 0
        && info.has_cooperative_matrix((16, 16, 16), F16, F32)
}

/// The composed WGSL of the tensor-core kernel (common.wgsl prepended, as the engine compiles
/// it), for checking it offline (the tests run it through naga on adapters without tensor cores).
pub fn coop_shader_source() -> String {
    COOP.compose()
}

/// [`matmul`] on the tensor cores with the default tile shape; fails where [`coop_available`]
/// is false.
pub fn matmul_coop(gpu: &Gpu, x: &Tensor, w: &Tensor, y: &Tensor) -> Result<Op> {
    matmul_coop_with(gpu, x, w, y, CoopConfig::default())
}

/// [`matmul_coop`] with an explicit tile shape (for tuning and tests). `x`: `[M, K]` F32, `w`:
/// `[N, K]` F16, `y`: `[M, N]` F32, `K % 4 == 0`.
pub fn matmul_coop_with(gpu: &Gpu, x: &Tensor, w: &Tensor, y: &Tensor, config: CoopConfig) -> Result<Op> {
    const OP: &str = "matmul_coop";
    if !coop_available(gpu) {
        let what = "adapter (cooperative matrices 16x16x16 f16 -> f32, shader-f16, one subgroup size)";
        return Err(Error::shape(OP, what, "supported", gpu.info().name.clone()));
    }
    expect_dtype(OP, "x", x, &[DType::F32])?;
    expect_dtype(OP, "w", w, &[DType::F16])?;
    expect_dtype(OP, "y", y, &[DType::F32])?;
    let (m, k) = dims2(OP, "x", x)?;
    let (n, wk) = dims2(OP, "w", w)?;
    if wk != k {
        return Err(Error::shape(OP, "w columns (= x columns)", k, wk));
    }
    if !k.is_multiple_of(4) {
        return Err(Error::shape(OP, "k (a multiple of 4: rows of whole vec4s)", "k % 4 == 0", k));
    }
    super::expect_shape(OP, "y", y, &[m, n])?;
    if y.same_buffer(x) || y.same_buffer(w) {
        return Err(Error::shape(OP, "y buffer (must not alias x or w)", "a distinct buffer", "shared"));
    }
    let info = gpu.info();
    let constants = config.constants(info.subgroup_size.0, info.max_invocations_per_workgroup)?;

    let max_groups = info.max_workgroups_per_dimension;
    let groups_m = (m as u32).div_ceil(config.tile_m);
    let mut dispatches = Vec::new();
    for (first_row, chunk) in w.row_chunks(gpu)? {
        let rows = chunk.shape()[0];
        let groups_n = (rows as u32).div_ceil(config.tile_n);
        // The shader reads its block from workgroup_id.x/.y directly: the grid must not be folded.
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
        let binds = [Bind::Tensor(x), Bind::Tensor(&chunk), Bind::Tensor(y), Bind::Uniform(&uniform)];
        let grid = [groups_n.max(1), groups_m.max(1), 1];
        dispatches.push(dispatch(gpu, OP, &COOP, &constants, &binds, grid)?);
    }
    Ok(Op { dispatches })
}
