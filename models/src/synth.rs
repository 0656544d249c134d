//! `shaderlm synth`: a Hugging Face folder (config.json + model.safetensors) with random weights
//! for a named shape, so speed work needs no download. Weights are uniform with the standard
//! deviation Llama initialisation uses (0.02), norms are 1: never zeros. The folder loads in
//! shaderlm and in transformers (`AutoModelForCausalLM.from_pretrained`).

use std::io::{BufWriter, Write};
use std::path::Path;

use crate::{Error, Result};

/// A named model shape.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub name: &'static str,
    pub hidden: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub vocab: usize,
    pub tied: bool,
    pub rope_theta: f32,
    pub max_position: usize,
    /// Llama-3.1 style rope scaling.
    pub llama3_rope: bool,
}

pub const SHAPES: &[Shape] = &[
    Shape { name: "smollm2-135m", hidden: 576, intermediate: 1536, layers: 30, heads: 9, kv_heads: 3, vocab: 49152, tied: true, rope_theta: 100000.0, max_position: 8192, llama3_rope: false },
    Shape { name: "tinyllama-1.1b", hidden: 2048, intermediate: 5632, layers: 22, heads: 32, kv_heads: 4, vocab: 32000, tied: false, rope_theta: 10000.0, max_position: 2048, llama3_rope: false },
    Shape { name: "llama2-7b", hidden: 4096, intermediate: 11008, layers: 32, heads: 32, kv_heads: 32, vocab: 32000, tied: false, rope_theta: 10000.0, max_position: 4096, llama3_rope: false },
    Shape { name: "llama3-8b", hidden: 4096, intermediate: 14336, layers: 32, heads: 32, kv_heads: 8, vocab: 128256, tied: false, rope_theta: 500000.0, max_position: 131072, llama3_rope: true },
];

pub fn shape(name: &str) -> Result<Shape> {
    SHAPES.iter().find(|s| s.name == name).copied().ok_or_else(|| {
        let names: Vec<_> = SHAPES.iter().map(|s| s.name).collect();
        Error::Input(format!("unknown shape {name:?}; known: {}", names.join(", ")))
    })
}

/// Stored precision of the synthesized weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SynthDType {
    F16,
    BF16,
    F32,
}

impl SynthDType {
    fn name(self) -> &'static str {
        match self {
            SynthDType::F16 => "F16",
            SynthDType::BF16 => "BF16",
            SynthDType::F32 => "F32",
        }
    }
    fn torch(self) -> &'static str {
        match self {
            SynthDType::F16 => "float16",
            SynthDType::BF16 => "bfloat16",
            SynthDType::F32 => "float32",
        }
    }
    fn size(self) -> usize {
        if self == SynthDType::F32 { 4 } else { 2 }
    }
}

/// The tensors of a shape with `layers` decoder layers: (name, shape, is a norm weight).
pub fn tensors(s: &Shape, layers: usize) -> Vec<(String, Vec<usize>, bool)> {
    let hd = s.hidden / s.heads;
    let (h, f, qw, kvw) = (s.hidden, s.intermediate, s.heads * hd, s.kv_heads * hd);
    let mut t = vec![("model.embed_tokens.weight".to_string(), vec![s.vocab, h], false)];
    for l in 0..layers {
        let p = format!("model.layers.{l}");
        t.push((format!("{p}.input_layernorm.weight"), vec![h], true));
        t.push((format!("{p}.self_attn.q_proj.weight"), vec![qw, h], false));
        t.push((format!("{p}.self_attn.k_proj.weight"), vec![kvw, h], false));
        t.push((format!("{p}.self_attn.v_proj.weight"), vec![kvw, h], false));
        t.push((format!("{p}.self_attn.o_proj.weight"), vec![h, qw], false));
        t.push((format!("{p}.post_attention_layernorm.weight"), vec![h], true));
        t.push((format!("{p}.mlp.gate_proj.weight"), vec![f, h], false));
        t.push((format!("{p}.mlp.up_proj.weight"), vec![f, h], false));
        t.push((format!("{p}.mlp.down_proj.weight"), vec![h, f], false));
    }
    t.push(("model.norm.weight".to_string(), vec![h], true));
    if !s.tied {
        t.push(("lm_head.weight".to_string(), vec![s.vocab, h], false));
    }
    t
}

/// config.json for the shape, as transformers writes it for LlamaForCausalLM.
pub fn config_json(s: &Shape, layers: usize, dtype: SynthDType) -> String {
    let rope_scaling = if s.llama3_rope {
        r#"{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}"#
    } else {
        "null"
    };
    format!(
        r#"{{
  "architectures": ["LlamaForCausalLM"],
  "model_type": "llama",
  "hidden_size": {},
  "intermediate_size": {},
  "num_hidden_layers": {layers},
  "num_attention_heads": {},
  "num_key_value_heads": {},
  "vocab_size": {},
  "max_position_embeddings": {},
  "rms_norm_eps": 1e-05,
  "rope_theta": {:.1},
  "rope_scaling": {rope_scaling},
  "hidden_act": "silu",
  "attention_bias": false,
  "mlp_bias": false,
  "tie_word_embeddings": {},
  "bos_token_id": 1,
  "eos_token_id": 2,
  "torch_dtype": "{}"
}}
"#,
        s.hidden, s.intermediate, s.heads, s.kv_heads, s.vocab, s.max_position, s.rope_theta, s.tied, dtype.torch()
    )
}

/// Writes config.json and model.safetensors into `dir`. Returns the bytes of weights written.
pub fn write(dir: &Path, s: &Shape, layers: usize, dtype: SynthDType, seed: u64) -> Result<u64> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path: path.clone(), source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let cfg = dir.join("config.json");
    std::fs::write(&cfg, config_json(s, layers, dtype)).map_err(io(&cfg))?;

    let list = tensors(s, layers);
    let mut header = String::from("{\"__metadata__\":{\"format\":\"pt\"}");
    let mut offset = 0usize;
    for (name, shape, _) in &list {
        let bytes = shape.iter().product::<usize>() * dtype.size();
        header += &format!(
            ",\"{name}\":{{\"dtype\":\"{}\",\"shape\":{:?},\"data_offsets\":[{offset},{}]}}",
            dtype.name(),
            shape,
            offset + bytes
        );
        offset += bytes;
    }
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let path = dir.join("model.safetensors");
    let file = std::fs::File::create(&path).map_err(io(&path))?;
    let mut out = BufWriter::with_capacity(1 << 24, file);
    out.write_all(&(header.len() as u64).to_le_bytes()).map_err(io(&path))?;
    out.write_all(header.as_bytes()).map_err(io(&path))?;
    for (i, (_, shape, is_norm)) in list.iter().enumerate() {
        let n: usize = shape.iter().product();
        let bytes = random_tensor(n, *is_norm, dtype, seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        out.write_all(&bytes).map_err(io(&path))?;
    }
    out.flush().map_err(io(&path))?;
    Ok(offset as u64)
}

/// `n` values: 1.0 for a norm weight, else uniform with standard deviation 0.02, stored as
/// `dtype` (little-endian). Filled in parallel, each thread with its own seeded stream.
fn random_tensor(n: usize, is_norm: bool, dtype: SynthDType, seed: u64) -> Vec<u8> {
    let size = dtype.size();
    let mut bytes = vec![0u8; n * size];
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get()).min(32);
    let per = n.div_ceil(threads).max(1 << 16);
    std::thread::scope(|scope| {
        for (c, chunk) in bytes.chunks_mut(per * size).enumerate() {
            scope.spawn(move || {
                let mut state = seed ^ (c as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
                // Uniform in [-a, a) has standard deviation a / sqrt(3).
                let a = 0.02f32 * 3f32.sqrt();
                for out in chunk.chunks_mut(size) {
                    let v = if is_norm {
                        1.0
                    } else {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * a
                    };
                    match dtype {
                        SynthDType::F32 => out.copy_from_slice(&v.to_le_bytes()),
                        SynthDType::F16 => out.copy_from_slice(&half::f16::from_f32(v).to_le_bytes()),
                        SynthDType::BF16 => out.copy_from_slice(&half::bf16::from_f32(v).to_le_bytes()),
                    }
                }
            });
        }
    });
    bytes
}
