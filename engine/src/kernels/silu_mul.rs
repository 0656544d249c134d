//! The SwiGLU gate (shaders/silu_mul.wgsl): `out = gate * sigmoid(gate) * up`, element-wise.

use super::{dispatch, expect_dtype, shader, Bind, Op, Shader};
use crate::error::{Error, Result};
use crate::{DType, Gpu, Tensor};

const SHADER: Shader = shader!("silu_mul");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n: u32,
    pub _pad: [u32; 3],
}
const _: () = assert!(std::mem::size_of::<Params>() == 16);

/// `out = silu(gate) * up`. All three f32 with the same shape (`[M, n]`); `out` is a different
/// buffer from both inputs.
pub fn silu_mul(gpu: &Gpu, gate: &Tensor, up: &Tensor, out: &Tensor) -> Result<Op> {
    const OP: &str = "silu_mul";
    for (what, t) in [("gate", gate), ("up", up), ("out", out)] {
        expect_dtype(OP, what, t, &[DType::F32])?;
    }
    if up.shape() != gate.shape() {
        return Err(Error::shape(OP, "up shape (same as gate)", gate.shape(), up.shape()));
    }
    if out.shape() != gate.shape() {
        return Err(Error::shape(OP, "out shape (same as gate)", gate.shape(), out.shape()));
    }
    if out.same_buffer(gate) || out.same_buffer(up) {
        let expected = "a buffer other than gate's and up's";
        return Err(Error::shape(OP, "out buffer", expected, "an input's buffer"));
    }
    let params = Params { n: gate.numel() as u32, _pad: [0; 3] };
    let uniform = gpu.uniform(OP, &params);
    let groups = params.n.div_ceil(256);
    let binds = [Bind::Tensor(gate), Bind::Tensor(up), Bind::Tensor(out), Bind::Uniform(&uniform)];
    let d = dispatch(gpu, OP, &SHADER, &[], &binds, [groups, 1, 1])?;
    Ok(Op { dispatches: vec![d] })
}
