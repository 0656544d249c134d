//! Model configuration: from a Hugging Face `config.json` (here) or GGUF metadata (gguf.rs).
//! `Config::validate` checks that the numbers fit together before anything is allocated.
//!
//! Defaults for keys a config.json may leave out follow transformers' `LlamaConfig`
//! (rms_norm_eps 1e-6, rope_theta 10000, max_position_embeddings 2048, no tied embeddings,
//! num_key_value_heads = num_attention_heads, bos 1 / eos 2) and `Qwen2Config` (same, but
//! no default bos/eos). The five keys that fix the weights' shapes have no default.

use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// RoPE frequency scaling of Llama 3.1+ (`rope_scaling.rope_type == "llama3"`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Llama3RopeScaling {
    pub factor: f32,
    pub low_freq_factor: f32,
    pub high_freq_factor: f32,
    pub original_max_position_embeddings: usize,
}

/// Which family the checkpoint declares; they differ only where noted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    /// LlamaForCausalLM (Llama 2/3, TinyLlama, SmolLM), MistralForCausalLM.
    Llama,
    /// Qwen2ForCausalLM: Llama plus biases on q/k/v projections.
    Qwen2,
}

/// Hyper-parameters of a Llama-family decoder.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub architecture: Architecture,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    /// `hidden_size / num_attention_heads` unless config.json gives `head_dim`.
    pub head_dim: usize,
    pub vocab_size: usize,
    pub rms_norm_eps: f32,
    pub rope_theta: f32,
    /// Fraction of each head's dimensions that RoPE rotates (1.0 for Llama).
    pub partial_rotary_factor: f32,
    pub rope_scaling: Option<Llama3RopeScaling>,
    /// The longest context the model supports. For Mistral with a `sliding_window` shorter than
    /// this, it is cut to the window: within it, sliding-window attention equals full attention.
    pub max_position_embeddings: usize,
    /// lm_head shares the embedding matrix.
    pub tie_word_embeddings: bool,
    /// q/k/v projections carry biases (Qwen2).
    pub attention_bias: bool,
    pub bos_token_id: Option<u32>,
    /// Any of these ends generation.
    pub eos_token_ids: Vec<u32>,
}

/// Upper bounds on config numbers: far above any real Llama-family model, low enough that no
/// size computed from them (a weight, the KV cache for a few positions) overflows or asks for
/// an absurd allocation.
pub const MAX_DIM: usize = 1 << 20;
pub const MAX_LAYERS: usize = 1024;
pub const MAX_VOCAB: usize = 1 << 22;
pub const MAX_POSITIONS: usize = 1 << 24;

impl Config {
    /// Reads and validates a Hugging Face `config.json`.
    pub fn from_hf_json(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        Config::from_json_str(&text, path)
    }

    /// Parses and validates the text of a `config.json`; `path` is only used to name the file in errors.
    pub fn from_json_str(text: &str, path: &Path) -> Result<Config> {
        let err = |message: String| Error::format(path, message);
        let value: Value = serde_json::from_str(text).map_err(|e| err(format!("not valid JSON: {e}")))?;
        let obj = value.as_object().ok_or_else(|| err("not a JSON object".into()))?;
        let keys = Keys { obj, path };

        let architecture = architecture(obj).map_err(err)?;
        let hidden_size = keys.required_usize("hidden_size")?;
        let intermediate_size = keys.required_usize("intermediate_size")?;
        let num_hidden_layers = keys.required_usize("num_hidden_layers")?;
        let num_attention_heads = keys.required_usize("num_attention_heads")?;
        let vocab_size = keys.required_usize("vocab_size")?;
        let num_key_value_heads = keys.usize_or("num_key_value_heads", num_attention_heads)?;
        let head_dim = match keys.optional_usize("head_dim")? {
            Some(head_dim) => head_dim,
            None => {
                if num_attention_heads == 0 || !hidden_size.is_multiple_of(num_attention_heads) {
                    return Err(err(format!(
                        "hidden_size {hidden_size} is not a multiple of num_attention_heads {num_attention_heads} \
                         (and no head_dim is given)"
                    )));
                }
                hidden_size / num_attention_heads
            }
        };

        // transformers 5 writes `rope_parameters` {rope_type, rope_theta, ...}; older files
        // have `rope_theta` and `rope_scaling` at the top level.
        let rope_parameters = obj.get("rope_parameters").filter(|v| !v.is_null());
        let rope_theta = match rope_parameters.and_then(|p| p.get("rope_theta")) {
            Some(v) => {
                v.as_f64().ok_or_else(|| err(format!("rope_parameters.rope_theta must be a number, got {v}")))? as f32
            }
            None => keys.f32_or("rope_theta", 10000.0)?,
        };
        let rope_scaling = match rope_parameters.or_else(|| obj.get("rope_scaling")) {
            None | Some(Value::Null) => None,
            Some(scaling) => rope_scaling(scaling).map_err(err)?,
        };

        let mut max_position_embeddings = keys.usize_or("max_position_embeddings", 2048)?;
        if let Some(window) = keys.optional_usize("sliding_window")? {
            // Qwen2 has the key but ignores it unless use_sliding_window is true.
            let used = architecture == Architecture::Llama || keys.bool_or("use_sliding_window", false)?;
            if used && window > 0 {
                max_position_embeddings = max_position_embeddings.min(window);
            }
        }

        let (default_bos, default_eos) = match architecture {
            Architecture::Llama => (Some(1), vec![2]),
            Architecture::Qwen2 => (None, vec![]),
        };
        let bos_token_id = match obj.get("bos_token_id") {
            None => default_bos,
            Some(Value::Null) => None,
            Some(v) => Some(token_id(v).ok_or_else(|| err(format!("bos_token_id must be a token id, got {v}")))?),
        };
        let eos_token_ids = match obj.get("eos_token_id") {
            None => default_eos,
            Some(Value::Null) => vec![],
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| token_id(v).ok_or_else(|| err(format!("eos_token_id holds {v}, which is not a token id"))))
                .collect::<Result<_>>()?,
            Some(v) => {
                vec![token_id(v).ok_or_else(|| err(format!("eos_token_id must be a token id or a list, got {v}")))?]
            }
        };

        let config = Config {
            architecture,
            hidden_size,
            intermediate_size,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            vocab_size,
            rms_norm_eps: keys.f32_or("rms_norm_eps", 1e-6)?,
            rope_theta,
            partial_rotary_factor: keys.f32_or("partial_rotary_factor", 1.0)?,
            rope_scaling,
            max_position_embeddings,
            tie_word_embeddings: keys.bool_or("tie_word_embeddings", false)?,
            attention_bias: architecture == Architecture::Qwen2 || keys.bool_or("attention_bias", false)?,
            bos_token_id,
            eos_token_ids,
        };
        config.validate_in(path)?;
        Ok(config)
    }

    /// Number of leading dimensions of each head that RoPE rotates: `head_dim *
    /// partial_rotary_factor`, rounded down to an even number (RoPE turns pairs).
    pub fn rot_dim(&self) -> usize {
        ((self.head_dim as f32 * self.partial_rotary_factor) as usize) & !1
    }

    /// Checks that the numbers fit together and stay within sane bounds, so that no size
    /// computed from them can overflow or ask for a huge allocation. Errors name "model config";
    /// use [`Config::validate_in`] to name the file it came from.
    pub fn validate(&self) -> Result<()> {
        self.validate_in(Path::new("model config"))
    }

    /// [`Config::validate`], with errors naming `path` (config.json, or a GGUF file).
    pub fn validate_in(&self, path: &Path) -> Result<()> {
        self.problem().map_or(Ok(()), |message| Err(Error::format(path, message)))
    }

    /// The first thing wrong with this config, if any.
    fn problem(&self) -> Option<String> {
        let sizes = [
            ("hidden_size", self.hidden_size, MAX_DIM),
            ("intermediate_size", self.intermediate_size, MAX_DIM),
            ("num_hidden_layers", self.num_hidden_layers, MAX_LAYERS),
            ("num_attention_heads", self.num_attention_heads, MAX_DIM),
            ("num_key_value_heads", self.num_key_value_heads, MAX_DIM),
            ("head_dim", self.head_dim, MAX_DIM),
            ("num_attention_heads * head_dim", self.num_attention_heads.saturating_mul(self.head_dim), MAX_DIM),
            ("vocab_size", self.vocab_size, MAX_VOCAB),
            ("max_position_embeddings", self.max_position_embeddings, MAX_POSITIONS),
        ];
        for (name, value, bound) in sizes {
            if value == 0 || value >= bound {
                return Some(format!("{name} is {value}; it must be at least 1 and below {bound}"));
            }
        }
        if !self.num_attention_heads.is_multiple_of(self.num_key_value_heads) {
            return Some(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if !(self.rms_norm_eps > 0.0 && self.rms_norm_eps < 1.0) {
            return Some(format!("rms_norm_eps is {}; it must be in (0, 1)", self.rms_norm_eps));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return Some(format!("rope_theta is {}; it must be a positive number", self.rope_theta));
        }
        if !(self.partial_rotary_factor > 0.0 && self.partial_rotary_factor <= 1.0) {
            return Some(format!("partial_rotary_factor is {}; it must be in (0, 1]", self.partial_rotary_factor));
        }
        if self.rot_dim() == 0 {
            return Some(format!(
                "head_dim {} * partial_rotary_factor {} leaves no pair of dimensions to rotate",
                self.head_dim, self.partial_rotary_factor
            ));
        }
        if let Some(s) = &self.rope_scaling {
            let finite = s.factor.is_finite() && s.low_freq_factor.is_finite() && s.high_freq_factor.is_finite();
            // The llama3 rule blends between the two wavelengths 1/low and 1/high: they must differ.
            if !finite || s.factor <= 0.0 || s.low_freq_factor <= 0.0 || s.high_freq_factor <= s.low_freq_factor {
                return Some(format!(
                    "llama3 rope_scaling needs factor > 0 and 0 < low_freq_factor < high_freq_factor, got {s:?}"
                ));
            }
            if s.original_max_position_embeddings == 0 || s.original_max_position_embeddings >= MAX_POSITIONS {
                return Some(format!(
                    "llama3 rope_scaling original_max_position_embeddings is {}",
                    s.original_max_position_embeddings
                ));
            }
        }
        let vocab = self.vocab_size;
        if let Some(id) =
            self.bos_token_id.into_iter().chain(self.eos_token_ids.iter().copied()).find(|&id| id as usize >= vocab)
        {
            return Some(format!("special token id {id} is not below vocab_size {vocab}"));
        }
        None
    }
}

/// Typed access to config.json keys, with errors naming the key and the file.
struct Keys<'a> {
    obj: &'a Map<String, Value>,
    path: &'a Path,
}

impl Keys<'_> {
    fn wrong(&self, key: &str, wanted: &str, got: &Value) -> Error {
        Error::format(self.path, format!("{key} must be {wanted}, got {got}"))
    }

    fn optional_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_u64().and_then(|n| usize::try_from(n).ok()) {
                Some(n) => Ok(Some(n)),
                None => Err(self.wrong(key, "a non-negative integer", v)),
            },
        }
    }

    fn required_usize(&self, key: &str) -> Result<usize> {
        self.optional_usize(key)?.ok_or_else(|| Error::format(self.path, format!("required key {key} is missing")))
    }

    fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        Ok(self.optional_usize(key)?.unwrap_or(default))
    }

    fn f32_or(&self, key: &str, default: f32) -> Result<f32> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_f64().map(|x| x as f32).ok_or_else(|| self.wrong(key, "a number", v)),
        }
    }

    fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| self.wrong(key, "true or false", v)),
        }
    }
}

/// The architecture named by `architectures` (or, failing that, `model_type`).
fn architecture(obj: &Map<String, Value>) -> std::result::Result<Architecture, String> {
    if let Some(names) = obj.get("architectures").filter(|v| !v.is_null()) {
        let first = names.as_array().and_then(|list| list.first()).and_then(Value::as_str);
        return match first {
            Some("LlamaForCausalLM") | Some("MistralForCausalLM") => Ok(Architecture::Llama),
            Some("Qwen2ForCausalLM") => Ok(Architecture::Qwen2),
            Some(other) => Err(format!(
                "unsupported architecture {other:?}; supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM"
            )),
            None => Err(format!("architectures must be a list of class names, got {names}")),
        };
    }
    match obj.get("model_type").and_then(Value::as_str) {
        Some("llama") | Some("mistral") => Ok(Architecture::Llama),
        Some("qwen2") => Ok(Architecture::Qwen2),
        Some(other) => Err(format!("unsupported model_type {other:?} (and no architectures list)")),
        None => Err("required key architectures is missing (and there is no model_type)".into()),
    }
}

/// `rope_scaling` (or transformers 5's `rope_parameters`): none, or Llama 3's rule.
fn rope_scaling(value: &Value) -> std::result::Result<Option<Llama3RopeScaling>, String> {
    let obj = value.as_object().ok_or_else(|| format!("rope_scaling must be an object or null, got {value}"))?;
    let kind = obj.get("rope_type").or_else(|| obj.get("type")).and_then(Value::as_str).unwrap_or("default");
    match kind {
        "default" => Ok(None),
        "llama3" => {
            let number = |key: &str| {
                obj.get(key)
                    .and_then(Value::as_f64)
                    .ok_or_else(|| format!("llama3 rope_scaling needs the number {key}"))
            };
            let (factor, low_freq_factor, high_freq_factor) =
                (number("factor")? as f32, number("low_freq_factor")? as f32, number("high_freq_factor")? as f32);
            let original = number("original_max_position_embeddings")?;
            if original.fract() != 0.0 || original < 0.0 {
                return Err(format!(
                    "rope_scaling.original_max_position_embeddings must be an integer, got {original}"
                ));
            }
            Ok(Some(Llama3RopeScaling {
                factor,
                low_freq_factor,
                high_freq_factor,
                // Saturating cast; validate() bounds it.
                original_max_position_embeddings: original as usize,
            }))
        }
        other => Err(format!("rope scaling type {other:?} is not supported (only \"llama3\" is)")),
    }
}

/// A token id in a JSON value: a non-negative integer that fits u32.
fn token_id(value: &Value) -> Option<u32> {
    value.as_u64().and_then(|n| u32::try_from(n).ok())
}
