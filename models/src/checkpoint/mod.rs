//! Checkpoints on disk, read without copying: Hugging Face folders (config.json +
//! safetensors, sharded or not) and GGUF files. No GPU here.
//!
//! Everything a model loader needs goes through [`Checkpoint`]: the [`Config`] and, by Hugging
//! Face tensor name (`model.layers.0.self_attn.q_proj.weight`), a [`TensorView`] into the
//! memory-mapped file. GGUF names are mapped to these names in one table (gguf.rs). Every length,
//! offset and shape read from a file is checked against the file's size before it is used.

pub mod config;
pub mod gguf;
pub mod safetensors;

pub use config::Config;

/// How a tensor's elements are stored on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoredDType {
    F32,
    F16,
    BF16,
    /// GGUF block formats (32 or 256 elements a block).
    Q8_0,
    Q4_0,
    Q4_1,
    Q4K,
    Q5K,
    Q6K,
}

/// A tensor inside a mapped checkpoint file: name, shape (outermost first, as PyTorch writes
/// it: a linear weight is `[out_features, in_features]`), stored type and its raw bytes.
#[derive(Clone, Debug)]
pub struct TensorView<'a> {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: StoredDType,
    pub bytes: &'a [u8],
}
