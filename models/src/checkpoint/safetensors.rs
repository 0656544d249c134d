//! safetensors reader: one `model.safetensors`, or the shards that
//! `model.safetensors.index.json` lists, each memory-mapped (nothing is copied).
//!
//! The format: an 8-byte little-endian header length N, N bytes of JSON
//! `{"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}}`,
//! then the data, with offsets counted from the end of the header. Every number in the header is
//! checked against the file before a view is handed out; each failure is an `Error::Format`
//! that names the file.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Component, Path, PathBuf};

use memmap2::Mmap;
use serde_json::Value;

use super::{StoredDType, TensorView};
use crate::error::{Error, Result};

/// A header longer than this is refused before it is read (real ones are a few hundred KB).
pub const MAX_HEADER_BYTES: u64 = 100 << 20;

/// One tensor's place in a file.
#[derive(Clone, Debug)]
struct Entry {
    dtype: FileDType,
    shape: Vec<usize>,
    /// Byte range in the whole file (header included).
    start: usize,
    end: usize,
}

/// A dtype named by the safetensors format: one we read, or one we know only by its size
/// (an I64 buffer in a checkpoint is no reason to refuse the file, only to refuse that tensor).
#[derive(Clone, Copy, Debug)]
enum FileDType {
    Stored(StoredDType),
    Unsupported(&'static str),
}

/// Every dtype name of the safetensors format with its element size in bytes.
const DTYPES: &[(&str, usize, Option<StoredDType>)] = &[
    ("F32", 4, Some(StoredDType::F32)),
    ("F16", 2, Some(StoredDType::F16)),
    ("BF16", 2, Some(StoredDType::BF16)),
    ("F64", 8, None),
    ("I64", 8, None),
    ("U64", 8, None),
    ("I32", 4, None),
    ("U32", 4, None),
    ("I16", 2, None),
    ("U16", 2, None),
    ("I8", 1, None),
    ("U8", 1, None),
    ("BOOL", 1, None),
    ("F8_E5M2", 1, None),
    ("F8_E4M3", 1, None),
    ("F8_E8M0", 1, None),
];

/// One mapped `.safetensors` file and its checked table of tensors.
pub struct SafetensorsFile {
    path: PathBuf,
    map: Mmap,
    tensors: BTreeMap<String, Entry>,
}

impl SafetensorsFile {
    /// Maps `path` and checks its header.
    pub fn open(path: &Path) -> Result<SafetensorsFile> {
        let io = |source| Error::Io { path: path.to_path_buf(), source };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len < 8 {
            return Err(Error::format(path, format!("file is {len} bytes, too short for the 8-byte header length")));
        }
        // SAFETY: the map is read-only. If another process truncates or rewrites the file while
        // it is mapped, reads may fault or see the new bytes; like every mmap-based reader we
        // accept that, since checkpoints are not modified while a model is loaded.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        let tensors = parse(path, &map)?;
        Ok(SafetensorsFile { path: path.to_path_buf(), map, tensors })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// A view of tensor `name`'s bytes in the map.
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>> {
        let entry = self
            .tensors
            .get(name)
            .ok_or_else(|| Error::MissingTensor { path: self.path.clone(), name: name.to_string() })?;
        let dtype = match entry.dtype {
            FileDType::Stored(dtype) => dtype,
            FileDType::Unsupported(dtype) => {
                return Err(Error::format(
                    &self.path,
                    format!("tensor {name} has dtype {dtype}, which is not supported (F32, F16 and BF16 are)"),
                ))
            }
        };
        Ok(TensorView {
            name: name.to_string(),
            shape: entry.shape.clone(),
            dtype,
            bytes: &self.map[entry.start..entry.end],
        })
    }
}

/// Reads and checks the header of a whole safetensors file held in `bytes`.
fn parse(path: &Path, bytes: &[u8]) -> Result<BTreeMap<String, Entry>> {
    let err = |message: String| Error::format(path, message);
    let file_len = bytes.len();
    let Some(len_bytes) = bytes.get(..8) else {
        return Err(err(format!("file is {file_len} bytes, too short for the 8-byte header length")));
    };
    let header_len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes"));
    if header_len > MAX_HEADER_BYTES {
        return Err(err(format!("header length {header_len} is over the {MAX_HEADER_BYTES}-byte limit")));
    }
    let data_start = 8 + header_len as usize;
    if data_start > file_len {
        return Err(err(format!("header length {header_len} runs past the end of the file ({file_len} bytes)")));
    }
    let header = std::str::from_utf8(&bytes[8..data_start]).map_err(|e| err(format!("header is not UTF-8: {e}")))?;
    let header: Value = serde_json::from_str(header).map_err(|e| err(format!("header is not valid JSON: {e}")))?;
    let header = header.as_object().ok_or_else(|| err("header is not a JSON object".into()))?;

    let data_len = file_len - data_start;
    let mut tensors = BTreeMap::new();
    for (name, info) in header {
        if name == "__metadata__" {
            continue;
        }
        let entry = parse_entry(name, info, data_start, data_len).map_err(err)?;
        tensors.insert(name.clone(), entry);
    }

    // No two tensors may share bytes: sort by start and compare neighbours.
    let mut by_start: Vec<(&String, &Entry)> = tensors.iter().collect();
    by_start.sort_by_key(|(_, e)| (e.start, e.end));
    for pair in by_start.windows(2) {
        let ((a, ea), (b, eb)) = (pair[0], pair[1]);
        if eb.start < ea.end {
            let (sa, sb) = (ea.start - data_start, eb.start - data_start);
            let (ra, rb) = (ea.end - data_start, eb.end - data_start);
            return Err(err(format!("tensors {a} (bytes {sa}..{ra}) and {b} (bytes {sb}..{rb}) overlap")));
        }
    }
    Ok(tensors)
}

/// Checks one header entry; `data_start..data_start + data_len` is the data section.
fn parse_entry(name: &str, info: &Value, data_start: usize, data_len: usize) -> std::result::Result<Entry, String> {
    let info = info.as_object().ok_or_else(|| format!("entry for tensor {name} is not an object"))?;
    let field = |key: &str| info.get(key).ok_or_else(|| format!("tensor {name} has no {key}"));

    let dtype_name = field("dtype")?.as_str().ok_or_else(|| format!("dtype of tensor {name} is not a string"))?;
    let &(known_name, size, stored) = DTYPES
        .iter()
        .find(|(n, _, _)| *n == dtype_name)
        .ok_or_else(|| format!("tensor {name} has unknown dtype {dtype_name:?}"))?;
    let dtype = stored.map_or(FileDType::Unsupported(known_name), FileDType::Stored);

    let shape_value = field("shape")?;
    let shape = shape_value
        .as_array()
        .and_then(|dims| {
            dims.iter().map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok())).collect::<Option<Vec<_>>>()
        })
        .ok_or_else(|| format!("shape of tensor {name} is not a list of sizes: {shape_value}"))?;
    let n_bytes = shape
        .iter()
        .try_fold(size, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} of tensor {name} overflows"))?;

    let offsets_value = field("data_offsets")?;
    let offsets = offsets_value
        .as_array()
        .filter(|o| o.len() == 2)
        .and_then(|o| Some((o[0].as_u64()?, o[1].as_u64()?)))
        .ok_or_else(|| format!("data_offsets of tensor {name} is not [begin, end]: {offsets_value}"))?;
    let (begin, end) = offsets;
    if begin > end {
        return Err(format!("data_offsets [{begin}, {end}] of tensor {name} end before they begin"));
    }
    if end > data_len as u64 {
        return Err(format!(
            "data_offsets [{begin}, {end}] of tensor {name} run past the end of the data ({data_len} bytes)"
        ));
    }
    let (begin, end) = (begin as usize, end as usize);
    if end - begin != n_bytes {
        return Err(format!(
            "tensor {name} holds {} bytes but shape {shape:?} of {dtype_name} needs {n_bytes}",
            end - begin
        ));
    }
    Ok(Entry { dtype, shape, start: data_start + begin, end: data_start + end })
}

/// The safetensors weights of a Hugging Face folder: `model.safetensors`, or the shards
/// named by `model.safetensors.index.json`.
pub struct SafetensorsFolder {
    files: Vec<SafetensorsFile>,
    /// Tensor name -> index in `files`.
    by_name: HashMap<String, usize>,
}

pub const SINGLE_FILE: &str = "model.safetensors";
pub const INDEX_FILE: &str = "model.safetensors.index.json";

impl SafetensorsFolder {
    /// Opens the weights in folder `dir` (the single file when there is one, as transformers does).
    pub fn open(dir: &Path) -> Result<SafetensorsFolder> {
        let (single, index) = (dir.join(SINGLE_FILE), dir.join(INDEX_FILE));
        let weight_map = match (single.is_file(), index.is_file()) {
            (true, _) => None,
            (false, true) => Some(weight_map(&index)?),
            (false, false) => {
                return Err(Error::format(dir, format!("no {SINGLE_FILE} or {INDEX_FILE} in this folder")));
            }
        };
        let shard_names: Vec<&str> = match &weight_map {
            None => vec![SINGLE_FILE],
            Some(map) => {
                let mut names: Vec<&str> = map.values().map(String::as_str).collect();
                names.sort_unstable();
                names.dedup();
                names
            }
        };
        let files = shard_names.iter().map(|n| SafetensorsFile::open(&dir.join(n))).collect::<Result<Vec<_>>>()?;

        let mut by_name = HashMap::new();
        for (i, file) in files.iter().enumerate() {
            for name in file.names() {
                if let Some(j) = by_name.insert(name.to_string(), i) {
                    let other = files[j].path().display();
                    return Err(Error::format(file.path(), format!("tensor {name} is also in {other}")));
                }
            }
        }
        // Every tensor the index lists must be in the shard it names.
        for (tensor, file) in weight_map.iter().flatten() {
            let holder = by_name.get(tensor).map(|&i| files[i].path());
            if holder.and_then(Path::file_name) != Some(file.as_ref()) {
                let message = format!("weight_map puts tensor {tensor} in {file}, which does not hold it");
                return Err(Error::format(&index, message));
            }
        }
        Ok(SafetensorsFolder { files, by_name })
    }

    /// All tensor names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// The file that holds `name`, if any.
    pub fn file_of(&self, name: &str) -> Option<&SafetensorsFile> {
        self.by_name.get(name).map(|&i| &self.files[i])
    }

    pub fn files(&self) -> &[SafetensorsFile] {
        &self.files
    }
}

/// Reads the index's `weight_map` {tensor: shard file}. Each shard must be a plain file name:
/// the index cannot point outside its folder.
fn weight_map(index: &Path) -> Result<BTreeMap<String, String>> {
    let err = |message: String| Error::format(index, message);
    let text = std::fs::read_to_string(index).map_err(|source| Error::Io { path: index.to_path_buf(), source })?;
    let value: Value = serde_json::from_str(&text).map_err(|e| err(format!("not valid JSON: {e}")))?;
    let map = value.get("weight_map").and_then(Value::as_object).ok_or_else(|| err("no weight_map object".into()))?;
    let mut out = BTreeMap::new();
    for (tensor, file) in map {
        let file = file.as_str().ok_or_else(|| err(format!("weight_map entry for {tensor} is not a file name")))?;
        let mut parts = Path::new(file).components();
        if !matches!((parts.next(), parts.next()), (Some(Component::Normal(_)), None)) {
            return Err(err(format!("weight_map names {file:?}, which is not a file name in this folder")));
        }
        out.insert(tensor.clone(), file.to_string());
    }
    if out.is_empty() {
        return Err(err("weight_map is empty".into()));
    }
    Ok(out)
}
