//! Residual add fused with the next RMS norm (shaders/add_rms_norm.wgsl,
//! add_rms_norm_subgroup.wgsl): `x += y`, then `out = x / sqrt(mean(x^2) + eps) * weight`, row by
//! row. A decoder does this twice per layer; fused, it is one dispatch instead of two.
//! `add::add` followed by `rms_norm::rms_norm` computes the same thing (the tests' oracle).

use super::{dispatch, expect_dtype, expect_shape, rms_norm, shader, Bind, Op, Shader};
use crate::error::{Error, Result};
use crate::{DType, Gpu, Tensor};

const PORTABLE: Shader = shader!("add_rms_norm");
const SUBGROUP: Shader = shader!("add_rms_norm_subgroup");

/// `x += y`, then each row of `x` normalised into `out`, scaled by `weight`.
/// `x`, `y`, `out`: f32, the same shape `[M, n]` or `[n]`, three different buffers; `weight`:
/// `[n]`, f32 or f16. One workgroup per row.
pub fn add_rms_norm(gpu: &Gpu, x: &Tensor, y: &Tensor, weight: &Tensor, out: &Tensor, eps: f32) -> Result<Op> {
    const OP: &str = "add_rms_norm";
    expect_dtype(OP, "x", x, &[DType::F32])?;
    expect_dtype(OP, "y", y, &[DType::F32])?;
    expect_dtype(OP, "weight", weight, &[DType::F32, DType::F16])?;
    expect_dtype(OP, "out", out, &[DType::F32])?;
    let (n_rows, n) = match *x.shape() {
        [n] => (1, n),
        [rows, n] => (rows, n),
        _ => return Err(Error::shape(OP, "x rank", "[rows, n] or [n]", x.shape())),
    };
    expect_shape(OP, "y (same as x)", y, x.shape())?;
    expect_shape(OP, "weight", weight, &[n])?;
    expect_shape(OP, "out (same as x)", out, x.shape())?;
    if out.same_buffer(x) || out.same_buffer(y) || y.same_buffer(x) {
        return Err(Error::shape(OP, "x, y and out buffers", "three different buffers", "a shared buffer"));
    }
    if n == 0 {
        return Err(Error::shape(OP, "row length", "at least 1", n));
    }
    let params = rms_norm::Params { n_rows: n_rows as u32, n: n as u32, eps, _pad: 0 };
    let uniform = gpu.uniform(OP, &params);
    let shader = if gpu.info().features.subgroups { &SUBGROUP } else { &PORTABLE };
    let constants = [
        ("WG", rms_norm::workgroup_size(gpu, n) as f64),
        ("WEIGHT_F16", (weight.dtype() == DType::F16) as u8 as f64),
    ];
    let binds = [Bind::Tensor(x), Bind::Tensor(y), Bind::Tensor(weight), Bind::Tensor(out), Bind::Uniform(&uniform)];
    let d = dispatch(gpu, OP, shader, &constants, &binds, [n_rows as u32, 1, 1])?;
    Ok(Op { dispatches: vec![d] })
}
