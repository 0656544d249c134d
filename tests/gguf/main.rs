//! GGUF reader tests: hostile files (malformed.rs), block formats (dequant.rs), a small real
//! model written by llama.cpp's Python writer (stories.rs), SmolLM2-135M-Instruct when it is in
//! the cache (smollm2.rs), metadata variants: Qwen2, Llama 3 RoPE, pre-tokenizers (variants.rs),
//! and seeded random mutations of a valid file (mutation.rs).
//!
//! This file holds the shared helpers: a minimal GGUF writer for hand-built files, temp files,
//! a seeded random source, and the paths of the test data.

mod dequant;
mod malformed;
mod mutation;
mod smollm2;
mod stories;
mod variants;

use std::path::{Path, PathBuf};

use shaderlm::checkpoint::gguf::GgufFile;
use shaderlm::Error;

/// ggml type numbers.
pub const F32: u32 = 0;
pub const F16: u32 = 1;
pub const Q4_0: u32 = 2;
pub const Q4_1: u32 = 3;
pub const Q8_0: u32 = 8;
pub const Q4_K: u32 = 12;
pub const BF16: u32 = 30;

/// GGUF metadata value types.
pub const T_U8: u32 = 0;
pub const T_I8: u32 = 1;
pub const T_U16: u32 = 2;
pub const T_I16: u32 = 3;
pub const T_U32: u32 = 4;
pub const T_I32: u32 = 5;
pub const T_F32: u32 = 6;
pub const T_BOOL: u32 = 7;
pub const T_STRING: u32 = 8;
pub const T_ARRAY: u32 = 9;
pub const T_U64: u32 = 10;
pub const T_I64: u32 = 11;
pub const T_F64: u32 = 12;

pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("data")
}

/// `../shared/models/stories260K` beside the repository, when present.
pub fn stories_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/models/stories260K");
    dir.join("model.safetensors").exists().then_some(dir)
}

/// A GGUF string: u64 length, then the bytes (any bytes, so tests can write bad UTF-8).
pub fn gguf_str(s: &[u8]) -> Vec<u8> {
    let mut v = (s.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(s);
    v
}

/// Builds GGUF bytes: key/values and tensors in the order added. Fields can be written raw so
/// that tests can state anything a hostile file could.
pub struct GgufBuilder {
    pub version: u32,
    pub alignment: usize,
    kvs: Vec<u8>,
    n_kv: u64,
    infos: Vec<u8>,
    n_tensors: u64,
    data: Vec<u8>,
}

impl Default for GgufBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufBuilder {
    pub fn new() -> GgufBuilder {
        GgufBuilder { version: 3, alignment: 32, kvs: Vec::new(), n_kv: 0, infos: Vec::new(), n_tensors: 0, data: Vec::new() }
    }

    /// A key/value with its value already encoded.
    pub fn kv_raw(&mut self, key: &[u8], value_type: u32, value: &[u8]) -> &mut Self {
        self.kvs.extend(gguf_str(key));
        self.kvs.extend(value_type.to_le_bytes());
        self.kvs.extend_from_slice(value);
        self.n_kv += 1;
        self
    }

    pub fn u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.kv_raw(key.as_bytes(), T_U32, &v.to_le_bytes())
    }

    pub fn f32(&mut self, key: &str, v: f32) -> &mut Self {
        self.kv_raw(key.as_bytes(), T_F32, &v.to_le_bytes())
    }

    pub fn bool(&mut self, key: &str, v: bool) -> &mut Self {
        self.kv_raw(key.as_bytes(), T_BOOL, &[v as u8])
    }

    pub fn string(&mut self, key: &str, v: &str) -> &mut Self {
        self.kv_raw(key.as_bytes(), T_STRING, &gguf_str(v.as_bytes()))
    }

    /// An array value: element type, count, then the elements as given.
    pub fn array_raw(&mut self, key: &str, element_type: u32, count: u64, elements: &[u8]) -> &mut Self {
        let mut v = element_type.to_le_bytes().to_vec();
        v.extend(count.to_le_bytes());
        v.extend_from_slice(elements);
        self.kv_raw(key.as_bytes(), T_ARRAY, &v)
    }

    pub fn strings(&mut self, key: &str, items: &[&str]) -> &mut Self {
        let elements: Vec<u8> = items.iter().flat_map(|s| gguf_str(s.as_bytes())).collect();
        self.array_raw(key, T_STRING, items.len() as u64, &elements)
    }

    pub fn i32s(&mut self, key: &str, items: &[i32]) -> &mut Self {
        let elements: Vec<u8> = items.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.array_raw(key, T_I32, items.len() as u64, &elements)
    }

    pub fn f32s(&mut self, key: &str, items: &[f32]) -> &mut Self {
        let elements: Vec<u8> = items.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.array_raw(key, T_F32, items.len() as u64, &elements)
    }

    /// A tensor info only: name, ne[] (innermost first), type and offset exactly as given.
    pub fn tensor_info(&mut self, name: &[u8], ne: &[u64], ggml_type: u32, offset: u64) -> &mut Self {
        self.infos.extend(gguf_str(name));
        self.infos.extend((ne.len() as u32).to_le_bytes());
        for d in ne {
            self.infos.extend(d.to_le_bytes());
        }
        self.infos.extend(ggml_type.to_le_bytes());
        self.infos.extend(offset.to_le_bytes());
        self.n_tensors += 1;
        self
    }

    /// A tensor with its data, placed at the next aligned offset of the data section.
    pub fn tensor(&mut self, name: &str, ne: &[u64], ggml_type: u32, data: &[u8]) -> &mut Self {
        while !self.data.len().is_multiple_of(self.alignment) {
            self.data.push(0);
        }
        let offset = self.data.len() as u64;
        self.data.extend_from_slice(data);
        self.tensor_info(name.as_bytes(), ne, ggml_type, offset)
    }

    /// Appends bytes to the data section without a tensor info.
    pub fn raw_data(&mut self, bytes: &[u8]) -> &mut Self {
        self.data.extend_from_slice(bytes);
        self
    }

    pub fn build(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(self.version.to_le_bytes());
        out.extend(self.n_tensors.to_le_bytes());
        out.extend(self.n_kv.to_le_bytes());
        out.extend_from_slice(&self.kvs);
        out.extend_from_slice(&self.infos);
        if self.n_tensors > 0 || !self.data.is_empty() {
            while !out.len().is_multiple_of(self.alignment) {
                out.push(0);
            }
            out.extend_from_slice(&self.data);
        }
        out
    }
}

/// Writes `bytes` to a fresh temp file named after `name` and opens it with `GgufFile::open`.
/// The file is removed once open (the mapping keeps the data alive).
pub fn open_bytes(name: &str, bytes: &[u8]) -> (PathBuf, shaderlm::Result<GgufFile>) {
    let path = std::env::temp_dir().join(format!("shaderlm-gguf-{}-{name}.gguf", std::process::id()));
    std::fs::write(&path, bytes).expect("write a temp file");
    let result = GgufFile::open(&path);
    let _ = std::fs::remove_file(&path);
    (path, result)
}

/// Opens `bytes` from a temp file and checks that it fails with a format error that names the
/// file and contains `needle`. Returns the message.
#[track_caller]
pub fn expect_format_error(name: &str, bytes: &[u8], needle: &str) -> String {
    let (path, result) = open_bytes(name, bytes);
    match result {
        Err(Error::Format { path: p, message }) => {
            assert_eq!(p, path, "the error names the file");
            assert!(message.contains(needle), "{name}: message {message:?} does not contain {needle:?}");
            let shown = Error::Format { path: p, message: message.clone() }.to_string();
            assert!(shown.contains(&*path.to_string_lossy()));
            eprintln!("{name}: {shown}");
            message
        }
        Err(other) => panic!("{name}: expected a format error, got {other}"),
        Ok(_) => panic!("{name}: the malformed file opened"),
    }
}

/// SplitMix64: small, seeded, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// Reads a JSON test-data file.
pub fn read_json(name: &str) -> serde_json::Value {
    let path = data_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// JSON array of numbers -> f32 (each value was an f32 widened to f64, so this is exact).
pub fn json_f32s(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().expect("an array").iter().map(|x| x.as_f64().expect("a number") as f32).collect()
}

/// Largest |a - b| / max(1, |b|) over two equal-length slices.
pub fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs() / y.abs().max(1.0)).fold(0.0, f32::max)
}
