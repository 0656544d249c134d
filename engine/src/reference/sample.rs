//! CPU reference for kernels::sample (the definition is in shaders/sample.wgsl's header).
//!
//! `probabilities` is the definition in f64: the kept set and the renormalised distribution on
//! it. `sample` makes the same seeded draw as the shader: its noise is integer hashing, so the
//! hashes match bit for bit and only float rounding (ids whose scores tie within ~1e-6) can make
//! the two pick differently.

use crate::kernels::sample::SampleParams;

/// Rounds of top-p rejection before the shader falls back to the argmax.
pub const MAX_ROUNDS: u32 = 64;

/// The penalty window of a history ring holding `len` ids ever appended: the last
/// `min(len, capacity)` ids (their order does not matter).
pub fn history_window(ring: &[u32], len: u32) -> &[u32] {
    &ring[..(len as usize).min(ring.len())]
}

/// z: the penalised (once per distinct id in `window`), temperature-scaled logits; NaN as -inf.
/// Greedy params leave the temperature out.
pub fn scaled_logits(logits: &[f32], window: &[u32], p: &SampleParams) -> Vec<f64> {
    let mut seen = vec![false; logits.len()];
    for &id in window {
        if let Some(s) = seen.get_mut(id as usize) {
            *s = true;
        }
    }
    let r = p.repeat_penalty as f64;
    let t = if p.is_greedy() { 1.0 } else { p.temperature as f64 };
    logits
        .iter()
        .zip(&seen)
        .map(|(&l, &s)| {
            let l = if l.is_nan() { f64::NEG_INFINITY } else { l as f64 };
            let l = if s { if l > 0.0 { l / r } else { l * r } } else { l };
            l / t
        })
        .collect()
}

/// Index of the largest value, the smallest index on ties.
pub fn argmax(z: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in z.iter().enumerate() {
        if v > z[best] {
            best = i;
        }
    }
    best
}

/// The thresholds of the kept set `{z >= top_k} ∩ {z >= top_p} ∩ {z >= min_p}`
/// (-inf where a filter is off).
#[derive(Clone, Copy, Debug)]
pub struct Thresholds {
    pub max: f64,
    pub top_k: f64,
    pub top_p: f64,
    pub min_p: f64,
}

impl Thresholds {
    pub fn new(z: &[f64], p: &SampleParams) -> Thresholds {
        let mut sorted = z.to_vec();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let max = sorted[0];
        let k = p.top_k as usize;
        let top_k = if k > 0 && k < z.len() { sorted[k - 1] } else { f64::NEG_INFINITY };
        let mut top_p = f64::NEG_INFINITY;
        if p.top_p < 1.0 {
            // The largest value v >= top_k whose head {z >= v} holds top_p of the top-k mass.
            let head = sorted.iter().take_while(|&&v| v >= top_k);
            let mass_k: f64 = head.clone().map(|&v| (v - max).exp()).sum();
            let mut mass = 0.0;
            for (i, &v) in sorted.iter().enumerate() {
                mass += (v - max).exp();
                let last_of_value = sorted.get(i + 1) != Some(&v);
                if last_of_value && mass >= p.top_p as f64 * mass_k {
                    top_p = v;
                    break;
                }
            }
        }
        let min_p = if p.min_p > 0.0 { max + (p.min_p as f64).ln() } else { f64::NEG_INFINITY };
        Thresholds { max, top_k, top_p, min_p }
    }

    /// The threshold of the kept set.
    pub fn kept_from(&self) -> f64 {
        self.top_k.max(self.top_p).max(self.min_p)
    }
}

/// The distribution the sampler draws from: greedy is one-hot at the argmax; otherwise
/// softmax(z) restricted to the kept set.
pub fn probabilities(logits: &[f32], window: &[u32], p: &SampleParams) -> Vec<f64> {
    let z = scaled_logits(logits, window, p);
    let mut probs = vec![0.0; z.len()];
    if p.is_greedy() {
        probs[argmax(&z)] = 1.0;
        return probs;
    }
    let t = Thresholds::new(&z, p);
    let from = t.kept_from();
    for (q, &v) in probs.iter_mut().zip(&z) {
        if v >= from {
            *q = (v - t.max).exp();
        }
    }
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|q| *q /= total);
    probs
}

/// The shader's draw: Gumbel-max rounds with the same noise, top-p by rejection.
pub fn sample(logits: &[f32], window: &[u32], p: &SampleParams, step: u32) -> u32 {
    let z = scaled_logits(logits, window, p);
    if p.is_greedy() {
        return argmax(&z) as u32;
    }
    let t = Thresholds::new(&z, p);
    // Round r draws from {z >= floor} (round 0) or {z > z of the rejected pick}.
    let draw = |round: u32, keep: &dyn Fn(f64) -> bool| {
        let stream = noise_stream(p.seed, step, round);
        let mut best: Option<(f64, usize)> = None;
        for (i, &v) in z.iter().enumerate() {
            if keep(v) {
                let score = v - exponential(noise_bits(stream, i as u32)).ln();
                if best.is_none_or(|(b, _)| score > b) {
                    best = Some((score, i));
                }
            }
        }
        best.map_or(argmax(&z), |(_, i)| i)
    };
    let floor = t.top_k.max(t.min_p);
    let mut pick = draw(0, &|v| v >= floor);
    for round in 1..=MAX_ROUNDS {
        if z[pick] >= t.top_p {
            return pick as u32;
        }
        if round == MAX_ROUNDS {
            break;
        }
        let above = z[pick];
        pick = draw(round, &|v| v > above);
    }
    argmax(&z) as u32
}

/// The PCG output hash (Jarzynski & Olano 2020), as in the shader.
pub fn pcg_hash(v: u32) -> u32 {
    let state = v.wrapping_mul(747796405).wrapping_add(2891336453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277803737);
    (word >> 22) ^ word
}

/// The noise stream of (seed, step, round).
pub fn noise_stream(seed: u64, step: u32, round: u32) -> u32 {
    let (lo, hi) = (seed as u32, (seed >> 32) as u32);
    pcg_hash(lo ^ pcg_hash(hi ^ pcg_hash(step ^ pcg_hash(round))))
}

/// The noise bits of token `i` in a stream.
pub fn noise_bits(stream: u32, i: u32) -> u32 {
    pcg_hash(pcg_hash(i) ^ stream)
}

/// E = -ln(1 - v) ~ Exp(1), v = (bits + 0.5) / 2^32.
pub fn exponential(bits: u32) -> f64 {
    let v = (bits as f64 + 0.5) / 4294967296.0;
    -(-v).ln_1p()
}
