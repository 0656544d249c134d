//! `Model`: a loaded checkpoint on a GPU, with its tokenizer, KV cache and the decode step's ops
//! built once. `generate` and `chat` return a streaming [`Generation`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shaderlm_engine::kernels::{argmax, cross_entropy, sample};
use shaderlm_engine::{DType, Gpu, GpuOptions, ReadbackRing, Recorder, Tensor};

use crate::checkpoint::{Checkpoint, Config};
use crate::compress::calib::{self, CalibOptions, CalibStats};
use crate::compress::edits::{self, Edits};
use crate::compress::plan::{prune_name, CompressOptions, LoadPlan, Prune, Sparsity};
use crate::compress::summary::kind_rows;
use crate::generate::{GenerateOptions, Generation, Sampling};
use crate::kv_cache::KvCache;
use crate::llama::{forward, Activations, StepInput, StepOps, WeightDType, Weights};
use crate::split::{Stage, StageInput};
use crate::tokenizer::{ChatMessage, Tokenizer};
use crate::{Error, Result};

/// How to load a model.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Precision of the weights on the GPU (f16 by default).
    pub dtype: WeightDType,
    /// Context cap: the KV cache holds this many positions (default: the model's
    /// max_position_embeddings, at most 4096).
    pub ctx: Option<usize>,
    /// Most prompt tokens run in one prefill pass (longer prompts run in several).
    pub prefill_chunk: usize,
    /// Which GPU and which fast paths.
    pub gpu: GpuOptions,
    /// Draw a progress bar on stderr while loading.
    pub progress: bool,
    /// Submit each decode step before reading back the previous one's id (on by default; off
    /// runs one step at a time, which only measurements want). A split model runs one step at a
    /// time whatever this says.
    pub pipeline: bool,
    /// The rest of the load plan: per-tensor dtype rules, pruning, calibration (`dtype` is
    /// the default for linear layers).
    pub compress: CompressOptions,
    /// Split the decoder layers across these adapters (indices into
    /// [`shaderlm_engine::gpu::adapters`], in layer order; the same index twice opens two devices
    /// on one adapter), balanced by bytes: see [`crate::split`]. Empty: one GPU, chosen by `gpu`.
    /// The other fields of `gpu` (fast paths) apply to every part.
    pub split_layers: Vec<usize>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            dtype: WeightDType::F16,
            ctx: None,
            prefill_chunk: 512,
            gpu: GpuOptions::default(),
            progress: false,
            pipeline: true,
            compress: CompressOptions::default(),
            split_layers: Vec::new(),
        }
    }
}

pub use crate::compress::summary::LoadSummary;

pub struct Model {
    pub gpu: Gpu,
    pub config: Config,
    pub tokenizer: Tokenizer,
    /// False for a checkpoint without tokenizer files (it runs from token ids only).
    pub has_tokenizer: bool,
    pub path: PathBuf,
    pub summary: LoadSummary,
    pub(crate) weights: Weights,
    pub(crate) cache: KvCache,
    pub(crate) act: Activations,
    /// A split model's parts before this one (on other GPUs, holding the layers before
    /// `weights.first_layer`); empty when the model is on one GPU.
    pub(crate) front: Vec<Stage>,
    /// The decode step (one token in, logits out), built once and replayed.
    decode: StepOps,
    greedy: shaderlm_engine::Op,
    sampler: sample::Sampler,
    sampling: Sampling,
    /// Ids the sampler's repetition penalty looks at (prompt and generated), on the GPU; the
    /// sampler appends each id it draws.
    history: Tensor,
    history_len: Tensor,
    /// `positions[p] = p` for `p <= ctx`: a decode step copies its position from here into
    /// `act.pos` on the GPU, so the host writes nothing between steps.
    positions: Tensor,
    /// Where each submitted step's sampled id comes back, one slot per step in flight.
    readbacks: ReadbackRing,
    /// Position the next decode step feeds: `cache.tokens.len()`, plus one while a step
    /// submitted ahead is in flight.
    next_pos: usize,
    pipeline: bool,
    /// Host time spent recording and submitting decode steps, and their count (for bench).
    pub(crate) decode_host: (Duration, usize),
}

impl Model {
    /// Loads a Hugging Face model folder or a GGUF file onto the GPU.
    pub fn load(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Model> {
        let started = Instant::now();
        let path = path.as_ref();
        let ckpt = Checkpoint::open(path)?;
        let ckpt_config = ckpt.config().clone();
        // The plan is checked before anything heavy runs (bad rules, wanda without --calib).
        let plan = LoadPlan::new(&ckpt_config, options.dtype, &options.compress)?;
        // A synthesized checkpoint has no tokenizer: it can still run from ids (bench, logits).
        let has_tokenizer = ckpt.has_tokenizer();
        let mut tokenizer = if has_tokenizer { ckpt.tokenizer()? } else { Tokenizer::placeholder() };
        tokenizer.add_eos_ids(&ckpt_config.eos_token_ids);

        let ctx = options.ctx.unwrap_or(4096).min(ckpt_config.max_position_embeddings).max(1);
        if options.ctx.is_some_and(|c| c > ckpt_config.max_position_embeddings) {
            return Err(Error::Input(format!(
                "--ctx {} is larger than the model's max_position_embeddings {}",
                options.ctx.unwrap_or(0),
                ckpt_config.max_position_embeddings
            )));
        }
        // Activations first, on a dense copy that is dropped before the real model loads.
        let calibrating = Instant::now();
        let stats = match (&options.compress.stats, plan.needs_stats()) {
            (_, false) => None,
            (Some(stats), true) => Some(stats.clone()),
            (None, true) => Some(calibrate_dense(path, options, &plan)?),
        };
        let calibrate_seconds = if stats.is_some() { calibrating.elapsed().as_secs_f64() } else { 0.0 };
        let gpu = Gpu::with_options(options.gpu.clone())?;
        let edits = Edits::compute(&gpu, &ckpt, &plan, stats.as_deref(), options.progress)?;
        let config = edits.config(&ckpt_config);

        let kv_width = config.num_key_value_heads * config.head_dim;
        let kv_dtype = plan.float_dtype();
        let rows = options.prefill_chunk.clamp(1, ctx);

        // One part on one GPU, or consecutive layer ranges on several (the last one is this
        // model; the ones before it are its front stages, which take the base dtype only).
        let parts = crate::split::plan(&config, options)?;
        if parts.len() > 1 && (options.compress.keep_layers > 0 || !options.compress.rules.is_empty() || !options.compress.prune.is_empty()) {
            return Err(Error::Input("--split-layers does not combine with --keep-layers, --override, --plan or --prune yet".into()));
        }
        let kv_layer_bytes = 2 * kv_dtype.bytes_for(ctx * kv_width);
        let kv_bytes = kv_layer_bytes * config.num_hidden_layers as u64;
        let loading = Instant::now();
        let mut front = Vec::with_capacity(parts.len() - 1);
        let (gpu, weight_bytes) = if parts.len() == 1 {
            let weight_bytes = edits::planned_bytes(&ckpt_config, &plan, &edits);
            check_fits(&gpu, weight_bytes + kv_bytes)?;
            (gpu, weight_bytes)
        } else {
            let mut gpus = Vec::with_capacity(parts.len());
            for part in &parts {
                let gpu = Gpu::with_options(part.gpu.clone())?;
                check_fits(&gpu, part.weight_bytes + kv_layer_bytes * part.layers.len() as u64)?;
                gpus.push(gpu);
            }
            let last = gpus.pop().ok_or_else(|| Error::Input("no GPU to load on".into()))?;
            for (i, (stage_gpu, part)) in gpus.into_iter().zip(&parts).enumerate() {
                let label = format!("part {}/{}", i + 1, parts.len());
                front.push(Stage::load(stage_gpu, &ckpt, options.dtype, part.layers.clone(), ctx, rows, load_progress(options.progress, &label))?);
            }
            (last, parts.iter().map(|p| p.weight_bytes).sum::<u64>())
        };
        let own = parts[parts.len() - 1].layers.clone();
        let label = if parts.len() == 1 { "loading".to_string() } else { format!("part {}/{}", parts.len(), parts.len()) };
        let (weights, tensors) =
            Weights::load_planned(&gpu, &ckpt, &plan, &edits, own.clone(), load_progress(options.progress, &label))?;
        let weights_seconds = loading.elapsed().as_secs_f64();
        let cache = KvCache::new(&gpu, own.len(), ctx, kv_width, kv_dtype)?;
        let act = Activations::new(&gpu, &config, rows)?;
        let decode = forward(&gpu, &config, &weights, &cache, &act, StepInput::Sampled, None)?;
        let greedy = argmax::argmax(&gpu, &act.logits, &act.next)?.labelled("argmax");
        let history = Tensor::empty(&gpu, &[ctx], DType::U32)?;
        let history_len = Tensor::from_u32(&gpu, &[1], &[0])?;
        let positions = Tensor::from_u32(&gpu, &[ctx + 1], &(0..=ctx as u32).collect::<Vec<_>>())?;
        let sampling = Sampling::GREEDY;
        let sampler = sample::Sampler::new(
            &gpu,
            &act.logits,
            &act.next,
            &act.pos,
            &history,
            &history_len,
            sampling,
        )?;
        // Two slots: the step being read and the one submitted ahead of it.
        let readbacks = ReadbackRing::new(&gpu, 1, 2);
        let pruning = options.compress.prune.iter().find(|p| matches!(p, Prune::Weights { .. })).map(|p| {
            let two_four = matches!(p, Prune::Weights { sparsity: Sparsity::NM { n: 2, m: 4 }, .. });
            // Stored compressed where some tensor took a 2:4 storage dtype.
            let compressed = two_four && tensors.iter().any(|t| t.dtype.is_sparse());
            (prune_name(p), compressed)
        });
        let summary = LoadSummary {
            parameters: parameter_count(&config),
            weight_bytes,
            kv_bytes,
            activation_bytes: act.bytes() * parts.len() as u64,
            seconds: started.elapsed().as_secs_f64(),
            calibrate_seconds,
            edit_seconds: edits.seconds,
            weights_seconds,
            kinds: kind_rows(&tensors),
            tensors,
            tied: matches!((&weights.lm_head, &weights.embed_tokens), (Some(head), Some(embed)) if head.same_buffer(embed)),
            pruning,
            dropped_layers: (0..ckpt_config.num_hidden_layers).filter(|l| !edits.layers.contains(l)).collect(),
            ffn_channels: (config.intermediate_size != ckpt_config.intermediate_size)
                .then_some((config.intermediate_size, ckpt_config.intermediate_size)),
            awq: edits.awq_reports.clone(),
        };
        Ok(Model {
            gpu,
            config,
            tokenizer,
            has_tokenizer,
            path: path.to_path_buf(),
            summary,
            weights,
            cache,
            act,
            pipeline: options.pipeline && front.is_empty(),
            front,
            decode,
            greedy,
            sampler,
            sampling,
            history,
            history_len,
            positions,
            readbacks,
            next_pos: 0,
            decode_host: (Duration::ZERO, 0),
        })
    }

    /// Streams the continuation of `prompt` (BOS added if the model wants it).
    pub fn generate(&mut self, prompt: &str, options: &GenerateOptions) -> Result<Generation<'_>> {
        self.require_tokenizer()?;
        let ids = self.tokenizer.encode(prompt, true)?;
        self.generate_ids(ids, options)
    }

    /// Streams the assistant's reply to a conversation, rendered with the model's chat template.
    pub fn chat(&mut self, messages: &[ChatMessage], options: &GenerateOptions) -> Result<Generation<'_>> {
        self.require_tokenizer()?;
        let text = self.tokenizer.apply_chat_template(messages, true)?;
        // The template writes the BOS token itself where the model wants one.
        let ids = self.tokenizer.encode(&text, false)?;
        self.generate_ids(ids, options)
    }

    /// Streams the continuation of a tokenized prompt.
    pub fn generate_ids(&mut self, ids: Vec<u32>, options: &GenerateOptions) -> Result<Generation<'_>> {
        if ids.is_empty() {
            return Err(Error::Input("the prompt is empty".into()));
        }
        if ids.len() >= self.context() {
            return Err(Error::Input(format!(
                "the prompt has {} tokens but the context holds {} (raise --ctx, up to {})",
                ids.len(),
                self.context(),
                self.config.max_position_embeddings
            )));
        }
        Generation::start(self, ids, options.clone())
    }

    /// The weights' precision on the GPU, for reports.
    /// The linear layers' dtypes, most parameters first (`q8+f16` when --keep-layers or rules
    /// mix them), and "+2:4", "+50%" etc. when pruned.
    pub fn dtype_name(&self) -> String {
        use crate::compress::edits::Kind;
        let mut params: Vec<(DType, u64)> = Vec::new();
        for t in self.summary.tensors.iter().filter(|t| matches!(t.kind, Kind::Qkv | Kind::O | Kind::GateUp | Kind::Down)) {
            match params.iter_mut().find(|(d, _)| *d == t.dtype) {
                Some((_, n)) => *n += t.params,
                None => params.push((t.dtype, t.params)),
            }
        }
        params.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
        let mut name = params.iter().map(|(d, _)| d.to_string()).collect::<Vec<_>>().join("+");
        if name.is_empty() {
            name = self.weights.q_dtype().to_string();
        }
        if let Some((method, _)) = &self.summary.pruning {
            name += &format!(" {method}");
        }
        name
    }

    fn require_tokenizer(&self) -> Result<()> {
        if self.has_tokenizer {
            return Ok(());
        }
        Err(Error::Input(format!(
            "{} has no tokenizer (tokenizer.json): it can run from token ids only (bench, logits)",
            self.path.display()
        )))
    }

    /// Positions the KV cache holds.
    pub fn context(&self) -> usize {
        self.cache.capacity
    }

    pub(crate) fn cached_tokens(&self) -> usize {
        self.cache.tokens.len()
    }

    pub(crate) fn is_eos(&self, id: u32) -> bool {
        self.config.eos_token_ids.contains(&id) || self.tokenizer.eos_ids().contains(&id)
    }

    pub(crate) fn set_sampling(&mut self, sampling: &Sampling) -> Result<()> {
        self.sampling = *sampling;
        self.sampler.set_params(&self.gpu, *sampling)?;
        Ok(())
    }

    /// Runs the prompt (reusing any cached prefix), samples the first new id on the GPU and
    /// returns it with the number of prompt tokens actually run. With `ahead` (and pipelining
    /// on), the first decode step, which feeds that id, is submitted before the id is read back.
    pub(crate) fn prefill(&mut self, ids: &[u32], ahead: bool) -> Result<(u32, usize)> {
        // A step submitted ahead by the last generation and never used: let it finish.
        self.readbacks.clear(&self.gpu)?;
        let reuse = self.cache.reusable_prefix(ids);
        self.cache.tokens.truncate(reuse);
        self.history.write_words(&self.gpu, ids)?;
        self.history_len.write_u32(&self.gpu, &[ids.len() as u32])?;
        let mut start = reuse;
        while start < ids.len() {
            let chunk = &ids[start..ids.len().min(start + self.act.rows)];
            let last = start + chunk.len() == ids.len();
            let ops = self.chunk_ops(chunk, start, None)?;
            let mut rec = Recorder::new(&self.gpu);
            ops.record(&mut rec, &self.act)?;
            if last {
                self.record_sample(&mut rec)?;
            }
            let submission = rec.submit()?;
            if last {
                self.readbacks.push(submission)?;
            }
            self.cache.tokens.extend_from_slice(chunk);
            start += chunk.len();
        }
        self.next_pos = ids.len();
        if ahead && self.pipeline {
            self.submit_decode()?;
        }
        Ok((self.take_id()?, ids.len() - reuse))
    }

    /// Feeds `id` (the last sampled token, already in `act.next` on the GPU) at the next
    /// position and returns the id sampled after it.
    ///
    /// With `ahead` (and pipelining on), the step after this one is submitted before this one's
    /// id is read back: its input is that id, already on the GPU, so it runs while the host
    /// reads and handles it. If generation then stops (end of sequence, a stop string), the step
    /// submitted ahead is dropped: its keys and values sit past `cache.tokens`, where whatever
    /// runs next at that position overwrites them before anything reads them.
    pub(crate) fn decode_step(&mut self, id: u32, ahead: bool) -> Result<u32> {
        let pos = self.cache.tokens.len();
        if self.next_pos == pos {
            // No step feeding `id` was submitted ahead.
            self.run_front(&[id], pos)?;
            self.submit_decode()?;
        }
        self.cache.tokens.push(id);
        if ahead && self.pipeline && self.next_pos < self.context() {
            self.submit_decode()?;
        }
        self.take_id()
    }

    /// Records and submits one decode step at `next_pos`. Its input is `act.next`, the id the
    /// step before it sampled; its position is copied from `positions` on the GPU.
    fn submit_decode(&mut self) -> Result<()> {
        let started = Instant::now();
        let pos = self.next_pos;
        let mut rec = self.record_decode(pos)?;
        self.record_sample(&mut rec)?;
        let submission = rec.submit()?;
        self.readbacks.push(submission)?;
        self.next_pos += 1;
        self.decode_host.0 += started.elapsed();
        self.decode_host.1 += 1;
        Ok(())
    }

    /// GPU seconds of one decode step run on its own at the next free position (timestamps
    /// around its dispatches: the work and the gaps between them, not the host's part). Its
    /// keys and values land past `cache.tokens`, like a step submitted ahead and dropped.
    pub(crate) fn time_decode_step(&mut self) -> Result<f64> {
        self.readbacks.clear(&self.gpu)?;
        let pos = self.cache.tokens.len().min(self.context() - 1);
        let mut rec = self.record_decode(pos)?;
        rec.run(self.sample_op());
        Ok(rec.submit_gpu_span()?)
    }

    /// Waits for the oldest step in flight and returns the id it sampled.
    fn take_id(&mut self) -> Result<u32> {
        let words = self.readbacks.pop(&self.gpu)?;
        words.and_then(|w| w.first().copied()).ok_or_else(|| Error::Input("no step in flight to read".into()))
    }

    /// A recorder holding the decode step at position `pos` (its position copied in on the GPU).
    fn record_decode(&self, pos: usize) -> Result<Recorder<'_>> {
        let mut rec = Recorder::with_capacity(&self.gpu, self.decode.command_count() + 4);
        rec.copy(&self.positions.rows(pos, 1)?, &self.act.pos)?;
        self.decode.record(&mut rec, &self.act)?;
        Ok(rec)
    }

    /// The op that picks the next id: the plain argmax when no temperature or penalty is asked
    /// for (cheaper than the sampler, which gives the same id then), else the sampler.
    fn sample_op(&self) -> &shaderlm_engine::Op {
        let argmax = self.sampling.is_greedy() && self.sampling.repeat_penalty == 1.0;
        if argmax { &self.greedy } else { self.sampler.op() }
    }

    fn record_sample<'a>(&'a self, rec: &mut Recorder<'a>) -> Result<()> {
        rec.run(self.sample_op());
        rec.readback(&self.act.next, self.readbacks.slot()?)?;
        Ok(())
    }

    /// Logits at every position of `ids`, run from position 0 (tests and perplexity).
    /// Returns (len, vocab) row-major.
    pub fn logits(&mut self, ids: &[u32]) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(ids.len() * self.config.vocab_size);
        self.for_each_logits_chunk(ids, |gpu, logits, _| {
            out.extend(logits.to_f32(gpu)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Negative log-likelihood of each next token: element t is -log p(ids[t + 1] | ids[..=t]),
    /// computed on the GPU (cross_entropy) so only one float per position comes back.
    pub fn next_token_nll(&mut self, ids: &[u32]) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(ids.len());
        self.for_each_logits_chunk(ids, |gpu, logits, start| {
            let rows = logits.shape()[0];
            // The last position has no next token: give it id 0 and drop its value.
            let targets: Vec<u32> = (0..rows).map(|r| ids.get(start + r + 1).copied().unwrap_or(0)).collect();
            let targets = Tensor::from_u32(gpu, &[rows], &targets)?;
            let nll = Tensor::empty(gpu, &[rows], shaderlm_engine::DType::F32)?;
            let op = cross_entropy::cross_entropy(gpu, logits, &targets, &nll)?;
            let mut rec = Recorder::new(gpu);
            rec.run(&op);
            rec.submit()?;
            out.extend(nll.to_f32(gpu)?);
            Ok(())
        })?;
        out.truncate(ids.len() - 1);
        Ok(out)
    }

    /// Writes a prompt chunk's ids and first position to the GPU and builds its forward step
    /// (the logits of every row into `logits_all`, or of the last row only). Ids past the
    /// vocabulary are refused here, for every path that runs a prompt.
    pub(crate) fn chunk_ops(&self, chunk: &[u32], start: usize, logits_all: Option<&Tensor>) -> Result<StepOps> {
        if let Some(&bad) = chunk.iter().find(|&&id| id as usize >= self.config.vocab_size) {
            return Err(Error::Input(format!("token id {bad} is outside the vocabulary ({})", self.config.vocab_size)));
        }
        self.act.tokens.rows(0, chunk.len())?.write_words(&self.gpu, chunk)?;
        self.act.pos.write_u32(&self.gpu, &[start as u32])?;
        self.run_front(chunk, start)?;
        let input = StepInput::Tokens(chunk.len());
        forward(&self.gpu, &self.config, &self.weights, &self.cache, &self.act, input, logits_all)
    }

    /// Waits for any step in flight and forgets the cached tokens, so that nothing reuses what
    /// the cache holds (the calibration pass runs its own chunks through it).
    pub(crate) fn forget_context(&mut self) -> Result<()> {
        self.readbacks.clear(&self.gpu)?;
        self.cache.tokens.clear();
        Ok(())
    }

    /// Runs `ids` from position 0 in prefill chunks, handing each chunk's logits
    /// (chunk, vocab) and its first position to `visit`.
    fn for_each_logits_chunk(
        &mut self,
        ids: &[u32],
        mut visit: impl FnMut(&Gpu, &Tensor, usize) -> Result<()>,
    ) -> Result<()> {
        if ids.is_empty() || ids.len() > self.context() {
            return Err(Error::Input(format!("logits: {} tokens for a context of {}", ids.len(), self.context())));
        }
        self.readbacks.clear(&self.gpu)?;
        self.cache.tokens.clear();
        let vocab = self.config.vocab_size;
        for (i, chunk) in ids.chunks(self.act.rows).enumerate() {
            let start = i * self.act.rows;
            let logits = Tensor::empty(&self.gpu, &[chunk.len(), vocab], DType::F32)?;
            let ops = self.chunk_ops(chunk, start, Some(&logits))?;
            let mut rec = Recorder::new(&self.gpu);
            ops.record(&mut rec, &self.act)?;
            rec.submit()?;
            visit(&self.gpu, &logits, start)?;
            self.cache.tokens.extend_from_slice(chunk);
        }
        Ok(())
    }
}

/// Loads `path` dense (f16, no plan) on its own GPU context, runs the calibration pass over the
/// plan's calibration text, and drops the dense model.
fn calibrate_dense(path: &Path, options: &LoadOptions, plan: &LoadPlan) -> Result<std::sync::Arc<CalibStats>> {
    let file = plan.calib.as_ref().ok_or_else(|| Error::Input("calibration needs --calib FILE".into()))?;
    let ckpt_positions = Checkpoint::open(path)?.config().max_position_embeddings;
    let chunk = CalibOptions::default().chunk.min(ckpt_positions).max(1);
    let dense_options = LoadOptions {
        dtype: crate::llama::WeightDType::F16,
        ctx: Some(chunk),
        prefill_chunk: chunk,
        gpu: options.gpu.clone(),
        progress: options.progress,
        pipeline: true,
        compress: CompressOptions::default(),
        split_layers: Vec::new(),
    };
    let mut dense = Model::load(path, &dense_options)?;
    let ids = calib::calibration_ids(&dense, file, plan.calib_tokens)?;
    let calib_options = CalibOptions { chunk, progress: options.progress, ..Default::default() };
    Ok(std::sync::Arc::new(calib::calibrate(&mut dense, &ids, &calib_options)?))
}

impl Model {
    /// A split model: runs `ids` at positions `start..` through the parts before this one, each
    /// on its GPU, and writes the residual stream they end with into `act.x` here, where this
    /// part's step (recorded next) takes it. Nothing to do on one GPU.
    fn run_front(&self, ids: &[u32], start: usize) -> Result<()> {
        let mut hidden = Vec::new();
        for (i, stage) in self.front.iter().enumerate() {
            let input = if i == 0 { StageInput::Ids(ids) } else { StageInput::Hidden(&hidden) };
            hidden = stage.run(&self.config, input, ids.len(), start)?;
        }
        if !self.front.is_empty() {
            self.act.x.rows(0, ids.len())?.write_f32(&self.gpu, &hidden)?;
        }
        Ok(())
    }

    /// The GPUs the model runs on, in layer order (one unless split).
    pub fn gpus(&self) -> Vec<&Gpu> {
        self.front.iter().map(|s| &s.gpu).chain([&self.gpu]).collect()
    }

    /// The decoder layers on each GPU of [`Model::gpus`].
    pub fn layer_ranges(&self) -> Vec<std::ops::Range<usize>> {
        let range = |w: &Weights| w.first_layer..w.first_layer + w.layers.len();
        self.front.iter().map(|s| range(&s.weights)).chain([range(&self.weights)]).collect()
    }

    /// Bytes of weights one decode step reads, over every part (see `Weights::decode_read_bytes`).
    pub fn decode_read_bytes(&self) -> u64 {
        self.front.iter().map(|s| s.weights.decode_read_bytes()).sum::<u64>() + self.weights.decode_read_bytes()
    }
}

/// A progress callback for `Weights::load` that draws a bar labelled `label` (or nothing).
fn load_progress(show: bool, label: &str) -> impl FnMut(usize, usize) {
    let bar = show.then(|| crate::progress::bar(label, 0));
    move |done, total| {
        if let Some(bar) = &bar {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            if done == total {
                bar.finish_and_clear();
            }
        }
    }
}

fn parameter_count(c: &Config) -> u64 {
    let (h, f, v) = (c.hidden_size as u64, c.intermediate_size as u64, c.vocab_size as u64);
    let qw = (c.num_attention_heads * c.head_dim) as u64;
    let kvw = (c.num_key_value_heads * c.head_dim) as u64;
    let layer = h * qw * 2 + 2 * h * kvw + 3 * h * f + 2 * h;
    v * h * if c.tie_word_embeddings { 1 } else { 2 } + layer * c.num_hidden_layers as u64 + h
}

/// Fails before allocating if the plan cannot fit the device.
fn check_fits(gpu: &Gpu, bytes: u64) -> Result<()> {
    if let Some(available) = gpu.memory_bytes() {
        if bytes > available {
            return Err(Error::OutOfMemory {
                what: format!("weights and KV cache on {}", gpu.info().name),
                needed: bytes,
                available,
            });
        }
    }
    Ok(())
}
