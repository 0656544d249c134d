//! shaderlm: Llama-family language models on any GPU, through the shaderlm-engine WGSL kernels.
//!
//! ```no_run
//! use shaderlm::{GenerateOptions, LoadOptions, Model};
//! # fn main() -> shaderlm::Result<()> {
//! let mut model = Model::load("path/to/model-folder-or.gguf", &LoadOptions::default())?;
//! for piece in model.generate("Once upon a time", &GenerateOptions::default())? {
//!     print!("{}", piece?);
//! }
//! # Ok(()) }
//! ```
//!
//! The modules, in the order data flows: [`checkpoint`] (files on disk) → [`llama`] (weights on
//! the GPU and the forward pass) with [`kv_cache`] → [`model`] (load, prefill, decode step) →
//! [`generate`] (the streaming loop) → [`tokenizer`] (ids to text). [`batch`] decodes many
//! prompts together (continuous batching over slots of one KV cache).
//!
//! Several GPUs: [`replicas`] runs one model per GPU, each taking prompts from a shared queue
//! (throughput); [`split`] spreads one model's layers across GPUs (a model too large for one),
//! chosen with [`LoadOptions::split_layers`]. GPUs are adapter indices from
//! [`engine::gpu::adapters`] (`engine::gpu::select_adapters` reads "all" or "0,1").

pub mod batch;
pub mod bench;
pub mod checkpoint;
pub mod compress;
pub mod error;
pub mod eval;
pub mod generate;
pub mod kv_cache;
pub mod llama;
pub mod model;
pub mod progress;
pub mod replicas;
pub mod split;
pub mod synth;
pub mod tokenizer;

pub use error::{Error, Result};
pub use generate::{GenerateOptions, Generation, Sampling};
pub use model::{LoadOptions, Model};
pub use shaderlm_engine as engine;
