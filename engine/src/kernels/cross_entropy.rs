//! Per-row cross-entropy (shaders/cross_entropy.wgsl): `nll[m] = logsumexp(x[m]) - x[m, target[m]]`.

use super::{dispatch, dims2, expect_dtype, expect_shape, shader, Bind, Op, Shader};
use crate::error::{Error, Result};
use crate::{DType, Gpu, Tensor};

const SHADER: Shader = shader!("cross_entropy");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n_rows: u32,
    pub n: u32,
    pub _pad: [u32; 2],
}
const _: () = assert!(std::mem::size_of::<Params>() == 16);

/// `x`: F32 `[rows, n]` logits; `target`: U32 `[rows]` ids below n; `nll`: F32 `[rows]`, a
/// buffer distinct from both.
pub fn cross_entropy(gpu: &Gpu, x: &Tensor, target: &Tensor, nll: &Tensor) -> Result<Op> {
    const OP: &str = "cross_entropy";
    expect_dtype(OP, "x", x, &[DType::F32])?;
    expect_dtype(OP, "target", target, &[DType::U32])?;
    expect_dtype(OP, "nll", nll, &[DType::F32])?;
    let (rows, n) = dims2(OP, "x", x)?;
    expect_shape(OP, "target", target, &[rows])?;
    expect_shape(OP, "nll", nll, &[rows])?;
    if n == 0 || nll.same_buffer(x) || nll.same_buffer(target) {
        return Err(Error::shape(OP, "nll (its own buffer, n > 0)", "distinct", "shared buffer or n = 0"));
    }
    let uniform = gpu.uniform(OP, &Params { n_rows: rows as u32, n: n as u32, _pad: [0; 2] });
    let wg = if gpu.info().device_type == "Cpu" { 64.0 } else { 256.0 };
    let binds = [Bind::Tensor(x), Bind::Tensor(target), Bind::Tensor(nll), Bind::Uniform(&uniform)];
    let d = dispatch(gpu, OP, &SHADER, &[("WG", wg)], &binds, [rows as u32, 1, 1])?;
    Ok(Op { dispatches: vec![d] })
}
