//! The SwiGLU gate on a stacked projection's output (shaders/swiglu.wgsl): each row of `gu` is
//! `[gate | up]` and `out = silu(gate) * up`. With the gate and up weights stacked into one
//! matrix, a decoder computes both halves in one matvec and gates them here; `silu_mul::silu_mul`
//! on the two halves is the same computation (the tests' oracle).

use super::{dispatch, expect_dtype, shader, Bind, Op, Shader};
use crate::error::{Error, Result};
use crate::{DType, Gpu, Tensor};

const SHADER: Shader = shader!("swiglu");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n_rows: u32,
    /// Columns of `out`: half a row of `gu`.
    pub n: u32,
    pub _pad: [u32; 2],
}
const _: () = assert!(std::mem::size_of::<Params>() == 16);

/// `out[m, i] = silu(gu[m, i]) * gu[m, n + i]`. `gu`: f32 `[M, 2n]`; `out`: f32 `[M, n]`, a
/// buffer other than `gu`'s.
pub fn swiglu(gpu: &Gpu, gu: &Tensor, out: &Tensor) -> Result<Op> {
    const OP: &str = "swiglu";
    expect_dtype(OP, "gu", gu, &[DType::F32])?;
    expect_dtype(OP, "out", out, &[DType::F32])?;
    let (n_rows, n) = match (gu.shape(), out.shape()) {
        (&[m, two_n], &[m_out, n]) if m == m_out && two_n == 2 * n && n > 0 => (m, n),
        _ => return Err(Error::shape(OP, "gu and out shapes", "[M, 2n] and [M, n], n >= 1", (gu.shape(), out.shape()))),
    };
    if out.same_buffer(gu) {
        return Err(Error::shape(OP, "out buffer", "a buffer other than gu's", "gu's buffer"));
    }
    let params = Params { n_rows: n_rows as u32, n: n as u32, _pad: [0; 2] };
    let uniform = gpu.uniform(OP, &params);
    let groups = u32::try_from((n_rows * n).div_ceil(256)).map_err(|_| Error::shape(OP, "out elements", "< 2^40", n_rows * n))?;
    let d = dispatch(gpu, OP, &SHADER, &[], &[Bind::Tensor(gu), Bind::Tensor(out), Bind::Uniform(&uniform)], [groups, 1, 1])?;
    Ok(Op { dispatches: vec![d] })
}
