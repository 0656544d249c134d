//! Streaming copy through the shader cores (shaders/copy.wgsl): `dst = src`, 16 bytes a load.
//! Used to measure memory bandwidth the way kernels see it.

use super::{dispatch, shader, Bind, Op, Shader};
use crate::error::{Error, Result};
use crate::{Gpu, Tensor};

const SHADER: Shader = shader!("copy");
const PER_THREAD: u32 = 4;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n_vec4: u32,
    pub _pad: [u32; 3],
}
const _: () = assert!(std::mem::size_of::<Params>() == 16);

/// Copies all of `src` into `dst` (same byte size, a multiple of 16, distinct buffers).
pub fn copy(gpu: &Gpu, src: &Tensor, dst: &Tensor) -> Result<Op> {
    const OP: &str = "copy";
    let bytes = src.byte_size();
    if bytes != dst.byte_size() || !bytes.is_multiple_of(16) {
        return Err(Error::shape(OP, "byte sizes (equal, multiples of 16)", bytes, dst.byte_size()));
    }
    if src.same_buffer(dst) {
        return Err(Error::shape(OP, "dst (a buffer other than src)", "distinct", "same buffer"));
    }
    let n_vec4 = (bytes / 16) as u32;
    let uniform = gpu.uniform(OP, &Params { n_vec4, _pad: [0; 3] });
    let groups = n_vec4.div_ceil(256 * PER_THREAD);
    let constants = [("PER_THREAD", PER_THREAD as f64)];
    let d = dispatch(gpu, OP, &SHADER, &constants, &[Bind::Tensor(src), Bind::Tensor(dst), Bind::Uniform(&uniform)], [groups, 1, 1])?;
    Ok(Op { dispatches: vec![d] })
}
