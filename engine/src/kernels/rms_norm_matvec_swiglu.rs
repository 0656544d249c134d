//! A feed-forward block's input in one dispatch (shaders/rms_norm_matvec_swiglu*.wgsl): RMSNorm
//! of `x`, the stacked gate/up projection and the SwiGLU gate,
//! `out[i] = silu(W[i] . n) * (W[n + i] . n)` with `n = rms_norm(x, g)` and `W` =
//! `[gate_proj; up_proj]`. It replaces `rms_norm`, `matvec` over the stacked weight and
//! `swiglu::swiglu`, which stay as its oracle. Decode only (prefill runs the matmul).
//! Takes what `rms_norm_matvec` takes ([`super::rms_norm_matvec::fits`], or for a packed weight
//! [`super::rms_norm_matvec::fits_packed`]: shaders/rms_norm_matvec_swiglu_{q8,q4}_dot4.wgsl).

use super::matvec::{expect_vector, MAX_ROWS};
use super::matvec::QuantMatvecConfig;
use super::rms_norm_matvec::{check, fused_dispatch, packed_dispatch};
use super::{shader, Op, Shader};
use crate::error::{Error, Result};
use crate::{Gpu, Tensor};

const PORTABLE: Shader = shader!("rms_norm_matvec_swiglu");
const SUBGROUP: Shader = shader!("rms_norm_matvec_swiglu_subgroup");
const Q8_DOT4: Shader = shader!("rms_norm_matvec_swiglu_q8_dot4");
const Q4_DOT4: Shader = shader!("rms_norm_matvec_swiglu_q4_dot4");

/// `out[i] = silu(a_i) * b_i` for `i < n`, with `a`, `b` the two halves of
/// `w . rms_norm(x, g, eps)`. `x`, `g`: F32 `[K]` or `[1, K]`; `w`: `[2n, K]` F32 or F16 (gate
/// rows, then up rows) that fits, or packed that fits_packed; `out`: F32 `[n]` or `[1, n]`, a
/// buffer other than the inputs'.
pub fn rms_norm_matvec_swiglu(gpu: &Gpu, x: &Tensor, g: &Tensor, w: &Tensor, out: &Tensor, eps: f32) -> Result<Op> {
    const OP: &str = "rms_norm_matvec_swiglu";
    let (rows, k) = check(OP, gpu, x, g, w, out)?;
    if rows % 2 != 0 || rows == 0 {
        return Err(Error::shape(OP, "w rows (gate and up: an even number)", "2n, n >= 1", rows));
    }
    let n = rows / 2;
    expect_vector(OP, "out", out, n)?;
    // ROWS outputs read 2 * ROWS weight rows, one accumulator each.
    if w.dtype().is_packed() {
        let rows_per_workgroup = (QuantMatvecConfig::for_weight(gpu, w).rows_per_workgroup / 2).max(1);
        let shaders = [&Q8_DOT4, &Q4_DOT4];
        let d = packed_dispatch(gpu, OP, shaders, [w, x, g, out], n, rows_per_workgroup, k, eps)?;
        return Ok(Op { dispatches: vec![d] });
    }
    let shaders = [&PORTABLE, &SUBGROUP];
    let d = fused_dispatch(gpu, OP, shaders, [w, x, g, out], n, MAX_ROWS / 2, k, eps)?;
    Ok(Op { dispatches: vec![d] })
}
