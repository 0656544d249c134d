//! Embedding gather (shaders/embedding.wgsl): `out[t] = table[ids[t]]`, one row per id.
//!
//! A table larger than one storage binding (a 128256 x 4096 f16 table is 1 GiB; lavapipe and
//! WebGPU bind at most 128 MiB) is bound in row chunks: one dispatch per chunk, each copying the
//! rows whose ids fall in it. Ids at or past `vocab` give zero rows (callers validate ids; the
//! GPU must still never read out of bounds).

use super::{dispatch, dims2, expect_dtype, expect_shape, shader, Bind, Op, Shader};
use crate::error::{Error, Result};
use crate::{DType, Gpu, Tensor};

const SHADER: Shader = shader!("embedding");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub dim: u32,
    pub n_ids: u32,
    /// First table row of the chunk this dispatch binds.
    pub first_row: u32,
    pub chunk_rows: u32,
    pub vocab: u32,
    pub _pad: [u32; 3],
}
const _: () = assert!(std::mem::size_of::<Params>() == 32);

/// `out[t, :] = table[ids[t], :]` for `table` `[vocab, dim]` (f32 or f16), `ids` `[T]` (u32),
/// `out` `[T, dim]` (f32).
pub fn embedding(gpu: &Gpu, table: &Tensor, ids: &Tensor, out: &Tensor) -> Result<Op> {
    const OP: &str = "embedding";
    expect_dtype(OP, "table", table, &[DType::F32, DType::F16])?;
    expect_dtype(OP, "ids", ids, &[DType::U32])?;
    expect_dtype(OP, "out", out, &[DType::F32])?;
    let (vocab, dim) = dims2(OP, "table", table)?;
    let n_ids = match *ids.shape() {
        [n] => n,
        _ => return Err(Error::shape(OP, "ids rank", "[T]", ids.shape())),
    };
    expect_shape(OP, "out", out, &[n_ids, dim])?;
    if out.same_buffer(table) || out.same_buffer(ids) {
        let expected = "a buffer other than table's and ids'";
        return Err(Error::shape(OP, "out buffer", expected, "an input's buffer"));
    }
    if vocab == 0 || dim == 0 || n_ids == 0 {
        return Err(Error::shape(OP, "table and ids sizes", "non-zero", (vocab, dim, n_ids)));
    }
    let groups = ((n_ids * dim) as u32).div_ceil(256);
    let constants = [("TABLE_F16", (table.dtype() == DType::F16) as u8 as f64)];
    let mut op = Op::empty();
    for (first_row, chunk) in table.row_chunks(gpu)? {
        let params = Params {
            dim: dim as u32,
            n_ids: n_ids as u32,
            first_row: first_row as u32,
            chunk_rows: chunk.shape()[0] as u32,
            vocab: vocab as u32,
            _pad: [0; 3],
        };
        let uniform = gpu.uniform(OP, &params);
        let binds = [Bind::Tensor(&chunk), Bind::Tensor(ids), Bind::Tensor(out), Bind::Uniform(&uniform)];
        op.dispatches.push(dispatch(gpu, OP, &SHADER, &constants, &binds, [groups, 1, 1])?);
    }
    Ok(op)
}
