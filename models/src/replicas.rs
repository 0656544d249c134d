//! Data parallel: one [`Model`] per GPU, each on its own thread, taking prompts from one shared
//! queue (the inference counterpart of PyTorch's DistributedDataParallel: a replica per device,
//! each with a share of the work, nothing shared between them but the queue).
//!
//! ```no_run
//! use shaderlm::replicas::Replicas;
//! use shaderlm::{GenerateOptions, LoadOptions};
//! # fn main() -> shaderlm::Result<()> {
//! let list = shaderlm::engine::gpu::adapters();
//! let gpus = shaderlm::engine::gpu::select_adapters("all", &list)?;
//! let mut replicas = Replicas::load("path/to/model", &LoadOptions::default(), &gpus)?;
//! let prompts = vec!["Once upon a time".to_string(), "The cat".to_string()];
//! // Each GPU decodes up to 8 of the prompts together.
//! let run = replicas.generate(&prompts, &GenerateOptions::default(), 8)?;
//! for result in &run.results {
//!     println!("{}", result.json_line());
//! }
//! eprintln!("{run}");
//! # Ok(()) }
//! ```
//!
//! Results come back in input order whatever replica ran them. With a batch of B, each replica
//! decodes up to B prompts together (a [`BatchGenerator`] pulling from the shared queue as its
//! slots free up); with 1, one prompt at a time through `Model::generate`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::Instant;

use shaderlm_engine::GpuOptions;

use crate::batch::{BatchGenerator, BatchOutput};
use crate::bench::{BatchBenchReport, BenchOptions, BenchReport};
use crate::generate::GenerateOptions;
use crate::model::{LoadOptions, Model};
use crate::{Error, Result};

/// One model per GPU.
pub struct Replicas {
    pub models: Vec<Model>,
}

/// One prompt's outcome.
#[derive(Clone, Debug)]
pub struct PromptResult {
    /// Position of the prompt in the input.
    pub id: usize,
    pub prompt: String,
    /// The continuation only.
    pub text: String,
    /// Tokens generated.
    pub tokens: usize,
    /// Time to first token: the prompt's prefill, from the moment its replica took it.
    pub ttft_ms: f64,
    /// Decode tokens per second of this prompt (tokens after the first over the decode time).
    pub tokens_per_s: f64,
    /// Which replica ran it (index into `Replicas::models`).
    pub replica: usize,
}

impl PromptResult {
    /// The JSON line `generate --prompts-file` writes for a prompt:
    /// {"id","prompt","text","tokens","ttft_ms","tokens_per_s"}.
    pub fn json_line(&self) -> String {
        // A struct, not `json!`, so the keys keep this order.
        #[derive(serde::Serialize)]
        struct Line<'a> {
            id: usize,
            prompt: &'a str,
            text: &'a str,
            tokens: usize,
            ttft_ms: f64,
            tokens_per_s: f64,
        }
        let line = Line {
            id: self.id,
            prompt: &self.prompt,
            text: &self.text,
            tokens: self.tokens,
            ttft_ms: self.ttft_ms,
            tokens_per_s: self.tokens_per_s,
        };
        serde_json::to_string(&line).unwrap_or_default()
    }
}

/// What one replica did in a run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ReplicaStats {
    pub gpu: String,
    pub prompts: usize,
    pub tokens: usize,
    /// From the start of the run to this replica's last result.
    pub seconds: f64,
    pub tokens_per_s: f64,
}

/// Every prompt's result (in input order) and the throughput, per replica and in total.
#[derive(Clone, Debug)]
pub struct ReplicaRun {
    pub results: Vec<PromptResult>,
    pub per_replica: Vec<ReplicaStats>,
    pub tokens: usize,
    pub seconds: f64,
    /// Generated tokens of every replica over the run's wall time.
    pub tokens_per_s: f64,
}

impl std::fmt::Display for ReplicaRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, r) in self.per_replica.iter().enumerate() {
            writeln!(
                f,
                "replica {i} ({}): {} prompts, {} tokens in {:.2} s, {:.1} tokens/s",
                r.gpu, r.prompts, r.tokens, r.seconds, r.tokens_per_s
            )?;
        }
        write!(
            f,
            "total: {} prompts, {} tokens in {:.2} s, {:.1} tokens/s",
            self.results.len(),
            self.tokens,
            self.seconds,
            self.tokens_per_s
        )
    }
}

/// The prompts of a run, handed out in input order to whichever replica asks first.
pub struct PromptQueue<'a> {
    prompts: &'a [String],
    next: AtomicUsize,
    /// Set when a replica fails, so the others stop taking prompts.
    failed: AtomicBool,
}

impl<'a> PromptQueue<'a> {
    pub fn new(prompts: &'a [String]) -> PromptQueue<'a> {
        PromptQueue { prompts, next: AtomicUsize::new(0), failed: AtomicBool::new(false) }
    }

    /// Up to `max` prompts not yet taken, as (id, prompt); empty when none are left.
    pub fn take(&self, max: usize) -> Vec<(usize, &'a str)> {
        if self.failed.load(Ordering::Relaxed) {
            return Vec::new();
        }
        let start = self.next.fetch_add(max, Ordering::Relaxed).min(self.prompts.len());
        let end = (start + max).min(self.prompts.len());
        (start..end).map(|id| (id, self.prompts[id].as_str())).collect()
    }
}

/// One replica's work: takes prompts from the queue until it is empty and generates them,
/// `batch` at a time on `model` (continuous batching: a finished sequence's slot takes the next
/// prompt), or one by one through `Model::generate` when `batch` is 1.
pub fn serve(
    model: &mut Model,
    replica: usize,
    queue: &PromptQueue<'_>,
    options: &GenerateOptions,
    batch: usize,
) -> Result<Vec<PromptResult>> {
    if batch > 1 {
        return serve_batched(model, replica, queue, options, batch);
    }
    let mut results = Vec::new();
    while let Some(&(id, prompt)) = queue.take(1).first() {
        let mut generation = model.generate(prompt, options)?;
        let mut text = String::new();
        for piece in &mut generation {
            text.push_str(&piece?);
        }
        let s = &generation.stats;
        results.push(PromptResult {
            id,
            prompt: prompt.to_string(),
            text,
            tokens: s.generated_tokens,
            ttft_ms: s.time_to_first_token.as_secs_f64() * 1e3,
            tokens_per_s: s.decode_tokens_per_second(),
            replica,
        });
    }
    Ok(results)
}

/// [`serve`] through a [`BatchGenerator`] of `batch` slots that pulls prompts from the queue.
fn serve_batched(
    model: &mut Model,
    replica: usize,
    queue: &PromptQueue<'_>,
    options: &GenerateOptions,
    batch: usize,
) -> Result<Vec<PromptResult>> {
    if !model.has_tokenizer {
        return Err(Error::Input("this model has no tokenizer to encode the prompts".into()));
    }
    let tokenizer = model.tokenizer.clone();
    let mut generator = BatchGenerator::new(model, batch)?;
    let mut next = || -> Result<Option<(usize, Vec<u32>)>> {
        let Some(&(id, prompt)) = queue.take(1).first() else { return Ok(None) };
        Ok(Some((id, tokenizer.encode(prompt, true)?)))
    };
    let outputs = generator.generate_from(&mut next, options)?;
    let result = |o: BatchOutput| PromptResult {
        id: o.index,
        prompt: queue.prompts[o.index].clone(),
        tokens: o.ids.len(),
        text: o.text,
        ttft_ms: o.time_to_first_token.as_secs_f64() * 1e3,
        tokens_per_s: o.tokens_per_second,
        replica,
    };
    Ok(outputs.into_iter().map(result).collect())
}

impl Replicas {
    /// Loads one replica of the model on each adapter in `gpus` (indices into
    /// [`shaderlm_engine::gpu::adapters`]; repeats open several devices on one adapter), in
    /// parallel. `options.gpu` gives the fast paths; its adapter choice is replaced.
    pub fn load(path: impl AsRef<std::path::Path>, options: &LoadOptions, gpus: &[usize]) -> Result<Replicas> {
        if gpus.is_empty() {
            return Err(Error::Input("no GPUs to load replicas on".into()));
        }
        let path = path.as_ref();
        let models = std::thread::scope(|scope| {
            let loads: Vec<_> = gpus
                .iter()
                .map(|&index| {
                    let options = LoadOptions {
                        gpu: GpuOptions { adapter_index: Some(index), ..options.gpu.clone() },
                        // Several bars at once on one terminal would draw over each other.
                        progress: false,
                        split_layers: Vec::new(),
                        ..options.clone()
                    };
                    scope.spawn(move || Model::load(path, &options))
                })
                .collect();
            loads.into_iter().map(join).collect::<Result<Vec<Model>>>()
        })?;
        Ok(Replicas { models })
    }

    /// Generates a continuation of every prompt, spread over the replicas, each decoding up to
    /// `batch` prompts together ([`serve`]); results in input order.
    pub fn generate(&mut self, prompts: &[String], options: &GenerateOptions, batch: usize) -> Result<ReplicaRun> {
        let queue = PromptQueue::new(prompts);
        let started = Instant::now();
        let per_replica = std::thread::scope(|scope| {
            let queue = &queue;
            let workers: Vec<_> = self
                .models
                .iter_mut()
                .enumerate()
                .map(|(i, model)| {
                    scope.spawn(move || {
                        let results = serve(model, i, queue, options, batch);
                        if results.is_err() {
                            queue.failed.store(true, Ordering::Relaxed);
                        }
                        (results, started.elapsed().as_secs_f64(), model.gpu.info().name.clone())
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().map_err(|_| Error::Input("a replica's thread panicked".into()))).collect::<Result<Vec<_>>>()
        })?;
        let seconds = started.elapsed().as_secs_f64();

        let mut results = Vec::with_capacity(prompts.len());
        let mut stats = Vec::with_capacity(per_replica.len());
        for (outcome, replica_seconds, gpu) in per_replica {
            let outcome = outcome?;
            let tokens = outcome.iter().map(|r| r.tokens).sum::<usize>();
            let tokens_per_s = if replica_seconds > 0.0 { tokens as f64 / replica_seconds } else { 0.0 };
            stats.push(ReplicaStats { gpu, prompts: outcome.len(), tokens, seconds: replica_seconds, tokens_per_s });
            results.extend(outcome);
        }
        results.sort_by_key(|r| r.id);
        let tokens = results.iter().map(|r| r.tokens).sum::<usize>();
        let tokens_per_s = if seconds > 0.0 { tokens as f64 / seconds } else { 0.0 };
        Ok(ReplicaRun { results, per_replica: stats, tokens, seconds, tokens_per_s })
    }

    /// The benchmark for data parallelism: first `bench::run` on each replica alone, one after
    /// the other (TTFT, TPOT, MBU: the one-GPU figures), then every replica prefills the same
    /// random prompt and all decode `gen` tokens at once, started together: the decode tokens/s
    /// of each over that window, in total, and the total over one replica's alone.
    pub fn bench(&mut self, options: &BenchOptions) -> Result<DataParallelReport> {
        let replicas = self.models.iter_mut().map(|model| crate::bench::run(model, options)).collect::<Result<Vec<_>>>()?;
        let windows = self.each_at_once(|model, start| decode_together(model, options, start))?;
        let first = windows.iter().map(|w| w.0).min();
        let last = windows.iter().map(|w| w.1).max();
        let seconds = first.zip(last).map_or(0.0, |(a, b)| (b - a).as_secs_f64());
        let per_replica_tok_s = windows.iter().map(|(a, b)| options.gen as f64 / (*b - *a).as_secs_f64()).collect();
        let tokens = options.gen * windows.len();
        let decode_tok_s_total = if seconds > 0.0 { tokens as f64 / seconds } else { 0.0 };
        let alone = replicas.iter().map(|r| r.decode_tok_s).sum::<f64>() / replicas.len() as f64;
        let speedup = if alone > 0.0 { decode_tok_s_total / alone } else { 0.0 };
        Ok(DataParallelReport { replicas, gen: options.gen, seconds, per_replica_tok_s, decode_tok_s_total, speedup })
    }

    /// The benchmark for data parallelism with batching: first `bench::run_batch` of `batch`
    /// sequences on the first replica alone (the one-GPU figure), then on every replica at once,
    /// measured over the same window after each one's warm-up: decode tokens/s of each, in total,
    /// and the total over the one-GPU figure.
    pub fn bench_batch(&mut self, options: &BenchOptions, batch: usize) -> Result<DataParallelBatchReport> {
        let alone = crate::bench::run_batch(&mut self.models[0], options, batch)?;
        let together = self.each_at_once(|model, start| crate::bench::run_batch_synced(model, options, batch, Some(start)))?;
        let decode_tok_s_total = together.iter().map(|r| r.decode_tok_s).sum::<f64>();
        let speedup = if alone.decode_tok_s > 0.0 { decode_tok_s_total / alone.decode_tok_s } else { 0.0 };
        Ok(DataParallelBatchReport { alone, together, decode_tok_s_total, speedup })
    }

    /// Runs `work` on every replica, one thread each; `work` gets a barrier that every thread
    /// reaches exactly once (it must wait on it once, error or not).
    fn each_at_once<T: Send>(&mut self, work: impl Fn(&mut Model, &Barrier) -> Result<T> + Sync) -> Result<Vec<T>> {
        let start = Barrier::new(self.models.len());
        let (start, work) = (&start, &work);
        std::thread::scope(|scope| {
            let handles: Vec<_> = self.models.iter_mut().map(|model| scope.spawn(move || work(model, start))).collect();
            handles.into_iter().map(join).collect()
        })
    }
}

/// Data-parallel decode throughput: each replica's own benchmark, then all decoding at once.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DataParallelReport {
    pub replicas: Vec<BenchReport>,
    /// Tokens each replica decoded in the shared window.
    pub gen: usize,
    /// From the first replica's start to the last one's end.
    pub seconds: f64,
    pub per_replica_tok_s: Vec<f64>,
    pub decode_tok_s_total: f64,
    /// `decode_tok_s_total` over the mean decode tokens/s of a replica alone.
    pub speedup: f64,
}

impl std::fmt::Display for DataParallelReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, report) in self.replicas.iter().enumerate() {
            writeln!(f, "replica {i}, alone\n{report}")?;
        }
        let per: Vec<String> = self.per_replica_tok_s.iter().map(|t| format!("{t:.1}")).collect();
        writeln!(
            f,
            "data parallel, {} replicas decoding {} tokens each at once: {:.1} tokens/s in total ({} per replica), \
             {:.2}x one replica alone, {:.3} s",
            self.replicas.len(),
            self.gen,
            self.decode_tok_s_total,
            per.join(", "),
            self.speedup,
            self.seconds
        )
    }
}

/// Batched decode on one GPU, then on every replica at once ([`Replicas::bench_batch`]).
#[derive(Clone, Debug, serde::Serialize)]
pub struct DataParallelBatchReport {
    /// The first replica alone.
    pub alone: BatchBenchReport,
    /// Every replica, all decoding at once.
    pub together: Vec<BatchBenchReport>,
    /// Sum of the replicas' decode tokens/s while all ran.
    pub decode_tok_s_total: f64,
    /// `decode_tok_s_total` over one replica's alone.
    pub speedup: f64,
}

impl std::fmt::Display for DataParallelBatchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "one GPU alone\n{}", self.alone)?;
        writeln!(f, "{:<8} {:<40} {:>12} {:>16}", "replica", "gpu", "step ms", "decode tok/s")?;
        for (i, r) in self.together.iter().enumerate() {
            writeln!(f, "{:<8} {:<40} {:>12.3} {:>16.1}", i, r.gpu, r.step_ms, r.decode_tok_s)?;
        }
        writeln!(
            f,
            "data parallel, {} replicas at batch {} each: {:.1} tokens/s in total, {:.2}x one GPU alone ({:.1})",
            self.together.len(),
            self.alone.batch,
            self.decode_tok_s_total,
            self.speedup,
            self.alone.decode_tok_s
        )
    }
}

/// Prefills the benchmark's prompt, waits for every replica, then decodes `gen` tokens; returns
/// the decode window.
fn decode_together(model: &mut Model, options: &BenchOptions, start: &Barrier) -> Result<(Instant, Instant)> {
    let prompt = crate::bench::random_prompt(model.config.vocab_size, options.prompt_len);
    let mut prefill = || -> Result<u32> {
        model.set_sampling(&crate::generate::Sampling::GREEDY)?;
        model.cache.tokens.clear();
        Ok(model.prefill(&prompt, options.gen > 0)?.0)
    };
    let first = prefill();
    start.wait();
    let mut id = first?;
    let began = Instant::now();
    for i in 0..options.gen {
        id = model.decode_step(id, i + 1 < options.gen)?;
    }
    Ok((began, Instant::now()))
}

/// A scoped thread's result, a panic turned into an error.
fn join<T>(handle: std::thread::ScopedJoinHandle<'_, Result<T>>) -> Result<T> {
    handle.join().map_err(|_| Error::Input("a replica's thread panicked".into()))?
}

/// Prompts from a file, one per line; blank lines are skipped. A line may hold a JSON string
/// (starting with a double quote) to give a prompt with newlines or other escapes.
pub fn read_prompts(path: &std::path::Path) -> Result<Vec<String>> {
    Ok(read_prompt_lines(path)?.into_iter().map(|(_, prompt)| prompt).collect())
}

/// [`read_prompts`] with each prompt's line number (from 0).
pub fn read_prompt_lines(path: &std::path::Path) -> Result<Vec<(usize, String)>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    text.lines()
        .map(|line| line.trim_end_matches('\r'))
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(number, line)| {
            if line.starts_with('"') {
                let prompt = serde_json::from_str::<String>(line)
                    .map_err(|e| Error::Input(format!("{}:{}: {line}: {e}", path.display(), number + 1)))?;
                Ok((number, prompt))
            } else {
                Ok((number, line.to_string()))
            }
        })
        .collect()
}
