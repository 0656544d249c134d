//! Softmax over the last axis, in place (shaders/softmax.wgsl, softmax_subgroup.wgsl):
//! `x[m, i] = exp(x[m, i] - max_m) / sum_j exp(x[m, j] - max_m)`.

use super::{dispatch, expect_dtype, shader, Bind, Op, Shader};
use crate::error::{Error, Result};
use crate::{DType, Gpu, Tensor};

const PORTABLE: Shader = shader!("softmax");
const SUBGROUP: Shader = shader!("softmax_subgroup");
/// Rows at least this long get 1024 threads, where the device allows it: one short row (decode)
/// is bound by memory latency, so more threads in flight finish it sooner.
const LONG_ROW: usize = 2048;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n_rows: u32,
    pub n: u32,
    pub _pad: [u32; 2],
}
const _: () = assert!(std::mem::size_of::<Params>() == 16);

/// Softmax of each row of `x` (`[rows, n]` or `[n]`, f32), in place. One workgroup per row; the
/// max and the sum come from one pass (online softmax), then a second pass writes.
pub fn softmax(gpu: &Gpu, x: &Tensor) -> Result<Op> {
    const OP: &str = "softmax";
    expect_dtype(OP, "x", x, &[DType::F32])?;
    let (n_rows, n) = match *x.shape() {
        [n] => (1, n),
        [rows, n] => (rows, n),
        _ => return Err(Error::shape(OP, "x rank", "[rows, n] or [n]", x.shape())),
    };
    if n == 0 {
        return Err(Error::shape(OP, "row length", "at least 1", n));
    }
    let params = Params { n_rows: n_rows as u32, n: n as u32, _pad: [0; 2] };
    let uniform = gpu.uniform(OP, &params);
    let shader = if gpu.info().features.subgroups { &SUBGROUP } else { &PORTABLE };
    let long = n >= LONG_ROW && gpu.info().max_invocations_per_workgroup >= 1024;
    let constants = [("WG", if long { 1024.0 } else { 256.0 })];
    let binds = [Bind::Tensor(x), Bind::Uniform(&uniform)];
    let d = dispatch(gpu, OP, shader, &constants, &binds, [n_rows as u32, 1, 1])?;
    Ok(Op { dispatches: vec![d] })
}
