//! The Llama-family decoder: `Weights` (on the GPU, Hugging Face names), `Activations`
//! (allocated once), and `forward`, which records one step over T new tokens.
//!
//! This file is the model; everything else (loading, sampling, the generation loop) serves it.
//! Read `forward` top to bottom: it is the whole network, one engine op per line.

use shaderlm_engine::kernels::{
    add, attention_decode, attention_prefill, copy_rows, embedding, matmul, matvec, rms_norm, rope, silu_mul,
};
use shaderlm_engine::{DType, Gpu, Op, Recorder, Tensor};

use crate::checkpoint::{Checkpoint, Config};
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

pub struct Weights {
    pub embed_tokens: Tensor, // (vocab, hidden)
    pub layers: Vec<LayerWeights>,
    pub norm: Tensor,         // (hidden)
    pub lm_head: Tensor,      // (vocab, hidden); the same buffer as embed_tokens when tied
    pub inv_freq: Tensor,     // (rot_dim / 2) RoPE frequencies, scaling applied
}

/// Every activation buffer, allocated once for up to `rows` tokens per step.
pub struct Activations {
    pub rows: usize,
    pub x: Tensor,      // (rows, hidden) residual stream
    pub xb: Tensor,     // (rows, hidden) normed input of a block
    pub xb2: Tensor,    // (rows, hidden) block output before the residual add
    pub q: Tensor,      // (rows, n_heads * head_dim)
    pub k: Tensor,      // (rows, n_kv_heads * head_dim)
    pub v: Tensor,      // (rows, n_kv_heads * head_dim)
    pub att: Tensor,    // (rows, n_heads * head_dim) attention output
    pub hb: Tensor,     // (rows, intermediate) gate
    pub hb2: Tensor,    // (rows, intermediate) up
    pub hb3: Tensor,    // (rows, intermediate) silu(gate) * up
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
    pub fn len(&self) -> usize {
        self.body.iter().chain(&self.head).map(|op| op.len()).sum::<usize>() + self.last_row.is_some() as usize
    }
}

/// How weights are held on the GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightDType {
    F16,
    F32,
}

impl WeightDType {
    pub fn engine(self) -> DType {
        match self {
            WeightDType::F16 => DType::F16,
            WeightDType::F32 => DType::F32,
        }
    }
}

/// `W x` for one row (bandwidth-bound matvec) or `X W^T` for many (tiled matmul).
fn linear(gpu: &Gpu, x: &Tensor, w: &Tensor, y: &Tensor) -> Result<Op> {
    Ok(if x.shape()[0] == 1 { matvec::matvec(gpu, w, x, y)? } else { matmul::matmul(gpu, x, w, y)? })
}

impl Weights {
    /// Precision of the projection weights.
    pub fn q_dtype(&self) -> DType {
        self.layers.first().map_or(self.embed_tokens.dtype(), |l| l.q_proj.dtype())
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
        layers + self.norm.byte_size() + self.lm_head.byte_size()
    }

    /// Bytes the weights will take on the GPU, computed from the config before anything is read.
    pub fn planned_bytes(cfg: &Config, dtype: WeightDType) -> u64 {
        let d = dtype.engine();
        let (h, f) = (cfg.hidden_size, cfg.intermediate_size);
        let (qw, kvw) = (cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim);
        let per_layer = d.bytes_for(qw * h) + 2 * d.bytes_for(kvw * h) + d.bytes_for(h * qw)
            + 3 * d.bytes_for(f * h)
            + 8 * h as u64
            + if cfg.attention_bias { 4 * (qw + 2 * kvw) as u64 } else { 0 };
        let embed = d.bytes_for(cfg.vocab_size * h);
        let head = if cfg.tie_word_embeddings { 0 } else { embed };
        embed + head + per_layer * cfg.num_hidden_layers as u64 + 4 * h as u64
    }

    /// Reads every tensor from the checkpoint (checking its shape against the config) and
    /// uploads it. `progress` is called after each tensor with (done, total).
    pub fn load(
        gpu: &Gpu,
        ckpt: &Checkpoint,
        dtype: WeightDType,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Weights> {
        let cfg = ckpt.config();
        let (h, f) = (cfg.hidden_size, cfg.intermediate_size);
        let (qw, kvw) = (cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim);
        let wd = dtype.engine();
        let total = 3 + cfg.num_hidden_layers * 9;
        let mut done = 0;
        let mut load = |name: &str, shape: &[usize], dt: DType| -> Result<Tensor> {
            let data = ckpt.tensor_f32(name, shape)?;
            let t = Tensor::from_f32(gpu, shape, dt, &data)?;
            done += 1;
            progress(done, total);
            Ok(t)
        };
        let embed_tokens = load("model.embed_tokens.weight", &[cfg.vocab_size, h], wd)?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{l}");
            let qkv_bias = if cfg.attention_bias {
                Some([
                    load(&format!("{p}.self_attn.q_proj.bias"), &[qw], DType::F32)?,
                    load(&format!("{p}.self_attn.k_proj.bias"), &[kvw], DType::F32)?,
                    load(&format!("{p}.self_attn.v_proj.bias"), &[kvw], DType::F32)?,
                ])
            } else {
                None
            };
            layers.push(LayerWeights {
                input_layernorm: load(&format!("{p}.input_layernorm.weight"), &[h], DType::F32)?,
                q_proj: load(&format!("{p}.self_attn.q_proj.weight"), &[qw, h], wd)?,
                k_proj: load(&format!("{p}.self_attn.k_proj.weight"), &[kvw, h], wd)?,
                v_proj: load(&format!("{p}.self_attn.v_proj.weight"), &[kvw, h], wd)?,
                o_proj: load(&format!("{p}.self_attn.o_proj.weight"), &[h, qw], wd)?,
                qkv_bias,
                post_attention_layernorm: load(&format!("{p}.post_attention_layernorm.weight"), &[h], DType::F32)?,
                gate_proj: load(&format!("{p}.mlp.gate_proj.weight"), &[f, h], wd)?,
                up_proj: load(&format!("{p}.mlp.up_proj.weight"), &[f, h], wd)?,
                down_proj: load(&format!("{p}.mlp.down_proj.weight"), &[h, f], wd)?,
            });
        }
        let norm = load("model.norm.weight", &[h], DType::F32)?;
        let lm_head = if cfg.tie_word_embeddings || !ckpt.has_tensor("lm_head.weight") {
            embed_tokens.clone()
        } else {
            load("lm_head.weight", &[cfg.vocab_size, h], wd)?
        };
        let inv_freq = Tensor::from_f32(gpu, &[cfg.rot_dim() / 2], DType::F32, &rope_frequencies(cfg))?;
        Ok(Weights { embed_tokens, layers, norm, lm_head, inv_freq })
    }
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
            q: f32(&[rows, qw])?,
            k: f32(&[rows, kvw])?,
            v: f32(&[rows, kvw])?,
            att: f32(&[rows, qw])?,
            hb: f32(&[rows, f])?,
            hb2: f32(&[rows, f])?,
            hb3: f32(&[rows, f])?,
            x_last: f32(&[1, h])?,
            xb_last: f32(&[1, h])?,
            logits: f32(&[1, cfg.vocab_size])?,
            tokens: Tensor::empty(gpu, &[rows], DType::U32)?,
            next: Tensor::empty(gpu, &[1], DType::U32)?,
            pos: Tensor::empty(gpu, &[1], DType::U32)?,
        })
    }

    /// Bytes of all activation buffers.
    pub fn bytes(&self) -> u64 {
        [&self.x, &self.xb, &self.xb2, &self.q, &self.k, &self.v, &self.att, &self.hb, &self.hb2, &self.hb3]
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
}

/// Records the whole network for T new tokens at positions `pos .. pos + T` (pos is read from
/// `act.pos` on the GPU). Writes their keys and values into the cache; leaves the last row's
/// logits in `act.logits`. With `all_logits`, the head runs over every row instead and
/// writes `logits_all` (T, vocab) (perplexity needs every position).
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
        StepInput::Tokens(t) => t,
        StepInput::Sampled => 1,
    };
    if t == 0 || t > act.rows {
        return Err(Error::Input(format!("a step takes 1..={} tokens, got {t}", act.rows)));
    }
    let (nh, nkv, hd) = (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim);
    let eps = cfg.rms_norm_eps;
    let scale = 1.0 / (hd as f32).sqrt();
    let rows = |x: &Tensor| x.rows(0, t);
    let (x, xb, xb2, q, k, v, att) =
        (rows(&act.x)?, rows(&act.xb)?, rows(&act.xb2)?, rows(&act.q)?, rows(&act.k)?, rows(&act.v)?, rows(&act.att)?);
    let (hb, hb2, hb3) = (rows(&act.hb)?, rows(&act.hb2)?, rows(&act.hb3)?);
    let ids = match input {
        StepInput::Tokens(t) => act.tokens.rows(0, t)?,
        StepInput::Sampled => act.next.clone(),
    };

    let mut body = Vec::new();
    // token embeddings into the residual stream
    body.push(embedding::embedding(gpu, &w.embed_tokens, &ids, &x)?.labelled("embed"));
    for (l, lw) in w.layers.iter().enumerate() {
        let name = |s: &str| format!("L{l}.{s}");
        // attention block: norm, q/k/v projections (+ bias), RoPE on q and k
        body.push(rms_norm::rms_norm(gpu, &x, &lw.input_layernorm, &xb, eps)?.labelled(&name("attn_norm")));
        body.push(linear(gpu, &xb, &lw.q_proj, &q)?.labelled(&name("q_proj")));
        body.push(linear(gpu, &xb, &lw.k_proj, &k)?.labelled(&name("k_proj")));
        body.push(linear(gpu, &xb, &lw.v_proj, &v)?.labelled(&name("v_proj")));
        if let Some([bq, bk, bv]) = &lw.qkv_bias {
            body.push(add::add_bias(gpu, &q, bq)?.labelled(&name("q_bias")));
            body.push(add::add_bias(gpu, &k, bk)?.labelled(&name("k_bias")));
            body.push(add::add_bias(gpu, &v, bv)?.labelled(&name("v_bias")));
        }
        body.push(rope::rope(gpu, &q, &w.inv_freq, &act.pos, nh, hd)?.labelled(&name("rope_q")));
        body.push(rope::rope(gpu, &k, &w.inv_freq, &act.pos, nkv, hd)?.labelled(&name("rope_k")));
        // store this step's keys and values at positions pos.. in the cache
        body.push(copy_rows::copy_rows(gpu, &k, &cache.k[l], &act.pos)?.labelled(&name("k_cache")));
        body.push(copy_rows::copy_rows(gpu, &v, &cache.v[l], &act.pos)?.labelled(&name("v_cache")));
        // causal grouped-query attention over the cache
        let attend = if t == 1 {
            attention_decode::attention_decode(gpu, &q, &cache.k[l], &cache.v[l], &att, &act.pos, nh, nkv, hd, scale)?
        } else {
            attention_prefill::attention_prefill(gpu, &q, &cache.k[l], &cache.v[l], &att, &act.pos, nh, nkv, hd, scale)?
        };
        body.push(attend.labelled(&name("attention")));
        // output projection, residual connection back into x
        body.push(linear(gpu, &att, &lw.o_proj, &xb2)?.labelled(&name("o_proj")));
        body.push(add::add(gpu, &x, &xb2)?.labelled(&name("attn_residual")));
        // feed-forward block: norm, silu(gate) * up, down, residual
        body.push(rms_norm::rms_norm(gpu, &x, &lw.post_attention_layernorm, &xb, eps)?.labelled(&name("ffn_norm")));
        body.push(linear(gpu, &xb, &lw.gate_proj, &hb)?.labelled(&name("gate_proj")));
        body.push(linear(gpu, &xb, &lw.up_proj, &hb2)?.labelled(&name("up_proj")));
        body.push(silu_mul::silu_mul(gpu, &hb, &hb2, &hb3)?.labelled(&name("silu_mul")));
        body.push(linear(gpu, &hb3, &lw.down_proj, &xb2)?.labelled(&name("down_proj")));
        body.push(add::add(gpu, &x, &xb2)?.labelled(&name("ffn_residual")));
    }

    // final norm and classifier: over every row for perplexity, else over the last row only
    if let Some(logits) = logits_all {
        body.push(rms_norm::rms_norm(gpu, &x, &w.norm, &xb, eps)?.labelled("final_norm"));
        body.push(linear(gpu, &xb, &w.lm_head, logits)?.labelled("lm_head"));
        return Ok(StepOps { body, last_row: None, head: Vec::new() });
    }
    let (last_row, x_last) = if t == 1 { (None, x.clone()) } else { (Some(x.rows(t - 1, 1)?), act.x_last.clone()) };
    let head = vec![
        rms_norm::rms_norm(gpu, &x_last, &w.norm, &act.xb_last, eps)?.labelled("final_norm"),
        matvec::matvec(gpu, &w.lm_head, &act.xb_last, &act.logits)?.labelled("lm_head"),
    ];
    Ok(StepOps { body, last_row, head })
}
