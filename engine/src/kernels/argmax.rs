//! Greedy sampling (shaders/argmax.wgsl, argmax_subgroup.wgsl): the index of each row's largest
//! element, ties to the lowest index, NaN never chosen (a row of NaN only gives 0).

use super::{dispatch, expect_dtype, expect_shape, shader, Bind, Op, Shader};
use crate::error::{Error, Result};
use crate::{DType, Gpu, Tensor};

const PORTABLE: Shader = shader!("argmax");
const SUBGROUP: Shader = shader!("argmax_subgroup");
/// Rows at least this long (a vocabulary) get 1024 threads, where the device allows it.
const LONG_ROW: usize = 16_384;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n_rows: u32,
    pub n: u32,
    pub _pad: [u32; 2],
}
const _: () = assert!(std::mem::size_of::<Params>() == 16);

/// `out[m] = argmax_i x[m, i]` for `x` `[rows, n]` (or `[n]`, then `out` is `[1]`), f32, into
/// `out` `[rows]` u32. One workgroup per row.
pub fn argmax(gpu: &Gpu, x: &Tensor, out: &Tensor) -> Result<Op> {
    const OP: &str = "argmax";
    expect_dtype(OP, "x", x, &[DType::F32])?;
    expect_dtype(OP, "out", out, &[DType::U32])?;
    let (n_rows, n) = match *x.shape() {
        [n] => (1, n),
        [rows, n] => (rows, n),
        _ => return Err(Error::shape(OP, "x rank", "[rows, n] or [n]", x.shape())),
    };
    expect_shape(OP, "out", out, &[n_rows])?;
    if n == 0 {
        return Err(Error::shape(OP, "row length", "at least 1", n));
    }
    let params = Params { n_rows: n_rows as u32, n: n as u32, _pad: [0; 2] };
    let uniform = gpu.uniform(OP, &params);
    let shader = if gpu.info().features.subgroups { &SUBGROUP } else { &PORTABLE };
    let long = n >= LONG_ROW && gpu.info().max_invocations_per_workgroup >= 1024;
    let constants = [("WG", if long { 1024.0 } else { 256.0 })];
    let binds = [Bind::Tensor(x), Bind::Tensor(out), Bind::Uniform(&uniform)];
    let d = dispatch(gpu, OP, shader, &constants, &binds, [n_rows as u32, 1, 1])?;
    Ok(Op { dispatches: vec![d] })
}
