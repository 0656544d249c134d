//! The edits a plan makes to a checkpoint, computed once before loading (which layers stay,
//! which FFN channels, AWQ scales, the pruning method and Wanda's input norms), and
//! [`load_tensor`], through which every weight passes from the checkpoint (f32) to the GPU.
//!
//! Per linear weight, in this order (each step on the f32 values, in the checkpoint's layout):
//! 1. FFN channels removed: rows of gate/up, columns of down (the same count in every layer, so
//!    the shapes stay uniform; `Config::intermediate_size` becomes that count);
//! 2. pruning mask (magnitude or Wanda, unstructured or N:M) on the remaining entries;
//! 3. AWQ: columns of q/k/v, gate/up and down multiplied by their input's scales; the norm
//!    weights (input_layernorm, post_attention_layernorm) and up_proj's rows divided by them,
//!    so that the float network is unchanged;
//! 4. quantize (or keep float) and upload. GGUF blocks are repacked exactly only when no edit
//!    touched the tensor.
//!
//! Dropped layers are simply not read: the kept ones are renumbered 0.. on the GPU and
//! `Config::num_hidden_layers` becomes their count.

use std::time::Instant;

use shaderlm_engine::kernels::quantize;
use shaderlm_engine::{dtype as packing, DType, Gpu, Recorder, Tensor};

use super::awq::{self, LayerReport, LayerScales};
use super::calib::CalibStats;
use super::plan::{sparse_storage, LoadPlan, Score, Sparsity};
use super::prune;
use crate::checkpoint::{Checkpoint, Config};
use crate::{Error, Result};

/// Which weight of the model a tensor is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Embed,
    LmHead,
    FinalNorm,
    InputNorm,
    PostNorm,
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
    QBias,
    KBias,
    VBias,
}

/// What the load summary groups tensors by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Embed,
    Qkv,
    O,
    GateUp,
    Down,
    LmHead,
    Norms,
    Biases,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Embed => "embed",
            Kind::Qkv => "attn q/k/v",
            Kind::O => "attn o",
            Kind::GateUp => "mlp gate/up",
            Kind::Down => "mlp down",
            Kind::LmHead => "lm_head",
            Kind::Norms => "norms",
            Kind::Biases => "q/k/v biases",
        }
    }
}

impl Role {
    /// The Hugging Face name, with the checkpoint's layer number.
    pub fn name(self, layer: usize) -> String {
        let p = format!("model.layers.{layer}");
        match self {
            Role::Embed => "model.embed_tokens.weight".into(),
            Role::LmHead => "lm_head.weight".into(),
            Role::FinalNorm => "model.norm.weight".into(),
            Role::InputNorm => format!("{p}.input_layernorm.weight"),
            Role::PostNorm => format!("{p}.post_attention_layernorm.weight"),
            Role::Q => format!("{p}.self_attn.q_proj.weight"),
            Role::K => format!("{p}.self_attn.k_proj.weight"),
            Role::V => format!("{p}.self_attn.v_proj.weight"),
            Role::O => format!("{p}.self_attn.o_proj.weight"),
            Role::Gate => format!("{p}.mlp.gate_proj.weight"),
            Role::Up => format!("{p}.mlp.up_proj.weight"),
            Role::Down => format!("{p}.mlp.down_proj.weight"),
            Role::QBias => format!("{p}.self_attn.q_proj.bias"),
            Role::KBias => format!("{p}.self_attn.k_proj.bias"),
            Role::VBias => format!("{p}.self_attn.v_proj.bias"),
        }
    }

    /// Its shape under `cfg`.
    pub fn shape(self, cfg: &Config) -> Vec<usize> {
        let (h, f, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
        let (qw, kvw) = (cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim);
        match self {
            Role::Embed | Role::LmHead => vec![v, h],
            Role::FinalNorm | Role::InputNorm | Role::PostNorm => vec![h],
            Role::Q => vec![qw, h],
            Role::K | Role::V => vec![kvw, h],
            Role::O => vec![h, qw],
            Role::Gate | Role::Up => vec![f, h],
            Role::Down => vec![h, f],
            Role::QBias => vec![qw],
            Role::KBias | Role::VBias => vec![kvw],
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            Role::Embed => Kind::Embed,
            Role::LmHead => Kind::LmHead,
            Role::FinalNorm | Role::InputNorm | Role::PostNorm => Kind::Norms,
            Role::Q | Role::K | Role::V => Kind::Qkv,
            Role::O => Kind::O,
            Role::Gate | Role::Up => Kind::GateUp,
            Role::Down => Kind::Down,
            Role::QBias | Role::KBias | Role::VBias => Kind::Biases,
        }
    }

    /// For the linear layers of a decoder layer: which input's statistics they see
    /// (0 attn_in, 1 o_in, 2 ffn_in, 3 down_in).
    fn input(self) -> Option<usize> {
        match self {
            Role::Q | Role::K | Role::V => Some(0),
            Role::O => Some(1),
            Role::Gate | Role::Up => Some(2),
            Role::Down => Some(3),
            _ => None,
        }
    }
}

/// What loading did to one tensor, for the summary.
#[derive(Clone, Debug)]
pub struct TensorRecord {
    /// The checkpoint's name.
    pub name: String,
    pub kind: Kind,
    pub dtype: DType,
    pub params: u64,
    pub bytes: u64,
    /// Entries stored as exactly zero, measured on the stored values; `None` where not measured
    /// (tensors quantized on the GPU or repacked from GGUF blocks, with no edit).
    pub zeros: Option<u64>,
}

/// The edits, computed from the plan and (when it needs them) calibration statistics.
#[derive(Clone, Debug, Default)]
pub struct Edits {
    /// The checkpoint layer behind each loaded layer, in order.
    pub layers: Vec<usize>,
    /// Per checkpoint layer: the FFN channels kept (increasing), or `None` for all.
    pub ffn_channels: Vec<Option<Vec<usize>>>,
    /// Per checkpoint layer: AWQ scales (empty vectors: none).
    pub scales: Vec<LayerScales>,
    /// AWQ's per-layer report (empty when AWQ did not run).
    pub awq_reports: Vec<LayerReport>,
    /// The weight-pruning method.
    pub weights: Option<(Score, Sparsity)>,
    /// Wanda: per checkpoint layer, the input norms of (attn_in, o_in, ffn_in, down_in).
    pub norms: Vec<[Vec<f32>; 4]>,
    /// Seconds spent computing the edits (AWQ search, rankings).
    pub seconds: f64,
}

impl Edits {
    /// No edits: every layer, every channel, no scales, no pruning.
    pub fn none(cfg: &Config) -> Edits {
        Edits { layers: (0..cfg.num_hidden_layers).collect(), ffn_channels: vec![None; cfg.num_hidden_layers], ..Default::default() }
    }

    /// The edits `plan` asks for on `ckpt`, with the calibration statistics `stats` (required
    /// by Wanda, layer dropping, FFN channel removal and AWQ).
    pub fn compute(gpu: &Gpu, ckpt: &Checkpoint, plan: &LoadPlan, stats: Option<&CalibStats>, progress: bool) -> Result<Edits> {
        let started = Instant::now();
        let cfg = ckpt.config();
        let n_layers = cfg.num_hidden_layers;
        let mut edits = Edits::none(cfg);
        edits.weights = plan.weights;
        let need = |what: &str| need_stats(stats, n_layers, what);
        if plan.drop_layers > 0 {
            let s = need("--prune layers")?;
            let cosines: Vec<f64> = s.layers.iter().map(|l| l.block_cosine).collect();
            let drop = prune::layers_to_drop(&cosines, plan.drop_layers)?;
            edits.layers.retain(|l| !drop.contains(l));
        }
        if let Some(fraction) = plan.ffn_fraction {
            let s = need("--prune ffn")?;
            let (h, f) = (cfg.hidden_size, cfg.intermediate_size);
            let keep = prune::ffn_keep_count(f, fraction);
            for &l in &edits.layers {
                let down = ckpt.tensor_f32(&Role::Down.name(l), &[h, f])?;
                let scores = prune::ffn_channel_scores(&down, f, &s.layers[l].down_in.sum_sq)?;
                edits.ffn_channels[l] = Some(prune::ffn_channels_to_keep(&scores, keep));
            }
        }
        if matches!(plan.weights, Some((Score::Wanda, _))) {
            let s = need("--prune wanda")?;
            edits.norms = s
                .layers
                .iter()
                .map(|l| [l.attn_in.l2_norms(), l.o_in.l2_norms(), l.ffn_in.l2_norms(), l.down_in.l2_norms()])
                .collect();
        }
        if let Some(dtype) = plan.awq_dtype() {
            let s = need("AWQ (--calib with a 4-bit --quant)")?;
            let (scales, reports) = awq::search(gpu, ckpt, s, dtype, progress)?;
            if scales.len() != n_layers {
                return Err(Error::Input(format!("AWQ returned scales for {} layers, the model has {n_layers}", scales.len())));
            }
            edits.scales = scales;
            edits.awq_reports = reports;
        }
        edits.seconds = started.elapsed().as_secs_f64();
        Ok(edits)
    }

    /// The config of the model these edits load: fewer layers, a narrower FFN.
    pub fn config(&self, cfg: &Config) -> Config {
        let mut out = cfg.clone();
        out.num_hidden_layers = self.layers.len();
        if let Some(Some(kept)) = self.ffn_channels.iter().find(|c| c.is_some()) {
            out.intermediate_size = kept.len();
        }
        out
    }

    /// Whether any edit changes tensor `role` of checkpoint layer `layer`.
    fn touches(&self, role: Role, layer: usize) -> bool {
        let scales = self.scales.get(layer);
        let has = |v: Option<&Vec<f32>>| v.is_some_and(|v| !v.is_empty());
        let ffn = self.ffn_channels.get(layer).is_some_and(|c| c.is_some());
        match role {
            Role::InputNorm => has(scales.map(|s| &s.attn_in)),
            Role::PostNorm => has(scales.map(|s| &s.ffn_in)),
            Role::Q | Role::K | Role::V => self.weights.is_some() || has(scales.map(|s| &s.attn_in)),
            Role::O => self.weights.is_some(),
            Role::Gate => self.weights.is_some() || ffn || has(scales.map(|s| &s.ffn_in)),
            Role::Up => self.weights.is_some() || ffn || has(scales.map(|s| &s.ffn_in)) || has(scales.map(|s| &s.down_in)),
            Role::Down => self.weights.is_some() || ffn || has(scales.map(|s| &s.down_in)),
            _ => false,
        }
    }

    /// Applies the edits to tensor `role` of checkpoint layer `layer`, `values` read from the
    /// checkpoint with `k` columns (1-D tensors: 1). Returns the new values and whether they
    /// were pruned.
    fn apply(&self, role: Role, layer: usize, mut values: Vec<f32>, k: usize) -> Result<(Vec<f32>, bool)> {
        let empty = LayerScales::default();
        let scales = self.scales.get(layer).unwrap_or(&empty);
        // 1. FFN channels: select the scales' entries that go with them too.
        let kept = self.ffn_channels.get(layer).and_then(|c| c.as_ref());
        let mut down_scales = scales_opt(&scales.down_in).map(<[f32]>::to_vec);
        let mut k = k;
        let mut norms = self.norms.get(layer).zip(role.input()).map(|(n, i)| n[i].clone());
        if let Some(kept) = kept {
            match role {
                Role::Gate | Role::Up => values = prune::select_rows(&values, k, kept),
                Role::Down => {
                    values = prune::select_columns(&values, k, kept);
                    k = kept.len();
                    norms = norms.map(|v| kept.iter().map(|&c| v[c]).collect());
                }
                _ => {}
            }
            down_scales = down_scales.map(|s| kept.iter().map(|&c| s[c]).collect());
        }
        // 2. pruning, on the unscaled weight (|W_ij| * ||x_j|| does not change under AWQ anyway).
        let mut pruned = false;
        if let (Some((score, sparsity)), Some(_)) = (self.weights, role.input()) {
            prune::prune(&mut values, k, score, sparsity, norms.as_deref())?;
            pruned = true;
        }
        // 3. AWQ: the columns a scale multiplies, and the rows or norm weights it divides.
        let (columns, divide) = match role {
            Role::InputNorm => (None, scales_opt(&scales.attn_in)),
            Role::PostNorm => (None, scales_opt(&scales.ffn_in)),
            Role::Q | Role::K | Role::V => (scales_opt(&scales.attn_in), None),
            Role::Gate => (scales_opt(&scales.ffn_in), None),
            Role::Up => (scales_opt(&scales.ffn_in), down_scales.as_deref()),
            Role::Down => (down_scales.as_deref(), None),
            _ => (None, None),
        };
        if let Some(s) = columns {
            awq::scale_columns(&mut values, k, s);
        }
        if let Some(s) = divide {
            // norms are one value a row; up_proj's rows hold k values
            awq::divide_rows(&mut values, if role == Role::Up { k } else { 1 }, s);
        }
        Ok((values, pruned))
    }
}

/// The statistics, checked to cover the model's `n_layers`; `what` names the method that needs them.
fn need_stats<'a>(stats: Option<&'a CalibStats>, n_layers: usize, what: &str) -> Result<&'a CalibStats> {
    let s = stats.ok_or_else(|| Error::Input(format!("{what} needs calibration statistics (--calib FILE)")))?;
    if s.layers.len() != n_layers {
        return Err(Error::Input(format!("calibration statistics cover {} layers, the model has {n_layers}", s.layers.len())));
    }
    Ok(s)
}

fn scales_opt(s: &[f32]) -> Option<&[f32]> {
    if s.is_empty() { None } else { Some(s) }
}

/// Reads tensor `role` of loaded layer `layer` (None for embeddings, lm_head and the final
/// norm) from `ckpt`, applies the edits and uploads it in the plan's dtype. `cfg` is the loaded
/// model's config (`Edits::config`). Returns the tensor and what was stored.
pub fn load_tensor(
    gpu: &Gpu,
    ckpt: &Checkpoint,
    plan: &LoadPlan,
    edits: &Edits,
    cfg: &Config,
    role: Role,
    layer: Option<usize>,
) -> Result<(Tensor, TensorRecord)> {
    let ckpt_layer = match layer {
        Some(l) => *edits.layers.get(l).ok_or_else(|| Error::Input(format!("layer {l} is not loaded")))?,
        None => 0,
    };
    let name = role.name(ckpt_layer);
    let read_shape = role.shape(ckpt.config());
    let shape = role.shape(cfg);
    let dtype = match role {
        Role::Embed | Role::LmHead => plan.float_dtype(),
        Role::Q | Role::K | Role::V | Role::O | Role::Gate | Role::Up | Role::Down => {
            plan.linear_dtype(&name, shape[1], layer.unwrap_or(0), cfg.num_hidden_layers)
        }
        _ => DType::F32,
    };
    let numel: usize = shape.iter().product();
    let record = |tensor: &Tensor, zeros| TensorRecord {
        name: name.clone(),
        kind: role.kind(),
        dtype: tensor.dtype(),
        params: numel as u64,
        bytes: tensor.dtype().bytes_for(numel),
        zeros,
    };
    let edited = layer.is_some() && edits.touches(role, ckpt_layer);
    let view = ckpt.expect_shape(&name, &read_shape)?;
    if !edited && dtype.is_packed() {
        if let Some(words) = crate::checkpoint::gguf::repack_blocks(&view, dtype)? {
            let t = Tensor::from_words(gpu, &shape, dtype, &words)?;
            let r = record(&t, None);
            return Ok((t, r));
        }
    }
    let values = view.to_f32()?;
    let k = read_shape.get(1).copied().unwrap_or(1);
    let (values, pruned) = if edited { edits.apply(role, ckpt_layer, values, k)? } else { (values, false) };
    // 2:4-pruned weights go to the compressed format where there is one.
    let sparse = match edits.weights {
        Some((_, Sparsity::NM { n: 2, m: 4 })) if pruned => sparse_storage(dtype, shape.get(1).copied().unwrap_or(1)),
        _ => None,
    };
    if let Some(sd) = sparse {
        let t = Tensor::from_f32(gpu, &shape, sd, &values)?;
        let zeros = values.iter().filter(|&&v| half::f16::from_f32(v).to_f32() == 0.0).count() as u64;
        let r = record(&t, Some(zeros));
        return Ok((t, r));
    }
    let (t, zeros) = upload(gpu, &shape, dtype, &values, pruned)?;
    let r = record(&t, zeros);
    Ok((t, r))
}

/// Uploads f32 `values` as `dtype`. Packed dtypes are quantized from the values rounded to f16
/// (bit for bit the same on the GPU and the CPU): on the GPU, or with `measure` on the CPU, so
/// that the zeros stored can be counted. Returns the tensor and its zeros (None unmeasured).
fn upload(gpu: &Gpu, shape: &[usize], dtype: DType, values: &[f32], measure: bool) -> Result<(Tensor, Option<u64>)> {
    let count = |v: &[f32]| v.iter().filter(|&&x| x == 0.0).count() as u64;
    if !dtype.is_packed() {
        let t = Tensor::from_f32(gpu, shape, dtype, values)?;
        let zeros = if dtype == DType::F16 {
            values.iter().filter(|&&v| half::f16::from_f32(v).to_f32() == 0.0).count() as u64
        } else {
            count(values)
        };
        return Ok((t, Some(zeros)));
    }
    let (n, k) = (shape[0], shape[1]);
    if measure {
        let f16: Vec<f32> = values.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
        let words = match dtype {
            DType::Q8 => packing::quantize_q8(&f16, n, k)?,
            _ => packing::quantize_q4(&f16, n, k, dtype.group().unwrap_or(32))?,
        };
        let zeros = count(&packing::dequantize(dtype, &words, n, k)?);
        return Ok((Tensor::from_words(gpu, shape, dtype, &words)?, Some(zeros)));
    }
    let f16 = Tensor::from_f32(gpu, shape, DType::F16, values)?;
    let packed = Tensor::empty(gpu, shape, dtype)?;
    let mut rec = Recorder::new(gpu);
    let op = quantize::quantize(gpu, &f16, &packed)?;
    rec.run(&op);
    rec.submit()?;
    Ok((packed, None))
}

/// Bytes the weights will take on the GPU under `plan` and `edits`, from the configs alone
/// (before anything is read): `ckpt_cfg` is the checkpoint's, the loaded one is
/// `edits.config(ckpt_cfg)`.
pub fn planned_bytes(ckpt_cfg: &Config, plan: &LoadPlan, edits: &Edits) -> u64 {
    let cfg = edits.config(ckpt_cfg);
    let float = plan.float_dtype();
    let bytes = |role: Role, d: DType| d.bytes_for(role.shape(&cfg).iter().product());
    let two_four = matches!(edits.weights, Some((_, Sparsity::NM { n: 2, m: 4 })));
    let mut total = bytes(Role::Embed, float) + bytes(Role::FinalNorm, DType::F32);
    if !cfg.tie_word_embeddings {
        total += bytes(Role::LmHead, float);
    }
    for (l, &ckpt_layer) in edits.layers.iter().enumerate() {
        for role in [Role::Q, Role::K, Role::V, Role::O, Role::Gate, Role::Up, Role::Down] {
            let k = role.shape(&cfg)[1];
            let d = plan.linear_dtype(&role.name(ckpt_layer), k, l, cfg.num_hidden_layers);
            let d = if two_four { sparse_storage(d, k).unwrap_or(d) } else { d };
            total += bytes(role, d);
        }
        total += bytes(Role::InputNorm, DType::F32) + bytes(Role::PostNorm, DType::F32);
        if cfg.attention_bias {
            total += bytes(Role::QBias, DType::F32) + bytes(Role::KBias, DType::F32) + bytes(Role::VBias, DType::F32);
        }
    }
    total
}
