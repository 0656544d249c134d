//! Generation: prefill the prompt in one pass, then decode one token per step, streaming text.
//!
//! `Generation` is an iterator of text pieces. Each `next()` runs one decode step on the GPU
//! (the sampled id is written on the GPU and is the next step's input; only the id comes back),
//! decodes the new id, and returns whatever new text is complete. The steps are pipelined: the
//! step after the one being read is already submitted (its input is on the GPU), so the GPU
//! never waits for the host; a step submitted ahead of a stop is dropped (`Model::decode_step`). It stops at an end-of-sequence
//! id, at a stop string (the text before it is returned, the stop string is not), at the token
//! limit, or when the context is full.

use std::time::{Duration, Instant};

use crate::model::Model;
use crate::tokenizer::TokenStream;
use crate::Result;

/// How to pick each next token: the engine's sampler parameters (temperature <= 0 is greedy;
/// top-k, top-p, min-p, repetition penalty, seed). `Sampling::GREEDY` is the default.
pub use shaderlm_engine::kernels::sample::SampleParams as Sampling;

#[derive(Clone, Debug)]
pub struct GenerateOptions {
    /// Most new tokens to generate.
    pub max_tokens: usize,
    pub sampling: Sampling,
    /// Generation ends where any of these appears in the text (it is not returned).
    pub stop: Vec<String>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions { max_tokens: 256, sampling: Sampling::GREEDY, stop: Vec::new() }
    }
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    EndOfSequence,
    StopString,
    MaxTokens,
    ContextFull,
}

/// Timings of one generation, for people and for the benchmark.
#[derive(Clone, Debug, Default)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    /// Prompt tokens actually run (the rest were reused from the cache).
    pub prefilled_tokens: usize,
    pub generated_tokens: usize,
    /// Prompt in to first token out.
    pub time_to_first_token: Duration,
    pub decode_time: Duration,
    pub finish: Option<FinishReason>,
}

impl GenerationStats {
    pub fn decode_tokens_per_second(&self) -> f64 {
        let steps = self.generated_tokens.saturating_sub(1);
        if steps == 0 { 0.0 } else { steps as f64 / self.decode_time.as_secs_f64() }
    }
}

pub struct Generation<'m> {
    model: &'m mut Model,
    options: GenerateOptions,
    /// Ids generated so far (the last one not yet fed back to the model).
    ids: Vec<u32>,
    /// Turns ids into text pieces (keeps the first word's leading space, joins split characters).
    decoder: TokenStream,
    /// Text decoded so far, and how many bytes of it were returned.
    text: String,
    emitted: usize,
    pending_first: Option<u32>,
    started: Instant,
    pub stats: GenerationStats,
}

impl<'m> Generation<'m> {
    pub(crate) fn start(model: &'m mut Model, prompt_ids: Vec<u32>, options: GenerateOptions) -> Result<Generation<'m>> {
        let started = Instant::now();
        model.set_sampling(&options.sampling)?;
        // The first decode step is worth submitting ahead if a second id may be wanted.
        let (first, prefilled) = model.prefill(&prompt_ids, options.max_tokens > 1)?;
        let decoder = model.tokenizer.stream_after(&prompt_ids);
        let stats = GenerationStats {
            prompt_tokens: prompt_ids.len(),
            prefilled_tokens: prefilled,
            time_to_first_token: started.elapsed(),
            ..Default::default()
        };
        Ok(Generation {
            model,
            options,
            ids: Vec::new(),
            decoder,
            text: String::new(),
            emitted: 0,
            pending_first: Some(first),
            started,
            stats,
        })
    }

    /// Runs to the end and returns the whole text.
    pub fn text(mut self) -> Result<String> {
        let mut out = String::new();
        for piece in &mut self {
            out.push_str(&piece?);
        }
        Ok(out)
    }

    /// The ids generated so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    fn finish(&mut self, reason: FinishReason) {
        self.stats.finish = Some(reason);
        self.stats.generated_tokens = self.ids.len();
        self.stats.decode_time = self.started.elapsed().saturating_sub(self.stats.time_to_first_token);
    }

    /// Next id: the one prefill sampled, then one decode step each.
    fn next_id(&mut self) -> Result<Option<u32>> {
        if let Some(id) = self.pending_first.take() {
            return Ok(Some(id));
        }
        let last = *self.ids.last().expect("a generated id precedes every decode step");
        if self.model.cached_tokens() + 1 > self.model.context() {
            self.finish(FinishReason::ContextFull);
            return Ok(None);
        }
        // Submit the step after this one ahead unless the id this one returns is the last wanted.
        let ahead = self.ids.len() + 1 < self.options.max_tokens;
        Ok(Some(self.model.decode_step(last, ahead)?))
    }

    fn step(&mut self) -> Result<Option<String>> {
        loop {
            if self.stats.finish.is_some() {
                return Ok(None);
            }
            if self.ids.len() >= self.options.max_tokens {
                self.finish(FinishReason::MaxTokens);
                return Ok(self.flush());
            }
            let Some(id) = self.next_id()? else { return Ok(self.flush()) };
            if self.model.is_eos(id) {
                self.finish(FinishReason::EndOfSequence);
                return Ok(self.flush());
            }
            self.ids.push(id);
            if let Some(piece) = self.decoder.push(&self.model.tokenizer, id)? {
                self.text.push_str(&piece);
            }
            if let Some(cut) = self.find_stop() {
                self.finish(FinishReason::StopString);
                return Ok(self.emit(cut));
            }
            // Hold back what could be the start of a stop string.
            let hold = self.options.stop.iter().map(|s| s.len().saturating_sub(1)).max().unwrap_or(0);
            let mut safe = self.text.len().saturating_sub(hold).max(self.emitted);
            while !self.text.is_char_boundary(safe) {
                safe -= 1;
            }
            if safe > self.emitted {
                return Ok(self.emit(safe));
            }
        }
    }

    /// Byte offset of the earliest stop string in the text, if one has appeared.
    fn find_stop(&self) -> Option<usize> {
        self.options.stop.iter().filter(|s| !s.is_empty()).filter_map(|s| self.text.find(s.as_str())).min()
    }

    /// Returns text[emitted..end] and marks it returned.
    fn emit(&mut self, end: usize) -> Option<String> {
        let end = end.max(self.emitted);
        let piece = self.text[self.emitted..end].to_string();
        self.emitted = end;
        (!piece.is_empty()).then_some(piece)
    }

    /// At the end: whatever decoded text has not been returned yet, up to a stop string.
    fn flush(&mut self) -> Option<String> {
        if let Ok(Some(rest)) = self.decoder.finish(&self.model.tokenizer) {
            self.text.push_str(&rest);
        }
        let end = self.find_stop().unwrap_or(self.text.len());
        self.emit(end)
    }
}

impl Iterator for Generation<'_> {
    type Item = Result<String>;

    fn next(&mut self) -> Option<Result<String>> {
        match self.step() {
            Ok(Some(piece)) => Some(Ok(piece)),
            Ok(None) => None,
            Err(e) => {
                self.stats.finish = Some(FinishReason::MaxTokens);
                Some(Err(e))
            }
        }
    }
}
