//! The GGUF container, parsed from a byte slice: header, metadata key/values, tensor infos.
//!
//! Layout (little-endian; versions 2 and 3):
//!
//! ```text
//! magic "GGUF" | u32 version | u64 tensor_count | u64 kv_count
//! kv_count x   { string key | u32 value_type | value }
//! tensor_count x { string name | u32 n_dims | u64 ne[n_dims] (innermost first) | u32 ggml_type | u64 offset }
//! padding to general.alignment (default 32) | tensor data (offsets relative to here)
//! string = u64 byte length | UTF-8 bytes (no terminator)
//! array  = u32 element type | u64 count | elements
//! ```
//!
//! Nothing is allocated from a count before the count is checked against the bytes that remain
//! (each element takes at least one byte, most take more), so a hostile header cannot make us
//! reserve more memory than a small multiple of the file's size.

use std::path::Path;

use crate::error::{Error, Result};

pub(crate) const MAGIC: &[u8; 4] = b"GGUF";
/// Alignment of the data section and of every tensor offset when general.alignment is absent.
pub(crate) const DEFAULT_ALIGNMENT: u64 = 32;
/// GGML_MAX_DIMS: a tensor has at most four dimensions.
pub(crate) const MAX_DIMS: u32 = 4;
/// Arrays of arrays deeper than this are refused (no real file nests at all; the limit keeps a
/// hostile file from recursing us off the stack).
const MAX_ARRAY_DEPTH: usize = 4;

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Array),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// A metadata array: all elements share one type, so each is stored as a typed vector.
#[derive(Clone, Debug, PartialEq)]
pub enum Array {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Vec<String>),
    Array(Vec<Array>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

impl Value {
    /// Any integer type holding a value >= 0.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any float or integer type.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            Value::I8(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::I64(v) => Some(v as f64),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&Array> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The GGUF name of this value's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::U8(_) => "u8",
            Value::I8(_) => "i8",
            Value::U16(_) => "u16",
            Value::I16(_) => "i16",
            Value::U32(_) => "u32",
            Value::I32(_) => "i32",
            Value::F32(_) => "f32",
            Value::Bool(_) => "bool",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::U64(_) => "u64",
            Value::I64(_) => "i64",
            Value::F64(_) => "f64",
        }
    }
}

impl Array {
    pub fn len(&self) -> usize {
        match self {
            Array::U8(v) => v.len(),
            Array::I8(v) => v.len(),
            Array::U16(v) => v.len(),
            Array::I16(v) => v.len(),
            Array::U32(v) => v.len(),
            Array::I32(v) => v.len(),
            Array::F32(v) => v.len(),
            Array::Bool(v) => v.len(),
            Array::String(v) => v.len(),
            Array::Array(v) => v.len(),
            Array::U64(v) => v.len(),
            Array::I64(v) => v.len(),
            Array::F64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The GGUF name of the element type, for messages.
    pub fn element_type_name(&self) -> &'static str {
        match self {
            Array::U8(_) => "u8",
            Array::I8(_) => "i8",
            Array::U16(_) => "u16",
            Array::I16(_) => "i16",
            Array::U32(_) => "u32",
            Array::I32(_) => "i32",
            Array::F32(_) => "f32",
            Array::Bool(_) => "bool",
            Array::String(_) => "string",
            Array::Array(_) => "array",
            Array::U64(_) => "u64",
            Array::I64(_) => "i64",
            Array::F64(_) => "f64",
        }
    }

    /// Elements as i64 when the array holds any integer type (token types are i32 in practice).
    pub fn to_i64s(&self) -> Option<Vec<i64>> {
        Some(match self {
            Array::U8(v) => v.iter().map(|&x| x.into()).collect(),
            Array::I8(v) => v.iter().map(|&x| x.into()).collect(),
            Array::U16(v) => v.iter().map(|&x| x.into()).collect(),
            Array::I16(v) => v.iter().map(|&x| x.into()).collect(),
            Array::U32(v) => v.iter().map(|&x| x.into()).collect(),
            Array::I32(v) => v.iter().map(|&x| x.into()).collect(),
            Array::I64(v) => v.clone(),
            Array::U64(v) => v.iter().map(|&x| i64::try_from(x).ok()).collect::<Option<_>>()?,
            _ => return None,
        })
    }

    /// Elements as f32 when the array holds f32 (scores) or f64.
    pub fn to_f32s(&self) -> Option<Vec<f32>> {
        match self {
            Array::F32(v) => Some(v.clone()),
            Array::F64(v) => Some(v.iter().map(|&x| x as f32).collect()),
            _ => None,
        }
    }

    pub fn as_strings(&self) -> Option<&[String]> {
        match self {
            Array::String(v) => Some(v),
            _ => None,
        }
    }
}

impl std::fmt::Display for Value {
    /// Scalars as themselves, strings quoted and cut at 60 characters, arrays as their type and
    /// length with the first few elements.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::U8(v) => write!(f, "{v}"),
            Value::I8(v) => write!(f, "{v}"),
            Value::U16(v) => write!(f, "{v}"),
            Value::I16(v) => write!(f, "{v}"),
            Value::U32(v) => write!(f, "{v}"),
            Value::I32(v) => write!(f, "{v}"),
            Value::F32(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::U64(v) => write!(f, "{v}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::F64(v) => write!(f, "{v}"),
            Value::String(s) => write_short_string(f, s),
            Value::Array(a) => {
                write!(f, "[{} x {}", a.len(), a.element_type_name())?;
                let head: Vec<String> = match a {
                    Array::String(v) => v.iter().take(4).map(|s| format!("{s:?}")).collect(),
                    Array::F32(v) => v.iter().take(4).map(|x| x.to_string()).collect(),
                    Array::F64(v) => v.iter().take(4).map(|x| x.to_string()).collect(),
                    Array::Bool(v) => v.iter().take(4).map(|x| x.to_string()).collect(),
                    Array::Array(_) => Vec::new(),
                    other => other
                        .to_i64s()
                        .unwrap_or_default()
                        .iter()
                        .take(4)
                        .map(|x| x.to_string())
                        .collect(),
                };
                if !head.is_empty() {
                    write!(f, ": {}", head.join(", "))?;
                    if a.len() > head.len() {
                        write!(f, ", ...")?;
                    }
                }
                write!(f, "]")
            }
        }
    }
}

fn write_short_string(f: &mut std::fmt::Formatter<'_>, s: &str) -> std::fmt::Result {
    const MAX: usize = 60;
    if s.chars().count() <= MAX {
        write!(f, "{s:?}")
    } else {
        let head: String = s.chars().take(MAX).collect();
        write!(f, "{head:?}... ({} bytes)", s.len())
    }
}

/// A tensor info as the file states it, before its type and extent are checked (gguf.rs does
/// that, because it knows the block formats).
#[derive(Clone, Debug)]
pub(crate) struct RawTensorInfo {
    pub name: String,
    /// ne[]: innermost (contiguous) dimension first.
    pub dims: Vec<u64>,
    pub ggml_type: u32,
    /// Relative to the start of the data section.
    pub offset: u64,
}

/// Everything before the tensor data.
#[derive(Debug)]
pub(crate) struct Header {
    pub version: u32,
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<RawTensorInfo>,
    /// End of the tensor infos: the data section starts at the next multiple of the alignment.
    pub infos_end: usize,
}

/// Parses the header of a GGUF file held in `bytes`. `path` names the file in errors.
pub(crate) fn parse_header(bytes: &[u8], path: &Path) -> Result<Header> {
    let mut r = Reader { bytes, pos: 0, path };
    let magic = r.take(4, "the magic number")?;
    if magic != MAGIC {
        return Err(r.error(format!(
            "not a GGUF file: starts with {magic:02x?}, expected \"GGUF\" ({MAGIC:02x?})"
        )));
    }
    let version = r.u32("the version")?;
    if version != 2 && version != 3 {
        let hint = if matches!(version.swap_bytes(), 2 | 3) {
            " (a big-endian file, which shaderlm does not read)"
        } else {
            ""
        };
        return Err(r.error(format!(
            "GGUF version {version}{hint} is not supported: only versions 2 and 3 are"
        )));
    }
    // Smallest tensor info: empty name (8) + n_dims (4) + type (4) + offset (8).
    let tensor_count = r.count("tensor count", 24)?;
    // Smallest key/value: empty key (8) + value type (4) + a one-byte value.
    let kv_count = r.count("metadata key/value count", 13)?;

    let mut metadata: Vec<(String, Value)> = Vec::with_capacity(kv_count);
    for i in 0..kv_count {
        let key = r.string(&format!("metadata key {i}"))?;
        if metadata.iter().any(|(k, _)| *k == key) {
            return Err(r.error(format!("metadata key {key:?} appears twice")));
        }
        let value_type = r.u32(&format!("the value type of {key:?}"))?;
        let value = r.value(value_type, &key, 0)?;
        metadata.push((key, value));
    }

    let mut tensors: Vec<RawTensorInfo> = Vec::with_capacity(tensor_count);
    for i in 0..tensor_count {
        let name = r.string(&format!("the name of tensor {i}"))?;
        let n_dims = r.u32(&format!("n_dims of tensor {name:?}"))?;
        if n_dims > MAX_DIMS {
            return Err(r.error(format!(
                "tensor {name:?} has {n_dims} dimensions; GGUF allows at most {MAX_DIMS}"
            )));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims {
            dims.push(r.u64(&format!("dimension {d} of tensor {name:?}"))?);
        }
        let ggml_type = r.u32(&format!("the type of tensor {name:?}"))?;
        let offset = r.u64(&format!("the data offset of tensor {name:?}"))?;
        tensors.push(RawTensorInfo { name, dims, ggml_type, offset });
    }
    Ok(Header { version, metadata, tensors, infos_end: r.pos })
}

/// A cursor over the file's bytes whose every read is bounds-checked.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn error(&self, message: String) -> Error {
        Error::format(self.path, message)
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.error(format!(
                "truncated: {what} at byte {} needs {n} bytes but the file ends {} bytes later",
                self.pos,
                self.remaining()
            )));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A u64 count of things that each take at least `min_bytes` bytes, checked to fit in what
    /// is left of the file before anyone allocates for it.
    fn count(&mut self, what: &str, min_bytes: usize) -> Result<usize> {
        let at = self.pos;
        let n = self.u64(what)?;
        let fits = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_mul(min_bytes))
            .is_some_and(|need| need <= self.remaining());
        if !fits {
            return Err(self.error(format!(
                "{what} {n} at byte {at} cannot fit: each takes at least {min_bytes} bytes and \
                 only {} bytes remain",
                self.remaining()
            )));
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.count(&format!("the length of {what}"), 1)?;
        let at = self.pos;
        let raw = self.take(len, what)?;
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(self.error(format!(
                "{what} at byte {at} is not UTF-8 (invalid byte at offset {} of {len})",
                e.valid_up_to()
            ))),
        }
    }

    /// One value of GGUF type `value_type` (the key names it in errors).
    fn value(&mut self, value_type: u32, key: &str, depth: usize) -> Result<Value> {
        let what = format!("the value of {key:?}");
        Ok(match value_type {
            0 => Value::U8(u8::from_le_bytes(self.array(&what)?)),
            1 => Value::I8(i8::from_le_bytes(self.array(&what)?)),
            2 => Value::U16(u16::from_le_bytes(self.array(&what)?)),
            3 => Value::I16(i16::from_le_bytes(self.array(&what)?)),
            4 => Value::U32(u32::from_le_bytes(self.array(&what)?)),
            5 => Value::I32(i32::from_le_bytes(self.array(&what)?)),
            6 => Value::F32(f32::from_le_bytes(self.array(&what)?)),
            7 => Value::Bool(self.bool(&what)?),
            8 => Value::String(self.string(&what)?),
            9 => Value::Array(self.array_value(key, depth)?),
            10 => Value::U64(u64::from_le_bytes(self.array(&what)?)),
            11 => Value::I64(i64::from_le_bytes(self.array(&what)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(&what)?)),
            other => {
                return Err(self.error(format!(
                    "metadata {key:?} has unknown value type {other} at byte {} (known: 0..=12)",
                    self.pos - 4
                )))
            }
        })
    }

    fn bool(&mut self, what: &str) -> Result<bool> {
        let at = self.pos;
        match self.take(1, what)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(self.error(format!("{what} at byte {at} is a bool stored as {b}, not 0 or 1"))),
        }
    }

    fn array_value(&mut self, key: &str, depth: usize) -> Result<Array> {
        if depth >= MAX_ARRAY_DEPTH {
            return Err(self.error(format!(
                "metadata {key:?} nests arrays deeper than {MAX_ARRAY_DEPTH}"
            )));
        }
        let element_type = self.u32(&format!("the element type of array {key:?}"))?;
        // Bytes each element takes at least: a string its u64 length, an array its type and count.
        let min_bytes = match element_type {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            8 => 8,
            9 => 12,
            10..=12 => 8,
            other => {
                return Err(self.error(format!(
                    "array {key:?} has unknown element type {other} at byte {} (known: 0..=12)",
                    self.pos - 4
                )))
            }
        };
        let n = self.count(&format!("the length of array {key:?}"), min_bytes)?;
        let what = format!("an element of array {key:?}");
        // Fixed-size elements: one bounds check for the whole run, then decode.
        macro_rules! fixed {
            ($variant:ident, $t:ty) => {{
                const SIZE: usize = std::mem::size_of::<$t>();
                let raw = self.take(n * SIZE, &what)?;
                Array::$variant(
                    raw.chunks_exact(SIZE)
                        .map(|c| {
                            let mut le = [0u8; SIZE];
                            le.copy_from_slice(c);
                            <$t>::from_le_bytes(le)
                        })
                        .collect(),
                )
            }};
        }
        Ok(match element_type {
            0 => fixed!(U8, u8),
            1 => fixed!(I8, i8),
            2 => fixed!(U16, u16),
            3 => fixed!(I16, i16),
            4 => fixed!(U32, u32),
            5 => fixed!(I32, i32),
            6 => fixed!(F32, f32),
            10 => fixed!(U64, u64),
            11 => fixed!(I64, i64),
            12 => fixed!(F64, f64),
            7 => Array::Bool((0..n).map(|_| self.bool(&what)).collect::<Result<_>>()?),
            8 => Array::String((0..n).map(|_| self.string(&what)).collect::<Result<_>>()?),
            _ => {
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    let inner = self.array_value(key, depth + 1)?;
                    items.push(inner);
                }
                Array::Array(items)
            }
        })
    }
}
