//! Activation-aware 4-bit quantization (AWQ-style): per input channel scales `s` searched against
//! each layer's output error on the calibration sample. A linear's weight columns are multiplied
//! by `s` before quantizing, and the op that produces its input divides its output channel `c` by
//! `s[c]` (the RMSNorm weight for q/k/v and gate/up; up_proj's rows for down_proj), so the float
//! network is unchanged and the quantization error moves off the channels that matter.
//!
//! SKELETON: the types are the interface other modules build on; `search` is to be written.

/// Scales for one decoder layer; each vector has one entry per input channel, all > 0.
/// Empty vectors mean "no scaling" for that input.
#[derive(Clone, Debug, Default)]
pub struct LayerScales {
    /// For q/k/v_proj's columns; input_layernorm's weight is divided by it.
    pub attn_in: Vec<f32>,
    /// For gate/up_proj's columns; post_attention_layernorm's weight is divided by it.
    pub ffn_in: Vec<f32>,
    /// For down_proj's columns; up_proj's rows are divided by it.
    pub down_in: Vec<f32>,
}

/// What the search found for one layer, for the per-layer report.
#[derive(Clone, Debug, Default)]
pub struct LayerReport {
    pub layer: usize,
    /// Relative output error ||Y_q - Y|| / ||Y|| on the sample, round-to-nearest vs AWQ, for
    /// (attn_in, ffn_in, down_in).
    pub rtn_error: [f64; 3],
    pub awq_error: [f64; 3],
    /// The chosen exponent alpha in s = mean|x|^alpha, per input.
    pub alpha: [f32; 3],
}

/// Multiplies column c of the row-major (n, k) weight `w` by `s[c]`.
pub fn scale_columns(w: &mut [f32], k: usize, s: &[f32]) {
    for row in w.chunks_mut(k) {
        for (v, s) in row.iter_mut().zip(s) {
            *v *= s;
        }
    }
}

/// Divides element c of `v` (a norm weight, or row c of a row-major weight with `row_len`
/// elements per row) by `s[c]`.
pub fn divide_rows(v: &mut [f32], row_len: usize, s: &[f32]) {
    for (row, s) in v.chunks_mut(row_len.max(1)).zip(s) {
        for x in row {
            *x /= s;
        }
    }
}

/// Searches the scales of every layer of `ckpt` for quantizing its linear layers to `dtype` (a
/// 4-bit engine dtype), against the calibration statistics `stats` (from the dense model), on
/// `gpu`. Returns one `LayerScales` and one `LayerReport` per layer of the checkpoint.
pub fn search(
    gpu: &shaderlm_engine::Gpu,
    ckpt: &crate::checkpoint::Checkpoint,
    stats: &super::calib::CalibStats,
    dtype: shaderlm_engine::DType,
    progress: bool,
) -> crate::Result<(Vec<LayerScales>, Vec<LayerReport>)> {
    let _ = (gpu, ckpt, stats, dtype, progress);
    Err(crate::Error::Input("AWQ search is not written yet".into()))
}
