//! The Llama-family decoder: `Weights` (on the GPU, Hugging Face names), `Activations`
//! (allocated once), and `forward`, which records one step over T new tokens.
//!
//! This file is the model; everything else (loading, sampling, the generation loop) serves it.
//! Read `forward` top to bottom: it is the whole network, one engine op per line.

use shaderlm_engine::kernels::{
    add, attention_decode, attention_prefill, embedding, matmul, matvec, matvec_batch, rms_norm, rms_norm_matvec,
    rms_norm_matvec_rope_kv_cache, rms_norm_matvec_swiglu, rope, rope_kv_cache, swiglu,
};
use rms_norm_matvec_rope_kv_cache::Heads;
use shaderlm_engine::{DType, Gpu, Op, Recorder, Tensor};

use crate::checkpoint::{Checkpoint, Config};
use crate::compress::edits::{load_tensor, Edits, Role, TensorRecord};
use crate::compress::plan::{CompressOptions, LoadPlan};
use crate::kv_cache::KvCache;
use crate::{Error, Result};

/// One decoder layer's weights. Linear weights are (out_features, in_features), row-major.
pub struct LayerWeights {
    pub input_layernorm: Tensor,          // (hidden)
    pub q_proj: Tensor,                   // (n_heads * head_dim, hidden)
    pub k_proj: Tensor,                   // (n_kv_heads * head_dim, hidden)
    pub v_proj: Tensor,                   // (n_kv_heads * head_dim, hidden)
    pub o_proj: Tensor,                   // (hidden, n_heads * head_dim)
    pub qkv_bias: Option<[Tensor; 3]>,    // Qwen2: (q width), (kv width), (kv width)
    pub post_attention_layernorm: Tensor, // (hidden)
    pub gate_proj: Tensor,                // (intermediate, hidden)
    pub up_proj: Tensor,                  // (intermediate, hidden)
    pub down_proj: Tensor,                // (hidden, intermediate)
}

/// One layer's projections stacked by rows, so that one matvec computes what two or three would:
/// after `Weights::stack_projections`, `q_proj`, `k_proj`, `v_proj`, `gate_proj` and `up_proj`
/// in `LayerWeights` are views of these (nothing is held twice).
pub struct StackedWeights {
    pub qkv_proj: Tensor,         // (n_heads * head_dim + 2 * n_kv_heads * head_dim, hidden): q; k; v
    pub qkv_bias: Option<Tensor>, // Qwen2: (q width + 2 * kv width)
    pub gate_up_proj: Tensor,     // (2 * intermediate, hidden): gate; up
}

/// The weights of a run of consecutive layers: the whole model, or one part of a model split
/// across GPUs (`Weights::load_layers`), which holds the embedding only if it starts at layer 0
/// and the head (final norm, lm_head) only if it ends at the last layer.
pub struct Weights {
    pub embed_tokens: Option<Tensor>, // (vocab, hidden)
    /// Index of `layers[0]` in the whole model.
    pub first_layer: usize,
    pub layers: Vec<LayerWeights>,
    pub stacked: Vec<StackedWeights>, // one per layer
    pub norm: Option<Tensor>,         // (hidden)
    pub lm_head: Option<Tensor>,      // (vocab, hidden); the same buffer as embed_tokens when tied
    pub inv_freq: Tensor,             // (rot_dim / 2) RoPE frequencies, scaling applied
}

/// Every activation buffer, allocated once for up to `rows` tokens per step.
pub struct Activations {
    pub rows: usize,
    pub x: Tensor,      // (rows, hidden) residual stream
    pub xb: Tensor,     // (rows, hidden) normed input of a block
    pub xb2: Tensor,    // (rows, hidden) block output before the residual add
    pub qkv: Tensor,    // (rows, (n_heads + 2 * n_kv_heads) * head_dim) [q | k | v] per row
    pub q: Tensor,      // (rows, n_heads * head_dim) queries after RoPE
    pub att: Tensor,    // (rows, n_heads * head_dim) attention output
    pub gu: Tensor,     // (rows, 2 * intermediate) [gate | up] per row
    pub hb: Tensor,     // (rows, intermediate) silu(gate) * up
    pub x_last: Tensor, // (1, hidden) last row of x, for the head
    pub xb_last: Tensor, // (1, hidden)
    pub logits: Tensor, // (1, vocab)
    pub tokens: Tensor, // (rows) u32 input ids of a prefill step
    pub next: Tensor,   // (1) u32 the sampled id; the decode step's input
    pub pos: Tensor,    // (1) u32 position of the step's first token
}

/// Ops for one forward step over T tokens, recorded in this order: the network up to the last
/// row, a copy of that row (prefill only), then the head (final norm, lm_head).
pub struct StepOps {
    pub body: Vec<Op>,
    pub last_row: Option<Tensor>,
    pub head: Vec<Op>,
}

impl StepOps {
    pub fn record<'a>(&'a self, rec: &mut Recorder<'a>, act: &Activations) -> Result<()> {
        rec.run_all(&self.body);
        if let Some(row) = &self.last_row {
            rec.copy(row, &act.x_last)?;
        }
        rec.run_all(&self.head);
        Ok(())
    }

    /// Dispatches and copies the step records.
    pub fn command_count(&self) -> usize {
        self.body.iter().chain(&self.head).map(|op| op.len()).sum::<usize>() + self.last_row.is_some() as usize
    }
}

/// How weights are held on the GPU. The quantized choices apply to the linear layers
/// (q/k/v/o/gate/up/down); embeddings, lm_head and the KV cache stay f16, norms f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightDType {
    F16,
    F32,
    /// int8, an f16 scale per 32 inputs.
    Q8,
    /// 4-bit, an f16 scale and min per 32 inputs.
    Q4,
    /// 4-bit, an f16 scale and min per 128 inputs.
    Q4G128,
}

impl WeightDType {
    /// The float dtype: embeddings, lm_head, the KV cache.
    pub fn engine(self) -> DType {
        match self {
            WeightDType::F32 => DType::F32,
            _ => DType::F16,
        }
    }

    /// The dtype of a linear layer with `k` inputs: the quantized one where `k` is a whole
    /// number of its groups, else (a rare shape, e.g. stories260K's k = 172) the float one.
    pub fn linear(self, k: usize) -> DType {
        let packed = match self {
            WeightDType::Q8 => DType::Q8,
            WeightDType::Q4 => DType::Q4,
            WeightDType::Q4G128 => DType::Q4G128,
            _ => return self.engine(),
        };
        if packed.group().is_some_and(|g| k.is_multiple_of(g)) { packed } else { self.engine() }
    }
}

/// `W x` for one row (bandwidth-bound matvec) or `X W^T` for many (tiled matmul).
fn linear(gpu: &Gpu, x: &Tensor, w: &Tensor, y: &Tensor) -> Result<Op> {
    Ok(if x.shape()[0] == 1 { matvec::matvec(gpu, w, x, y)? } else { matmul::matmul(gpu, x, w, y)? })
}

/// `y = w . rms_norm(x, g)`: for one row, one fused matvec where the weight allows it; else the
/// norm into `xb`, then the projection.
#[allow(clippy::too_many_arguments)]
fn norm_linear(gpu: &Gpu, x: &Tensor, g: &Tensor, w: &Tensor, y: &Tensor, xb: &Tensor, eps: f32) -> Result<Op> {
    if x.shape()[0] == 1 && (rms_norm_matvec::fits(gpu, w, x, g) || rms_norm_matvec::fits_packed(gpu, w, x, g)) {
        return Ok(rms_norm_matvec::rms_norm_matvec(gpu, x, g, w, y, eps)?);
    }
    Ok(rms_norm::rms_norm(gpu, x, g, xb, eps)?.then(linear(gpu, xb, w, y)?))
}

/// The attention block's input: RMSNorm of `x`, the stacked q/k/v projection (+ bias), RoPE on q
/// and k into `q`, and the keys and values stored at positions `pos..` of the caches. For one row
/// without biases, one fused op where the weights allow it; else the norm and projection into
/// `qkv`, the bias, then `rope_kv_cache`. `scratch` is `(qkv, xb)`.
#[allow(clippy::too_many_arguments)]
fn norm_qkv_rope(
    gpu: &Gpu,
    x: &Tensor,
    g: &Tensor,
    st: &StackedWeights,
    inv_freq: &Tensor,
    pos: &Tensor,
    (q, k_cache, v_cache): (&Tensor, &Tensor, &Tensor),
    (qkv, xb): (&Tensor, &Tensor),
    heads: Heads,
    eps: f32,
) -> Result<Op> {
    let w = &st.qkv_proj;
    if x.shape()[0] == 1 && st.qkv_bias.is_none() && rms_norm_matvec_rope_kv_cache::fits(gpu, w, x, g, inv_freq, heads) {
        let op = rms_norm_matvec_rope_kv_cache::rms_norm_matvec_rope_kv_cache;
        return Ok(op(gpu, x, g, w, inv_freq, pos, q, k_cache, v_cache, heads, eps)?);
    }
    let mut op = norm_linear(gpu, x, g, w, qkv, xb, eps)?;
    if let Some(bias) = &st.qkv_bias {
        op = op.then(add::add_bias(gpu, qkv, bias)?);
    }
    let Heads { n_heads, n_kv_heads, head_dim } = heads;
    Ok(op.then(rope_kv_cache::rope_kv_cache(gpu, qkv, inv_freq, pos, q, k_cache, v_cache, n_heads, n_kv_heads, head_dim)?))
}

/// [`norm_qkv_rope`] for a batched decode step: row b of `x` is sequence b's new token, at position
/// `pos[b]`, and its keys and values go to slot b of the caches `(slots, capacity, kv width)`.
#[allow(clippy::too_many_arguments)]
fn norm_qkv_rope_batched(
    gpu: &Gpu,
    x: &Tensor,
    g: &Tensor,
    st: &StackedWeights,
    inv_freq: &Tensor,
    pos: &Tensor,
    (q, k_cache, v_cache): (&Tensor, &Tensor, &Tensor),
    (qkv, xb): (&Tensor, &Tensor),
    heads: Heads,
    eps: f32,
) -> Result<Op> {
    let mut op = norm_linear(gpu, x, g, &st.qkv_proj, qkv, xb, eps)?;
    if let Some(bias) = &st.qkv_bias {
        op = op.then(add::add_bias(gpu, qkv, bias)?);
    }
    let Heads { n_heads, n_kv_heads, head_dim } = heads;
    let rope = rope_kv_cache::rope_kv_cache_batched;
    Ok(op.then(rope(gpu, qkv, inv_freq, pos, q, k_cache, v_cache, n_heads, n_kv_heads, head_dim)?))
}

/// `silu(gate) * up` of `rms_norm(x, g)` through the stacked `[gate; up]` weight `w`, into `out`:
/// for one row, one fused matvec where the weight allows it; else the norm into `xb`, the
/// projection into `gu`, then the gate.
#[allow(clippy::too_many_arguments)]
fn norm_gate_up(gpu: &Gpu, x: &Tensor, g: &Tensor, w: &Tensor, out: &Tensor, xb: &Tensor, gu: &Tensor, eps: f32) -> Result<Op> {
    if x.shape()[0] == 1 && (rms_norm_matvec::fits(gpu, w, x, g) || rms_norm_matvec::fits_packed(gpu, w, x, g)) {
        return Ok(rms_norm_matvec_swiglu::rms_norm_matvec_swiglu(gpu, x, g, w, out, eps)?);
    }
    let norm = rms_norm::rms_norm(gpu, x, g, xb, eps)?;
    Ok(norm.then(linear(gpu, xb, w, gu)?).then(swiglu::swiglu(gpu, gu, out)?))
}

/// `x += w . input` (a residual connection): for one row, the matvec (float or packed weight)
/// adds into `x` itself, and so does the batched matvec for a few rows; else the projection into
/// `scratch`, then an add.
fn linear_residual(gpu: &Gpu, input: &Tensor, w: &Tensor, x: &Tensor, scratch: &Tensor) -> Result<Op> {
    if input.shape()[0] == 1 {
        return Ok(matvec::matvec_accumulate(gpu, w, input, x)?);
    }
    if matvec_batch::fits(gpu, input, w) {
        return Ok(matvec_batch::matvec_batch_accumulate(gpu, input, w, x)?);
    }
    Ok(linear(gpu, input, w, scratch)?.then(add::add(gpu, x, scratch)?))
}

impl Weights {
    /// Precision of the projection weights.
    pub fn q_dtype(&self) -> DType {
        let float = || self.embed_tokens.as_ref().or(self.lm_head.as_ref()).map_or(DType::F32, |t| t.dtype());
        self.layers.first().map_or_else(float, |l| l.q_proj.dtype())
    }

    /// Bytes one decode step reads: every layer's weights, the final norm and the whole
    /// lm_head (of the embedding table only one row, which is left out).
    pub fn decode_read_bytes(&self) -> u64 {
        let layers: u64 = self
            .layers
            .iter()
            .map(|l| {
                let mut b = [&l.input_layernorm, &l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj]
                    .iter()
                    .chain([&l.post_attention_layernorm, &l.gate_proj, &l.up_proj, &l.down_proj].iter())
                    .map(|t| t.byte_size())
                    .sum::<u64>();
                if let Some(bias) = &l.qkv_bias {
                    b += bias.iter().map(|t| t.byte_size()).sum::<u64>();
                }
                b
            })
            .sum();
        let head = [&self.norm, &self.lm_head].iter().filter_map(|t| t.as_ref()).map(|t| t.byte_size()).sum::<u64>();
        layers + head
    }

    /// Bytes the weights will take on the GPU, computed from the config before anything is read.
    pub fn planned_bytes(cfg: &Config, dtype: WeightDType) -> u64 {
        let (embed, per_layer, head) = Weights::planned_bytes_by_part(cfg, dtype);
        embed + per_layer * cfg.num_hidden_layers as u64 + head
    }

    /// [`Weights::planned_bytes`] in three: the embedding, one decoder layer, and the head
    /// (final norm, plus lm_head when it is not tied to the embedding).
    pub fn planned_bytes_by_part(cfg: &Config, dtype: WeightDType) -> (u64, u64, u64) {
        let d = dtype.engine();
        let (h, f) = (cfg.hidden_size, cfg.intermediate_size);
        let (qw, kvw) = (cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim);
        // A linear layer [n, k]: its dtype depends on k (see WeightDType::linear).
        let lin = |n: usize, k: usize| dtype.linear(k).bytes_for(n * k);
        let per_layer = lin(qw, h) + 2 * lin(kvw, h) + lin(h, qw)
            + 2 * lin(f, h)
            + lin(h, f)
            + 8 * h as u64
            + if cfg.attention_bias { 4 * (qw + 2 * kvw) as u64 } else { 0 };
        let embed = d.bytes_for(cfg.vocab_size * h);
        let lm_head = if cfg.tie_word_embeddings { 0 } else { embed };
        (embed, per_layer, lm_head + 4 * h as u64)
    }

    /// Reads every tensor from the checkpoint (checking its shape against the config) and
    /// uploads it, every linear layer in `dtype` (see [`Weights::load_planned`]). `progress` is
    /// called after each tensor with (done, total).
    pub fn load(gpu: &Gpu, ckpt: &Checkpoint, dtype: WeightDType, progress: impl FnMut(usize, usize)) -> Result<Weights> {
        Weights::load_layers(gpu, ckpt, dtype, 0..ckpt.config().num_hidden_layers, progress)
    }

    /// [`Weights::load`] for the decoder layers `layers` only (one part of a model split across
    /// GPUs; see [`Weights::load_planned`]).
    pub fn load_layers(
        gpu: &Gpu,
        ckpt: &Checkpoint,
        dtype: WeightDType,
        layers: std::ops::Range<usize>,
        progress: impl FnMut(usize, usize),
    ) -> Result<Weights> {
        let plan = LoadPlan::new(ckpt.config(), dtype, &CompressOptions::default())?;
        Ok(Weights::load_planned(gpu, ckpt, &plan, &Edits::none(ckpt.config()), layers, progress)?.0)
    }

    /// Reads every tensor the plan keeps from the checkpoint, passes it through `edits`
    /// (dropped layers, removed FFN channels, pruning, AWQ scales) and uploads it in the plan's
    /// dtype: GGUF blocks repacked where exact and unedited, else quantized (compress::edits).
    /// The model it builds has the config `edits.config(ckpt.config())`; `layers` (in that
    /// model's numbering) are the decoder layers loaded here — all of them, or one part of a
    /// model split across GPUs: the embedding is loaded when they start at 0, the head (final
    /// norm, lm_head) when they end at the last layer. Returns the weights and, per tensor,
    /// what was stored.
    pub fn load_planned(
        gpu: &Gpu,
        ckpt: &Checkpoint,
        plan: &LoadPlan,
        edits: &Edits,
        layers: std::ops::Range<usize>,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<(Weights, Vec<TensorRecord>)> {
        let cfg = edits.config(ckpt.config());
        let n_layers = cfg.num_hidden_layers;
        if layers.start > layers.end || layers.end > n_layers {
            return Err(Error::Input(format!("layers {layers:?} of a model with {n_layers}")));
        }
        let (with_embed, with_head) = (layers.start == 0, layers.end == n_layers);
        let total = with_embed as usize + 2 * with_head as usize + layers.len() * if cfg.attention_bias { 12 } else { 9 };
        let mut records = Vec::with_capacity(total);
        let mut load = |role: Role, layer: Option<usize>| -> Result<Tensor> {
            let (t, record) = load_tensor(gpu, ckpt, plan, edits, &cfg, role, layer)?;
            records.push(record);
            progress(records.len(), total);
            Ok(t)
        };
        let embed_tokens = if with_embed { Some(load(Role::Embed, None)?) } else { None };
        let first_layer = layers.start;
        let mut layers_w = Vec::with_capacity(layers.len());
        for l in layers {
            let at = Some(l);
            let qkv_bias = if cfg.attention_bias {
                Some([load(Role::QBias, at)?, load(Role::KBias, at)?, load(Role::VBias, at)?])
            } else {
                None
            };
            layers_w.push(LayerWeights {
                input_layernorm: load(Role::InputNorm, at)?,
                q_proj: load(Role::Q, at)?,
                k_proj: load(Role::K, at)?,
                v_proj: load(Role::V, at)?,
                o_proj: load(Role::O, at)?,
                qkv_bias,
                post_attention_layernorm: load(Role::PostNorm, at)?,
                gate_proj: load(Role::Gate, at)?,
                up_proj: load(Role::Up, at)?,
                down_proj: load(Role::Down, at)?,
            });
        }
        let (norm, lm_head) = if with_head {
            let norm = load(Role::FinalNorm, None)?;
            let tied = cfg.tie_word_embeddings || !ckpt.has_tensor("lm_head.weight");
            let lm_head = match (&embed_tokens, tied) {
                (Some(embed), true) => embed.clone(),
                (None, true) => load(Role::Embed, None)?,
                (_, false) => load(Role::LmHead, None)?,
            };
            (Some(norm), Some(lm_head))
        } else {
            (None, None)
        };
        let inv_freq = Tensor::from_f32(gpu, &[cfg.rot_dim() / 2], DType::F32, &rope_frequencies(&cfg))?;
        let mut weights =
            Weights { embed_tokens, first_layer, layers: layers_w, stacked: Vec::new(), norm, lm_head, inv_freq };
        weights.stack_projections(gpu)?;
        Ok((weights, records))
    }

    /// Stacks each layer's q/k/v projections (and biases) and gate/up projections into one
    /// tensor each (GPU copies, layer by layer), and makes the separate weights views of them.
    fn stack_projections(&mut self, gpu: &Gpu) -> Result<()> {
        for lw in &mut self.layers {
            let (qkv_proj, [q, k, v]) = stack_rows(gpu, [&lw.q_proj, &lw.k_proj, &lw.v_proj])?;
            (lw.q_proj, lw.k_proj, lw.v_proj) = (q, k, v);
            let qkv_bias = match &mut lw.qkv_bias {
                Some(bias) => {
                    let (stacked, views) = stack_rows(gpu, [&bias[0], &bias[1], &bias[2]])?;
                    *bias = views;
                    Some(stacked)
                }
                None => None,
            };
            let (gate_up_proj, [gate, up]) = stack_rows(gpu, [&lw.gate_proj, &lw.up_proj])?;
            (lw.gate_proj, lw.up_proj) = (gate, up);
            self.stacked.push(StackedWeights { qkv_proj, qkv_bias, gate_up_proj });
            // Let the GPU finish the copies so the separate tensors' memory is released as we go.
            gpu.wait()?;
        }
        Ok(())
    }
}

/// Copies `parts` (one dtype, same row length; 1-D parts are rows of one element) one after the
/// other into a new tensor, and returns it with a view of it for each part.
fn stack_rows<const N: usize>(gpu: &Gpu, parts: [&Tensor; N]) -> Result<(Tensor, [Tensor; N])> {
    let first = parts[0];
    let tail = &first.shape()[1..];
    if let Some(p) = parts.iter().find(|p| p.dtype() != first.dtype() || &p.shape()[1..] != tail) {
        return Err(Error::Input(format!("cannot stack {p:?} under {first:?}: dtype or row length differs")));
    }
    let rows: usize = parts.iter().map(|p| p.shape()[0]).sum();
    let mut shape = first.shape().to_vec();
    shape[0] = rows;
    if first.dtype().is_packed() {
        return stack_packed_rows(gpu, parts, &shape);
    }
    let stacked = Tensor::empty(gpu, &shape, first.dtype())?;
    let mut rec = Recorder::new(gpu);
    let mut start = 0;
    let mut views = Vec::with_capacity(N);
    for part in parts {
        let view = stacked.rows(start, part.shape()[0])?;
        rec.copy(part, &view)?;
        start += part.shape()[0];
        views.push(view);
    }
    rec.submit()?;
    let views = views.try_into().map_err(|_| Error::Input("stack_rows: view count".into()))?;
    Ok((stacked, views))
}

/// [`stack_rows`] for packed (quantized or 2:4 sparse) weights, whose quants and scales sit in
/// separate regions of a tensor: each part's quants and scales (sparse: values, positions and
/// scales) are unpacked on the CPU, concatenated in row order and packed again (no rounding).
fn stack_packed_rows<const N: usize>(gpu: &Gpu, parts: [&Tensor; N], shape: &[usize]) -> Result<(Tensor, [Tensor; N])> {
    use shaderlm_engine::dtype::{pack_q4_from_blocks, pack_q8_from_blocks, unpack_q4, unpack_q8};
    use shaderlm_engine::dtype::{pack_s24_f16_from_parts, pack_s24_q4_from_parts, unpack_s24_f16, unpack_s24_q4};
    let dtype = parts[0].dtype();
    let (n, k) = (shape[0], shape[1]);
    let words = if dtype == DType::S24F16 {
        let (mut values, mut positions) = (Vec::new(), Vec::new());
        for p in parts {
            let (v, pos) = unpack_s24_f16(&p.to_words(gpu)?, p.shape()[0], k)?;
            values.extend(v);
            positions.extend(pos);
        }
        pack_s24_f16_from_parts(&values, &positions, n, k)?
    } else if dtype == DType::S24Q4 {
        let (mut qs, mut positions, mut scales, mut mins) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for p in parts {
            let (q, pos, s, m) = unpack_s24_q4(&p.to_words(gpu)?, p.shape()[0], k)?;
            qs.extend(q);
            positions.extend(pos);
            scales.extend(s);
            mins.extend(m);
        }
        pack_s24_q4_from_parts(&qs, &positions, &scales, &mins, n, k)?
    } else if dtype == DType::Q8 {
        let (mut qs, mut scales) = (Vec::new(), Vec::new());
        for p in parts {
            let (q, s) = unpack_q8(&p.to_words(gpu)?, p.shape()[0], k)?;
            qs.extend(q);
            scales.extend(s);
        }
        pack_q8_from_blocks(&qs, &scales, n, k)?
    } else {
        let group = dtype.group().unwrap_or(32);
        let (mut qs, mut scales, mut mins) = (Vec::new(), Vec::new(), Vec::new());
        for p in parts {
            let (q, s, m) = unpack_q4(&p.to_words(gpu)?, p.shape()[0], k, group)?;
            qs.extend(q);
            scales.extend(s);
            mins.extend(m);
        }
        pack_q4_from_blocks(&qs, &scales, &mins, n, k, group)?
    };
    let stacked = Tensor::from_words(gpu, shape, dtype, &words)?;
    let mut start = 0;
    let mut views = Vec::with_capacity(N);
    for part in parts {
        views.push(stacked.rows(start, part.shape()[0])?);
        start += part.shape()[0];
    }
    let views = views.try_into().map_err(|_| Error::Input("stack_rows: view count".into()))?;
    Ok((stacked, views))
}

/// RoPE inverse frequencies for the config, with Llama-3 scaling when it asks for it.
pub fn rope_frequencies(cfg: &Config) -> Vec<f32> {
    let scaling = cfg.rope_scaling.map(|s| rope::Llama3Scaling {
        factor: s.factor,
        low_freq_factor: s.low_freq_factor,
        high_freq_factor: s.high_freq_factor,
        original_max_position_embeddings: s.original_max_position_embeddings,
    });
    rope::inv_freq(cfg.rot_dim(), cfg.rope_theta, scaling)
}

impl Activations {
    pub fn new(gpu: &Gpu, cfg: &Config, rows: usize) -> Result<Activations> {
        let f32 = |shape: &[usize]| Tensor::empty(gpu, shape, DType::F32);
        let (h, f) = (cfg.hidden_size, cfg.intermediate_size);
        let (qw, kvw) = (cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim);
        Ok(Activations {
            rows,
            x: f32(&[rows, h])?,
            xb: f32(&[rows, h])?,
            xb2: f32(&[rows, h])?,
            qkv: f32(&[rows, qw + 2 * kvw])?,
            q: f32(&[rows, qw])?,
            att: f32(&[rows, qw])?,
            gu: f32(&[rows, 2 * f])?,
            hb: f32(&[rows, f])?,
            x_last: f32(&[1, h])?,
            xb_last: f32(&[1, h])?,
            logits: f32(&[1, cfg.vocab_size])?,
            tokens: Tensor::empty(gpu, &[rows], DType::U32)?,
            next: Tensor::empty(gpu, &[1], DType::U32)?,
            pos: Tensor::empty(gpu, &[1], DType::U32)?,
        })
    }

    /// Activations for a batched decode step over `rows` sequences ([`StepInput::Batch`]): as
    /// [`Activations::new`], with `logits` `(rows, vocab)`, and `next` and `pos` holding one id
    /// and one position per sequence.
    pub fn for_batch(gpu: &Gpu, cfg: &Config, rows: usize) -> Result<Activations> {
        let mut act = Activations::new(gpu, cfg, rows)?;
        act.logits = Tensor::empty(gpu, &[rows, cfg.vocab_size], DType::F32)?;
        act.next = Tensor::empty(gpu, &[rows], DType::U32)?;
        act.pos = Tensor::empty(gpu, &[rows], DType::U32)?;
        Ok(act)
    }

    /// Bytes of all activation buffers.
    pub fn bytes(&self) -> u64 {
        [&self.x, &self.xb, &self.xb2, &self.qkv, &self.q, &self.att, &self.gu, &self.hb, &self.x_last, &self.xb_last]
            .iter()
            .map(|t| t.byte_size())
            .sum()
    }
}

/// Where a step's input ids come from.
pub enum StepInput {
    /// `act.tokens[..t]`, written by the host (prefill).
    Tokens(usize),
    /// `act.next`, the id the previous step sampled on the GPU (decode).
    Sampled,
    /// `act.next[..b]`: one new id for each of b sequences (a batched decode step); row r is at
    /// its own position `act.pos[r]` and keeps its keys and values in slot r of a batched cache
    /// (`KvCache::batched`). Pass `logits_all` (`act.logits` of `Activations::for_batch`): every
    /// row's logits are wanted.
    Batch(usize),
}

/// Records the whole network for T new tokens at positions `pos .. pos + T` (pos is read from
/// `act.pos` on the GPU). Writes their keys and values into the cache; leaves the last row's
/// logits in `act.logits`. With `all_logits`, the head runs over every row instead and
/// writes `logits_all` (T, vocab) (perplexity needs every position).
///
/// For weights that hold a part of the layers (a model split across GPUs; `cache` then holds
/// those layers only), the step runs that part: the embedding only if the part has it (else the
/// input is the T rows of `act.x`, written there by the part before), the head only if the part
/// has it (else the output is the T rows of `act.x`, and `logits_all` is not written).
///
/// Each dispatch costs a few microseconds however little it does, so for one row (decode) the
/// steps are fused: q, k and v come from one projection over stacked weights that also applies
/// the norm before it and RoPE and the cache writes after it; gate and up from one that also
/// applies the norm and the gate; each residual add is done by the projection before it. A decode
/// step is six dispatches per layer (attention is two). Prefill (many rows) runs the same steps
/// unfused, around matmuls.
///
/// A batched decode step ([`StepInput::Batch`], one new token for each of B sequences) runs the
/// unfused steps too, so each weight is read once for all B rows; RoPE with the cache writes and
/// attention are per row, each at its own position in its own cache slot.
pub fn forward(
    gpu: &Gpu,
    cfg: &Config,
    w: &Weights,
    cache: &KvCache,
    act: &Activations,
    input: StepInput,
    logits_all: Option<&Tensor>,
) -> Result<StepOps> {
    let t = match input {
        StepInput::Tokens(t) | StepInput::Batch(t) => t,
        StepInput::Sampled => 1,
    };
    let batched = matches!(input, StepInput::Batch(_));
    if t == 0 || t > act.rows {
        return Err(Error::Input(format!("a step takes 1..={} tokens, got {t}", act.rows)));
    }
    let (nh, nkv, hd) = (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim);
    let heads = Heads { n_heads: nh, n_kv_heads: nkv, head_dim: hd };
    let eps = cfg.rms_norm_eps;
    let scale = 1.0 / (hd as f32).sqrt();
    let rows = |x: &Tensor| x.rows(0, t);
    let (x, xb, xb2, qkv, q, att) =
        (rows(&act.x)?, rows(&act.xb)?, rows(&act.xb2)?, rows(&act.qkv)?, rows(&act.q)?, rows(&act.att)?);
    let (gu, hb) = (rows(&act.gu)?, rows(&act.hb)?);
    let ids = match input {
        StepInput::Tokens(t) => act.tokens.rows(0, t)?,
        StepInput::Sampled => act.next.clone(),
        StepInput::Batch(b) => act.next.rows(0, b)?,
    };

    if cache.k.len() != w.layers.len() {
        return Err(Error::Input(format!("a cache of {} layers for {} layers of weights", cache.k.len(), w.layers.len())));
    }

    let mut body = Vec::new();
    // token embeddings into the residual stream (a later part of a split model: x is its input)
    if let Some(embed_tokens) = &w.embed_tokens {
        body.push(embedding::embedding(gpu, embed_tokens, &ids, &x)?.labelled("embed"));
    }
    for (i, (lw, st)) in w.layers.iter().zip(&w.stacked).enumerate() {
        let name = |s: &str| format!("L{}.{s}", w.first_layer + i);
        // attention block: norm, the q/k/v projection (+ bias), RoPE on q and k, and this step's
        // keys and values stored at positions pos.. in the cache
        let (k_cache, v_cache) = (&cache.k[i], &cache.v[i]);
        let (outputs, scratch) = ((&q, k_cache, v_cache), (&qkv, &xb));
        let norm_qkv_rope = if batched { norm_qkv_rope_batched } else { norm_qkv_rope };
        let input = norm_qkv_rope(gpu, &x, &lw.input_layernorm, st, &w.inv_freq, &act.pos, outputs, scratch, heads, eps)?;
        body.push(input.labelled(&name("attn_norm+qkv_proj+rope+kv_cache")));
        // causal grouped-query attention over the cache
        let attend = if batched {
            attention_decode::attention_decode_batched(gpu, &q, k_cache, v_cache, &att, &act.pos, nh, nkv, hd, scale)?
        } else if t == 1 {
            attention_decode::attention_decode(gpu, &q, k_cache, v_cache, &att, &act.pos, nh, nkv, hd, scale)?
        } else {
            attention_prefill::attention_prefill(gpu, &q, k_cache, v_cache, &att, &act.pos, nh, nkv, hd, scale)?
        };
        body.push(attend.labelled(&name("attention")));
        // output projection, added into the residual stream
        body.push(linear_residual(gpu, &att, &lw.o_proj, &x, &xb2)?.labelled(&name("o_proj+residual")));
        // feed-forward block: norm, silu(gate) * up from one projection, down added into the
        // residual stream
        let gate_up = norm_gate_up(gpu, &x, &lw.post_attention_layernorm, &st.gate_up_proj, &hb, &xb, &gu, eps)?;
        body.push(gate_up.labelled(&name("ffn_norm+gate_up+swiglu")));
        body.push(linear_residual(gpu, &hb, &lw.down_proj, &x, &xb2)?.labelled(&name("down_proj+residual")));
    }

    // final norm and classifier: over every row for perplexity, else over the last row only
    // (an earlier part of a split model stops at the residual stream)
    let (Some(norm), Some(lm_head)) = (&w.norm, &w.lm_head) else {
        return Ok(StepOps { body, last_row: None, head: Vec::new() });
    };
    if let Some(logits) = logits_all {
        body.push(norm_linear(gpu, &x, norm, lm_head, logits, &xb, eps)?.labelled("final_norm+lm_head"));
        return Ok(StepOps { body, last_row: None, head: Vec::new() });
    }
    let (last_row, x_last) = if t == 1 { (None, x.clone()) } else { (Some(x.rows(t - 1, 1)?), act.x_last.clone()) };
    let head = norm_linear(gpu, &x_last, norm, lm_head, &act.logits, &act.xb_last, eps)?;
    Ok(StepOps { body, last_row, head: vec![head.labelled("final_norm+lm_head")] })
}
