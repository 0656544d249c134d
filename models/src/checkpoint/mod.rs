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

use std::path::{Path, PathBuf};

pub use config::Config;

use crate::error::{Error, Result};
use safetensors::SafetensorsFolder;

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

impl StoredDType {
    /// Bytes per element of the plain float types; `None` for block formats.
    pub fn element_bytes(self) -> Option<usize> {
        match self {
            StoredDType::F32 => Some(4),
            StoredDType::F16 | StoredDType::BF16 => Some(2),
            _ => None,
        }
    }
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

impl TensorView<'_> {
    /// Number of elements (the product of the shape).
    pub fn len(&self) -> Result<usize> {
        self.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or_else(|| self.error("its shape overflows"))
    }

    pub fn is_empty(&self) -> bool {
        self.shape.contains(&0)
    }

    /// The elements as f32, in storage order (row-major over `shape`).
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        let n = self.len()?;
        let Some(size) = self.dtype.element_bytes() else {
            return self.dequantize_blocks(n);
        };
        self.check_bytes(n, size)?;
        let bytes = self.bytes;
        Ok(match self.dtype {
            StoredDType::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            StoredDType::F16 => {
                bytes.chunks_exact(2).map(|b| half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()).collect()
            }
            // bf16 is the top half of an f32.
            _ => {
                bytes.chunks_exact(2).map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16)).collect()
            }
        })
    }

    /// The elements as IEEE f16 bit patterns (f32 and bf16 rounded to nearest even).
    pub fn to_f16_bits(&self) -> Result<Vec<u16>> {
        if self.dtype == StoredDType::F16 {
            self.check_bytes(self.len()?, 2)?;
            return Ok(self.bytes.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect());
        }
        Ok(self.to_f32()?.into_iter().map(|x| half::f16::from_f32(x).to_bits()).collect())
    }

    fn check_bytes(&self, n: usize, size: usize) -> Result<()> {
        match n.checked_mul(size) {
            Some(expected) if expected == self.bytes.len() => Ok(()),
            _ => Err(self.error(&format!("{} bytes do not hold {n} {:?} elements", self.bytes.len(), self.dtype))),
        }
    }

    /// GGUF block types: dequantized by gguf.rs.
    fn dequantize_blocks(&self, n: usize) -> Result<Vec<f32>> {
        gguf::dequantize(self.dtype, self.bytes, n).map_err(|e| self.error(&e.to_string()))
    }

    /// A view knows its tensor but not its file: errors name the tensor.
    fn error(&self, message: &str) -> Error {
        Error::format(format!("tensor {}", self.name), message)
    }
}

/// Where a checkpoint's tensors live.
enum Source {
    /// A Hugging Face folder: config.json + model.safetensors (or shards).
    Safetensors(SafetensorsFolder),
    /// A `.gguf` file: config from its metadata, names mapped to Hugging Face's.
    Gguf(gguf::GgufFile),
}

/// A model checkpoint opened for reading: its config and a view of each tensor.
pub struct Checkpoint {
    path: PathBuf,
    config: Config,
    source: Source,
}

impl Checkpoint {
    /// Opens a Hugging Face model folder (config.json + safetensors). The config is validated
    /// and every safetensors header checked; tensor data is mapped, not read.
    pub fn open(path: &Path) -> Result<Checkpoint> {
        let metadata = std::fs::metadata(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        if metadata.is_file() {
            if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")) {
                let file = gguf::GgufFile::open(path)?;
                let config = file.config()?;
                return Ok(Checkpoint { path: path.to_path_buf(), config, source: Source::Gguf(file) });
            }
            return Err(Error::format(path, "expected a model folder (config.json + safetensors) or a .gguf file"));
        }
        let config = Config::from_hf_json(&path.join("config.json"))?;
        let weights = SafetensorsFolder::open(path)?;
        Ok(Checkpoint { path: path.to_path_buf(), config, source: Source::Safetensors(weights) })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The folder (or file) it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every tensor name, sorted.
    pub fn tensor_names(&self) -> Vec<&str> {
        match &self.source {
            Source::Safetensors(folder) => folder.names(),
            Source::Gguf(file) => {
                let mut names: Vec<&str> =
                    file.tensors().iter().map(|t| t.hf_name.as_deref().unwrap_or(&t.gguf_name)).collect();
                names.sort_unstable();
                names
            }
        }
    }

    pub fn has_tensor(&self, name: &str) -> bool {
        match &self.source {
            Source::Safetensors(folder) => folder.file_of(name).is_some(),
            Source::Gguf(file) => file.tensor_info(name).is_ok(),
        }
    }

    /// A view of tensor `name` (a Hugging Face name).
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>> {
        let missing = || Error::MissingTensor { path: self.path.clone(), name: name.to_string() };
        match &self.source {
            Source::Safetensors(folder) => folder.file_of(name).ok_or_else(missing)?.tensor(name),
            Source::Gguf(file) => file.tensor(name),
        }
    }

    /// [`Checkpoint::tensor`], checked to have shape `expected`.
    pub fn expect_shape(&self, name: &str, expected: &[usize]) -> Result<TensorView<'_>> {
        let view = self.tensor(name)?;
        if view.shape != expected {
            return Err(Error::TensorShape {
                path: self.path.clone(),
                name: name.to_string(),
                expected: expected.to_vec(),
                got: view.shape,
            });
        }
        Ok(view)
    }

    /// The tensor `name`, checked to have shape `expected`, as f32 values in Hugging Face
    /// layout (whatever the file stores).
    pub fn tensor_f32(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        self.expect_shape(name, expected)?.to_f32()
    }

    /// Whether the checkpoint carries a tokenizer.
    pub fn has_tokenizer(&self) -> bool {
        match &self.source {
            Source::Safetensors(_) => self.path.join("tokenizer.json").is_file(),
            Source::Gguf(file) => file.metadata("tokenizer.ggml.model").is_some(),
        }
    }

    /// The tokenizer that came with the checkpoint (tokenizer.json and tokenizer_config.json
    /// beside config.json, or a GGUF file's tokenizer.ggml.* metadata).
    pub fn tokenizer(&self) -> Result<crate::tokenizer::Tokenizer> {
        match &self.source {
            Source::Safetensors(_) => crate::tokenizer::Tokenizer::from_folder(&self.path),
            Source::Gguf(file) => {
                let p = file.tokenizer()?;
                Ok(crate::tokenizer::Tokenizer::from_tokenizers(p.tokenizer, p.add_bos, p.bos_id, p.eos_ids, p.chat_template))
            }
        }
    }
}
