//! Activation-aware 4-bit quantization (AWQ-style): per input channel scales `s` searched against
//! each layer's output error on the calibration sample. A linear's weight columns are multiplied
//! by `s` before quantizing, and the op that produces its input divides its output channel `c` by
//! `s[c]` (the RMSNorm weight for q/k/v and gate/up; up_proj's rows for down_proj), so the float
//! network is unchanged and the quantization error moves off the channels that matter.
//!
//! The search (after AWQ, Lin et al. 2023): for each input, s = mean|x|^alpha (normalised so that
//! max(s) * min(s) = 1), alpha on a grid 0, 0.05, ..., 1. Each candidate is scored by quantizing
//! the scaled weight on the GPU exactly as loading does (f16, then the quantize kernel) and running
//! the dequantizing matmul on the calibration sample divided by s; the error is measured against
//! the float output (the sample times the original weight). Alpha 0 is s = 1, round-to-nearest, so
//! the choice is never worse than RTN on the sample.

use shaderlm_engine::kernels::{matmul, quantize};
use shaderlm_engine::{DType, Gpu, Recorder, Tensor};

use super::calib::{CalibStats, InputStats};
use crate::{Error, Result};

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

/// Exponents tried: 0, 0.05, ..., 1.
const ALPHA_STEPS: usize = 20;

/// Smallest activation magnitude a scale is built from (AWQ's clamp): a channel that is never
/// active gets no scale that would push its weights to nothing or to infinity.
const MIN_MAGNITUDE: f32 = 1e-4;

/// What the search found for one input (the stacked weights that read it).
#[derive(Clone, Debug, Default)]
pub struct InputSearch {
    /// One scale per input channel; empty when the input stays float (its `k` is no whole number
    /// of the dtype's groups, so `WeightDType::linear` keeps those linears float).
    pub scales: Vec<f32>,
    /// Relative output error on the sample at alpha 0 (round-to-nearest) and at the chosen alpha;
    /// both 0 for an input that stays float.
    pub rtn_error: f64,
    pub awq_error: f64,
    pub alpha: f32,
}

/// Searches the scales of every layer of `ckpt` for quantizing its linear layers to `dtype` (a
/// 4-bit engine dtype), against the calibration statistics `stats` (from the dense model), on
/// `gpu`. Returns one `LayerScales` and one `LayerReport` per layer of the checkpoint.
///
/// Three inputs per layer: attn_in (q/k/v stacked by rows), ffn_in (gate/up stacked) and down_in
/// (down_proj). o_proj is left alone: its input's producer is attention, which has no per-channel
/// weight to fold 1/s into. Inputs whose width is no multiple of the dtype's group stay float
/// (empty scales, errors 0).
pub fn search(
    gpu: &Gpu,
    ckpt: &crate::checkpoint::Checkpoint,
    stats: &CalibStats,
    dtype: DType,
    progress: bool,
) -> Result<(Vec<LayerScales>, Vec<LayerReport>)> {
    let cfg = ckpt.config();
    if stats.layers.len() != cfg.num_hidden_layers {
        return Err(Error::Input(format!(
            "AWQ: calibration statistics for {} layers, the checkpoint has {}",
            stats.layers.len(),
            cfg.num_hidden_layers
        )));
    }
    if !dtype.is_packed() {
        return Err(Error::Input(format!("AWQ searches scales for a quantized dtype, got {dtype}")));
    }
    let (h, f) = (cfg.hidden_size, cfg.intermediate_size);
    let (qw, kvw) = (cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim);
    let bar = progress.then(|| crate::progress::bar("AWQ", cfg.num_hidden_layers as u64));
    let (mut scales, mut reports) = (Vec::new(), Vec::new());
    for (l, layer) in stats.layers.iter().enumerate() {
        let p = format!("model.layers.{l}");
        let read = |name: &str, shape: &[usize]| ckpt.tensor_f32(&format!("{p}.{name}.weight"), shape);
        let mut qkv = read("self_attn.q_proj", &[qw, h])?;
        qkv.extend(read("self_attn.k_proj", &[kvw, h])?);
        qkv.extend(read("self_attn.v_proj", &[kvw, h])?);
        let attn = search_linear(gpu, &qkv, h, &layer.attn_in, dtype)?;
        drop(qkv);
        let mut gate_up = read("mlp.gate_proj", &[f, h])?;
        gate_up.extend(read("mlp.up_proj", &[f, h])?);
        let ffn = search_linear(gpu, &gate_up, h, &layer.ffn_in, dtype)?;
        drop(gate_up);
        let down = search_linear(gpu, &read("mlp.down_proj", &[h, f])?, f, &layer.down_in, dtype)?;
        reports.push(LayerReport {
            layer: l,
            rtn_error: [attn.rtn_error, ffn.rtn_error, down.rtn_error],
            awq_error: [attn.awq_error, ffn.awq_error, down.awq_error],
            alpha: [attn.alpha, ffn.alpha, down.alpha],
        });
        scales.push(LayerScales { attn_in: attn.scales, ffn_in: ffn.scales, down_in: down.scales });
        if let Some(bar) = &bar {
            bar.inc(1);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok((scales, reports))
}

/// The scales for alpha: s_c = max(m_c, MIN_MAGNITUDE)^alpha for the mean magnitudes `m`,
/// divided by sqrt(max(s) * min(s)) so they straddle 1 (the weights keep their range in f16).
pub fn scales_for(mean_abs: &[f32], alpha: f32) -> Vec<f32> {
    let s: Vec<f32> = mean_abs.iter().map(|m| m.max(MIN_MAGNITUDE).powf(alpha)).collect();
    let (lo, hi) = s.iter().fold((f32::MAX, 0.0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let norm = (lo * hi).sqrt();
    if !(norm.is_finite() && norm > 0.0) {
        return vec![1.0; mean_abs.len()];
    }
    s.into_iter().map(|v| v / norm).collect()
}

/// Searches the scales of one input: `w` is the row-major (n, k) weight of the linears that read
/// it (stacked by rows), `x` its calibration statistics (`x.sample` the rows the error is measured
/// on). Runs the quantize kernel and the dequantizing matmul on `gpu` for each alpha.
pub fn search_linear(gpu: &Gpu, w: &[f32], k: usize, x: &InputStats, dtype: DType) -> Result<InputSearch> {
    if k == 0 || w.is_empty() || !w.len().is_multiple_of(k) {
        return Err(Error::Input(format!("AWQ: a weight of {} values has no whole rows of {k}", w.len())));
    }
    if x.channels() != k {
        return Err(Error::Input(format!("AWQ: statistics for {} channels, the weight has {k} columns", x.channels())));
    }
    if !dtype.group().is_some_and(|g| k.is_multiple_of(g)) {
        return Ok(InputSearch::default());
    }
    let (n, m) = (w.len() / k, x.sample_rows());
    if m == 0 {
        return Err(Error::Input("AWQ: the calibration statistics kept no sample rows".into()));
    }
    let sample = &x.sample[..m * k];
    // The float output the candidates are measured against.
    let xs = Tensor::from_f32(gpu, &[m, k], DType::F32, sample)?;
    let y = Tensor::empty(gpu, &[m, n], DType::F32)?;
    let reference = {
        let w32 = Tensor::from_f32(gpu, &[n, k], DType::F32, w)?;
        let op = matmul::matmul(gpu, &xs, &w32, &y)?;
        let mut rec = Recorder::new(gpu);
        rec.run(&op);
        rec.submit()?;
        y.to_f32(gpu)?
    };
    let reference_norm = reference.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>().sqrt().max(f64::MIN_POSITIVE);

    // One candidate: W s rounded to f16 and quantized (as loading does), times the sample / s.
    let w16 = Tensor::empty(gpu, &[n, k], DType::F16)?;
    let packed = Tensor::empty(gpu, &[n, k], dtype)?;
    let ops = [quantize::quantize(gpu, &w16, &packed)?, matmul::matmul(gpu, &xs, &packed, &y)?];
    let mean_abs = x.mean_abs();
    let mut best = InputSearch { rtn_error: f64::INFINITY, awq_error: f64::INFINITY, ..Default::default() };
    let mut scaled_w = vec![0.0f32; w.len()];
    let mut scaled_x = vec![0.0f32; sample.len()];
    for step in 0..=ALPHA_STEPS {
        let alpha = step as f32 / ALPHA_STEPS as f32;
        let s = scales_for(&mean_abs, alpha);
        for (out, row) in scaled_w.chunks_mut(k).zip(w.chunks(k)) {
            for ((o, v), s) in out.iter_mut().zip(row).zip(&s) {
                *o = v * s;
            }
        }
        for (out, row) in scaled_x.chunks_mut(k).zip(sample.chunks(k)) {
            for ((o, v), s) in out.iter_mut().zip(row).zip(&s) {
                *o = v / s;
            }
        }
        w16.write_f32(gpu, &scaled_w)?;
        xs.write_f32(gpu, &scaled_x)?;
        let mut rec = Recorder::new(gpu);
        rec.run_all(&ops);
        rec.submit()?;
        let got = y.to_f32(gpu)?;
        let diff = got.iter().zip(&reference).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum::<f64>().sqrt();
        let error = diff / reference_norm;
        if step == 0 {
            best.rtn_error = error;
        }
        // Strictly better only: ties keep the smaller alpha (round-to-nearest at worst).
        if error < best.awq_error {
            best = InputSearch { scales: s, rtn_error: best.rtn_error, awq_error: error, alpha };
        }
    }
    Ok(best)
}

/// Prints the per-layer report as a table on stderr: for each input, the relative output error
/// of round-to-nearest and of AWQ on the calibration sample, and the alpha chosen ("float" where
/// the input stays unquantized), then the means over the quantized layers.
pub fn print_report(reports: &[LayerReport]) {
    let is_float = |r: &LayerReport, i: usize| r.rtn_error[i] == 0.0 && r.awq_error[i] == 0.0;
    let mut header = format!("{:>5}", "layer");
    let mut columns = format!("{:>5}", "");
    for name in ["q/k/v (attn_in)", "gate/up (ffn_in)", "down (down_in)"] {
        header += &format!("  {name:<25}");
        columns += &format!("  {:<8} {:<8} {:<7}", "rtn", "awq", "alpha");
    }
    eprintln!("{header}\n{columns}");
    for r in reports {
        let mut line = format!("{:>5}", r.layer);
        for i in 0..3 {
            line += &if is_float(r, i) {
                format!("  {:<25}", "float")
            } else {
                format!("  {:<8.5} {:<8.5} {:<7.2}", r.rtn_error[i], r.awq_error[i], r.alpha[i])
            };
        }
        eprintln!("{line}");
    }
    let mut line = format!("{:>5}", "mean");
    for i in 0..3 {
        let quantized: Vec<&LayerReport> = reports.iter().filter(|r| !is_float(r, i)).collect();
        let n = quantized.len() as f64;
        line += &if quantized.is_empty() {
            format!("  {:<25}", "float")
        } else {
            let rtn = quantized.iter().map(|r| r.rtn_error[i]).sum::<f64>() / n;
            let awq = quantized.iter().map(|r| r.awq_error[i]).sum::<f64>() / n;
            format!("  {rtn:<8.5} {awq:<8.5} {:<7}", "")
        };
    }
    eprintln!("{}", line.trim_end());
}
