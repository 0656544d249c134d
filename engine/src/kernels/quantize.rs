//! Quantizing on the GPU: an F16 or F32 weight `[N, K]` into a packed Q8, Q4 or Q4G128 tensor
//! (shaders/quantize_q8.wgsl, shaders/quantize_q4.wgsl), bit for bit what the CPU quantizers
//! `dtype::quantize_q8` / `dtype::quantize_q4` produce (round to nearest; see `dtype`).
//!
//! A model uploads its f16 weights and quantizes them where they are: the GPU reads each weight
//! once, and the CPU does no per-element work. Large tensors are handled in row chunks that
//! bound both the input's and the output's bindings.

use super::{dims2, dispatch, expect_dtype, shader, Bind, Op, Shader};
use crate::error::{Error, Result};
use crate::{DType, Gpu, Tensor};

const Q8: Shader = shader!("quantize_q8");
const Q4: Shader = shader!("quantize_q4");

/// Threads per workgroup.
const WORKGROUP_SIZE: u32 = 64;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Groups in this dispatch (one row chunk).
    pub groups: u32,
    /// Threads that have work: `groups` for Q4, `ceil(groups / 2)` for Q8 (a thread per
    /// scale word, which holds two groups' scales).
    pub threads: u32,
    pub _pad: [u32; 2],
}
const _: () = assert!(std::mem::size_of::<Params>() == 16);

/// Writes `out` (`[N, K]` Q8, Q4 or Q4G128, a whole tensor) from `w` (`[N, K]` F16 or F32).
pub fn quantize(gpu: &Gpu, w: &Tensor, out: &Tensor) -> Result<Op> {
    const OP: &str = "quantize";
    expect_dtype(OP, "w", w, &[DType::F32, DType::F16])?;
    expect_dtype(OP, "out", out, &[DType::Q8, DType::Q4, DType::Q4G128])?;
    let (n, k) = dims2(OP, "w", w)?;
    super::expect_shape(OP, "out", out, &[n, k])?;
    if out.same_buffer(w) {
        return Err(Error::shape(OP, "out buffer (must not alias w)", "a distinct buffer", "shared"));
    }
    let group = out.dtype().group().unwrap_or(32);
    let shader = if out.dtype() == DType::Q8 { &Q8 } else { &Q4 };
    let constants = [
        ("WORKGROUP_SIZE", WORKGROUP_SIZE as f64),
        ("GROUP", group as f64),
        ("W_F16", if w.dtype() == DType::F16 { 1.0 } else { 0.0 }),
    ];
    // Chunks of the output that also keep the input's rows within one binding.
    let w_row_bytes = w.dtype().bytes_for(k).max(1);
    let max_rows = (gpu.info().max_binding_bytes / w_row_bytes).max(1) as usize;
    let mut dispatches = Vec::new();
    for (first_row, chunk) in out.row_chunks_of_at_most(gpu, max_rows)? {
        let rows = chunk.shape()[0];
        let w_rows = w.rows(first_row, rows)?;
        let groups = (rows * k / group) as u32;
        let threads = if out.dtype() == DType::Q8 { groups.div_ceil(2) } else { groups };
        if threads == 0 {
            continue;
        }
        let uniform = gpu.uniform(OP, &Params { groups, threads, _pad: [0; 2] });
        let binds = [Bind::Tensor(&w_rows), Bind::Quants(&chunk), Bind::Scales(&chunk), Bind::Uniform(&uniform)];
        dispatches.push(dispatch(gpu, OP, shader, &constants, &binds, [threads.div_ceil(WORKGROUP_SIZE), 1, 1])?);
    }
    Ok(Op { dispatches })
}
