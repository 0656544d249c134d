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

/// `shaderlm bench --batch B`: B sequences decoded together (`BatchGenerator`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct BatchBenchReport {
    pub model: String,
    pub gpu: String,
    pub dtype: String,
    pub batch: usize,
    pub prompt_len: usize,
    pub gen: usize,
    /// The B prompts prefilled one after another, each into its slot.
    pub prefill_s: f64,
    pub decode_steps: usize,
    /// Mean decode step (B tokens): time outside prefills over the steps (pipelined: about the
    /// larger of the GPU's time per step and the host's).
    pub step_ms: f64,
    /// Tokens of all sequences per second of decode steps.
    pub decode_tok_s: f64,
    /// What each sequence sees: one token per step.
    pub per_sequence_tok_s: f64,
    pub weight_bytes: u64,
    /// Bytes one step reads: every weight once, and each sequence's KV cache up to the mean position.
    pub bytes_per_step: u64,
    pub bandwidth_gbs: f64,
    pub mbu: f64,
    pub kv_cache_bytes: u64,
}

impl std::fmt::Display for BatchBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rows = [
            ("model", self.model.clone()),
            ("gpu", self.gpu.clone()),
            ("weights", self.dtype.clone()),
            ("batch", self.batch.to_string()),
            ("prompt / generated", format!("{} / {} per sequence", self.prompt_len, self.gen)),
            ("prefill (all prompts)", format!("{:.3} s", self.prefill_s)),
            ("decode step", format!("{:.3} ms ({} steps)", self.step_ms, self.decode_steps)),
            ("decode, all sequences", format!("{:.1} tokens/s", self.decode_tok_s)),
            ("decode, per sequence", format!("{:.1} tokens/s", self.per_sequence_tok_s)),
            ("bytes read per decode step", format!("{:.1} MiB (weights {:.1})", mib(self.bytes_per_step), mib(self.weight_bytes))),
            ("copy bandwidth (read+write)", format!("{:.1} GB/s", self.bandwidth_gbs)),
            ("MBU", format!("{:.1} %", 100.0 * self.mbu)),
            ("batched KV cache", format!("{:.1} MiB", mib(self.kv_cache_bytes))),
        ];
        for (k, v) in rows {
            writeln!(f, "{k:<30} {v}")?;
        }
        Ok(())
    }
}

/// Runs `batch` sequences of random prompts together for `gen` tokens each (greedy, no stop but
/// the token limit) and reports the decode steps' total throughput.
pub fn run_batch(model: &mut Model, opts: &BenchOptions, batch: usize) -> Result<BatchBenchReport> {
    run_batch_synced(model, opts, batch, None)
}

/// [`run_batch`], waiting on `start` (when given) after the warm-up, so that replicas on several
/// GPUs measure over the same window. The barrier is waited on exactly once, error or not.
pub fn run_batch_synced(
    model: &mut Model,
    opts: &BenchOptions,
    batch: usize,
    start: Option<&std::sync::Barrier>,
) -> Result<BatchBenchReport> {
    let warm = warm_batch(model, opts, batch);
    if let Some(start) = start {
        start.wait();
    }
    let (mut generator, prompts, options, setup) = warm?;
    generator.clear_slots();
    generator.generate_ids(prompts, &options)?;
    let BatchSetup { prompt_len, gen, kv_row, layers, weight_bytes, model_name, gpu_name, dtype } = setup;
    // Measured after the decode, on a GPU at its working clocks (measured before the warm-up it
    // read 1.7 TB/s on the H200 against 4.2 after).
    let bandwidth = shaderlm_engine::bandwidth::copy_bandwidth(&generator.model().gpu, 1 << 30, 20)?;
    let stats = generator.stats.clone();
    let step = stats.decode_time.as_secs_f64() / stats.decode_steps.max(1) as f64;
    let mean_context = (prompt_len + gen / 2) as u64;
    let bytes_per_step = weight_bytes + batch as u64 * 2 * layers * kv_row * mean_context;
    Ok(BatchBenchReport {
        model: model_name,
        gpu: gpu_name,
        dtype,
        batch,
        prompt_len,
        gen,
        prefill_s: stats.prefill_time.as_secs_f64(),
        decode_steps: stats.decode_steps,
        step_ms: step * 1e3,
        decode_tok_s: stats.decode_tokens_per_second(),
        per_sequence_tok_s: 1.0 / step,
        weight_bytes,
        bytes_per_step,
        bandwidth_gbs: bandwidth / 1e9,
        mbu: bytes_per_step as f64 / step / bandwidth,
        kv_cache_bytes: generator.cache_bytes(),
    })
}

/// What the batched benchmark knows before it measures.
struct BatchSetup {
    prompt_len: usize,
    gen: usize,
    kv_row: u64,
    layers: u64,
    weight_bytes: u64,
    model_name: String,
    gpu_name: String,
    dtype: String,
}

/// The batched benchmark up to its measurement: random prompts, the generator, the warm-up runs.
#[allow(clippy::type_complexity)]
fn warm_batch<'m>(
    model: &'m mut Model,
    opts: &BenchOptions,
    batch: usize,
) -> Result<(crate::batch::BatchGenerator<'m>, Vec<Vec<u32>>, crate::GenerateOptions, BatchSetup)> {
    let vocab = model.config.vocab_size as u64;
    let gen = opts.gen.max(2);
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut random_id = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % vocab) as u32
    };
    let prompts: Vec<Vec<u32>> = (0..batch).map(|_| (0..opts.prompt_len.max(1)).map(|_| random_id()).collect()).collect();
    let prompt_len = opts.prompt_len.max(1);
    if prompt_len + gen >= model.context() {
        return Err(crate::Error::Input(format!(
            "prompt {prompt_len} + generated {gen} tokens exceed the context {} (raise --ctx)",
            model.context()
        )));
    }
    let kv_row = model.cache.k[0].byte_size() / model.cache.capacity as u64;
    let layers = model.config.num_hidden_layers as u64;
    let weight_bytes = model.weights.decode_read_bytes();
    let (model_name, gpu_name, dtype) = (model.path.display().to_string(), model.gpu.info().name.clone(), model.dtype_name());
    let setup = BatchSetup { prompt_len, gen, kv_row, layers, weight_bytes, model_name, gpu_name, dtype };
    let mut generator = crate::batch::BatchGenerator::new(model, batch)?;
    generator.ids_only = true;
    let options = crate::GenerateOptions { max_tokens: gen, sampling: Sampling::GREEDY, stop: Vec::new() };
    for _ in 0..opts.warmup {
        generator.clear_slots();
        generator.generate_ids(prompts.clone(), &options)?;
    }
    Ok((generator, prompts, options, setup))
}
