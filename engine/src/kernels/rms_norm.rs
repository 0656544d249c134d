//! RMS normalisation of each row (shaders/rms_norm.wgsl, rms_norm_subgroup.wgsl):
//! `out[m, i] = x[m, i] / sqrt(mean_i(x[m, :]^2) + eps) * weight[i]`.

use super::{dispatch, expect_dtype, expect_shape, shader, Bind, Op, Shader};
use crate::error::{Error, Result};
use crate::{DType, Gpu, Tensor};

const PORTABLE: Shader = shader!("rms_norm");
const SUBGROUP: Shader = shader!("rms_norm_subgroup");
/// Rows at least this long get 1024 threads, where the device allows it: one short row (decode)
/// is bound by memory latency, so more threads in flight finish it sooner.
const LONG_ROW: usize = 2048;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n_rows: u32,
    pub n: u32,
    pub eps: f32,
    pub _pad: u32,
}
const _: () = assert!(std::mem::size_of::<Params>() == 16);

/// Normalises each row of `x` (`[M, n]` or `[n]`, f32) into `out` (same shape, f32, a different
/// buffer from `x`), scaled by `weight` (`[n]`, f32 or f16). One workgroup per row.
pub fn rms_norm(gpu: &Gpu, x: &Tensor, weight: &Tensor, out: &Tensor, eps: f32) -> Result<Op> {
    const OP: &str = "rms_norm";
    expect_dtype(OP, "x", x, &[DType::F32])?;
    expect_dtype(OP, "weight", weight, &[DType::F32, DType::F16])?;
    expect_dtype(OP, "out", out, &[DType::F32])?;
    let (n_rows, n) = match *x.shape() {
        [n] => (1, n),
        [rows, n] => (rows, n),
        _ => return Err(Error::shape(OP, "x rank", "[rows, n] or [n]", x.shape())),
    };
    expect_shape(OP, "weight", weight, &[n])?;
    expect_shape(OP, "out (same as x)", out, x.shape())?;
    if out.same_buffer(x) {
        return Err(Error::shape(OP, "out buffer", "a buffer other than x's", "x's buffer"));
    }
    if n == 0 {
        return Err(Error::shape(OP, "row length", "at least 1", n));
    }
    let params = Params { n_rows: n_rows as u32, n: n as u32, eps, _pad: 0 };
    let uniform = gpu.uniform(OP, &params);
    let shader = if gpu.info().features.subgroups { &SUBGROUP } else { &PORTABLE };
    let long = n >= LONG_ROW && gpu.info().max_invocations_per_workgroup >= 1024;
    let constants = [
        ("WG", if long { 1024.0 } else { 256.0 }),
        ("WEIGHT_F16", (weight.dtype() == DType::F16) as u8 as f64),
    ];
    let binds = [Bind::Tensor(x), Bind::Tensor(weight), Bind::Tensor(out), Bind::Uniform(&uniform)];
    let d = dispatch(gpu, OP, shader, &constants, &binds, [n_rows as u32, 1, 1])?;
    Ok(Op { dispatches: vec![d] })
}
