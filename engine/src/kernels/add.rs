//! Residual add in place: `x += y` (shaders/add.wgsl). Both f32, same element count.

use super::{dispatch, expect_dtype, shader, Bind, Op, Shader};
use crate::error::{Error, Result};
use crate::{DType, Gpu, Tensor};

const SHADER: Shader = shader!("add");

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
