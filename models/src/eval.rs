//! Perplexity under the two protocols people compare against, with the protocol named in the
//! output (../shared/data/README.md describes both):
//!
//! - `papers` (GPTQ, AWQ, SparseGPT, Wanda): the text's lines joined with "\n\n", tokenized once
//!   with one BOS, cut into non-overlapping windows of `ctx` tokens (the tail dropped); every
//!   position but the first of each window is scored.
//! - `llama.cpp` (llama-perplexity): tokenized once with BOS, chunks of `ctx` (512 by default)
//!   whose first token is replaced by BOS; only the second half of each chunk is scored (the
//!   logits at positions ctx/2 .. ctx-1 predicting the next token).
//!
//! PPL = exp(mean negative log-likelihood over the scored tokens).

use crate::model::Model;
use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Papers,
    LlamaCpp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Papers => "papers",
            Protocol::LlamaCpp => "llama.cpp",
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Perplexity {
    pub protocol: &'static str,
    pub ctx: usize,
    pub chunks: usize,
    /// Tokens scored.
    pub tokens: usize,
    /// Mean negative log-likelihood (nats).
    pub nll: f64,
    pub ppl: f64,
}

/// The token windows a protocol scores, each with the range of its positions whose logits count
/// (a logit at position t predicts token t + 1).
pub fn windows(ids: &[u32], ctx: usize, protocol: Protocol, bos: u32) -> Vec<(Vec<u32>, std::ops::Range<usize>)> {
    let ctx = ctx.max(2);
    ids.chunks_exact(ctx)
        .map(|w| match protocol {
            Protocol::Papers => (w.to_vec(), 0..ctx - 1),
            Protocol::LlamaCpp => {
                let mut w = w.to_vec();
                w[0] = bos;
                (w, ctx / 2..ctx - 1)
            }
        })
        .collect()
}

/// The text a protocol tokenizes: the file as it is (llama.cpp), or its lines joined with a
/// blank line between them (papers, as `"\n\n".join(dataset["text"])` does).
pub fn prepare_text(text: &str, protocol: Protocol) -> String {
    match protocol {
        Protocol::LlamaCpp => text.to_string(),
        Protocol::Papers => text.split_inclusive('\n').collect::<Vec<_>>().join("\n\n"),
    }
}

/// Sum of -log softmax(logits[t])[window[t + 1]] over `rows`, in f64, from logits (len, vocab)
/// on the CPU (the reference for what `Model::next_token_nll` computes on the GPU).
pub fn nll_sum(logits: &[f32], vocab: usize, window: &[u32], rows: std::ops::Range<usize>) -> f64 {
    rows.map(|t| {
        let row = &logits[t * vocab..(t + 1) * vocab];
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let log_z = max + row.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
        log_z - row[window[t + 1] as usize] as f64
    })
    .sum()
}

/// Perplexity of `model` on `text`. `max_chunks` limits the windows scored; `progress` is told
/// (done, total) after each.
pub fn perplexity(
    model: &mut Model,
    text: &str,
    protocol: Protocol,
    ctx: usize,
    max_chunks: Option<usize>,
    mut progress: impl FnMut(usize, usize),
) -> Result<Perplexity> {
    if ctx < 2 || ctx > model.context() {
        return Err(Error::Input(format!("perplexity window {ctx} must be 2..={} (raise --ctx)", model.context())));
    }
    let ids = model.tokenizer.encode(&prepare_text(text, protocol), true)?;
    let bos = model.tokenizer.bos_id().or(model.config.bos_token_id).unwrap_or(ids[0]);
    let mut windows = windows(&ids, ctx, protocol, bos);
    windows.truncate(max_chunks.unwrap_or(usize::MAX));
    if windows.is_empty() {
        return Err(Error::Input(format!("the text has {} tokens, fewer than one window of {ctx}", ids.len())));
    }
    let (mut sum, mut count) = (0.0, 0);
    for (i, (window, rows)) in windows.iter().enumerate() {
        let nll = model.next_token_nll(window)?;
        sum += nll[rows.clone()].iter().map(|&v| v as f64).sum::<f64>();
        count += rows.len();
        progress(i + 1, windows.len());
    }
    let nll = sum / count as f64;
    Ok(Perplexity { protocol: protocol.name(), ctx, chunks: windows.len(), tokens: count, nll, ppl: nll.exp() })
}
