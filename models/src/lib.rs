//! shaderlm: Llama-family language models on any GPU, through the shaderlm-engine WGSL kernels.

pub mod checkpoint;
pub mod error;
pub mod tokenizer;

pub use error::{Error, Result};
pub use shaderlm_engine as engine;
