//! GGUF files (llama.cpp's format): metadata, tensors by Hugging Face name, the model config,
//! and the tokenizer, read from one memory-mapped file.
//!
//! - `reader.rs`: the container (header, metadata values, tensor infos), bounds-checked.
//! - `dequant.rs`: the element and block formats (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K,
//!   Q6_K) to f32.
//! - `names.rs`: GGUF tensor names to HF names in one table; the rotary row order of Q and K.
//! - `repack.rs`: Q8_0, Q4_0 and Q4_1 blocks into the engine's Q8 / Q4, with no second rounding.
//! - `tokenizer.rs`: a `tokenizers::Tokenizer` from the `tokenizer.ggml.*` metadata.
//!
//! Everything the file states (counts, lengths, shapes, offsets, alignment) is checked when the
//! file is opened, so that a `GgufFile` that opened only holds tensors that lie inside the file,
//! are as long as their type and shape say, and do not overlap.
//!
//! ```no_run
//! # fn main() -> shaderlm::Result<()> {
//! use shaderlm::checkpoint::gguf::GgufFile;
//! let file = GgufFile::open("smollm2-135m-instruct.gguf".as_ref())?;
//! let config = file.config()?; // layers, heads, RoPE, vocab, tied output, BOS/EOS
//! let q = file.tensor("model.layers.0.self_attn.q_proj.weight")?; // raw blocks, HF row order
//! let (shape, values) = file.tensor_f32("model.norm.weight")?; // dequantized
//! let tok = file.tokenizer()?; // tokenizers::Tokenizer + add_bos, BOS/EOS ids, chat template
//! # Ok(()) }
//! ```

mod dequant;
mod names;
mod reader;
mod repack;
mod tokenizer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use dequant::{block_layout, dequantize, stored_bytes};
pub use names::{hf_name, rotary_row_map, unpermute_rows};
pub use reader::{Array, Value};
pub use repack::repack_blocks;
pub use tokenizer::TokenizerParts;

use super::config::{Architecture, Config, Llama3RopeScaling};
use super::{StoredDType, TensorView};
use crate::error::{Error, Result};
use names::RotaryHeads;
use reader::{RawTensorInfo, DEFAULT_ALIGNMENT};

/// One tensor of a GGUF file, as checked at open.
#[derive(Clone, Debug)]
pub struct GgufTensor {
    /// The name in the file (`blk.0.attn_q.weight`).
    pub gguf_name: String,
    /// The Hugging Face name (`model.layers.0.self_attn.q_proj.weight`), when there is one.
    pub hf_name: Option<String>,
    /// Outermost first, as PyTorch writes it (GGUF's ne[] reversed).
    pub shape: Vec<usize>,
    pub dtype: StoredDType,
    /// Absolute byte offset of the data in the file.
    pub offset: usize,
    pub n_bytes: usize,
}

impl GgufTensor {
    pub fn n_elements(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The file's bytes: mapped from disk, or owned (a buffer given to `from_bytes`).
enum Storage {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mapped(map) => map,
            Storage::Owned(v) => v,
        }
    }
}

/// An open GGUF file.
pub struct GgufFile {
    path: PathBuf,
    storage: Storage,
    version: u32,
    metadata: Vec<(String, Value)>,
    tensors: Vec<GgufTensor>,
    /// HF names and GGUF names to indices into `tensors`.
    by_name: HashMap<String, usize>,
    /// Q and K rows put back into HF order, made on first request (see `tensor`).
    hf_ordered: Vec<OnceLock<Vec<u8>>>,
}

impl GgufFile {
    /// Maps `path` and checks its header and tensor table.
    pub fn open(path: &Path) -> Result<GgufFile> {
        let file = std::fs::File::open(path)
            .map_err(|source| Error::Io { path: path.to_owned(), source })?;
        // SAFETY: the mapping is read-only; like every mmap-based reader we rely on the file not
        // being truncated or rewritten by another process while it is open.
        let map = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|source| Error::Io { path: path.to_owned(), source })?;
        Self::parse(path.to_owned(), Storage::Mapped(map))
    }

    /// Parses a GGUF file held in memory; `path` only names it in errors.
    pub fn from_bytes(path: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<GgufFile> {
        Self::parse(path.into(), Storage::Owned(bytes))
    }

    fn parse(path: PathBuf, storage: Storage) -> Result<GgufFile> {
        let bytes = storage.bytes();
        let header = reader::parse_header(bytes, &path)?;
        let alignment = alignment(&header.metadata, &path)?;
        let data_start = align_up(header.infos_end, alignment)
            .ok_or_else(|| Error::format(&path, "the data section offset overflows"))?;
        let tensors = check_tensors(&header.tensors, data_start, alignment, bytes.len(), &path)?;

        let mut by_name = HashMap::new();
        for (i, t) in tensors.iter().enumerate() {
            for name in std::iter::once(&t.gguf_name).chain(t.hf_name.as_ref()) {
                if by_name.insert(name.clone(), i).is_some() {
                    return Err(Error::format(&path, format!("tensor name {name:?} appears twice")));
                }
            }
        }
        let hf_ordered = tensors.iter().map(|_| OnceLock::new()).collect();
        Ok(GgufFile {
            path,
            storage,
            version: header.version,
            metadata: header.metadata,
            tensors,
            by_name,
            hf_ordered,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn metadata(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// All metadata, in file order.
    pub fn metadata_entries(&self) -> &[(String, Value)] {
        &self.metadata
    }

    /// All tensors, in file order.
    pub fn tensors(&self) -> &[GgufTensor] {
        &self.tensors
    }

    /// The tensor info by HF name, or by GGUF name for tensors that have no HF name.
    pub fn tensor_info(&self, name: &str) -> Result<&GgufTensor> {
        self.by_name
            .get(name)
            .map(|&i| &self.tensors[i])
            .ok_or_else(|| Error::MissingTensor { path: self.path.clone(), name: name.to_owned() })
    }

    /// A tensor by HF name (or GGUF name), its rows in Hugging Face order.
    ///
    /// For a llama-architecture file, Q and K projections (weights and biases) are stored with
    /// their rows permuted for adjacent-pair RoPE (see [`rotary_row_map`]): this returns a copy
    /// with whole rows moved back (exact for block formats: a row is a whole number of blocks),
    /// made on the first request and kept while the file is open. Every other tensor is a view
    /// of the mapped file.
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>> {
        let info = self.tensor_info(name)?;
        let index = self.by_name[name];
        let raw = self.raw_bytes(info);
        let bytes = match self.rotary_heads(info)? {
            None => raw,
            Some(n_head) => {
                let cell = &self.hf_ordered[index];
                if cell.get().is_none() {
                    let rows = info.shape.first().copied().unwrap_or(1);
                    let reordered = self.rows_in_hf_order(info, raw, rows, n_head)?;
                    let _ = cell.set(reordered);
                }
                cell.get().map(Vec::as_slice).unwrap_or(raw)
            }
        };
        Ok(TensorView {
            name: info.hf_name.clone().unwrap_or_else(|| info.gguf_name.clone()),
            shape: info.shape.clone(),
            dtype: info.dtype,
            bytes,
        })
    }

    /// A tensor exactly as stored: GGUF row order, no copy.
    pub fn tensor_raw(&self, name: &str) -> Result<TensorView<'_>> {
        let info = self.tensor_info(name)?;
        Ok(TensorView {
            name: info.hf_name.clone().unwrap_or_else(|| info.gguf_name.clone()),
            shape: info.shape.clone(),
            dtype: info.dtype,
            bytes: self.raw_bytes(info),
        })
    }

    /// A tensor dequantized to f32, rows in HF order: (shape, data).
    pub fn tensor_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let view = self.tensor(name)?;
        let n = view.shape.iter().product();
        let data = dequantize(view.dtype, view.bytes, n)
            .map_err(|e| Error::format(&self.path, format!("tensor {name}: {e}")))?;
        Ok((view.shape, data))
    }

    fn raw_bytes(&self, info: &GgufTensor) -> &[u8] {
        // In range: checked at open.
        &self.storage.bytes()[info.offset..info.offset + info.n_bytes]
    }

    /// The head count that a tensor's rows are grouped by for RoPE, if they were permuted.
    /// Only llama.cpp's "llama" architecture permutes; Qwen2 keeps HF's order.
    fn rotary_heads(&self, info: &GgufTensor) -> Result<Option<usize>> {
        let Some(which) = names::rotary_heads(&info.gguf_name) else { return Ok(None) };
        if self.architecture_name()? != "llama" {
            return Ok(None);
        }
        let n_head = self.usize_key("llama.attention.head_count")?;
        Ok(Some(match which {
            RotaryHeads::Query => n_head,
            RotaryHeads::Key => self.usize_key_or("llama.attention.head_count_kv", n_head)?,
        }))
    }

    fn rows_in_hf_order(
        &self,
        info: &GgufTensor,
        raw: &[u8],
        rows: usize,
        n_head: usize,
    ) -> Result<Vec<u8>> {
        let (block_elems, _) = block_layout(info.dtype);
        let row_elems = info.n_elements().checked_div(rows).unwrap_or(0);
        if !row_elems.is_multiple_of(block_elems) {
            return Err(self.error(format!(
                "tensor {}: rows of {row_elems} {:?} elements cannot be reordered (not whole blocks)",
                info.gguf_name, info.dtype
            )));
        }
        unpermute_rows(raw, rows, n_head).ok_or_else(|| {
            self.error(format!(
                "tensor {} has {rows} rows, which do not split into {n_head} heads of pairs",
                info.gguf_name
            ))
        })
    }

    fn error(&self, message: String) -> Error {
        Error::format(&self.path, message)
    }

    fn architecture_name(&self) -> Result<&str> {
        self.string_key("general.architecture")
    }

    fn string_key(&self, key: &str) -> Result<&str> {
        match self.metadata(key) {
            None => Err(self.error(format!("metadata {key} is missing"))),
            Some(v) => v.as_str().ok_or_else(|| {
                self.error(format!("metadata {key} is a {}, expected a string", v.type_name()))
            }),
        }
    }

    fn optional_usize(&self, key: &str) -> Result<Option<usize>> {
        let Some(v) = self.metadata(key) else { return Ok(None) };
        v.as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| self.error(format!("metadata {key} = {v} is not a non-negative integer")))
    }

    fn usize_key(&self, key: &str) -> Result<usize> {
        self.optional_usize(key)?.ok_or_else(|| self.error(format!("metadata {key} is missing")))
    }

    fn usize_key_or(&self, key: &str, default: usize) -> Result<usize> {
        Ok(self.optional_usize(key)?.unwrap_or(default))
    }

    fn optional_f32(&self, key: &str) -> Result<Option<f32>> {
        let Some(v) = self.metadata(key) else { return Ok(None) };
        v.as_f64()
            .map(|x| Some(x as f32))
            .ok_or_else(|| self.error(format!("metadata {key} is a {}, expected a number", v.type_name())))
    }

    fn optional_u32(&self, key: &str) -> Result<Option<u32>> {
        match self.optional_usize(key)? {
            None => Ok(None),
            Some(n) => u32::try_from(n)
                .map(Some)
                .map_err(|_| self.error(format!("metadata {key} = {n} does not fit in u32"))),
        }
    }

    /// The model's hyper-parameters from `{arch}.*` metadata; architectures "llama" and "qwen2".
    ///
    /// vocab_size is the embedding's row count (the token list may be shorter, never longer);
    /// the output is tied when `output.weight` is absent; Llama 3 RoPE scaling is recovered from
    /// the `rope_freqs.weight` factors that llama.cpp's converter stores.
    pub fn config(&self) -> Result<Config> {
        let arch = self.architecture_name()?;
        let architecture = match arch {
            "llama" => Architecture::Llama,
            "qwen2" => Architecture::Qwen2,
            other => {
                return Err(self.error(format!(
                    "architecture {other:?} is not supported (only \"llama\" and \"qwen2\")"
                )))
            }
        };
        let key = |suffix: &str| format!("{arch}.{suffix}");
        let hidden_size = self.usize_key(&key("embedding_length"))?;
        let num_attention_heads = self.usize_key(&key("attention.head_count"))?;
        if num_attention_heads == 0 {
            return Err(self.error(format!("{} is 0", key("attention.head_count"))));
        }
        let num_key_value_heads =
            self.usize_key_or(&key("attention.head_count_kv"), num_attention_heads)?;
        let head_dim = match self.optional_usize(&key("attention.key_length"))? {
            Some(d) => d,
            None if hidden_size % num_attention_heads == 0 => hidden_size / num_attention_heads,
            None => {
                return Err(self.error(format!(
                    "embedding_length {hidden_size} is not a multiple of head_count {num_attention_heads}"
                )))
            }
        };
        let partial_rotary_factor = match self.optional_usize(&key("rope.dimension_count"))? {
            Some(rope_dims) if head_dim > 0 => rope_dims as f32 / head_dim as f32,
            _ => 1.0,
        };
        let rope_theta = self.optional_f32(&key("rope.freq_base"))?.unwrap_or(10_000.0);
        let rms_norm_eps = self
            .optional_f32(&key("attention.layer_norm_rms_epsilon"))?
            .ok_or_else(|| self.error(format!("metadata {} is missing", key("attention.layer_norm_rms_epsilon"))))?;
        let vocab_size = self.vocab_size(&key("vocab_size"))?;
        let rope_scaling = self.rope_scaling(arch, head_dim, rope_theta)?;
        let attention_bias = architecture == Architecture::Qwen2
            || self.by_name.contains_key("blk.0.attn_q.bias");

        let mut eos_token_ids = Vec::new();
        for k in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
            if let Some(id) = self.optional_u32(k)? {
                if !eos_token_ids.contains(&id) {
                    eos_token_ids.push(id);
                }
            }
        }
        Ok(Config {
            architecture,
            hidden_size,
            intermediate_size: self.usize_key(&key("feed_forward_length"))?,
            num_hidden_layers: self.usize_key(&key("block_count"))?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            vocab_size,
            rms_norm_eps,
            rope_theta,
            partial_rotary_factor,
            rope_scaling,
            max_position_embeddings: self.usize_key(&key("context_length"))?,
            tie_word_embeddings: !self.by_name.contains_key("output.weight"),
            attention_bias,
            bos_token_id: self.optional_u32("tokenizer.ggml.bos_token_id")?,
            eos_token_ids,
        })
    }

    fn vocab_size(&self, arch_vocab_key: &str) -> Result<usize> {
        let tokens = match self.metadata("tokenizer.ggml.tokens") {
            Some(Value::Array(a)) => Some(a.len()),
            Some(v) => {
                return Err(self.error(format!(
                    "metadata tokenizer.ggml.tokens is a {}, expected an array",
                    v.type_name()
                )))
            }
            None => None,
        };
        let embedding_rows = self
            .by_name
            .get("token_embd.weight")
            .and_then(|&i| self.tensors[i].shape.first().copied());
        match (embedding_rows, tokens) {
            (Some(rows), Some(n)) if n > rows => Err(self.error(format!(
                "the token list has {n} entries but token_embd.weight only {rows} rows"
            ))),
            (Some(rows), _) => Ok(rows),
            (None, Some(n)) => Ok(n),
            (None, None) => self.usize_key(arch_vocab_key),
        }
    }

    /// RoPE scaling: none, or Llama 3's, which llama.cpp's converter stores as the per-frequency
    /// divisors `rope_freqs.weight` rather than as parameters. We recover the parameters (the
    /// factor is the largest divisor; Llama 3.1-3.3 all use low_freq_factor 1, high_freq_factor
    /// 4, original context 8192) and check that they reproduce every stored divisor.
    fn rope_scaling(&self, arch: &str, head_dim: usize, theta: f32) -> Result<Option<Llama3RopeScaling>> {
        let type_key = format!("{arch}.rope.scaling.type");
        match self.metadata(&type_key).map(|v| v.as_str()) {
            None | Some(Some("none")) => {}
            Some(Some(other)) => {
                return Err(self.error(format!("RoPE scaling {other:?} is not supported")))
            }
            Some(None) => return Err(self.error(format!("metadata {type_key} is not a string"))),
        }
        if !self.by_name.contains_key("rope_freqs.weight") {
            return Ok(None);
        }
        let (_, divisors) = self.tensor_f32("rope_freqs.weight")?;
        if divisors.len() * 2 != head_dim {
            return Err(self.error(format!(
                "rope_freqs.weight has {} factors, expected head_dim/2 = {}",
                divisors.len(),
                head_dim / 2
            )));
        }
        let original = self
            .usize_key_or(&format!("{arch}.rope.scaling.original_context_length"), 8192)?;
        let scaling = Llama3RopeScaling {
            factor: divisors.iter().copied().fold(1.0, f32::max),
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: original,
        };
        for (i, &stored) in divisors.iter().enumerate() {
            let expected = llama3_divisor(&scaling, theta, i, head_dim);
            if (stored - expected).abs() > 1e-3 * expected.abs().max(1.0) {
                return Err(self.error(format!(
                    "rope_freqs.weight[{i}] = {stored} does not follow Llama 3 scaling \
                     (factor {}, low 1, high 4, original context {original}): expected {expected}",
                    scaling.factor
                )));
            }
        }
        Ok(Some(scaling))
    }

    /// The tokenizer described by the `tokenizer.ggml.*` metadata.
    pub fn tokenizer(&self) -> Result<TokenizerParts> {
        tokenizer::from_metadata(self)
    }
}

/// Llama 3 scaling: how much frequency i (of head_dim/2) is divided by.
fn llama3_divisor(s: &Llama3RopeScaling, theta: f32, i: usize, head_dim: usize) -> f32 {
    let freq = 1.0 / f64::from(theta).powf(2.0 * i as f64 / head_dim as f64);
    let wavelen = 2.0 * std::f64::consts::PI / freq;
    let original = s.original_max_position_embeddings as f64;
    let (low, high, factor) = (f64::from(s.low_freq_factor), f64::from(s.high_freq_factor), f64::from(s.factor));
    let divisor = if wavelen < original / high {
        1.0
    } else if wavelen > original / low {
        factor
    } else {
        let smooth = (original / wavelen - low) / (high - low);
        1.0 / ((1.0 - smooth) / factor + smooth)
    };
    divisor as f32
}

/// general.alignment, or 32; a power of two.
fn alignment(metadata: &[(String, Value)], path: &Path) -> Result<usize> {
    let Some((_, v)) = metadata.iter().find(|(k, _)| k == "general.alignment") else {
        return Ok(DEFAULT_ALIGNMENT as usize);
    };
    match v.as_u64().and_then(|a| usize::try_from(a).ok()) {
        Some(a) if a.is_power_of_two() => Ok(a),
        _ => Err(Error::format(path, format!("general.alignment = {v} is not a power of two"))),
    }
}

fn align_up(x: usize, alignment: usize) -> Option<usize> {
    Some(x.checked_add(alignment - 1)? / alignment * alignment)
}

/// The stored type of a ggml type number; None for types we do not read.
fn stored_dtype(ggml_type: u32) -> Option<StoredDType> {
    Some(match ggml_type {
        0 => StoredDType::F32,
        1 => StoredDType::F16,
        2 => StoredDType::Q4_0,
        3 => StoredDType::Q4_1,
        8 => StoredDType::Q8_0,
        12 => StoredDType::Q4K,
        13 => StoredDType::Q5K,
        14 => StoredDType::Q6K,
        30 => StoredDType::BF16,
        _ => return None,
    })
}

/// Names of ggml types that exist but that we do not read, for the error message.
fn unsupported_type_name(ggml_type: u32) -> Option<&'static str> {
    Some(match ggml_type {
        6 => "Q5_0",
        7 => "Q5_1",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        15 => "Q8_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        _ => return None,
    })
}

/// Types, shapes and extents of the tensor infos: each tensor's size follows from its type and
/// shape, lies inside the file at an aligned offset, and ends before the next one starts.
fn check_tensors(
    raw: &[RawTensorInfo],
    data_start: usize,
    alignment: usize,
    file_len: usize,
    path: &Path,
) -> Result<Vec<GgufTensor>> {
    let err = |message: String| Error::format(path, message);
    let mut tensors = Vec::with_capacity(raw.len());
    for t in raw {
        let name = &t.name;
        let dtype = stored_dtype(t.ggml_type).ok_or_else(|| match unsupported_type_name(t.ggml_type) {
            Some(type_name) => err(format!(
                "tensor {name:?} has type {} ({type_name}), which shaderlm does not read \
                 (it reads F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K)",
                t.ggml_type
            )),
            None => err(format!("tensor {name:?} has unknown ggml type {}", t.ggml_type)),
        })?;
        let dims: Vec<usize> = t
            .dims
            .iter()
            .map(|&d| usize::try_from(d).ok())
            .collect::<Option<_>>()
            .ok_or_else(|| err(format!("tensor {name:?} has a dimension that does not fit in memory: {:?}", t.dims)))?;
        let n_elements = dims
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| err(format!("tensor {name:?}: the element count of shape {dims:?} overflows")))?;
        let (block_elems, _) = block_layout(dtype);
        let row_len = dims.first().copied().unwrap_or(1);
        if !row_len.is_multiple_of(block_elems) {
            return Err(err(format!(
                "tensor {name:?}: rows of {row_len} elements are not a whole number of \
                 {block_elems}-element {dtype:?} blocks"
            )));
        }
        let n_bytes = stored_bytes(dtype, n_elements)
            .ok_or_else(|| err(format!("tensor {name:?}: its byte size overflows")))?;
        let offset = usize::try_from(t.offset).ok().filter(|o| o.is_multiple_of(alignment)).ok_or_else(|| {
            err(format!(
                "tensor {name:?}: data offset {} is not a multiple of the alignment {alignment}",
                t.offset
            ))
        })?;
        let start = data_start.checked_add(offset);
        let end = start.and_then(|s| s.checked_add(n_bytes));
        let (Some(start), Some(end)) = (start, end) else {
            return Err(err(format!("tensor {name:?}: its extent overflows")));
        };
        if end > file_len {
            return Err(err(format!(
                "tensor {name:?} ({dtype:?}, ne {dims:?}: {n_bytes} bytes at byte {start}) ends at \
                 byte {end}, past the end of the file ({file_len} bytes)"
            )));
        }
        tensors.push(GgufTensor {
            gguf_name: name.clone(),
            hf_name: hf_name(name),
            shape: dims.iter().rev().copied().collect(),
            dtype,
            offset: start,
            n_bytes,
        });
    }
    // A tensor whose type and shape make it longer than the room before the next one.
    let mut order: Vec<&GgufTensor> = tensors.iter().filter(|t| t.n_bytes > 0).collect();
    order.sort_by_key(|t| t.offset);
    for pair in order.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if a.offset + a.n_bytes > b.offset {
            return Err(err(format!(
                "tensor {:?} ({:?}, shape {:?}) takes {} bytes but tensor {:?} starts {} bytes after it",
                a.gguf_name,
                a.dtype,
                a.shape,
                a.n_bytes,
                b.gguf_name,
                b.offset - a.offset
            )));
        }
    }
    Ok(tensors)
}

/// Everything a reader does with a file, for the fuzz target and the mutation test: parse, read
/// and dequantize every tensor (bounded by the input's size), build the config and tokenizer.
/// Errors are fine; panics, hangs and huge allocations are the bugs this looks for.
#[doc(hidden)]
pub fn exercise(bytes: &[u8]) {
    let Ok(file) = GgufFile::from_bytes("fuzz-input.gguf", bytes.to_vec()) else { return };
    for t in file.tensors() {
        let _ = file.tensor_f32(&t.gguf_name);
        let _ = file.tensor_raw(&t.gguf_name);
    }
    let _ = file.config();
    if let Ok(parts) = file.tokenizer() {
        let _ = parts.tokenizer.encode("Hello world 123 <|im_start|> héllo", true);
    }
    for (_, v) in file.metadata_entries() {
        let _ = v.to_string();
    }
}
