//! Batched generation: many prompts decoded together on one GPU, with continuous batching.
//!
//! A [`BatchGenerator`] holds B slots, each a region of one batched KV cache
//! (`KvCache::batched`). A waiting prompt takes a free slot and is prefilled into it by the
//! model's own prefill path (the slot's cache region stands in for the model's cache), which also
//! samples its first token. Then each decode step feeds one token of every slot at once: the
//! linear layers run as matmuls over the B rows, so each weight is read once for all of them
//! (where batching gains its throughput), and RoPE, the cache writes and attention run per row,
//! at that sequence's own position in its own slot. A sequence that finishes (end of sequence, a
//! stop string, the token limit, a full context) leaves its slot and the next waiting prompt takes
//! it.
//!
//! ```no_run
//! use shaderlm::{batch::BatchGenerator, GenerateOptions, LoadOptions, Model};
//! # fn main() -> shaderlm::Result<()> {
//! let mut model = Model::load("path/to/model", &LoadOptions::default())?;
//! let prompts = ["Once upon a time".to_string(), "The cat".to_string()];
//! let mut batch = BatchGenerator::new(&mut model, 8)?;
//! for out in batch.generate(&prompts, &GenerateOptions::default())? {
//!     println!("{} -> {}", out.index, out.text);
//! }
//! # Ok(()) }
//! ```
//!
//! Greedy output equals what `Model::generate` gives for each prompt alone (the decode step's
//! matmuls and the single step's matvecs add in other orders, so a near tie between two logits
//! could in principle go the other way). Sampled sequences use the engine's sampler per row,
//! seeded and stepped as the single path does.
//!
//! Steps are pipelined as in `Model::decode_step`: the step after the one being read is already
//! submitted (each row's input id is the one the step before it wrote on the GPU; the host
//! writes only the positions), so the GPU does not wait while the host handles ids. A sequence
//! that finishes has one step in flight that it no longer needs: its id is dropped, and the keys
//! and values it wrote lie past what the slot's next prompt reuses.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use shaderlm_engine::kernels::{argmax, sample};
use shaderlm_engine::{DType, Op, ReadbackRing, Recorder, Tensor};

use crate::generate::{FinishReason, GenerateOptions, Sampling};
use crate::kv_cache::KvCache;
use crate::llama::{forward, Activations, StepInput, StepOps};
use crate::model::Model;
use crate::tokenizer::TokenStream;
use crate::{Error, Result};

/// What one prompt produced.
#[derive(Clone, Debug)]
pub struct BatchOutput {
    /// The prompt's index in the input.
    pub index: usize,
    pub prompt_tokens: usize,
    /// The generated text (up to a stop string, which is not included).
    pub text: String,
    /// The generated ids (an end-of-sequence id is not included).
    pub ids: Vec<u32>,
    /// From the start of the run (when every prompt arrived) to this prompt's first token: it
    /// includes the time the prompt waited for a free slot.
    pub time_to_first_token: Duration,
    /// Generated tokens after the first, per second of this sequence's decoding (as
    /// `GenerationStats::decode_tokens_per_second`).
    pub tokens_per_second: f64,
    pub finish: FinishReason,
}

/// Totals of one run, for the benchmark and the CLI's summary.
#[derive(Clone, Debug, Default)]
pub struct BatchStats {
    pub prompts: usize,
    pub generated_tokens: usize,
    /// Tokens that decode steps produced (the first token of each prompt comes from its prefill;
    /// ids of steps submitted ahead for a sequence that then finished are not counted).
    pub decode_tokens: usize,
    pub decode_steps: usize,
    /// Time outside prefills (decode steps, handling ids), and in prefills.
    pub decode_time: Duration,
    pub prefill_time: Duration,
    pub total_time: Duration,
}

impl BatchStats {
    /// All generated tokens per second of the whole run (prefills included).
    pub fn tokens_per_second(&self) -> f64 {
        self.generated_tokens as f64 / self.total_time.as_secs_f64().max(1e-9)
    }

    /// Tokens the decode steps produced, per second of decode steps.
    pub fn decode_tokens_per_second(&self) -> f64 {
        self.decode_tokens as f64 / self.decode_time.as_secs_f64().max(1e-9)
    }
}

/// The GPU state of one slot's sampler (used by sequences that do not decode greedily): the
/// engine's sampler reads one row of logits, so each step copies the slot's row and position in
/// and its id out.
struct SlotSampler {
    sampler: sample::Sampler,
    logits: Tensor,      // (1, vocab) copy of the slot's row of the batch's logits
    step: Tensor,        // (1) copy of the slot's position
    out: Tensor,         // (1) the drawn id, copied into the slot's row of `next`
    history: Tensor,     // (context) the prompt's and generated ids, for the repetition penalty
    history_len: Tensor, // (1)
}

/// A sequence in a slot.
struct Running {
    index: usize,
    prompt_tokens: usize,
    /// Generated ids fed to decode steps so far (submitted, maybe not yet read): the next one
    /// fed, `ids[fed]`, takes position `prompt_tokens + fed`.
    fed: usize,
    ids: Vec<u32>,
    decoder: TokenStream,
    text: String,
    ttft: Duration,
    first_token_at: Instant,
    /// Drawn by the slot's sampler (else the batch's argmax).
    sampled: bool,
}

/// B slots decoding together on one model's GPU; see the module docs.
pub struct BatchGenerator<'m> {
    model: &'m mut Model,
    /// (slots, capacity, kv width) per layer; row `capacity - 1` of every slot is never a real
    /// position (capacity > the model's context): idle slots write there.
    cache: KvCache,
    /// Ids whose keys and values fill each slot, so a prompt sharing a prefix with the slot's
    /// last sequence prefills only what is new.
    slot_tokens: Vec<Vec<u32>>,
    act: Activations,
    /// One decode step over every slot, built once.
    step: StepOps,
    greedy: Op,
    samplers: Vec<SlotSampler>,
    /// Each step's ids come back here; two steps in flight.
    readbacks: ReadbackRing,
    /// For the benchmark: sequences end at the token limit only (random weights draw
    /// end-of-sequence ids too), and no text is decoded (host time that is not the GPU's).
    pub(crate) ids_only: bool,
    pub stats: BatchStats,
}

impl<'m> BatchGenerator<'m> {
    /// Allocates `slots` (at least 1) sequences' KV cache of the model's context and a decode
    /// step over them. The cache takes `slots` times the model's own cache.
    pub fn new(model: &'m mut Model, slots: usize) -> Result<BatchGenerator<'m>> {
        if slots == 0 {
            return Err(Error::Input("a batch needs at least one slot".into()));
        }
        if model.gpus().len() > 1 {
            return Err(Error::Input(
                "batched decoding runs a model held by one GPU; a model split over GPUs (--split-layers) \
                 decodes one sequence at a time (or give each GPU a replica: --gpus without --split-layers)"
                    .into(),
            ));
        }
        let gpu = &model.gpu;
        let cfg = &model.config;
        let kv_width = cfg.num_key_value_heads * cfg.head_dim;
        let kv_dtype = model.cache.k.first().map_or(DType::F16, |t| t.dtype());
        let context = model.context();
        // Refuse before allocating when the slots' caches cannot fit beside what the model holds.
        let cache_bytes = 2 * cfg.num_hidden_layers as u64 * kv_dtype.bytes_for(slots * (context + 1) * kv_width);
        if let Some(available) = gpu.memory_bytes() {
            let held = model.summary.weight_bytes + model.summary.kv_bytes + model.summary.activation_bytes;
            if held + cache_bytes > available {
                let what = format!("the KV cache of {slots} slots of {context} positions beside the model");
                return Err(Error::OutOfMemory { what, needed: held + cache_bytes, available });
            }
        }
        let cache = KvCache::batched(gpu, cfg.num_hidden_layers, slots, context + 1, kv_width, kv_dtype)?;
        let act = Activations::for_batch(gpu, cfg, slots)?;
        let step = forward(gpu, cfg, &model.weights, &cache, &act, StepInput::Batch(slots), Some(&act.logits))?;
        let greedy = argmax::argmax(gpu, &act.logits, &act.next)?.labelled("argmax");
        let mut samplers = Vec::with_capacity(slots);
        for _ in 0..slots {
            let logits = Tensor::empty(gpu, &[1, cfg.vocab_size], DType::F32)?;
            let u32s = |n: usize| Tensor::empty(gpu, &[n], DType::U32);
            let (step, out, history, history_len) = (u32s(1)?, u32s(1)?, u32s(context)?, u32s(1)?);
            let sampler = sample::Sampler::new(gpu, &logits, &out, &step, &history, &history_len, Sampling::GREEDY)?;
            samplers.push(SlotSampler { sampler, logits, step, out, history, history_len });
        }
        let readbacks = ReadbackRing::new(gpu, slots, 2);
        Ok(BatchGenerator {
            slot_tokens: vec![Vec::new(); slots],
            cache,
            act,
            step,
            greedy,
            samplers,
            readbacks,
            ids_only: false,
            stats: BatchStats::default(),
            model,
        })
    }

    /// The model the batch runs on.
    pub fn model(&self) -> &Model {
        self.model
    }

    pub fn slots(&self) -> usize {
        self.samplers.len()
    }

    /// Forgets what the slots hold, so the next prompts are prefilled in full.
    pub fn clear_slots(&mut self) {
        self.slot_tokens.iter_mut().for_each(Vec::clear);
    }

    /// Bytes the batched KV cache holds on the GPU.
    pub fn cache_bytes(&self) -> u64 {
        self.cache.bytes()
    }

    /// Generates a continuation of every prompt (BOS added where the model wants it), in slots
    /// as they free up; returns the outputs in input order.
    pub fn generate(&mut self, prompts: &[String], options: &GenerateOptions) -> Result<Vec<BatchOutput>> {
        if !self.model.has_tokenizer {
            return Err(Error::Input("this model has no tokenizer: give token ids (generate_ids)".into()));
        }
        let ids = prompts.iter().map(|p| self.model.tokenizer.encode(p, true)).collect::<Result<Vec<_>>>()?;
        self.generate_ids(ids, options)
    }

    /// [`BatchGenerator::generate`] for tokenized prompts. Every prompt is checked (not empty,
    /// shorter than the context, ids in the vocabulary) before anything runs.
    pub fn generate_ids(&mut self, prompts: Vec<Vec<u32>>, options: &GenerateOptions) -> Result<Vec<BatchOutput>> {
        if prompts.is_empty() {
            return Err(Error::Input("no prompts to generate from".into()));
        }
        for (i, p) in prompts.iter().enumerate() {
            self.check_prompt(i, p)?;
        }
        let mut prompts = prompts.into_iter().enumerate();
        let mut outputs = self.generate_from(&mut || Ok(prompts.next()), options)?;
        outputs.sort_by_key(|o| o.index);
        Ok(outputs)
    }

    /// Checks that prompt `index` can run: not empty, shorter than the context, ids in the
    /// vocabulary.
    pub fn check_prompt(&self, index: usize, prompt: &[u32]) -> Result<()> {
        let (context, vocab) = (self.model.context(), self.model.config.vocab_size);
        if prompt.is_empty() {
            return Err(Error::Input(format!("prompt {index} is empty")));
        }
        if prompt.len() >= context {
            return Err(Error::Input(format!(
                "prompt {index} has {} tokens but the context holds {context} (raise --ctx, up to {})",
                prompt.len(),
                self.model.config.max_position_embeddings
            )));
        }
        if let Some(bad) = prompt.iter().find(|&&id| id as usize >= vocab) {
            return Err(Error::Input(format!("prompt {index}: token id {bad} is outside the vocabulary ({vocab})")));
        }
        Ok(())
    }

    /// Continuous batching over prompts pulled from `next` as slots free up: it returns
    /// `(index, ids)` of the next prompt (each is checked as [`BatchGenerator::check_prompt`]
    /// does when it is pulled), or `None` when there are no more. Outputs come in the
    /// order the sequences finish; each carries its prompt's index. This is how data-parallel
    /// replicas share one queue of prompts (`replicas::serve`).
    pub fn generate_from(
        &mut self,
        next: &mut dyn FnMut() -> Result<Option<(usize, Vec<u32>)>>,
        options: &GenerateOptions,
    ) -> Result<Vec<BatchOutput>> {
        let sampled = !(options.sampling.is_greedy() && options.sampling.repeat_penalty == 1.0);
        for s in &self.samplers {
            s.sampler.set_params(&self.model.gpu, options.sampling)?;
        }
        self.stats = BatchStats::default();
        let started = Instant::now();
        let mut slots: Vec<Option<Running>> = (0..self.slots()).map(|_| None).collect();
        let mut outputs: Vec<BatchOutput> = Vec::new();
        let mut drained = false;
        // For each step in flight, oldest first: the sequence (prompt index) each row fed.
        let mut in_flight: VecDeque<Vec<Option<usize>>> = VecDeque::new();
        loop {
            // Waiting prompts take the free slots (one that ends at its first token frees it again).
            for (s, slot) in slots.iter_mut().enumerate() {
                while slot.is_none() && !drained {
                    let Some((i, prompt)) = next()? else {
                        drained = true;
                        break;
                    };
                    self.check_prompt(i, &prompt)?;
                    self.stats.prompts += 1;
                    let t = Instant::now();
                    let (run, first) = self.start(s, i, &prompt, options, sampled, started)?;
                    self.stats.prefill_time += t.elapsed();
                    self.accept(s, run, first, options, slot, &mut outputs)?;
                }
            }
            // Submit a step while fewer than two are in flight and some sequence wants one.
            let feeds: Vec<Option<usize>> =
                slots.iter().map(|r| r.as_ref().filter(|r| self.wants_feed(r, options)).map(|r| r.index)).collect();
            if in_flight.len() < 2 && feeds.iter().any(Option::is_some) {
                self.submit_step(&mut slots, &feeds)?;
                self.stats.decode_steps += 1;
                in_flight.push_back(feeds);
                if in_flight.len() < 2 {
                    continue;
                }
            }
            let Some(fed) = in_flight.pop_front() else { break };
            let ids = self.readbacks.pop(&self.model.gpu)?.unwrap_or_default();
            for (s, slot) in slots.iter_mut().enumerate() {
                // Rows whose sequence has left since the step was submitted are dropped.
                let Some(run) = slot.take_if(|r| fed[s] == Some(r.index)) else { continue };
                let id = ids.get(s).copied().ok_or_else(|| Error::Input("a batch step returned too few ids".into()))?;
                self.stats.decode_tokens += 1;
                self.accept(s, run, id, options, slot, &mut outputs)?;
            }
        }
        self.stats.total_time = started.elapsed();
        self.stats.decode_time = self.stats.total_time.saturating_sub(self.stats.prefill_time);
        self.stats.generated_tokens = outputs.iter().map(|o| o.ids.len()).sum();
        Ok(outputs)
    }

    /// Whether a sequence will want the id after its next one fed (so that feeding it now pays):
    /// under the token limit, and the position inside the context.
    fn wants_feed(&self, run: &Running, options: &GenerateOptions) -> bool {
        run.fed + 1 < options.max_tokens && run.prompt_tokens + run.fed < self.model.context()
    }

    /// Prefills prompt `index` into slot `s` through the model's prefill (the slot's cache
    /// region in place of the model's cache) and returns the sequence with its first id.
    fn start(
        &mut self,
        s: usize,
        index: usize,
        prompt: &[u32],
        options: &GenerateOptions,
        sampled: bool,
        started: Instant,
    ) -> Result<(Running, u32)> {
        let model = &mut *self.model;
        model.set_sampling(&options.sampling)?;
        let slot = self.cache.slot(s, std::mem::take(&mut self.slot_tokens[s]))?;
        let own = std::mem::replace(&mut model.cache, slot);
        let result = model.prefill(prompt, false);
        let slot = std::mem::replace(&mut model.cache, own);
        self.slot_tokens[s] = slot.tokens;
        let (first, _) = result?;
        if sampled {
            // The slot sampler's penalty window: the prompt and the id prefill drew, as the
            // model's own sampler holds them after its prefill.
            let sampler = &self.samplers[s];
            // A prompt is shorter than the context, so the ring (context ids) does not wrap yet.
            let mut history: Vec<u32> = prompt.to_vec();
            history.push(first);
            sampler.history.rows(0, history.len())?.write_words(&model.gpu, &history)?;
            sampler.history_len.write_u32(&model.gpu, &[history.len() as u32])?;
        }
        let ttft = started.elapsed();
        let run = Running {
            index,
            prompt_tokens: prompt.len(),
            fed: 0,
            ids: Vec::new(),
            decoder: model.tokenizer.stream_after(prompt),
            text: String::new(),
            ttft,
            first_token_at: Instant::now(),
            sampled,
        };
        Ok((run, first))
    }

    /// Takes the id a sequence just produced: it either goes on (back into `slot`, to feed `id`
    /// next) or finishes into `outputs`. Mirrors `Generation::step`.
    fn accept(
        &mut self,
        s: usize,
        mut run: Running,
        id: u32,
        options: &GenerateOptions,
        slot: &mut Option<Running>,
        outputs: &mut Vec<BatchOutput>,
    ) -> Result<()> {
        let tokenizer = &self.model.tokenizer;
        let finish = if options.max_tokens == 0 {
            Some(FinishReason::MaxTokens)
        } else if !self.ids_only && self.model.is_eos(id) {
            Some(FinishReason::EndOfSequence)
        } else {
            run.ids.push(id);
            if !self.ids_only {
                if let Some(piece) = run.decoder.push(tokenizer, id)? {
                    run.text.push_str(&piece);
                }
            }
            if find_stop(&run.text, &options.stop).is_some() {
                Some(FinishReason::StopString)
            } else if run.ids.len() >= options.max_tokens {
                Some(FinishReason::MaxTokens)
            } else if run.prompt_tokens + run.ids.len() > self.model.context() {
                Some(FinishReason::ContextFull)
            } else {
                None
            }
        };
        let Some(finish) = finish else {
            *slot = Some(run);
            return Ok(());
        };
        // What the slot's cache now holds for the next prompt to reuse: the prompt (there since
        // `start`) and the ids fed (all read back by now; one fed past an end-of-sequence id is
        // left out: rows past the list are overwritten before they are read).
        let fed = run.fed.min(run.ids.len());
        self.slot_tokens[s].extend_from_slice(&run.ids[..fed]);
        if finish != FinishReason::StopString && !self.ids_only {
            if let Some(rest) = run.decoder.finish(tokenizer)? {
                run.text.push_str(&rest);
            }
        }
        if let Some(cut) = find_stop(&run.text, &options.stop) {
            run.text.truncate(cut);
        }
        let steps = run.ids.len().saturating_sub(1);
        let seconds = run.first_token_at.elapsed().as_secs_f64();
        let tokens_per_second = if steps == 0 || seconds <= 0.0 { 0.0 } else { steps as f64 / seconds };
        outputs.push(BatchOutput {
            index: run.index,
            prompt_tokens: run.prompt_tokens,
            text: run.text,
            ids: run.ids,
            time_to_first_token: run.ttft,
            tokens_per_second,
            finish,
        });
        Ok(())
    }

    /// Submits one decode step over every slot: each sequence in `feeds` feeds its next id at
    /// its next position (its first id, from prefill, is written here; later ones are already in
    /// `act.next`, written by the step before); other slots feed whatever is there at the spare
    /// row past the context.
    fn submit_step(&mut self, slots: &mut [Option<Running>], feeds: &[Option<usize>]) -> Result<()> {
        let gpu = &self.model.gpu;
        let spare = (self.cache.capacity - 1) as u32;
        let mut pos = vec![spare; slots.len()];
        let mut sampled = vec![false; slots.len()];
        for (s, run) in slots.iter_mut().enumerate() {
            let Some(run) = run.as_mut().filter(|_| feeds[s].is_some()) else { continue };
            if run.fed == 0 {
                self.act.next.rows(s, 1)?.write_u32(gpu, &run.ids[..1])?;
            }
            pos[s] = (run.prompt_tokens + run.fed) as u32;
            sampled[s] = run.sampled;
            run.fed += 1;
        }
        self.act.pos.write_u32(gpu, &pos)?;
        let mut rec = Recorder::with_capacity(gpu, self.step.command_count() + 2 + 4 * slots.len());
        self.step.record(&mut rec, &self.act)?;
        rec.run(&self.greedy);
        // Sequences that sample draw their id from their row with their own sampler.
        for (s, _) in sampled.iter().enumerate().filter(|(_, &on)| on) {
            let sampler = &self.samplers[s];
            rec.copy(&self.act.logits.rows(s, 1)?, &sampler.logits)?;
            rec.copy(&self.act.pos.rows(s, 1)?, &sampler.step)?;
            rec.run(sampler.sampler.op());
            rec.copy(&sampler.out, &self.act.next.rows(s, 1)?)?;
        }
        rec.readback(&self.act.next, self.readbacks.slot()?)?;
        let submission = rec.submit()?;
        self.readbacks.push(submission)?;
        Ok(())
    }
}

/// Byte offset of the earliest stop string in `text`.
fn find_stop(text: &str, stop: &[String]) -> Option<usize> {
    stop.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str())).min()
}
