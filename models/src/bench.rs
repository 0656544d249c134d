//! `shaderlm bench`: the numbers the field reports, measured on the GPU in use.
//!
//! Time to first token (TTFT: a prompt of `prompt_len` random ids, from a cold cache, to the
//! first sampled id on the CPU), time per output token (TPOT: the mean decode step, each step one
//! command buffer and one 4-byte readback), prefill and decode tokens/s, the bytes a decode step
//! reads (every weight once but the embedding table, of which one row, plus the KV cache up to the mean position), and model bandwidth
//! utilisation MBU = bytes per step / TPOT / copy bandwidth measured on this GPU. Two figures say
//! what bounds TPOT: the host's time to record and submit a step, and the GPU's time to run one
//! (timestamps); decode steps are pipelined, so TPOT is about the larger of the two.

use std::time::Instant;

use crate::generate::Sampling;
use crate::model::Model;
use crate::Result;

#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub prompt_len: usize,
    pub gen: usize,
    /// Untimed runs before measuring.
    pub warmup: usize,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchReport {
    pub model: String,
    pub gpu: String,
    pub dtype: String,
    pub load_s: f64,
    pub prompt_len: usize,
    pub gen: usize,
    pub ttft_ms: f64,
    pub tpot_ms: f64,
    /// Host time to record and submit one decode step (the CPU's share of TPOT; with
    /// pipelining it overlaps the GPU's work on the step before). A driver that blocks in
    /// vkQueueSubmit until the previous submission is done (Mesa's lavapipe does, on the
    /// semaphore wgpu chains submissions with) adds that wait here: `--no-pipeline` shows the
    /// host's own time there.
    pub record_ms: f64,
    /// GPU time of one decode step (its dispatches and the gaps between them, timestamped on a
    /// step run alone; median of several); absent where the GPU has no timestamp queries.
    pub gpu_step_ms: Option<f64>,
    pub prefill_tok_s: f64,
    pub decode_tok_s: f64,
    pub weight_bytes: u64,
    pub kv_bytes_per_token: u64,
    pub bytes_per_token: u64,
    pub bandwidth_gbs: f64,
    pub mbu: f64,
    pub gpu_memory_bytes: u64,
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rows = [
            ("model", self.model.clone()),
            ("gpu", self.gpu.clone()),
            ("weights", self.dtype.clone()),
            ("load", format!("{:.2} s", self.load_s)),
            ("prompt / generated", format!("{} / {}", self.prompt_len, self.gen)),
            ("time to first token", format!("{:.2} ms", self.ttft_ms)),
            ("time per output token", format!("{:.3} ms", self.tpot_ms)),
            ("host record + submit", format!("{:.3} ms per step", self.record_ms)),
            ("GPU time per step", self.gpu_step_ms.map_or("n/a (no timestamps)".into(), |t| format!("{t:.3} ms"))),
            ("prefill", format!("{:.0} tokens/s", self.prefill_tok_s)),
            ("decode", format!("{:.1} tokens/s", self.decode_tok_s)),
            ("bytes read per decode step", format!("{:.1} MiB (weights {:.1}, KV {:.1})", mib(self.bytes_per_token), mib(self.weight_bytes), mib(self.kv_bytes_per_token))),
            ("copy bandwidth (read+write)", format!("{:.1} GB/s", self.bandwidth_gbs)),
            ("MBU", format!("{:.1} %", 100.0 * self.mbu)),
            ("GPU memory", format!("{:.1} MiB", mib(self.gpu_memory_bytes))),
        ];
        for (k, v) in rows {
            writeln!(f, "{k:<30} {v}")?;
        }
        Ok(())
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

/// `len` (at least 1) pseudo-random token ids below `vocab`, the same on every call.
pub fn random_prompt(vocab: usize, len: usize) -> Vec<u32> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    (0..len.max(1))
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % vocab as u64) as u32
        })
        .collect()
}

/// Runs the benchmark on a loaded model (greedy decoding of random ids; no tokenizer needed).
pub fn run(model: &mut Model, opts: &BenchOptions) -> Result<BenchReport> {
    let prompt = random_prompt(model.config.vocab_size, opts.prompt_len);
    if prompt.len() + opts.gen >= model.context() {
        return Err(crate::Error::Input(format!(
            "prompt {} + generated {} tokens exceed the context {} (raise --ctx)",
            prompt.len(),
            opts.gen,
            model.context()
        )));
    }
    model.set_sampling(&Sampling::GREEDY)?;

    let measure = |model: &mut Model| -> Result<(f64, f64)> {
        model.cache.tokens.clear();
        let t = Instant::now();
        let (mut id, _) = model.prefill(&prompt, opts.gen > 0)?;
        let ttft = t.elapsed().as_secs_f64();
        model.decode_host = Default::default();
        let t = Instant::now();
        for i in 0..opts.gen {
            id = model.decode_step(id, i + 1 < opts.gen)?;
        }
        Ok((ttft, t.elapsed().as_secs_f64() / opts.gen.max(1) as f64))
    };
    for _ in 0..opts.warmup {
        measure(model)?;
    }
    let (ttft, tpot) = measure(model)?;
    let (host, steps) = model.decode_host;
    let record_ms = host.as_secs_f64() * 1e3 / steps.max(1) as f64;
    let gpu_step_ms = if model.gpu.info().features.timestamp_query {
        let mut spans = (0..9).map(|_| model.time_decode_step()).collect::<Result<Vec<f64>>>()?;
        spans.sort_by(f64::total_cmp);
        Some(spans[spans.len() / 2] * 1e3)
    } else {
        None
    };

    let cfg = &model.config;
    let kv_row = model.cache.k[0].byte_size() / model.cache.capacity as u64;
    let mean_context = (prompt.len() + opts.gen / 2) as u64;
    let kv_bytes_per_token = 2 * cfg.num_hidden_layers as u64 * kv_row * mean_context;
    let weight_bytes = model.decode_read_bytes();
    let bytes_per_token = weight_bytes + kv_bytes_per_token;
    let bandwidth = shaderlm_engine::bandwidth::copy_bandwidth(&model.gpu, 1 << 30, 20)?;
    Ok(BenchReport {
        model: model.path.display().to_string(),
        gpu: model.gpus().iter().map(|g| g.info().name.clone()).collect::<Vec<_>>().join(" + "),
        dtype: model.dtype_name(),
        load_s: model.summary.seconds,
        prompt_len: prompt.len(),
        gen: opts.gen,
        ttft_ms: ttft * 1e3,
        tpot_ms: tpot * 1e3,
        record_ms,
        gpu_step_ms,
        prefill_tok_s: prompt.len() as f64 / ttft,
        decode_tok_s: 1.0 / tpot,
        weight_bytes,
        kv_bytes_per_token,
        bytes_per_token,
        bandwidth_gbs: bandwidth / 1e9,
        mbu: bytes_per_token as f64 / tpot / bandwidth,
        gpu_memory_bytes: model.summary.weight_bytes + model.summary.kv_bytes + model.summary.activation_bytes,
    })
}
