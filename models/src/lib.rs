//! shaderlm: Llama-family language models on any GPU, through the shaderlm-engine WGSL kernels.

pub mod checkpoint;

pub use shaderlm_engine as engine;
