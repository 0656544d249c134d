//! Element types as they are stored in GPU buffers: their geometry and their CPU pack/unpack.
//!
//! WGSL storage has no 8- or 16-bit types without extensions, so everything is addressed as
//! 32-bit words: F16 packs two halves per u32 (element `i` is half `i % 2` of word `i / 2`, read
//! with `unpack2x16float`), which works on every adapter whether or not it has shader-f16.
//! `bytes_for` is the one place that turns an element count into a byte size.
//!
//! # Packed (quantized) formats
//!
//! A packed tensor `[N, K]` is cut into groups of `g` consecutive elements along K (`K % g == 0`
//! is required), each with an f16 scale (and for Q4 an f16 minimum):
//!
//! | dtype    | g   | element value          | q                 | bytes per element |
//! |----------|-----|------------------------|-------------------|-------------------|
//! | `Q8`     | 32  | `q * scale`            | int8, -128..=127  | 1 + 2/32          |
//! | `Q4`     | 32  | `q * scale + min`      | 4 bits, 0..=15    | 0.5 + 4/32        |
//! | `Q4G128` | 128 | `q * scale + min`      | 4 bits, 0..=15    | 0.5 + 4/128       |
//!
//! Layout in the buffer (flat element index `e = n * K + k`, flat group index `e / g`): first
//! the quants of every row, then, from the next multiple of 256 bytes, the scales of every row:
//!
//! ```text
//! quants  Q8: byte e (two's complement), i.e. word e/4, bits 8*(e%4) ..
//!         Q4: nibble e, i.e. word e/8, bits 4*(e%8) ..
//!         A row holds K or K/2 bytes, a multiple of 16: every row starts on a vec4<u32>.
//! scales  Q8: the f16 scale of group j is half j%2 of word j/2 (an f16 array [N, K/32]).
//!         Q4: word j holds group j's scale (low half) and min (high half).
//! ```
//!
//! Quants and scales sit in separate arrays so that a matvec thread streams 16-byte quant
//! words and neighbouring threads read neighbouring scales (both coalesced). The scales start on
//! a 256-byte boundary (the largest storage-binding alignment a device may ask) so a kernel can
//! bind the two arrays as two ranges of one buffer. A row view ([`crate::Tensor::rows`]) is two
//! ranges, its quants and its scales; the size of a whole tensor depends only on its element count.
//!
//! # Quantizing (round to nearest)
//!
//! Bit-for-bit the same on the CPU (here) and the GPU (shaders/quantize_*.wgsl), because every
//! step is exact or a single correctly-rounded f32 add/sub/mul (Vulkan guarantees those), and f16
//! conversions are done with integer arithmetic on both sides:
//! - Q8: `scale = f16_nearest(amax * INV_127)`, `q = round(x / scale)` clamped to ±127.
//! - Q4: `min = f16_down(group min)`, `scale = f16_up((max - min) * INV_15)`,
//!   `q = round((x - min) / scale)` clamped to 0..=15. Rounding min down and scale up makes
//!   `[min, min + 15 * scale]` cover the group, so every element is within scale / 2.
//! - `round` is to the nearest integer of the exact quotient, ties away from zero. It is found
//!   without a division: it is the number of midpoints `(j + 1/2) * scale`, j = 0, 1, ..., that
//!   do not exceed `|a|`, and every midpoint is an exact f32 (a 9-bit integer times an f16).
//! - Values are clamped to the f16 range (±65504) before their scale is taken; inputs are
//!   assumed finite. f32 subnormal inputs may be flushed to zero on a GPU (Vulkan allows it).

use std::fmt;

use half::f16;

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// IEEE half, two per 32-bit word.
    F16,
    /// 32-bit unsigned integer (token ids, positions, indices).
    U32,
    /// int8 with an f16 scale per group of 32 along the last axis (see the module docs).
    Q8,
    /// 4-bit with an f16 scale and f16 min per group of 32 along the last axis.
    Q4,
    /// 4-bit with an f16 scale and f16 min per group of 128 along the last axis.
    Q4G128,
}

/// Byte alignment of the scales array inside a packed tensor.
pub const SCALES_ALIGN: u64 = 256;

/// `1 / 127` and `1 / 15` as the f32 both quantizers multiply by (bits, so that no compiler's
/// constant folding can differ).
const INV_127: u32 = 0x3C01_0204;
const INV_15: u32 = 0x3D88_8889;
/// Largest finite f16.
const F16_MAX: f32 = 65504.0;

impl DType {
    /// Bytes a tensor of `numel` elements occupies, rounded up to whole 32-bit words. For packed
    /// dtypes: the quants, padding to [`SCALES_ALIGN`], and the scales.
    pub fn bytes_for(self, numel: usize) -> u64 {
        let n = numel as u64;
        match self {
            DType::F32 | DType::U32 => 4 * n,
            DType::F16 => 4 * n.div_ceil(2),
            DType::Q8 | DType::Q4 | DType::Q4G128 => {
                self.scales_offset(numel) + self.scale_bytes(numel).next_multiple_of(4)
            }
        }
    }

    /// Bytes per element as a float, for bandwidth arithmetic (scales included).
    pub fn bytes_per_element(self) -> f64 {
        match self {
            DType::F32 | DType::U32 => 4.0,
            DType::F16 => 2.0,
            DType::Q8 => 1.0 + 2.0 / 32.0,
            DType::Q4 => 0.5 + 4.0 / 32.0,
            DType::Q4G128 => 0.5 + 4.0 / 128.0,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16)
    }

    /// True for the quantized formats (quants + scales).
    pub fn is_packed(self) -> bool {
        self.group().is_some()
    }

    /// Elements per scale group along the last axis, for packed dtypes.
    pub fn group(self) -> Option<usize> {
        match self {
            DType::Q8 | DType::Q4 => Some(32),
            DType::Q4G128 => Some(128),
            DType::F32 | DType::F16 | DType::U32 => None,
        }
    }

    /// The Q4 dtype with `group` elements per group (32 or 128).
    pub fn q4(group: usize) -> Option<DType> {
        match group {
            32 => Some(DType::Q4),
            128 => Some(DType::Q4G128),
            _ => None,
        }
    }

    /// Bytes of the quants of `numel` elements (packed dtypes; 0 otherwise).
    pub fn quant_bytes(self, numel: usize) -> u64 {
        match self {
            DType::Q8 => numel as u64,
            DType::Q4 | DType::Q4G128 => (numel as u64).div_ceil(2),
            _ => 0,
        }
    }

    /// Bytes of the scales (and mins) of `numel` elements, without padding (packed dtypes; 0
    /// otherwise). Q8 holds 2 per group, Q4 4 (scale and min).
    pub fn scale_bytes(self, numel: usize) -> u64 {
        match (self, self.group()) {
            (DType::Q8, Some(g)) => 2 * (numel as u64).div_ceil(g as u64),
            (_, Some(g)) => 4 * (numel as u64).div_ceil(g as u64),
            _ => 0,
        }
    }

    /// Byte offset of the scales array in a whole packed tensor of `numel` elements.
    pub fn scales_offset(self, numel: usize) -> u64 {
        self.quant_bytes(numel).next_multiple_of(SCALES_ALIGN)
    }

    /// Checks that `shape` can hold this dtype: for packed dtypes, the last axis must be a whole
    /// number of groups.
    pub fn check_shape(self, op: &'static str, shape: &[usize]) -> Result<()> {
        if let Some(g) = self.group() {
            let k = shape.last().copied().unwrap_or(1);
            if !k.is_multiple_of(g) {
                let what = format!("last axis of a {self} tensor {shape:?} (a multiple of the group)");
                return Err(Error::shape(op, what, format!("a multiple of {g}"), k));
            }
        }
        Ok(())
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::U32 => "u32",
            DType::Q8 => "q8",
            DType::Q4 => "q4",
            DType::Q4G128 => "q4g128",
        })
    }
}

/// Packs f32 values into F16 storage words (round to nearest even).
pub fn pack_f16(values: &[f32]) -> Vec<u32> {
    values
        .chunks(2)
        .map(|pair| {
            let lo = half::f16::from_f32(pair[0]).to_bits() as u32;
            let hi = pair.get(1).map_or(0, |&v| half::f16::from_f32(v).to_bits() as u32);
            lo | (hi << 16)
        })
        .collect()
}

/// Unpacks `numel` halves from F16 storage words.
pub fn unpack_f16(words: &[u32], numel: usize) -> Vec<f32> {
    (0..numel)
        .map(|i| half::f16::from_bits((words[i / 2] >> (16 * (i % 2))) as u16).to_f32())
        .collect()
}

// ---- packing already-quantized values -------------------------------------------------------

/// Checks `len == n * k`, `k % group == 0`, and returns the group count.
fn check_geometry(op: &'static str, dtype: DType, len: usize, n: usize, k: usize) -> Result<usize> {
    dtype.check_shape(op, &[n, k])?;
    let numel = n.checked_mul(k).ok_or_else(|| Error::shape(op, "n * k", "< usize::MAX", (n, k)))?;
    if len != numel {
        return Err(Error::shape(op, format!("element count of [{n}, {k}]"), numel, len));
    }
    Ok(numel / dtype.group().unwrap_or(1))
}

fn check_len(op: &'static str, what: &str, want: usize, got: usize) -> Result<()> {
    if want != got {
        return Err(Error::shape(op, what, want, got));
    }
    Ok(())
}

/// Packs int8 quants (one per element, row-major `[n, k]`) and one f16 scale per group of 32
/// into Q8 storage words, exactly (GGUF Q8_0 blocks repack this way: `x = d * q`).
pub fn pack_q8_from_blocks(qs: &[i8], scales: &[f16], n: usize, k: usize) -> Result<Vec<u32>> {
    const OP: &str = "pack_q8_from_blocks";
    let groups = check_geometry(OP, DType::Q8, qs.len(), n, k)?;
    check_len(OP, "scale count (one per group of 32)", groups, scales.len())?;
    let mut words = vec![0u32; (DType::Q8.bytes_for(qs.len()) / 4) as usize];
    for (w, quad) in words.iter_mut().zip(qs.chunks(4)) {
        *w = quad.iter().enumerate().map(|(i, &q)| (q as u8 as u32) << (8 * i)).fold(0, |a, b| a | b);
    }
    let base = (DType::Q8.scales_offset(qs.len()) / 4) as usize;
    for (j, s) in scales.iter().enumerate() {
        words[base + j / 2] |= (s.to_bits() as u32) << (16 * (j % 2));
    }
    Ok(words)
}

/// Packs 4-bit quants (one per element, values 0..=15, row-major `[n, k]`) with one f16 scale
/// and one f16 min per group (32 or 128) into Q4 / Q4G128 storage words, exactly: the element is
/// `q * scale + min`. GGUF Q4_1 (`d * q + m`) repacks as scale `d`, min `m`; Q4_0
/// (`d * (q - 8)`) as scale `d`, min `-8 d` (exact in f16 unless it overflows).
pub fn pack_q4_from_blocks(
    qs: &[u8],
    scales: &[f16],
    mins: &[f16],
    n: usize,
    k: usize,
    group: usize,
) -> Result<Vec<u32>> {
    const OP: &str = "pack_q4_from_blocks";
    let dtype = q4_dtype(OP, group)?;
    let groups = check_geometry(OP, dtype, qs.len(), n, k)?;
    check_len(OP, "scale count (one per group)", groups, scales.len())?;
    check_len(OP, "min count (one per group)", groups, mins.len())?;
    if let Some(&q) = qs.iter().find(|&&q| q > 15) {
        return Err(Error::shape(OP, "4-bit quant", "0..=15", q));
    }
    let mut words = vec![0u32; (dtype.bytes_for(qs.len()) / 4) as usize];
    for (w, oct) in words.iter_mut().zip(qs.chunks(8)) {
        *w = oct.iter().enumerate().map(|(i, &q)| (q as u32) << (4 * i)).fold(0, |a, b| a | b);
    }
    let base = (dtype.scales_offset(qs.len()) / 4) as usize;
    for (j, (s, m)) in scales.iter().zip(mins).enumerate() {
        words[base + j] = s.to_bits() as u32 | (m.to_bits() as u32) << 16;
    }
    Ok(words)
}

fn q4_dtype(op: &'static str, group: usize) -> Result<DType> {
    DType::q4(group).ok_or_else(|| Error::shape(op, "Q4 group size", "32 or 128", group))
}

fn check_words(op: &'static str, dtype: DType, words: &[u32], numel: usize) -> Result<()> {
    let want = (dtype.bytes_for(numel) / 4) as usize;
    if words.len() < want {
        return Err(Error::shape(op, format!("{dtype} storage words for {numel} elements"), want, words.len()));
    }
    Ok(())
}

/// The int8 quants and f16 scales of Q8 storage words (the inverse of `pack_q8_from_blocks`).
pub fn unpack_q8(words: &[u32], n: usize, k: usize) -> Result<(Vec<i8>, Vec<f16>)> {
    const OP: &str = "unpack_q8";
    let numel = n * k;
    let groups = check_geometry(OP, DType::Q8, numel, n, k)?;
    check_words(OP, DType::Q8, words, numel)?;
    let qs = (0..numel).map(|e| (words[e / 4] >> (8 * (e % 4))) as u8 as i8).collect();
    let base = (DType::Q8.scales_offset(numel) / 4) as usize;
    let scales = (0..groups).map(|j| f16::from_bits((words[base + j / 2] >> (16 * (j % 2))) as u16)).collect();
    Ok((qs, scales))
}

/// The 4-bit quants, f16 scales and f16 mins of Q4 / Q4G128 storage words (the inverse of
/// `pack_q4_from_blocks`).
pub fn unpack_q4(words: &[u32], n: usize, k: usize, group: usize) -> Result<(Vec<u8>, Vec<f16>, Vec<f16>)> {
    const OP: &str = "unpack_q4";
    let dtype = q4_dtype(OP, group)?;
    let numel = n * k;
    let groups = check_geometry(OP, dtype, numel, n, k)?;
    check_words(OP, dtype, words, numel)?;
    let qs = (0..numel).map(|e| ((words[e / 8] >> (4 * (e % 8))) & 15) as u8).collect();
    let base = (dtype.scales_offset(numel) / 4) as usize;
    let scales = (0..groups).map(|j| f16::from_bits(words[base + j] as u16)).collect();
    let mins = (0..groups).map(|j| f16::from_bits((words[base + j] >> 16) as u16)).collect();
    Ok((qs, scales, mins))
}

/// The f32 values of packed storage words `[n, k]`: `q * scale` (Q8) or `q * scale + min` (Q4),
/// each a product (exact) and at most one f32 add. The reference for every packed kernel.
pub fn dequantize(dtype: DType, words: &[u32], n: usize, k: usize) -> Result<Vec<f32>> {
    match dtype {
        DType::Q8 => {
            let (qs, scales) = unpack_q8(words, n, k)?;
            Ok(qs.iter().enumerate().map(|(e, &q)| q as f32 * scales[e / 32].to_f32()).collect())
        }
        DType::Q4 | DType::Q4G128 => {
            let g = dtype.group().unwrap_or(32);
            let (qs, scales, mins) = unpack_q4(words, n, k, g)?;
            let value = |(e, &q): (usize, &u8)| q as f32 * scales[e / g].to_f32() + mins[e / g].to_f32();
            Ok(qs.iter().enumerate().map(value).collect())
        }
        other => Err(Error::dtype("dequantize", "words", &[DType::Q8, DType::Q4, DType::Q4G128], other)),
    }
}

// ---- round-to-nearest quantizers (the GPU quantize kernels match these bit for bit) ---------

/// Quantizes row-major `[n, k]` values to Q8 storage words (see the module docs for the rule).
pub fn quantize_q8(values: &[f32], n: usize, k: usize) -> Result<Vec<u32>> {
    check_geometry("quantize_q8", DType::Q8, values.len(), n, k)?;
    let mut qs = Vec::with_capacity(values.len());
    let mut scales = Vec::with_capacity(values.len() / 32);
    for group in values.chunks(32) {
        let amax = group.iter().fold(0f32, |m, &v| m.max(v.abs())).min(F16_MAX);
        let scale = f16::from_f32(amax * f32::from_bits(INV_127));
        let s = scale.to_f32();
        qs.extend(group.iter().map(|&v| {
            let q = steps_to_nearest(v.abs(), s, 127) as i8;
            if v < 0.0 { -q } else { q }
        }));
        scales.push(scale);
    }
    pack_q8_from_blocks(&qs, &scales, n, k)
}

/// Quantizes row-major `[n, k]` values to Q4 (group 32) or Q4G128 (group 128) storage words
/// (see the module docs for the rule).
pub fn quantize_q4(values: &[f32], n: usize, k: usize, group: usize) -> Result<Vec<u32>> {
    const OP: &str = "quantize_q4";
    check_geometry(OP, q4_dtype(OP, group)?, values.len(), n, k)?;
    let mut qs = Vec::with_capacity(values.len());
    let (mut scales, mut mins) = (Vec::new(), Vec::new());
    for g in values.chunks(group) {
        let lo = g.iter().fold(f32::MAX, |m, &v| m.min(v)).clamp(-F16_MAX, F16_MAX);
        // -0 and +0 compare equal, and which one min() returns is unspecified: store +0.
        let lo = if lo == 0.0 { 0.0 } else { lo };
        let hi = g.iter().fold(f32::MIN, |m, &v| m.max(v)).clamp(-F16_MAX, F16_MAX);
        let min = f16_down(lo);
        let m = min.to_f32();
        let scale = f16_up(((hi - m) * f32::from_bits(INV_15)).min(F16_MAX));
        let s = scale.to_f32();
        qs.extend(g.iter().map(|&v| steps_to_nearest((v - m).max(0.0), s, 15) as u8));
        scales.push(scale);
        mins.push(min);
    }
    pack_q4_from_blocks(&qs, &scales, &mins, n, k, group)
}

/// `round(a / step)` for `a >= 0`, ties away from zero, clamped to `qmax`, computed exactly:
/// the number of midpoints `(j + 1/2) * step` (j < qmax) that are `<= a`. Each midpoint,
/// `(2j + 1) * step / 2`, is an exact f32 when `step` is an f16 and `2j + 1 < 2^13`. A first guess
/// from a float division is corrected by exact comparisons, so the answer does not depend on
/// the division's rounding (shaders/common.wgsl `steps_to_nearest` does the same on the GPU).
pub fn steps_to_nearest(a: f32, step: f32, qmax: u32) -> u32 {
    if step <= 0.0 {
        return 0;
    }
    let midpoint = |j: u32| (2 * j + 1) as f32 * step * 0.5;
    let mut q = (a / step + 0.5).clamp(0.0, qmax as f32) as u32;
    while q > 0 && a < midpoint(q - 1) {
        q -= 1;
    }
    while q < qmax && a >= midpoint(q) {
        q += 1;
    }
    q
}

/// The largest f16 not above `v` (for a finite `v` within the f16 range).
pub fn f16_down(v: f32) -> f16 {
    let h = f16::from_f32(v);
    if h.to_f32() <= v {
        return h;
    }
    let b = h.to_bits();
    f16::from_bits(match b {
        0x0000 | 0x8000 => 0x8001,
        _ if b & 0x8000 != 0 => b + 1,
        _ => b - 1,
    })
}

/// The smallest f16 not below `v` (for a finite `v` within the f16 range).
pub fn f16_up(v: f32) -> f16 {
    let h = f16::from_f32(v);
    if h.to_f32() >= v {
        return h;
    }
    let b = h.to_bits();
    f16::from_bits(match b {
        0x0000 | 0x8000 => 0x0001,
        _ if b & 0x8000 != 0 => b - 1,
        _ => b + 1,
    })
}
