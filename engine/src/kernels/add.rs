//! Additions in place: the residual add `x += y` (shaders/add.wgsl) and the row-broadcast bias
//! add `x[m, i] += bias[i]` (shaders/add_bias.wgsl).

use super::{dispatch, expect_dtype, expect_shape, shader, Bind, Op, Shader};
use crate::error::{Error, Result};
use crate::{DType, Gpu, Tensor};

const SHADER: Shader = shader!("add");
const ADD_BIAS: Shader = shader!("add_bias");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n: u32,
    pub _pad: [u32; 3],
}
const _: () = assert!(std::mem::size_of::<Params>() == 16);

/// `x[i] += y[i]` for every element. `x` and `y` must be distinct f32 tensors of equal size.
pub fn add(gpu: &Gpu, x: &Tensor, y: &Tensor) -> Result<Op> {
    const OP: &str = "add";
    expect_dtype(OP, "x", x, &[DType::F32])?;
    expect_dtype(OP, "y", y, &[DType::F32])?;
    if x.numel() != y.numel() {
        return Err(Error::shape(OP, "y element count (same as x)", x.shape(), y.shape()));
    }
    let params = Params { n: x.numel() as u32, _pad: [0; 3] };
    let uniform = gpu.uniform(OP, &params);
    let groups = (x.numel() as u32).div_ceil(256);
    let d = dispatch(gpu, OP, &SHADER, &[], &[Bind::Tensor(x), Bind::Tensor(y), Bind::Uniform(&uniform)], [groups, 1, 1])?;
    Ok(Op { dispatches: vec![d] })
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BiasParams {
    pub n_elements: u32,
    pub n: u32,
    pub _pad: [u32; 2],
}
const _: () = assert!(std::mem::size_of::<BiasParams>() == 16);

/// `x[m, i] += bias[i]` for every row of `x` (`[M, n]` or `[n]`, f32) with `bias` `[n]`
/// (f32 or f16, a different buffer from `x`).
pub fn add_bias(gpu: &Gpu, x: &Tensor, bias: &Tensor) -> Result<Op> {
    const OP: &str = "add_bias";
    expect_dtype(OP, "x", x, &[DType::F32])?;
    expect_dtype(OP, "bias", bias, &[DType::F32, DType::F16])?;
    let n = match *x.shape() {
        [n] | [_, n] => n,
        _ => return Err(Error::shape(OP, "x rank", "[rows, n] or [n]", x.shape())),
    };
    expect_shape(OP, "bias", bias, &[n])?;
    if n == 0 {
        return Err(Error::shape(OP, "row length", "at least 1", n));
    }
    if bias.same_buffer(x) {
        return Err(Error::shape(OP, "bias buffer", "a buffer other than x's", "x's buffer"));
    }
    let params = BiasParams { n_elements: x.numel() as u32, n: n as u32, _pad: [0; 2] };
    let uniform = gpu.uniform(OP, &params);
    let constants = [("BIAS_F16", (bias.dtype() == DType::F16) as u8 as f64)];
    let groups = params.n_elements.div_ceil(256);
    let binds = [Bind::Tensor(x), Bind::Tensor(bias), Bind::Uniform(&uniform)];
    let d = dispatch(gpu, OP, &ADD_BIAS, &constants, &binds, [groups, 1, 1])?;
    Ok(Op { dispatches: vec![d] })
}
