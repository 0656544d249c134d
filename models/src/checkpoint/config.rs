//! Model configuration: from a Hugging Face `config.json` (here) or GGUF metadata (gguf.rs).
//! `Config::validate` checks that the numbers fit together before anything is allocated.

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
    pub max_position_embeddings: usize,
    /// lm_head shares the embedding matrix.
    pub tie_word_embeddings: bool,
    /// q/k/v projections carry biases (Qwen2).
    pub attention_bias: bool,
    pub bos_token_id: Option<u32>,
    /// Any of these ends generation.
    pub eos_token_ids: Vec<u32>,
}
