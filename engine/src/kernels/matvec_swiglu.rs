//! The stacked gate/up projection of one vector and the SwiGLU gate in one dispatch
//! (shaders/matvec_swiglu*.wgsl): `out[i] = silu(W[i] . x) * (W[n + i] . x)` for `W` =
//! `[gate_proj; up_proj]`. It replaces `matvec` over the stacked weight followed by
//! `swiglu::swiglu`, which stay as its oracle. Decode only (prefill runs the matmul).
//!
//! It takes the weights `matvec`'s vectorized shaders take (F32 or F16, rows on 16-byte words,
//! within one storage binding); [`fits`] says whether a weight qualifies, and a model runs the
//! unfused pair for one that does not.

use super::matvec::{expect_vector, MatvecConfig, MAX_ROWS};
use super::{dims2, dispatch, expect_dtype, shader, Bind, Op, Shader};
use crate::error::{Error, Result};
use crate::{DType, Gpu, Tensor};

const PORTABLE: Shader = shader!("matvec_swiglu");
const SUBGROUP: Shader = shader!("matvec_swiglu_subgroup");

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Outputs: half the rows of `w`.
    pub n: u32,
    /// Elements per row, the length of x.
    pub k: u32,
    /// 16-byte words per row (`k / 8` for F16, `k / 4` for F32).
    pub row_words: u32,
    pub _pad: u32,
}
const _: () = assert!(std::mem::size_of::<Params>() == 16);

/// Whether [`matvec_swiglu`] takes this stacked weight `w` and input `x`.
pub fn fits(gpu: &Gpu, w: &Tensor, x: &Tensor) -> bool {
    let per_word = match w.dtype() {
        DType::F16 => 8,
        DType::F32 => 4,
        _ => return false,
    };
    let k = w.shape().get(1).copied().unwrap_or(0);
    k > 0
        && k % per_word == 0
        && w.shape()[0] % 2 == 0
        && w.byte_size() <= gpu.info().max_binding_bytes
        && w.offset() % 16 == 0
        && x.offset() % 16 == 0
}

/// `out[i] = silu(w[i] . x) * (w[n + i] . x)` for `i < n`. `w`: `[2n, K]` F32 or F16 (gate rows,
/// then up rows) that [`fits`]; `x`: F32 `[K]` or `[1, K]`; `out`: F32 `[n]` or `[1, n]`, a buffer
/// other than `x`'s and `w`'s.
pub fn matvec_swiglu(gpu: &Gpu, w: &Tensor, x: &Tensor, out: &Tensor) -> Result<Op> {
    const OP: &str = "matvec_swiglu";
    expect_dtype(OP, "w", w, &[DType::F32, DType::F16])?;
    expect_dtype(OP, "x", x, &[DType::F32])?;
    expect_dtype(OP, "out", out, &[DType::F32])?;
    let (rows, k) = dims2(OP, "w", w)?;
    if rows % 2 != 0 || rows == 0 {
        return Err(Error::shape(OP, "w rows (gate and up: an even number)", "2n, n >= 1", rows));
    }
    let n = rows / 2;
    expect_vector(OP, "x", x, k)?;
    expect_vector(OP, "out", out, n)?;
    if out.same_buffer(x) || out.same_buffer(w) {
        return Err(Error::shape(OP, "out buffer (must not alias x or w)", "a distinct buffer", "shared"));
    }
    if !fits(gpu, w, x) {
        let why = "rows on 16-byte words (k % 8 == 0 for F16, k % 4 for F32), aligned, within one binding";
        return Err(Error::shape(OP, "w layout", why, format!("{w:?}")));
    }
    let mut config = MatvecConfig::for_gpu(gpu);
    config.rows_per_workgroup = config.rows_per_workgroup.min(MAX_ROWS / 2);
    let per_word = if w.dtype() == DType::F16 { 8 } else { 4 };
    let params = Params { n: n as u32, k: k as u32, row_words: (k / per_word) as u32, _pad: 0 };
    let uniform = gpu.uniform(OP, &params);
    let shader = if gpu.info().features.subgroups { &SUBGROUP } else { &PORTABLE };
    let constants = [
        ("WORKGROUP_SIZE", config.workgroup_size as f64),
        ("ROWS", config.rows_per_workgroup as f64),
        ("W_F16", (w.dtype() == DType::F16) as u8 as f64),
    ];
    let groups = (n as u32).div_ceil(config.rows_per_workgroup);
    let binds = [Bind::Tensor(w), Bind::Tensor(x), Bind::Tensor(out), Bind::Uniform(&uniform)];
    let d = dispatch(gpu, OP, shader, &constants, &binds, [groups, 1, 1])?;
    Ok(Op { dispatches: vec![d] })
}
