//! Writes rows into a cache at a position read on the GPU (shaders/copy_rows.wgsl):
//! `dst[pos[0] + t, :] = src[t, :]`, converting f32 to dst's dtype. This is how a model writes
//! the keys and values of new tokens into its KV cache: the op is built once and replayed at
//! every step while `pos` changes.

use super::{dims2, dispatch, expect_dtype, expect_shape, shader, Bind, Op, Shader};
use crate::error::{Error, Result};
use crate::{DType, Gpu, Tensor};

const SHADER: Shader = shader!("copy_rows");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n_rows: u32,
    pub row_len: u32,
    pub capacity: u32,
    pub _pad: u32,
}
const _: () = assert!(std::mem::size_of::<Params>() == 16);

/// `dst[pos[0] + t, :] = src[t, :]` for every row `t` of `src` that lands before `dst`'s end
/// (rows at or past capacity are skipped on the GPU). `src`: `[T, n]` f32; `dst`: `[capacity, n]`
/// f32 or f16 (any `n`, odd included: an f16 row may straddle words); `pos`: `[1]` u32.
pub fn copy_rows(gpu: &Gpu, src: &Tensor, dst: &Tensor, pos: &Tensor) -> Result<Op> {
    const OP: &str = "copy_rows";
    expect_dtype(OP, "src", src, &[DType::F32])?;
    expect_dtype(OP, "dst", dst, &[DType::F32, DType::F16])?;
    expect_dtype(OP, "pos", pos, &[DType::U32])?;
    expect_shape(OP, "pos", pos, &[1])?;
    let (n_rows, row_len) = dims2(OP, "src", src)?;
    let (capacity, dst_row_len) = dims2(OP, "dst", dst)?;
    if dst_row_len != row_len {
        return Err(Error::shape(OP, "dst row length (same as src)", row_len, dst_row_len));
    }
    if n_rows == 0 || row_len == 0 || capacity == 0 {
        return Err(Error::shape(OP, "src and dst sizes", "non-empty", (src.shape(), dst.shape())));
    }
    if dst.same_buffer(src) || dst.same_buffer(pos) {
        return Err(Error::shape(OP, "dst buffer", "a buffer other than src's and pos's", "shared"));
    }
    let numel = n_rows as u64 * row_len as u64;
    let f16 = dst.dtype() == DType::F16;
    // f16: one thread per destination word; the block may start mid-word, hence the extra one.
    let threads = if f16 { numel / 2 + 1 } else { numel };
    let groups = u32::try_from(threads.div_ceil(256))
        .map_err(|_| Error::shape(OP, "src element count", "< 2^40", numel))?;
    let params = Params { n_rows: n_rows as u32, row_len: row_len as u32, capacity: capacity as u32, _pad: 0 };
    let uniform = gpu.uniform(OP, &params);
    let binds = [Bind::Tensor(src), Bind::Tensor(dst), Bind::Tensor(pos), Bind::Uniform(&uniform)];
    let d = dispatch(gpu, OP, &SHADER, &[("DST_F16", f16 as u8 as f64)], &binds, [groups, 1, 1])?;
    Ok(Op { dispatches: vec![d] })
}
