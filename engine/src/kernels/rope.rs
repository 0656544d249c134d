//! Rotary position embedding, in place (shaders/rope.wgsl), and the host helper that builds
//! its `inv_freq` table (with the Llama-3.1 "llama3" frequency scaling).
//!
//! Layout: Hugging Face "rotate_half" (the two halves of the rotated part of each head pair up:
//! element `i` with `i + rot_dim/2`), on the first `rot_dim = 2 * inv_freq.len()` elements of each
//! head; the rest of the head (partial rotary) is left as it is. Row `t` of `x` sits at position
//! `pos[0] + t`, read on the GPU, so an op built once is replayed at every step after the host
//! rewrites `pos`. Angles are reduced exactly (see the shader's header): the result matches an
//! f64 computation at any position, not only small ones.

use super::{dispatch, expect_dtype, expect_shape, shader, Bind, Op, Shader};
use crate::error::{Error, Result};
use crate::{DType, Gpu, Tensor};

const SHADER: Shader = shader!("rope");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n_rows: u32,
    pub n_heads: u32,
    pub head_dim: u32,
    /// `rot_dim / 2`: the length of `inv_freq`.
    pub half: u32,
}
const _: () = assert!(std::mem::size_of::<Params>() == 16);

/// Rotates `x` (`[T, n_heads * head_dim]` or `[n_heads * head_dim]`, f32) in place; row `t` is at
/// position `pos[0] + t` (`pos`: u32 `[1]`). `inv_freq` (f32 `[rot_dim / 2]`, `rot_dim <=
/// head_dim`) gives each pair's radians per position.
pub fn rope(
    gpu: &Gpu,
    x: &Tensor,
    inv_freq: &Tensor,
    pos: &Tensor,
    n_heads: usize,
    head_dim: usize,
) -> Result<Op> {
    const OP: &str = "rope";
    expect_dtype(OP, "x", x, &[DType::F32])?;
    expect_dtype(OP, "inv_freq", inv_freq, &[DType::F32])?;
    expect_dtype(OP, "pos", pos, &[DType::U32])?;
    expect_shape(OP, "pos", pos, &[1])?;
    let row_len = n_heads * head_dim;
    let n_rows = match *x.shape() {
        [n] if n == row_len => 1,
        [rows, n] if n == row_len => rows,
        _ => {
            let expected = format!("[T, {row_len}] (n_heads * head_dim per row)");
            return Err(Error::Shape { op: OP, what: "x".into(), expected, got: format!("{:?}", x.shape()) });
        }
    };
    let half = match *inv_freq.shape() {
        [half] if half >= 1 && 2 * half <= head_dim => half,
        _ => {
            let what = "inv_freq (rot_dim / 2, rot_dim <= head_dim)";
            return Err(Error::shape(OP, what, [head_dim / 2], inv_freq.shape()));
        }
    };
    if x.same_buffer(inv_freq) || x.same_buffer(pos) {
        let expected = "a buffer other than inv_freq's and pos'";
        return Err(Error::shape(OP, "x buffer", expected, "an input's buffer"));
    }
    let params =
        Params { n_rows: n_rows as u32, n_heads: n_heads as u32, head_dim: head_dim as u32, half: half as u32 };
    let uniform = gpu.uniform(OP, &params);
    let groups = ((n_rows * n_heads * half) as u32).div_ceil(256);
    let binds = [Bind::Tensor(x), Bind::Tensor(inv_freq), Bind::Tensor(pos), Bind::Uniform(&uniform)];
    let d = dispatch(gpu, OP, &SHADER, &[], &binds, [groups, 1, 1])?;
    Ok(Op { dispatches: vec![d] })
}

/// The Llama-3.1 `rope_scaling` of type "llama3": long wavelengths slowed down by `factor`, short
/// ones kept, a smooth blend between.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Llama3Scaling {
    pub factor: f32,
    pub low_freq_factor: f32,
    pub high_freq_factor: f32,
    pub original_max_position_embeddings: usize,
}

/// `inv_freq[i] = theta^(-2i / rot_dim)` for `i < rot_dim / 2`, then Llama-3 scaling if given:
/// with `wavelen = 2 pi / f` and `orig = original_max_position_embeddings`, a frequency whose
/// wavelength is under `orig / high_freq_factor` is kept, one over `orig / low_freq_factor` is
/// divided by `factor`, and one between blends the two with
/// `smooth = (orig / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)`:
/// `f = (1 - smooth) * f / factor + smooth * f`. Computed in f64, rounded once to f32.
pub fn inv_freq(rot_dim: usize, theta: f32, scaling: Option<Llama3Scaling>) -> Vec<f32> {
    (0..rot_dim / 2)
        .map(|i| {
            let f = (theta as f64).powf(-((2 * i) as f64) / rot_dim as f64);
            let Some(s) = scaling else { return f as f32 };
            let (factor, low, high) = (s.factor as f64, s.low_freq_factor as f64, s.high_freq_factor as f64);
            let orig = s.original_max_position_embeddings as f64;
            let wavelen = 2.0 * std::f64::consts::PI / f;
            let scaled = if wavelen < orig / high {
                f
            } else if wavelen > orig / low {
                f / factor
            } else {
                let smooth = (orig / wavelen - low) / (high - low);
                (1.0 - smooth) * f / factor + smooth * f
            };
            scaled as f32
        })
        .collect()
}
