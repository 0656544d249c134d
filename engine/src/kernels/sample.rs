//! Sampling a token id on the GPU (shaders/sample.wgsl): repetition penalty, temperature, top-k,
//! top-p, min-p and a seeded draw, in one dispatch; only the chosen id need ever be read back.
//!
//! A [`Sampler`] is built once per stream of sampling and its [`Sampler::op`] recorded every
//! step. Per-step state lives in GPU tensors the caller owns: `step` (mixed into the noise: the
//! model passes its position), the history ring and its length (the sampler appends each chosen
//! id, so a decode loop needs no CPU work; the caller writes the prompt's ids there first).
//! [`Sampler::set_params`] rewrites the parameters in place.

use super::{dispatch, expect_dtype, expect_shape, shader, Bind, Op, Shader};
use crate::error::{Error, Result};
use crate::{DType, Gpu, Tensor};

const SHADER: Shader = shader!("sample");
const OP: &str = "sample";

/// How to choose the next id. The filters combine as in Hugging Face: temperature, then top-k,
/// then top-p over the top-k set, then min-p; see shaders/sample.wgsl for the exact definition.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleParams {
    /// `<= 0` means greedy (argmax).
    pub temperature: f32,
    /// Keep the `top_k` largest (ties at the boundary all kept); 0 = off; 1 = greedy.
    pub top_k: u32,
    /// Keep the smallest head holding `top_p` of the (top-k) mass; 1.0 = off.
    pub top_p: f32,
    /// Keep tokens with prob >= `min_p` * max prob; 0.0 = off.
    pub min_p: f32,
    /// For ids in the history window: logit > 0 ? logit / r : logit * r; 1.0 = off.
    pub repeat_penalty: f32,
    pub seed: u64,
}

impl SampleParams {
    /// Argmax, no penalty.
    pub const GREEDY: SampleParams =
        SampleParams { temperature: 0.0, top_k: 0, top_p: 1.0, min_p: 0.0, repeat_penalty: 1.0, seed: 0 };

    /// True when the result is the argmax: temperature <= 0 or top_k == 1.
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0 || self.top_k == 1
    }
}

impl Default for SampleParams {
    fn default() -> Self {
        SampleParams::GREEDY
    }
}

/// Mirrors `Params` in shaders/sample.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n: u32,
    pub history_capacity: u32,
    pub top_k: u32,
    pub greedy: u32,
    pub inv_temperature: f32,
    pub top_p: f32,
    pub ln_min_p: f32,
    pub min_p_on: u32,
    pub repeat_penalty: f32,
    pub seed_lo: u32,
    pub seed_hi: u32,
    pub _pad0: u32,
}
const _: () = assert!(std::mem::size_of::<Params>() == 48);

impl Params {
    /// Checks `p` and turns it into what the shader reads for a row of `n` logits.
    pub fn new(p: &SampleParams, n: usize, history_capacity: usize) -> Result<Params> {
        let bad = |what: &str, expected: &str, got: f32| Error::Shape {
            op: OP,
            what: format!("parameter {what}"),
            expected: expected.into(),
            got: got.to_string(),
        };
        if p.temperature.is_nan() || p.temperature.is_infinite() {
            return Err(bad("temperature", "a finite number", p.temperature));
        }
        if !(0.0..=1.0).contains(&p.top_p) {
            return Err(bad("top_p", "in [0, 1]", p.top_p));
        }
        if !(0.0..=1.0).contains(&p.min_p) {
            return Err(bad("min_p", "in [0, 1]", p.min_p));
        }
        if !(p.repeat_penalty > 0.0 && p.repeat_penalty.is_finite()) {
            return Err(bad("repeat_penalty", "finite and > 0", p.repeat_penalty));
        }
        let greedy = p.is_greedy();
        Ok(Params {
            n: n as u32,
            history_capacity: history_capacity as u32,
            top_k: if (p.top_k as usize) < n { p.top_k } else { 0 },
            greedy: greedy as u32,
            inv_temperature: if greedy { 1.0 } else { 1.0 / p.temperature },
            top_p: p.top_p,
            ln_min_p: if p.min_p > 0.0 { (p.min_p as f64).ln() as f32 } else { 0.0 },
            min_p_on: (p.min_p > 0.0) as u32,
            repeat_penalty: p.repeat_penalty,
            seed_lo: p.seed as u32,
            seed_hi: (p.seed >> 32) as u32,
            _pad0: 0,
        })
    }
}

/// Threads of the one workgroup: 1024 on a GPU (one pass is latency bound, so more loads in
/// flight pay), 256 on a CPU adapter such as lavapipe (where 1024 ran 3x slower), and never
/// more than the device allows.
fn workgroup_size(gpu: &Gpu) -> u32 {
    let info = gpu.info();
    // Workgroup memory: 24 bytes (a partial) + 4 (a gathered key) per thread, and a little more.
    let fits = |wg: u32| wg <= info.max_invocations_per_workgroup && 28 * wg + 256 <= info.max_workgroup_storage_bytes;
    if info.device_type != "Cpu" && fits(1024) {
        1024
    } else if fits(256) {
        256
    } else {
        64
    }
}

/// The GPU-side state of one stream of sampling: the params uniform, a scratch bit set, and
/// the recorded dispatch.
pub struct Sampler {
    uniform: wgpu::Buffer,
    op: Op,
    /// Scratch: the scaled, penalised logits and the bit set of ids in the history window
    /// (the bind group also holds them).
    _scratch: [Tensor; 2],
    n: usize,
    history_capacity: usize,
}

impl Sampler {
    /// `logits`: F32 `[n]` or `[1, n]`. `out`: U32 `[1]`, receives the id. `step`: U32 `[1]`,
    /// a value that changes every step (the position), mixed into the noise. `history`: U32
    /// `[capacity]`, a ring: the j-th id ever appended sits at `j % capacity`; the penalty
    /// window is its last `min(history_len, capacity)` ids. `history_len`: U32 `[1]`. The op
    /// appends the chosen id to the ring and increments `history_len`.
    pub fn new(
        gpu: &Gpu,
        logits: &Tensor,
        out: &Tensor,
        step: &Tensor,
        history: &Tensor,
        history_len: &Tensor,
        params: SampleParams,
    ) -> Result<Sampler> {
        expect_dtype(OP, "logits", logits, &[DType::F32])?;
        let n = logits.numel();
        if n == 0 || n >= 1 << 31 || logits.shape().last() != Some(&n) {
            return Err(Error::shape(OP, "logits shape (one row)", "[n] or [1, n], n >= 1", logits.shape()));
        }
        for (what, t) in [("out", out), ("step", step), ("history", history), ("history_len", history_len)] {
            expect_dtype(OP, what, t, &[DType::U32])?;
        }
        expect_shape(OP, "out", out, &[1])?;
        expect_shape(OP, "step", step, &[1])?;
        expect_shape(OP, "history_len", history_len, &[1])?;
        let history_capacity = history.numel();
        if history.shape().len() != 1 || history_capacity == 0 {
            return Err(Error::shape(OP, "history shape", "[capacity], capacity >= 1", history.shape()));
        }
        // A buffer bound read-only and read-write in one dispatch is a usage conflict.
        for (what, t) in [("out", out), ("history", history), ("history_len", history_len)] {
            if t.same_buffer(logits) || t.same_buffer(step) {
                return Err(Error::shape(OP, format!("{what} buffer"), "not shared with logits or step", "shared"));
            }
        }

        let uniform = gpu.uniform(OP, &Params::new(&params, n, history_capacity)?);
        let scaled = Tensor::empty(gpu, &[n.next_multiple_of(4)], DType::F32)?;
        let seen = Tensor::empty(gpu, &[n.div_ceil(32)], DType::U32)?;
        let binds = [
            Bind::Tensor(logits),
            Bind::Tensor(step),
            Bind::Tensor(history),
            Bind::Tensor(history_len),
            Bind::Tensor(out),
            Bind::Tensor(&scaled),
            Bind::Tensor(&seen),
            Bind::Uniform(&uniform),
        ];
        let d = dispatch(gpu, OP, &SHADER, &[("WG", workgroup_size(gpu) as f64)], &binds, [1, 1, 1])?;
        Ok(Sampler { uniform, op: Op { dispatches: vec![d] }, _scratch: [scaled, seen], n, history_capacity })
    }

    /// The dispatch to record each step (built once).
    pub fn op(&self) -> &Op {
        &self.op
    }

    /// Rewrites the parameters (a queue write, ordered before later submissions); no rebuild.
    pub fn set_params(&self, gpu: &Gpu, params: SampleParams) -> Result<()> {
        let p = Params::new(&params, self.n, self.history_capacity)?;
        gpu.queue.write_buffer(&self.uniform, 0, bytemuck::bytes_of(&p));
        Ok(())
    }
}
