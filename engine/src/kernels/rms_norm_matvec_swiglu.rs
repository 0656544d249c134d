//! A feed-forward block's input in one dispatch (shaders/rms_norm_matvec_swiglu*.wgsl): RMSNorm
//! of `x`, the stacked gate/up projection and the SwiGLU gate,
//! `out[i] = silu(W[i] . n) * (W[n + i] . n)` with `n = rms_norm(x, g)` and `W` =
//! `[gate_proj; up_proj]`. It replaces `rms_norm`, `matvec` over the stacked weight and
//! `swiglu::swiglu`, which stay as its oracle. Decode only (prefill runs the matmul).
//! Takes what `rms_norm_matvec` takes ([`super::rms_norm_matvec::fits`]).

use super::matvec::{expect_vector, MatvecConfig, MAX_ROWS};
use super::rms_norm_matvec::{check, Params};
use super::{dispatch, shader, Bind, Op, Shader};
use crate::error::{Error, Result};
use crate::{DType, Gpu, Tensor};

const PORTABLE: Shader = shader!("rms_norm_matvec_swiglu");
const SUBGROUP: Shader = shader!("rms_norm_matvec_swiglu_subgroup");

/// `out[i] = silu(a_i) * b_i` for `i < n`, with `a`, `b` the two halves of
/// `w . rms_norm(x, g, eps)`. `x`, `g`: F32 `[K]` or `[1, K]`; `w`: `[2n, K]` F32 or F16 (gate
/// rows, then up rows) that fits; `out`: F32 `[n]` or `[1, n]`, a buffer other than the inputs'.
pub fn rms_norm_matvec_swiglu(gpu: &Gpu, x: &Tensor, g: &Tensor, w: &Tensor, out: &Tensor, eps: f32) -> Result<Op> {
    const OP: &str = "rms_norm_matvec_swiglu";
    let (rows, k) = check(OP, gpu, x, g, w, out)?;
    if rows % 2 != 0 || rows == 0 {
        return Err(Error::shape(OP, "w rows (gate and up: an even number)", "2n, n >= 1", rows));
    }
    let n = rows / 2;
    expect_vector(OP, "out", out, n)?;
    // ROWS outputs read 2 * ROWS weight rows, one accumulator each.
    let config = MatvecConfig { rows_per_workgroup: MAX_ROWS / 2, ..MatvecConfig::for_gpu(gpu) };
    let per_word = if w.dtype() == DType::F16 { 8 } else { 4 };
    // `rows` here is the number of outputs, n.
    let params = Params { rows: n as u32, k: k as u32, row_words: (k / per_word) as u32, eps };
    let uniform = gpu.uniform(OP, &params);
    let shader = if gpu.info().features.subgroups { &SUBGROUP } else { &PORTABLE };
    let constants = [
        ("WORKGROUP_SIZE", config.workgroup_size as f64),
        ("ROWS", config.rows_per_workgroup as f64),
        ("W_F16", (w.dtype() == DType::F16) as u8 as f64),
    ];
    let groups = (n as u32).div_ceil(config.rows_per_workgroup);
    let binds = [Bind::Tensor(w), Bind::Tensor(x), Bind::Tensor(g), Bind::Tensor(out), Bind::Uniform(&uniform)];
    let d = dispatch(gpu, OP, shader, &constants, &binds, [groups, 1, 1])?;
    Ok(Op { dispatches: vec![d] })
}
