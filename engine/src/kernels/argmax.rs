//! Greedy sampling: the index of each row's largest element, ties to the lowest index, NaN never
//! chosen (a row of NaN only gives 0).
//!
//! Two dispatches: shaders/argmax.wgsl finds the best (value, index) of each block of
//! `BLOCK_LEN` columns, one workgroup per (row, block), into a scratch tensor the op owns; then
//! shaders/argmax_candidates.wgsl picks each row's best block. Blocks spread a vocabulary-long row
//! over many workgroups (one workgroup alone took 40 us for 151936 columns on an H200). The work
//! is memory-bound and the reductions are tiny, so there is no subgroup variant.

use super::{dispatch, expect_dtype, expect_shape, shader, Bind, Op, Shader};
use crate::error::{Error, Result};
use crate::{DType, Gpu, Tensor};

const BLOCKS: Shader = shader!("argmax");
const CANDIDATES: Shader = shader!("argmax_candidates");
const WORKGROUP_SIZE: u32 = 256;
/// Columns per stage-1 workgroup: 16 per thread.
const BLOCK_LEN: usize = 4096;

/// Shared by both stages.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n_rows: u32,
    pub n: u32,
    pub block_len: u32,
    pub n_blocks: u32,
}
const _: () = assert!(std::mem::size_of::<Params>() == 16);

/// `out[m] = argmax_i x[m, i]` for `x` `[rows, n]` (or `[n]`, then `out` is `[1]`), f32, into
/// `out` `[rows]` u32.
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
    let n_blocks = n.div_ceil(BLOCK_LEN);
    // (order key, column) of each block's best, per row.
    let candidates = Tensor::empty(gpu, &[n_rows, n_blocks, 2], DType::U32)?;
    let params =
        Params { n_rows: n_rows as u32, n: n as u32, block_len: BLOCK_LEN as u32, n_blocks: n_blocks as u32 };
    let uniform = gpu.uniform(OP, &params);
    let constants = [("WG", WORKGROUP_SIZE as f64)];
    let blocks = dispatch(
        gpu,
        OP,
        &BLOCKS,
        &constants,
        &[Bind::Tensor(x), Bind::Tensor(&candidates), Bind::Uniform(&uniform)],
        [(n_rows * n_blocks) as u32, 1, 1],
    )?;
    let pick = dispatch(
        gpu,
        OP,
        &CANDIDATES,
        &constants,
        &[Bind::Tensor(&candidates), Bind::Tensor(out), Bind::Uniform(&uniform)],
        [n_rows as u32, 1, 1],
    )?;
    Ok(Op { dispatches: vec![blocks, pick] })
}
