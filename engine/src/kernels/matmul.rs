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
//! if its pipeline cannot be built there, `matmul` falls back to the tiled kernel. Two
//! tensor-core kernels, picked by [`CoopConfig::kernel`]: `matmul_coop` stages f16 tiles in
//! workgroup memory; `matmul_coop_direct` (after `matmul_coop_x16` has written x as f16 once)
//! loads every fragment straight from memory.

use super::{dims2, dispatch, expect_dtype, shader, Bind, Op, Shader};
use crate::error::{Error, Result};
use crate::{DType, Gpu, Tensor};

const SHADER: Shader = shader!("matmul");
const Q8: Shader = shader!("matmul_q8");
const Q4: Shader = shader!("matmul_q4");
const COOP: Shader = shader!("matmul_coop");
const COOP_DIRECT: Shader = shader!("matmul_coop_direct");
const COOP_X16: Shader = shader!("matmul_coop_x16");
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

/// Which tensor-core kernel a [`CoopConfig`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoopKernel {
    /// matmul_coop.wgsl: each step, every thread converts its share of the x tile to f16 and
    /// stages it and the W tile in workgroup memory (two barriers), then subgroups coopLoad
    /// their fragments from there.
    Staged,
    /// matmul_coop_x16.wgsl converts x to f16 once (into a scratch tensor the op owns), then
    /// matmul_coop_direct.wgsl coopLoads every fragment straight from memory, no workgroup
    /// memory or barriers in its main loop. Needs `k % 16 == 0` and at least 16 rows of W per
    /// row chunk; [`matmul_coop_with`] runs [`CoopConfig::STAGED`] for other shapes.
    Direct,
}

/// The tensor-core kernel and its tile shape (WGSL overrides, named alike): a workgroup of
/// `subgroups_m x subgroups_n` subgroups owns a `tile_m x tile_n` block of y; each subgroup owns
/// `tile_m / (16 subgroups_m) x tile_n / (16 subgroups_n)` 16x16 accumulators (see
/// [`CoopConfig::frags`]). `tile_k` is the depth of k per step of the main loop: the staged
/// kernel stages that much of x and W per barrier pair; the direct one loads `tile_k / 16`
/// fragments deep before it multiplies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoopConfig {
    pub kernel: CoopKernel,
    pub tile_m: u32,
    pub tile_n: u32,
    pub tile_k: u32,
    pub subgroups_m: u32,
    pub subgroups_n: u32,
}

impl Default for CoopConfig {
    /// [`CoopConfig::STAGED`] until the direct kernel is measured on the GPU (then flip this
    /// line to [`CoopConfig::DIRECT`] or the sweep's best).
    fn default() -> Self {
        CoopConfig::STAGED
    }
}

/// The shader's function-scope array sizes (`MAX_FRAGS`, `MAX_LOADS` in matmul_coop.wgsl;
/// `MAX_ACC`, `MAX_A`, `MAX_B` in matmul_coop_direct.wgsl).
const COOP_MAX_FRAGS: u32 = 16;
const COOP_MAX_LOADS: u32 = 16;
const DIRECT_MAX_ACC: u32 = 16;
const DIRECT_MAX_A: u32 = 8;
const DIRECT_MAX_B: u32 = 8;
const FRAG: u32 = 16;

/// Tile shapes `engine_bench --coop --sweep` times (and the naga test compiles): the staged
/// kernel's measured best, then direct ones over accumulators per subgroup (FRAGS_M x
/// FRAGS_N), subgroups per workgroup and load depth.
pub const COOP_SWEEP: [CoopConfig; 14] = [
    CoopConfig::STAGED,
    CoopConfig::direct((2, 2), (1, 1), 1),
    CoopConfig::direct((2, 2), (2, 2), 1),
    CoopConfig::direct((2, 2), (2, 2), 2),
    CoopConfig::direct((2, 4), (2, 2), 1),
    CoopConfig::direct((2, 4), (2, 2), 2),
    CoopConfig::direct((4, 2), (2, 2), 1),
    CoopConfig::direct((4, 2), (2, 2), 2),
    CoopConfig::direct((4, 4), (2, 2), 1),
    CoopConfig::direct((4, 4), (1, 1), 1),
    CoopConfig::direct((4, 4), (2, 1), 1),
    CoopConfig::direct((2, 4), (4, 2), 1),
    CoopConfig::direct((2, 4), (2, 4), 1),
    CoopConfig::direct((2, 2), (4, 4), 1),
];

impl CoopConfig {
    /// 128 x 128 blocks, 8 subgroups of 4 x 2 accumulators: the staged kernel's fastest in
    /// `engine_bench --coop --sweep` on the H200 at every shape measured (23.2-25.3 TFLOP/s;
    /// BENCHMARKS.md).
    pub const STAGED: CoopConfig =
        CoopConfig { kernel: CoopKernel::Staged, tile_m: 128, tile_n: 128, tile_k: 32, subgroups_m: 2, subgroups_n: 4 };

    /// The direct kernel's guess before measuring: 64 x 128 blocks, 2 x 2 subgroups of 2 x 4
    /// accumulators, fragments loaded two steps (32 of k) deep.
    pub const DIRECT: CoopConfig = CoopConfig::direct((2, 4), (2, 2), 2);

    /// The direct kernel with `frags` = (FRAGS_M, FRAGS_N) accumulators per subgroup,
    /// `subgroups` = (SUBGROUPS_M, SUBGROUPS_N) per workgroup, and `steps` fragments of 16 along
    /// k loaded before multiplying (STEPS).
    pub const fn direct(frags: (u32, u32), subgroups: (u32, u32), steps: u32) -> CoopConfig {
        CoopConfig {
            kernel: CoopKernel::Direct,
            tile_m: FRAG * frags.0 * subgroups.0,
            tile_n: FRAG * frags.1 * subgroups.1,
            tile_k: FRAG * steps,
            subgroups_m: subgroups.0,
            subgroups_n: subgroups.1,
        }
    }

    /// 16x16 accumulators per subgroup along m and n (0 where the tile does not divide).
    pub fn frags(&self) -> (u32, u32) {
        let per = |tile: u32, subgroups: u32| if subgroups == 0 { 0 } else { tile / (FRAG * subgroups) };
        (per(self.tile_m, self.subgroups_m), per(self.tile_n, self.subgroups_n))
    }

    /// A short name for tables: kernel, block, accumulators and subgroups, k depth.
    pub fn name(&self) -> String {
        let (fm, fn_) = self.frags();
        let kernel = match self.kernel {
            CoopKernel::Staged => "staged",
            CoopKernel::Direct => "direct",
        };
        format!(
            "{kernel} {}x{} frags {fm}x{fn_} sg {}x{} k{}",
            self.tile_m, self.tile_n, self.subgroups_m, self.subgroups_n, self.tile_k
        )
    }

    /// The `override` constants for a subgroup size of `subgroup_size`, after checking that the
    /// shape divides as the shader needs.
    pub fn constants(&self, subgroup_size: u32, max_invocations: u32) -> Result<Vec<(&'static str, f64)>> {
        let c = *self;
        let (frags_m, frags_n) = self.frags();
        let threads = c.subgroups_m * c.subgroups_n * subgroup_size;
        let common = c.subgroups_m > 0
            && c.subgroups_n > 0
            && subgroup_size > 0
            && c.tile_k > 0
            && c.tile_k.is_multiple_of(FRAG)
            && c.tile_m.is_multiple_of(FRAG * c.subgroups_m)
            && c.tile_n.is_multiple_of(FRAG * c.subgroups_n)
            && frags_m > 0
            && frags_n > 0
            && threads <= max_invocations;
        let steps = c.tile_k / FRAG;
        let fits = match c.kernel {
            CoopKernel::Staged => {
                common
                    && frags_m * frags_n <= COOP_MAX_FRAGS
                    && (c.tile_m * c.tile_k / 4).is_multiple_of(threads)
                    && (c.tile_n * c.tile_k / 4).is_multiple_of(threads)
                    && c.tile_m * c.tile_k / 4 / threads <= COOP_MAX_LOADS
                    && c.tile_n * c.tile_k / 4 / threads <= COOP_MAX_LOADS
            }
            CoopKernel::Direct => {
                common
                    && frags_m * frags_n <= DIRECT_MAX_ACC
                    && steps * frags_m <= DIRECT_MAX_A
                    && steps * frags_n <= DIRECT_MAX_B
            }
        };
        if !fits {
            let expected = match c.kernel {
                CoopKernel::Staged => {
                    "tile_k % 16 == 0, tiles whole 16x16 fragments per subgroup (at most 16), \
                     and x (tile_m*tile_k/4) and W (tile_n*tile_k/4) vec4 loads a whole number \
                     (at most 16) per thread"
                }
                CoopKernel::Direct => {
                    "tile_k % 16 == 0, tiles whole 16x16 fragments per subgroup (at most 16), \
                     (tile_k/16) x fragments along m and along n at most 8 each"
                }
            };
            return Err(Error::shape("matmul_coop", format!("tile shape (subgroup size {subgroup_size})"), expected, c));
        }
        Ok(match c.kernel {
            CoopKernel::Staged => vec![
                ("TILE_M", c.tile_m as f64),
                ("TILE_N", c.tile_n as f64),
                ("TILE_K", c.tile_k as f64),
                ("SUBGROUPS_M", c.subgroups_m as f64),
                ("SUBGROUPS_N", c.subgroups_n as f64),
                ("SUBGROUP_SIZE", subgroup_size as f64),
            ],
            CoopKernel::Direct => vec![
                ("FRAGS_M", frags_m as f64),
                ("FRAGS_N", frags_n as f64),
                ("STEPS", steps as f64),
                ("SUBGROUPS_M", c.subgroups_m as f64),
                ("SUBGROUPS_N", c.subgroups_n as f64),
                ("SUBGROUP_SIZE", subgroup_size as f64),
            ],
        })
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

/// The composed WGSL of a tensor-core kernel (common.wgsl prepended, as the engine compiles
/// it), for checking it offline (the tests run it through naga on adapters without tensor cores).
pub fn coop_shader_source(kernel: CoopKernel) -> String {
    match kernel {
        CoopKernel::Staged => COOP.compose(),
        CoopKernel::Direct => COOP_DIRECT.compose(),
    }
}

/// [`matmul`] on the tensor cores with the default tile shape; fails where [`coop_available`]
/// is false.
pub fn matmul_coop(gpu: &Gpu, x: &Tensor, w: &Tensor, y: &Tensor) -> Result<Op> {
    matmul_coop_with(gpu, x, w, y, CoopConfig::default())
}

/// [`matmul_coop`] with an explicit kernel and tile shape (for tuning and tests). `x`: `[M, K]`
/// F32, `w`: `[N, K]` F16, `y`: `[M, N]` F32, `K % 4 == 0`. A [`CoopKernel::Direct`] config on a
/// shape it does not take (`K % 16 != 0`, or a row chunk of W under 16 rows) runs
/// [`CoopConfig::STAGED`] instead; its op is then labelled `matmul_coop`, not
/// `matmul_coop_x16` + `matmul_coop_direct`.
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
    let chunks = w.row_chunks(gpu)?;
    let groups_m = (m as u32).div_ceil(config.tile_m);
    let mut grids = Vec::with_capacity(chunks.len());
    for (_, chunk) in &chunks {
        let groups_n = (chunk.shape()[0] as u32).div_ceil(config.tile_n);
        // The shaders read their block from workgroup_id.x/.y directly: the grid must not be folded.
        let max_groups = info.max_workgroups_per_dimension;
        if groups_n > max_groups || groups_m > max_groups {
            let what = format!("{OP}: workgroup grid [{groups_n}, {groups_m}]");
            return Err(Error::TooLarge { what, bytes: groups_n.max(groups_m) as u64, limit: max_groups as u64 });
        }
        grids.push(groups_n.max(1));
    }
    let params = |first_row: usize, chunk: &Tensor| Params {
        m: m as u32,
        n: chunk.shape()[0] as u32,
        k: k as u32,
        y_stride: n as u32,
        row_offset: first_row as u32,
        _pad: [0; 3],
    };

    let direct_fits = k.is_multiple_of(FRAG as usize) && chunks.iter().all(|(_, c)| c.shape()[0] >= FRAG as usize);
    match config.kernel {
        CoopKernel::Direct if direct_fits => {
            // x as f16, its rows padded with zeros to whole blocks of y (this op's own scratch).
            let rows = groups_m.max(1) as usize * config.tile_m as usize;
            let xh = Tensor::empty(gpu, &[rows, k], DType::F16)?;
            let mut op = matmul_coop_x16(gpu, x, &xh)?;
            for ((first_row, chunk), groups_n) in chunks.iter().zip(grids) {
                let uniform = gpu.uniform(OP, &params(*first_row, chunk));
                let binds = [Bind::Tensor(&xh), Bind::Tensor(chunk), Bind::Tensor(y), Bind::Uniform(&uniform)];
                op.dispatches.push(dispatch(gpu, OP, &COOP_DIRECT, &constants, &binds, [groups_m.max(1), groups_n, 1])?);
            }
            Ok(op)
        }
        CoopKernel::Direct => matmul_coop_with(gpu, x, w, y, CoopConfig::STAGED),
        CoopKernel::Staged => {
            let mut dispatches = Vec::new();
            for ((first_row, chunk), groups_n) in chunks.iter().zip(grids) {
                let uniform = gpu.uniform(OP, &params(*first_row, chunk));
                let binds = [Bind::Tensor(x), Bind::Tensor(chunk), Bind::Tensor(y), Bind::Uniform(&uniform)];
                dispatches.push(dispatch(gpu, OP, &COOP, &constants, &binds, [groups_n, groups_m.max(1), 1])?);
            }
            Ok(Op { dispatches })
        }
    }
}

/// `Params` of matmul_coop_x16.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct X16Params {
    /// Rows of x.
    pub m: u32,
    /// Rows of xh: `m` and the zero padding after it.
    pub rows: u32,
    /// vec4s per row (k / 4).
    pub k4: u32,
    pub _pad: u32,
}
const _: () = assert!(std::mem::size_of::<X16Params>() == 16);

/// `xh = x` rounded to f16, rows `m..` of `xh` zero: the direct kernel's A operand, written once
/// per matmul. `x`: `[M, K]` F32, `K % 4 == 0`; `xh`: `[R, K]` F16 with `R >= M`. Runs on any
/// adapter (no shader-f16 needed).
pub fn matmul_coop_x16(gpu: &Gpu, x: &Tensor, xh: &Tensor) -> Result<Op> {
    const OP: &str = "matmul_coop_x16";
    expect_dtype(OP, "x", x, &[DType::F32])?;
    expect_dtype(OP, "xh", xh, &[DType::F16])?;
    let (m, k) = dims2(OP, "x", x)?;
    let (rows, xk) = dims2(OP, "xh", xh)?;
    if xk != k || rows < m {
        return Err(Error::shape(OP, "xh ([at least x rows, x columns])", format!("[>= {m}, {k}]"), xh.shape()));
    }
    if !k.is_multiple_of(4) {
        return Err(Error::shape(OP, "k (a multiple of 4: rows of whole vec4s)", "k % 4 == 0", k));
    }
    if xh.same_buffer(x) {
        return Err(Error::shape(OP, "xh buffer (must not alias x)", "a distinct buffer", "shared"));
    }
    let params = X16Params { m: m as u32, rows: rows as u32, k4: (k / 4) as u32, _pad: 0 };
    let uniform = gpu.uniform(OP, &params);
    let groups = (rows * k / 4).div_ceil(256) as u32;
    let binds = [Bind::Tensor(x), Bind::Tensor(xh), Bind::Uniform(&uniform)];
    Ok(Op { dispatches: vec![dispatch(gpu, OP, &COOP_X16, &[], &binds, [groups.max(1), 1, 1])?] })
}
