//! One model split across GPUs by layers (pipeline parallelism without the pipelining): a model
//! too large for one GPU runs on several, each holding a run of consecutive decoder layers and
//! their KV cache.
//!
//! The first part holds the embedding, the last one the final norm, lm_head and the sampler (it
//! is the [`Model`](crate::Model) itself; the parts before it are its `front` [`Stage`]s). A
//! step runs the parts in order; between two parts the residual stream (T rows of `hidden`
//! floats) hops through the host: read back from one device, written to the next. The hop is
//! exact (f32 in, f32 out) and every part runs the same kernels on the same shapes as an unsplit
//! model would, so a split model computes the same logits bit for bit.
//!
//! Parts run one after another, so a split model is no faster than one GPU (slower by the hops):
//! it is for a model that does not fit one GPU. For throughput, use replicas
//! ([`crate::replicas`]).

use std::ops::Range;

use shaderlm_engine::{Gpu, GpuOptions, Recorder};

use crate::checkpoint::{Checkpoint, Config};
use crate::kv_cache::KvCache;
use crate::llama::{forward, Activations, StepInput, StepOps, WeightDType, Weights};
use crate::model::LoadOptions;
use crate::{Error, Result};

/// Consecutive layer ranges, one per part, balanced by the bytes each part holds (the first
/// part also holds the embedding, the last the head; a tied lm_head is a second copy of the
/// embedding there). Every part gets at least one layer.
pub fn balance_layers(cfg: &Config, dtype: WeightDType, parts: usize) -> Result<Vec<Range<usize>>> {
    let n = cfg.num_hidden_layers;
    if parts == 0 || parts > n {
        return Err(Error::Input(format!("cannot split {n} layers into {parts} parts (one layer at least each)")));
    }
    let (embed, per_layer, mut head) = Weights::planned_bytes_by_part(cfg, dtype);
    if parts > 1 && cfg.tie_word_embeddings {
        head += embed;
    }
    Ok(balance(embed, per_layer, head, n, parts))
}

/// Cuts `n_layers` layers of `per_layer` bytes into `parts` consecutive ranges, with `first`
/// extra bytes on the first part and `last` on the last, each cut placed where the bytes before
/// it come nearest to an equal share.
pub fn balance(first: u64, per_layer: u64, last: u64, n_layers: usize, parts: usize) -> Vec<Range<usize>> {
    let total = (first + per_layer * n_layers as u64 + last) as f64;
    let before = |cut: usize| (first + per_layer * cut as u64) as f64;
    let mut ranges = Vec::with_capacity(parts);
    let mut start = 0;
    for k in 1..parts {
        let share = total * k as f64 / parts as f64;
        // Leave at least one layer for this part and for each part after it.
        let cut = (start + 1..=n_layers - (parts - k))
            .min_by(|&a, &b| (before(a) - share).abs().total_cmp(&(before(b) - share).abs()))
            .unwrap_or(start + 1);
        ranges.push(start..cut);
        start = cut;
    }
    ranges.push(start..n_layers);
    ranges
}

/// Where one part of a model goes: its adapter (with the fast paths of `LoadOptions::gpu`),
/// its layers, and the bytes of weights it will hold.
pub struct Part {
    pub gpu: GpuOptions,
    pub layers: Range<usize>,
    pub weight_bytes: u64,
}

/// The parts `options` asks for: the whole model on `options.gpu`, or one part per adapter of
/// `options.split_layers`, layers balanced by bytes.
pub fn plan(cfg: &Config, options: &LoadOptions) -> Result<Vec<Part>> {
    let n = cfg.num_hidden_layers;
    let adapters = &options.split_layers;
    let ranges: Vec<Range<usize>> = match adapters.len() {
        0 => std::iter::once(0..n).collect(),
        parts => balance_layers(cfg, options.dtype, parts)?,
    };
    let (embed, per_layer, head) = Weights::planned_bytes_by_part(cfg, options.dtype);
    let tied_copy = if ranges.len() > 1 && cfg.tie_word_embeddings { embed } else { 0 };
    let parts = ranges.into_iter().enumerate().map(|(i, layers)| {
        let first = if layers.start == 0 { embed } else { 0 };
        let last = if layers.end == n { head + tied_copy } else { 0 };
        let adapter_index = adapters.get(i).copied().or(options.gpu.adapter_index);
        Part {
            gpu: GpuOptions { adapter_index, ..options.gpu.clone() },
            weight_bytes: first + per_layer * layers.len() as u64 + last,
            layers,
        }
    });
    Ok(parts.collect())
}

/// What a part takes in: token ids (the first part) or the residual stream rows (any other).
pub enum StageInput<'a> {
    Ids(&'a [u32]),
    Hidden(&'a [f32]),
}

/// A part of a split model before the last: its own GPU, its layers' weights and KV cache, and
/// activations for its steps.
pub struct Stage {
    pub gpu: Gpu,
    pub weights: Weights,
    pub cache: KvCache,
    pub act: Activations,
    /// The one-row step (decode, or a one-token prompt chunk), built once and replayed.
    one_row: StepOps,
}

impl Stage {
    /// Loads layers `layers` on `gpu`, with a KV cache of `ctx` positions and activations for
    /// `rows` tokens per step.
    pub fn load(
        gpu: Gpu,
        ckpt: &Checkpoint,
        dtype: WeightDType,
        layers: Range<usize>,
        ctx: usize,
        rows: usize,
        progress: impl FnMut(usize, usize),
    ) -> Result<Stage> {
        let cfg = ckpt.config();
        if layers.end >= cfg.num_hidden_layers {
            return Err(Error::Input(format!("a stage ends before the last layer; got layers {layers:?}")));
        }
        let kv_width = cfg.num_key_value_heads * cfg.head_dim;
        let weights = Weights::load_layers(&gpu, ckpt, dtype, layers.clone(), progress)?;
        let cache = KvCache::new(&gpu, layers.len(), ctx, kv_width, dtype.engine())?;
        let act = Activations::new(&gpu, cfg, rows)?;
        let one_row = forward(&gpu, cfg, &weights, &cache, &act, StepInput::Tokens(1), None)?;
        Ok(Stage { gpu, weights, cache, act, one_row })
    }

    /// Runs this part's layers over `t` tokens at positions `pos..pos + t` and returns the
    /// residual stream after them, (t, hidden) row-major (waits for the GPU).
    pub fn run(&self, cfg: &Config, input: StageInput<'_>, t: usize, pos: usize) -> Result<Vec<f32>> {
        match input {
            StageInput::Ids(ids) => self.act.tokens.rows(0, t)?.write_words(&self.gpu, ids)?,
            StageInput::Hidden(rows) => self.act.x.rows(0, t)?.write_f32(&self.gpu, rows)?,
        }
        self.act.pos.write_u32(&self.gpu, &[pos as u32])?;
        let built;
        let ops = if t == 1 {
            &self.one_row
        } else {
            built = forward(&self.gpu, cfg, &self.weights, &self.cache, &self.act, StepInput::Tokens(t), None)?;
            &built
        };
        let mut rec = Recorder::with_capacity(&self.gpu, ops.command_count());
        ops.record(&mut rec, &self.act)?;
        rec.submit()?;
        Ok(self.act.x.rows(0, t)?.to_f32(&self.gpu)?)
    }
}

#[cfg(test)]
mod tests {
    use super::balance;

    #[test]
    fn cuts_balance_bytes_and_leave_every_part_a_layer() {
        assert_eq!(balance(0, 10, 0, 4, 2), vec![0..2, 2..4]);
        assert_eq!(balance(0, 10, 0, 5, 1), vec![0..5]);
        // A big embedding on the first part pushes layers to the second.
        assert_eq!(balance(100, 10, 0, 10, 2), vec![0..1, 1..10]);
        assert_eq!(balance(20, 10, 20, 6, 2), vec![0..3, 3..6]);
        assert_eq!(balance(0, 10, 0, 3, 3), vec![0..1, 1..2, 2..3]);
        assert_eq!(balance(0, 10, 1000, 3, 3), vec![0..1, 1..2, 2..3]);
    }
}
