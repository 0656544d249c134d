//! The calibration pass: run the dense model over calibration text on the GPU and record, for the
//! input of every linear layer, per-input-channel statistics and a sample of rows; and for every
//! decoder layer, how much it changes the residual stream.
//!
//! The pass runs the model's own prefill step (`llama::forward` over many rows, where every
//! block runs unfused) one layer per submission, and copies out what each linear reads: the
//! attention block's normed input (`act.xb`), the attention output (`act.att`), the feed-forward
//! block's normed input (`act.xb` again, later) and silu(gate) * up (`act.hb`), and the residual
//! stream after the layer (`act.x`). One readback per layer brings all of them to the host, which
//! sums the per-channel statistics in f64.

use shaderlm_engine::{DType, Readback, Recorder, Tensor};

use crate::model::Model;
use crate::{Error, Result};

/// Statistics of one linear layer's input `x` (rows = tokens, k = input channels) over the
/// calibration tokens.
#[derive(Clone, Debug, Default)]
pub struct InputStats {
    /// Per input channel: sum over tokens of x^2.
    pub sum_sq: Vec<f64>,
    /// Per input channel: sum over tokens of |x|.
    pub sum_abs: Vec<f64>,
    /// Tokens summed.
    pub tokens: usize,
    /// Some rows of `x` kept as they were, (rows, k) row-major, for measuring a layer's output error.
    pub sample: Vec<f32>,
}

impl InputStats {
    pub fn channels(&self) -> usize {
        self.sum_sq.len()
    }

    pub fn sample_rows(&self) -> usize {
        if self.channels() == 0 { 0 } else { self.sample.len() / self.channels() }
    }

    /// ||x_c||_2 over the tokens, per channel (Wanda's activation norm).
    pub fn l2_norms(&self) -> Vec<f32> {
        self.sum_sq.iter().map(|s| s.sqrt() as f32).collect()
    }

    /// mean |x_c| over the tokens, per channel (AWQ's activation magnitude).
    pub fn mean_abs(&self) -> Vec<f32> {
        let n = self.tokens.max(1) as f64;
        self.sum_abs.iter().map(|s| (s / n) as f32).collect()
    }
}

/// One decoder layer's statistics.
#[derive(Clone, Debug, Default)]
pub struct LayerStats {
    /// Input of q/k/v_proj: the attention block's normed input (hidden channels).
    pub attn_in: InputStats,
    /// Input of o_proj: the attention output (n_heads * head_dim channels).
    pub o_in: InputStats,
    /// Input of gate/up_proj: the feed-forward block's normed input (hidden channels).
    pub ffn_in: InputStats,
    /// Input of down_proj: silu(gate) * up (intermediate channels).
    pub down_in: InputStats,
    /// Mean over tokens of cos(residual stream before the layer, after it): near 1 means the
    /// layer changes little (a candidate to drop).
    pub block_cosine: f64,
}

/// The whole model's statistics, indexed by the checkpoint's layer numbers.
#[derive(Clone, Debug, Default)]
pub struct CalibStats {
    pub layers: Vec<LayerStats>,
    pub tokens: usize,
}

/// Options of the calibration pass.
#[derive(Clone, Debug)]
pub struct CalibOptions {
    /// Tokens per forward pass.
    pub chunk: usize,
    /// Rows of each linear's input kept in `InputStats::sample`.
    pub sample_rows: usize,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

impl Default for CalibOptions {
    fn default() -> Self {
        CalibOptions { chunk: 512, sample_rows: 256, progress: false }
    }
}

/// Runs `model` (dense, as loaded) over `ids` in chunks of `opts.chunk` tokens (each chunk starts
/// a fresh context at position 0) and collects the statistics. A chunk is also capped by the
/// model's prefill rows (`LoadOptions::prefill_chunk`). A last chunk of a single token is left
/// out: one row runs the fused decode kernels, which keep no normed input to read. The model's
/// KV cache is overwritten: no cached prompt survives the pass.
pub fn calibrate(model: &mut Model, ids: &[u32], opts: &CalibOptions) -> Result<CalibStats> {
    let chunk = opts.chunk.min(model.act.rows).min(model.context());
    if chunk < 2 {
        return Err(Error::Input(format!(
            "calibration runs chunks of at least 2 tokens; got {} (asked {}, the model's prefill rows {})",
            chunk, opts.chunk, model.act.rows
        )));
    }
    let chunks: Vec<&[u32]> = ids.chunks(chunk).filter(|c| c.len() >= 2).collect();
    if chunks.is_empty() {
        return Err(Error::Input(format!("calibration needs at least 2 tokens, got {}", ids.len())));
    }
    model.forget_context()?;
    let result = run_chunks(model, &chunks, chunk, opts);
    // Whatever happened, the cache now holds calibration text: nothing may reuse it.
    model.forget_context()?;
    result
}

/// The labels of one layer's ops in `llama::forward`'s body, in order (checked, so that a change
/// there fails here loudly instead of reading the wrong buffer).
const LAYER_OPS: [&str; 5] =
    ["attn_norm+qkv_proj+rope+kv_cache", "attention", "o_proj+residual", "ffn_norm+gate_up+swiglu", "down_proj+residual"];

/// Widths of what one layer's submission copies out, in capture order: attn_in, o_in, ffn_in,
/// down_in, the residual stream after the layer.
fn capture_widths(cfg: &crate::checkpoint::Config) -> [usize; 5] {
    let (h, f, qw) = (cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads * cfg.head_dim);
    [h, qw, h, f, h]
}

fn run_chunks(model: &Model, chunks: &[&[u32]], chunk: usize, opts: &CalibOptions) -> Result<CalibStats> {
    let (gpu, act, cfg) = (&model.gpu, &model.act, &model.config);
    let n_layers = cfg.num_hidden_layers;
    let widths = capture_widths(cfg);
    let [h, qw, _, f, _] = widths;
    let row_width: usize = widths.iter().sum();
    // One buffer the layer's copies land in, read back with one copy.
    let capture = Tensor::empty(gpu, &[chunk * row_width], DType::F32)?;
    let mut readback = Readback::new(gpu, capture.byte_size());

    let new_input = |k: usize| InputStats { sum_sq: vec![0.0; k], sum_abs: vec![0.0; k], ..Default::default() };
    let mut layers: Vec<LayerStats> = (0..n_layers)
        .map(|_| LayerStats {
            attn_in: new_input(h),
            o_in: new_input(qw),
            ffn_in: new_input(h),
            down_in: new_input(f),
            block_cosine: 0.0,
        })
        .collect();
    let bar = opts.progress.then(|| crate::progress::bar("calibrating", (chunks.len() * n_layers) as u64));
    let mut tokens = 0;

    for ids in chunks {
        let t = ids.len();
        let ops = model.chunk_ops(ids, 0, None)?;
        check_layout(&ops.body, n_layers)?;
        let rows = |x: &Tensor| x.rows(0, t);
        let (x, xb, att, hb) = (rows(&act.x)?, rows(&act.xb)?, rows(&act.att)?, rows(&act.hb)?);

        // The embeddings: the residual stream before layer 0.
        let mut rec = Recorder::new(gpu);
        rec.run(&ops.body[0]);
        rec.submit()?;
        let mut before = x.to_f32(gpu)?;

        // Each capture segment holds t rows of its width, one after the other.
        let mut segments = Vec::with_capacity(widths.len());
        let mut start = 0;
        for w in widths {
            segments.push(capture.rows(start, t * w)?);
            start += t * w;
        }
        let captured = capture.rows(0, start)?;

        for (l, stats) in layers.iter_mut().enumerate() {
            let [attn_norm, attention, o_proj, ffn, down] = &ops.body[1 + 5 * l..1 + 5 * (l + 1)] else {
                return Err(Error::Input(format!("calibration: layer {l} has no five ops")));
            };
            let mut rec = Recorder::new(gpu);
            rec.run(attn_norm);
            rec.copy(&xb, &segments[0])?;
            rec.run(attention);
            rec.copy(&att, &segments[1])?;
            rec.run(o_proj);
            rec.run(ffn);
            rec.copy(&xb, &segments[2])?;
            rec.copy(&hb, &segments[3])?;
            rec.run(down);
            rec.copy(&x, &segments[4])?;
            rec.readback(&captured, &readback)?;
            rec.submit()?;
            let words = readback.read_words(gpu, t * row_width)?;
            let values: &[f32] = bytemuck::cast_slice(&words);
            let (attn_in, rest) = values.split_at(t * h);
            let (o_in, rest) = rest.split_at(t * qw);
            let (ffn_in, rest) = rest.split_at(t * h);
            let (down_in, after) = rest.split_at(t * f);
            let keep = opts.sample_rows;
            accumulate(&mut stats.attn_in, attn_in, keep);
            accumulate(&mut stats.o_in, o_in, keep);
            accumulate(&mut stats.ffn_in, ffn_in, keep);
            accumulate(&mut stats.down_in, down_in, keep);
            stats.block_cosine += before.chunks(h).zip(after.chunks(h)).map(|(a, b)| cosine(a, b)).sum::<f64>();
            before = after.to_vec();
            if let Some(bar) = &bar {
                bar.inc(1);
            }
        }
        tokens += t;
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    for stats in &mut layers {
        stats.block_cosine /= tokens as f64;
    }
    Ok(CalibStats { layers, tokens })
}

/// Checks that the step's body is the embedding then, per layer, the five ops of `LAYER_OPS`.
fn check_layout(body: &[shaderlm_engine::Op], n_layers: usize) -> Result<()> {
    if body.len() != 1 + 5 * n_layers {
        let message = format!("calibration: the step has {} ops, expected {}", body.len(), 1 + 5 * n_layers);
        return Err(Error::Input(message));
    }
    for l in 0..n_layers {
        for (i, name) in LAYER_OPS.iter().enumerate() {
            let want = format!("L{l}.{name}:");
            let op = &body[1 + 5 * l + i];
            if !op.labels().first().is_some_and(|label| label.starts_with(&want)) {
                let message = format!("calibration: op {} is {:?}, expected {want}..", 1 + 5 * l + i, op.labels());
                return Err(Error::Input(message));
            }
        }
    }
    Ok(())
}

/// Adds rows (row-major, `stats.channels()` wide) to the per-channel sums, keeping the first
/// `keep` rows seen as the sample.
fn accumulate(stats: &mut InputStats, rows: &[f32], keep: usize) {
    let k = stats.channels();
    for row in rows.chunks(k) {
        for ((sq, abs), &v) in stats.sum_sq.iter_mut().zip(stats.sum_abs.iter_mut()).zip(row) {
            let v = v as f64;
            *sq += v * v;
            *abs += v.abs();
        }
    }
    let kept = stats.sample.len() / k.max(1);
    let more = keep.saturating_sub(kept).min(rows.len() / k.max(1));
    stats.sample.extend_from_slice(&rows[..more * k]);
    stats.tokens += rows.len() / k.max(1);
}

/// cos(a, b); 1 when either is all zeros (no direction to compare: call it unchanged).
fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64, y as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        return 1.0;
    }
    ab / (aa.sqrt() * bb.sqrt())
}

/// Tokenizes the calibration text file at `path` with the model's tokenizer and returns at most
/// `max_tokens` ids (errors naming the file when it cannot be read or the model has no tokenizer).
/// No BOS is added: plain ids of the text (where chunks begin is the caller's business).
pub fn calibration_ids(model: &Model, path: &std::path::Path, max_tokens: usize) -> Result<Vec<u32>> {
    if !model.has_tokenizer {
        return Err(Error::Input(format!(
            "{}: cannot tokenize calibration text: {} has no tokenizer",
            path.display(),
            model.path.display()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    let encode = |text: &str| {
        model.tokenizer.encode(text, false).map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))
    };
    // A token is rarely longer than 16 bytes: tokenize a prefix first (a whole validation split
    // takes seconds), ending at a line break so no word is cut, and the whole text only if the
    // prefix falls short.
    let mut ids = match text_prefix(&text, max_tokens.saturating_mul(16)) {
        Some(prefix) => {
            let ids = encode(prefix)?;
            if ids.len() >= max_tokens { ids } else { encode(&text)? }
        }
        None => encode(&text)?,
    };
    if ids.is_empty() {
        return Err(Error::Input(format!("{}: the calibration text has no tokens", path.display())));
    }
    ids.truncate(max_tokens);
    Ok(ids)
}

/// The text up to the last line break before byte `bytes` (or up to a char boundary there when
/// it has none); `None` when the text is no longer than that.
fn text_prefix(text: &str, bytes: usize) -> Option<&str> {
    if text.len() <= bytes {
        return None;
    }
    let mut end = bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let end = text[..end].rfind('\n').map_or(end, |i| i + 1);
    Some(&text[..end])
}
