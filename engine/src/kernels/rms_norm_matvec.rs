//! RMSNorm fused into the matvec that reads the normalised vector (shaders/rms_norm_matvec*.wgsl):
//! `y = W . rms_norm(x, g)`, for decode, where a block's norm feeds its first projection. The
//! workgroups read all of `x` anyway, so they sum its squares on the way and scale at the end:
//! the normalised vector and its dispatch go away. `rms_norm::rms_norm` followed by
//! `matvec::matvec` computes the same thing (the tests' oracle).
//!
//! It takes the weights `matvec`'s vectorized shaders take (F32 or F16, rows on 16-byte words,
//! within one storage binding) and an f32 norm weight; [`fits`] says whether a case qualifies,
//! and a model runs the unfused pair for one that does not. On subgroup adapters it also takes
//! packed weights (Q8, Q4, Q4G128 within one binding: [`fits_packed`]), through the `Dot4` path
//! of `matvec` (shaders/rms_norm_matvec_{q8,q4}_dot4.wgsl: x * g rounded to int8 per block).

use super::matvec::{expect_vector, MatvecConfig, QuantMatvecConfig, MAX_ROWS};
use super::{dims2, dispatch, expect_dtype, shader, Bind, Op, Shader};
use crate::error::{Error, Result};
use crate::{DType, Gpu, Tensor};

const PORTABLE: Shader = shader!("rms_norm_matvec");
const SUBGROUP: Shader = shader!("rms_norm_matvec_subgroup");
const Q8_DOT4: Shader = shader!("rms_norm_matvec_q8_dot4");
const Q4_DOT4: Shader = shader!("rms_norm_matvec_q4_dot4");

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Rows of `w`.
    pub rows: u32,
    /// Elements per row, the length of x.
    pub k: u32,
    /// 16-byte words per row (`k / 8` for F16, `k / 4` for F32).
    pub row_words: u32,
    pub eps: f32,
}
const _: () = assert!(std::mem::size_of::<Params>() == 16);

/// Whether the fused kernels (this one and `rms_norm_matvec_swiglu`) take weight `w`, input `x`
/// and norm weight `g`: F32 or F16 rows on 16-byte words, 16-byte aligned, within one binding.
pub fn fits(gpu: &Gpu, w: &Tensor, x: &Tensor, g: &Tensor) -> bool {
    let per_word = match w.dtype() {
        DType::F16 => 8,
        DType::F32 => 4,
        _ => return false,
    };
    let k = w.shape().get(1).copied().unwrap_or(0);
    k > 0
        && k % per_word == 0
        && g.dtype() == DType::F32
        && w.byte_size() <= gpu.info().max_binding_bytes
        && [w, x, g].iter().all(|t| t.offset() % 16 == 0)
}

/// Whether the fused kernels (this one and `rms_norm_matvec_swiglu`, not the RoPE one) take the
/// packed weight `w` (Q8, Q4, Q4G128): on an adapter with subgroups (the `Dot4` path), with the
/// whole weight within one binding, x and g 16-byte aligned and g F32.
pub fn fits_packed(gpu: &Gpu, w: &Tensor, x: &Tensor, g: &Tensor) -> bool {
    let limit = gpu.info().max_binding_bytes;
    w.dtype().is_packed()
        && !w.dtype().is_sparse() // the fused shaders know only the Q8 and Q4 layouts
        && gpu.info().features.subgroups
        && g.dtype() == DType::F32
        && w.dtype().quant_bytes(w.numel()) <= limit
        && w.dtype().scale_bytes(w.numel()) <= limit
        && [x, g].iter().all(|t| t.offset() % 16 == 0)
}

/// Checks the shared inputs of the fused norm-matvec kernels; returns `(rows of w, k)`.
pub(crate) fn check(op: &'static str, gpu: &Gpu, x: &Tensor, g: &Tensor, w: &Tensor, out: &Tensor) -> Result<(usize, usize)> {
    expect_dtype(op, "x", x, &[DType::F32])?;
    expect_dtype(op, "g", g, &[DType::F32])?;
    expect_dtype(op, "w", w, &[DType::F32, DType::F16, DType::Q8, DType::Q4, DType::Q4G128])?;
    expect_dtype(op, "out", out, &[DType::F32])?;
    let (rows, k) = dims2(op, "w", w)?;
    expect_vector(op, "x", x, k)?;
    expect_vector(op, "g", g, k)?;
    if [x, g, w].iter().any(|t| t.same_buffer(out)) {
        return Err(Error::shape(op, "out buffer (must not alias x, g or w)", "a distinct buffer", "shared"));
    }
    if w.dtype().is_packed() && !fits_packed(gpu, w, x, g) {
        let why = "a packed weight within one binding, aligned, on an adapter with subgroups";
        return Err(Error::shape(op, "w layout", why, format!("{w:?}")));
    }
    if !w.dtype().is_packed() && !fits(gpu, w, x, g) {
        let why = "rows on 16-byte words (k % 8 == 0 for F16, k % 4 for F32), aligned, within one binding";
        return Err(Error::shape(op, "w layout", why, format!("{w:?}")));
    }
    Ok((rows, k))
}

/// `y = w . rms_norm(x, g, eps)`: `y[r] = sum_k w[r, k] x[k] g[k] / sqrt(mean(x^2) + eps)`.
/// `x`, `g`: F32 `[K]` or `[1, K]`; `w`: `[N, K]` F32 or F16 that [`fits`], or packed that
/// [`fits_packed`]; `y`: F32 `[N]` or `[1, N]`, a buffer other than the inputs'.
pub fn rms_norm_matvec(gpu: &Gpu, x: &Tensor, g: &Tensor, w: &Tensor, y: &Tensor, eps: f32) -> Result<Op> {
    const OP: &str = "rms_norm_matvec";
    let (rows, k) = check(OP, gpu, x, g, w, y)?;
    expect_vector(OP, "y", y, rows)?;
    if w.dtype().is_packed() {
        let config = QuantMatvecConfig::for_weight(gpu, w);
        let shaders = [&Q8_DOT4, &Q4_DOT4];
        let d = packed_dispatch(gpu, OP, shaders, [w, x, g, y], rows, config.rows_per_workgroup, k, eps)?;
        return Ok(Op { dispatches: vec![d] });
    }
    // Eight rows a workgroup: per weight byte it reads as many x and g bytes as `matvec` with
    // four reads x bytes (x and g are served from cache, but the loads still cost).
    let shaders = [&PORTABLE, &SUBGROUP];
    let d = fused_dispatch(gpu, OP, shaders, [w, x, g, y], rows, MAX_ROWS, k, eps)?;
    Ok(Op { dispatches: vec![d] })
}

/// The dispatch every fused norm-matvec kernel makes: `outputs` results, `rows_per_workgroup`
/// of them a workgroup, bindings `w, x, g, out, params`; `shaders` = [portable, subgroup].
#[allow(clippy::too_many_arguments)]
pub(crate) fn fused_dispatch(
    gpu: &Gpu,
    op: &'static str,
    shaders: [&Shader; 2],
    [w, x, g, out]: [&Tensor; 4],
    outputs: usize,
    rows_per_workgroup: u32,
    k: usize,
    eps: f32,
) -> Result<super::Dispatch> {
    let config = MatvecConfig { rows_per_workgroup, ..MatvecConfig::for_gpu(gpu) };
    let per_word = if w.dtype() == DType::F16 { 8 } else { 4 };
    let params = Params { rows: outputs as u32, k: k as u32, row_words: (k / per_word) as u32, eps };
    let uniform = gpu.uniform(op, &params);
    let shader = shaders[gpu.info().features.subgroups as usize];
    let constants = [
        ("WORKGROUP_SIZE", config.workgroup_size as f64),
        ("ROWS", config.rows_per_workgroup as f64),
        ("W_F16", (w.dtype() == DType::F16) as u8 as f64),
    ];
    let groups = (outputs as u32).div_ceil(config.rows_per_workgroup);
    let binds = [Bind::Tensor(w), Bind::Tensor(x), Bind::Tensor(g), Bind::Tensor(out), Bind::Uniform(&uniform)];
    dispatch(gpu, op, shader, &constants, &binds, [groups, 1, 1])
}

/// The dispatch of a fused norm-matvec kernel over a packed weight (the `Dot4` shaders):
/// `outputs` results, `rows_per_workgroup` of them a workgroup, bindings `quants, scales, x, g,
/// out, params`; `shaders` = [Q8, Q4 / Q4G128].
#[allow(clippy::too_many_arguments)]
pub(crate) fn packed_dispatch(
    gpu: &Gpu,
    op: &'static str,
    shaders: [&Shader; 2],
    [w, x, g, out]: [&Tensor; 4],
    outputs: usize,
    rows_per_workgroup: u32,
    k: usize,
    eps: f32,
) -> Result<super::Dispatch> {
    let config = QuantMatvecConfig::for_weight(gpu, w);
    let row_words = (w.dtype().quant_bytes(k) / 16) as u32;
    let params = Params { rows: outputs as u32, k: k as u32, row_words, eps };
    let uniform = gpu.uniform(op, &params);
    let shader = shaders[(w.dtype() != DType::Q8) as usize];
    let mut constants =
        vec![("WORKGROUP_SIZE", config.workgroup_size as f64), ("ROWS", rows_per_workgroup as f64)];
    constants.extend(super::q4_group_words(w.dtype()));
    let groups = (outputs as u32).div_ceil(rows_per_workgroup);
    let binds = [
        Bind::Quants(w),
        Bind::Scales(w),
        Bind::Tensor(x),
        Bind::Tensor(g),
        Bind::Tensor(out),
        Bind::Uniform(&uniform),
    ];
    dispatch(gpu, op, shader, &constants, &binds, [groups, 1, 1])
}
