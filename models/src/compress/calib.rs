//! The calibration pass: run the dense model over calibration text on the GPU and record, for the
//! input of every linear layer, per-input-channel statistics and a sample of rows; and for every
//! decoder layer, how much it changes the residual stream.
//!
//! SKELETON: the types are the interface other modules build on; `calibrate` is to be written.

use crate::model::Model;
use crate::Result;

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
/// a fresh context) and collects the statistics.
pub fn calibrate(model: &mut Model, ids: &[u32], opts: &CalibOptions) -> Result<CalibStats> {
    let _ = (model, ids, opts);
    Err(crate::Error::Input("calibration is not written yet".into()))
}

/// Tokenizes the calibration text file at `path` with the model's tokenizer and returns at most
/// `max_tokens` ids (errors naming the file when it cannot be read or the model has no tokenizer).
pub fn calibration_ids(model: &Model, path: &std::path::Path, max_tokens: usize) -> Result<Vec<u32>> {
    let _ = (model, path, max_tokens);
    Err(crate::Error::Input("calibration_ids is not written yet".into()))
}
