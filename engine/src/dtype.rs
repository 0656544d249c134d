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
//! # 2:4 sparse formats
//!
//! In every group of four consecutive elements along K at most two are non-zero; only those two
//! kept values (a zero fills a group with fewer) and their positions 0..=3 in the group are
//! stored. Kept values are numbered in element order: flat group `j = e / 4` owns kept slots
//! `2j` (the lower position) and `2j + 1` (the higher; packing checks the order, which the
//! matvec kernels rely on). A block (the dtype's `group()`; `K % block == 0` is
//! required) is what fills one meta word with positions (S24F16) or shares a scale (S24Q4), so
//! every row is whole 16-byte value words and whole meta words.
//!
//! | dtype    | block | kept value                                      | bytes per element          |
//! |----------|-------|-------------------------------------------------|----------------------------|
//! | `S24F16` | 32    | f16                                             | (4 + 1/2) / 4 = 1.125      |
//! | `S24Q4`  | 64    | `q * scale + min`, q 4 bits; f16 scale and min per block (32 kept) | (16 + 8 + 4) / 64 = 0.4375 |
//!
//! (Per four elements S24F16 stores two f16 and four position bits; S24Q4 per 64 elements 32
//! nibbles, 64 position bits and one scale/min word. Q4 for comparison: 0.625.)
//!
//! Pruned elements are exactly zero (for `S24Q4` the min is not added to them). The two regions
//! sit like a Q4 tensor's quants and scales ([`crate::Tensor`] binds them as two ranges):
//!
//! ```text
//! values  S24F16: word j holds group j's kept values: slot 2j in the low half, 2j + 1 high.
//!                 A block is two vec4<u32> words.
//!         S24Q4:  nibble i (word i/8, bits 4*(i%8)) holds kept slot i's 4-bit q.
//!                 A block is one vec4<u32> word.
//! meta    (from the next multiple of 256 bytes)
//!         S24F16: the positions: slot i's 2 bits at bits 2*(i%16) of word i/16, so word b holds
//!                 the 16 positions of block b.
//!         S24Q4:  three words per block b: words 3b and 3b + 1 hold its 32 positions as S24F16
//!                 does (local slot l at bits 2*(l%16) of word 3b + l/16), word 3b + 2 its f16
//!                 scale (low half) and min (high half).
//! ```
//!
//! A matvec thread streams 16-byte value words (S24F16: 16 elements, whose positions are half
//! a meta word; S24Q4: a block) and their meta words, which neighbouring threads read side by
//! side (coalesced). `S24Q4` keeps the positions and scales of a block together so that a row
//! view is still two ranges.
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
    /// 2:4 sparse, kept values f16 with 2-bit positions (see the module docs).
    S24F16,
    /// 2:4 sparse, kept values 4-bit with an f16 scale and min per 32 kept (64 elements).
    S24Q4,
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
            DType::Q8 | DType::Q4 | DType::Q4G128 | DType::S24F16 | DType::S24Q4 => {
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
            DType::S24F16 => 1.0 + 0.5 / 4.0,
            DType::S24Q4 => (16.0 + 8.0 + 4.0) / 64.0,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16)
    }

    /// True for the quantized and sparse formats (quants + scales, or values + meta).
    pub fn is_packed(self) -> bool {
        self.group().is_some()
    }

    /// True for the 2:4 sparse formats.
    pub fn is_sparse(self) -> bool {
        matches!(self, DType::S24F16 | DType::S24Q4)
    }

    /// Elements per scale group (sparse: per block) along the last axis, for packed dtypes.
    pub fn group(self) -> Option<usize> {
        match self {
            DType::Q8 | DType::Q4 | DType::S24F16 => Some(32),
            DType::S24Q4 => Some(64),
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

    /// Bytes of the quants (sparse: the kept values) of `numel` elements (packed dtypes; 0
    /// otherwise).
    pub fn quant_bytes(self, numel: usize) -> u64 {
        match self {
            DType::Q8 | DType::S24F16 => numel as u64,
            DType::Q4 | DType::Q4G128 => (numel as u64).div_ceil(2),
            DType::S24Q4 => (numel as u64).div_ceil(4),
            _ => 0,
        }
    }

    /// Bytes of the scales (and mins; sparse: the meta) of `numel` elements, without padding
    /// (packed dtypes; 0 otherwise). Q8 holds 2 per group, Q4 4 (scale and min), S24F16 4 bits
    /// per four elements, S24Q4 12 per block.
    pub fn scale_bytes(self, numel: usize) -> u64 {
        match (self, self.group()) {
            (DType::Q8, Some(g)) => 2 * (numel as u64).div_ceil(g as u64),
            (DType::S24F16, _) => (numel as u64).div_ceil(8),
            (DType::S24Q4, Some(g)) => 12 * (numel as u64).div_ceil(g as u64),
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
            DType::S24F16 => "s24f16",
            DType::S24Q4 => "s24q4",
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
        DType::S24F16 => {
            let (values, positions) = unpack_s24_f16(words, n, k)?;
            Ok(scatter_kept(n * k, &positions, |i| values[i].to_f32()))
        }
        DType::S24Q4 => {
            let (qs, positions, scales, mins) = unpack_s24_q4(words, n, k)?;
            let value = |i: usize| qs[i] as f32 * scales[i / 32].to_f32() + mins[i / 32].to_f32();
            Ok(scatter_kept(n * k, &positions, value))
        }
        other => {
            let packed = [DType::Q8, DType::Q4, DType::Q4G128, DType::S24F16, DType::S24Q4];
            Err(Error::dtype("dequantize", "words", &packed, other))
        }
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
        let (scale, min) = quantize_q4_group(g, &mut qs);
        scales.push(scale);
        mins.push(min);
    }
    pack_q4_from_blocks(&qs, &scales, &mins, n, k, group)
}

/// One Q4 group: its scale and min (returned) and its quants (appended to `qs`).
fn quantize_q4_group(g: &[f32], qs: &mut Vec<u8>) -> (f16, f16) {
    let lo = g.iter().fold(f32::MAX, |m, &v| m.min(v)).clamp(-F16_MAX, F16_MAX);
    // -0 and +0 compare equal, and which one min() returns is unspecified: store +0.
    let lo = if lo == 0.0 { 0.0 } else { lo };
    let hi = g.iter().fold(f32::MIN, |m, &v| m.max(v)).clamp(-F16_MAX, F16_MAX);
    let min = f16_down(lo);
    let m = min.to_f32();
    let scale = f16_up(((hi - m) * f32::from_bits(INV_15)).min(F16_MAX));
    let s = scale.to_f32();
    qs.extend(g.iter().map(|&v| steps_to_nearest((v - m).max(0.0), s, 15) as u8));
    (scale, min)
}

// ---- 2:4 sparse: packing and unpacking (the layouts are in the module docs) -----------------

/// The kept positions of each group of four of row-major `[n, k]` values: two per group,
/// ascending, the non-zeros first chosen and the lowest free positions filling a group with
/// fewer. Errors if a group holds more than two non-zeros.
fn kept_positions(op: &'static str, dense: &[f32]) -> Result<Vec<u8>> {
    let mut positions = Vec::with_capacity(dense.len() / 2);
    for (j, group) in dense.chunks(4).enumerate() {
        let nonzero = (0..4u8).filter(|&p| group[p as usize] != 0.0).count();
        if nonzero > 2 {
            return Err(Error::shape(op, format!("non-zeros in group {j} of four (2:4 sparsity)"), "at most 2", nonzero));
        }
        // Every non-zero, then zeros from the lowest position up, until two are kept.
        let (mut kept, mut count) = ([0u8; 2], 0);
        for p in (0..4u8).filter(|&p| group[p as usize] != 0.0) {
            kept[count] = p;
            count += 1;
        }
        for p in (0..4u8).filter(|&p| group[p as usize] == 0.0) {
            if count < 2 {
                kept[count] = p;
                count += 1;
            }
        }
        positions.extend([kept[0].min(kept[1]), kept[0].max(kept[1])]);
    }
    Ok(positions)
}

/// Checks kept-slot positions: each below 4, the lower one first (the matvec kernels pick the
/// lower slot's x among positions 0..=2 and the upper one's among 1..=3).
fn check_positions(op: &'static str, positions: &[u8]) -> Result<()> {
    for (j, pair) in positions.chunks(2).enumerate() {
        if pair[0] >= pair[1] || pair[1] > 3 {
            return Err(Error::shape(op, format!("kept positions of group {j}"), "ascending, of 0..=3", pair));
        }
    }
    Ok(())
}

/// Slot `i`'s 2-bit position into meta word `base + (i % per) / 16`, where `per` is the slots
/// per block and `stride` the meta words per block (S24F16: 16 and 1; S24Q4: 32 and 3).
fn put_positions(words: &mut [u32], base: usize, positions: &[u8], per: usize, stride: usize) {
    for (i, &p) in positions.iter().enumerate() {
        let word = base + (i / per) * stride + (i % per) / 16;
        words[word] |= (p as u32) << (2 * (i % 16));
    }
}

fn get_positions(words: &[u32], base: usize, slots: usize, per: usize, stride: usize) -> Vec<u8> {
    (0..slots)
        .map(|i| ((words[base + (i / per) * stride + (i % per) / 16] >> (2 * (i % 16))) & 3) as u8)
        .collect()
}

/// A dense `[numel]` vector of zeros with kept slot `i` at its position holding `value(i)`.
fn scatter_kept(numel: usize, positions: &[u8], value: impl Fn(usize) -> f32) -> Vec<f32> {
    let mut dense = vec![0.0; numel];
    for (i, &p) in positions.iter().enumerate() {
        dense[(i / 2) * 4 + p as usize] = value(i);
    }
    dense
}

/// Packs kept values (two per group of four, f16, slot order) and their positions (0..=3, the
/// two of a group ascending) into S24F16 storage words, exactly.
pub fn pack_s24_f16_from_parts(values: &[f16], positions: &[u8], n: usize, k: usize) -> Result<Vec<u32>> {
    const OP: &str = "pack_s24_f16_from_parts";
    // Two kept values per four elements.
    let numel = 2 * values.len();
    check_geometry(OP, DType::S24F16, numel, n, k)?;
    check_len(OP, "position count (two per four elements)", numel / 2, positions.len())?;
    check_positions(OP, positions)?;
    let mut words = vec![0u32; (DType::S24F16.bytes_for(numel) / 4) as usize];
    for (w, pair) in words.iter_mut().zip(values.chunks(2)) {
        *w = pair[0].to_bits() as u32 | (pair[1].to_bits() as u32) << 16;
    }
    let base = (DType::S24F16.scales_offset(numel) / 4) as usize;
    put_positions(&mut words, base, positions, 16, 1);
    Ok(words)
}

/// Packs row-major `[n, k]` values, at most two non-zeros in every group of four along k, into
/// S24F16 storage words (the kept values rounded to the nearest f16). Errors on a group with
/// more than two non-zeros.
pub fn pack_s24_f16(dense: &[f32], n: usize, k: usize) -> Result<Vec<u32>> {
    const OP: &str = "pack_s24_f16";
    check_geometry(OP, DType::S24F16, dense.len(), n, k)?;
    let positions = kept_positions(OP, dense)?;
    let values: Vec<f16> = positions.iter().enumerate().map(|(i, &p)| f16::from_f32(dense[(i / 2) * 4 + p as usize])).collect();
    pack_s24_f16_from_parts(&values, &positions, n, k)
}

/// The kept f16 values and their positions of S24F16 storage words (the inverse of
/// `pack_s24_f16_from_parts`).
pub fn unpack_s24_f16(words: &[u32], n: usize, k: usize) -> Result<(Vec<f16>, Vec<u8>)> {
    const OP: &str = "unpack_s24_f16";
    let numel = n * k;
    check_geometry(OP, DType::S24F16, numel, n, k)?;
    check_words(OP, DType::S24F16, words, numel)?;
    let values = (0..numel / 2).map(|i| f16::from_bits((words[i / 2] >> (16 * (i % 2))) as u16)).collect();
    let base = (DType::S24F16.scales_offset(numel) / 4) as usize;
    Ok((values, get_positions(words, base, numel / 2, 16, 1)))
}

/// Packs kept 4-bit quants (0..=15, slot order), their positions, and one f16 scale and min per
/// block of 64 elements (32 kept) into S24Q4 storage words, exactly: a kept value is
/// `q * scale + min`.
pub fn pack_s24_q4_from_parts(
    qs: &[u8],
    positions: &[u8],
    scales: &[f16],
    mins: &[f16],
    n: usize,
    k: usize,
) -> Result<Vec<u32>> {
    const OP: &str = "pack_s24_q4_from_parts";
    // Two kept quants per four elements.
    let numel = 2 * qs.len();
    let blocks = check_geometry(OP, DType::S24Q4, numel, n, k)?;
    check_len(OP, "position count (two per four elements)", numel / 2, positions.len())?;
    check_len(OP, "scale count (one per 64 elements)", blocks, scales.len())?;
    check_len(OP, "min count (one per 64 elements)", blocks, mins.len())?;
    if let Some(&q) = qs.iter().find(|&&q| q > 15) {
        return Err(Error::shape(OP, "4-bit quant", "0..=15", q));
    }
    check_positions(OP, positions)?;
    let mut words = vec![0u32; (DType::S24Q4.bytes_for(numel) / 4) as usize];
    for (w, oct) in words.iter_mut().zip(qs.chunks(8)) {
        *w = oct.iter().enumerate().map(|(i, &q)| (q as u32) << (4 * i)).fold(0, |a, b| a | b);
    }
    let base = (DType::S24Q4.scales_offset(numel) / 4) as usize;
    put_positions(&mut words, base, positions, 32, 3);
    for (b, (s, m)) in scales.iter().zip(mins).enumerate() {
        words[base + 3 * b + 2] = s.to_bits() as u32 | (m.to_bits() as u32) << 16;
    }
    Ok(words)
}

/// Packs row-major `[n, k]` values, at most two non-zeros in every group of four along k, into
/// S24Q4 storage words: the 32 kept values of each block of 64 are quantized as a Q4 group
/// (round to nearest, the module docs' rule). Errors on a group with more than two non-zeros.
pub fn pack_s24_q4(dense: &[f32], n: usize, k: usize) -> Result<Vec<u32>> {
    const OP: &str = "pack_s24_q4";
    check_geometry(OP, DType::S24Q4, dense.len(), n, k)?;
    let positions = kept_positions(OP, dense)?;
    let kept: Vec<f32> = positions.iter().enumerate().map(|(i, &p)| dense[(i / 2) * 4 + p as usize]).collect();
    let mut qs = Vec::with_capacity(kept.len());
    let (mut scales, mut mins) = (Vec::new(), Vec::new());
    for block in kept.chunks(32) {
        let (scale, min) = quantize_q4_group(block, &mut qs);
        scales.push(scale);
        mins.push(min);
    }
    pack_s24_q4_from_parts(&qs, &positions, &scales, &mins, n, k)
}

/// The kept quants, their positions, and the per-block scales and mins of S24Q4 storage words
/// (the inverse of `pack_s24_q4_from_parts`).
#[allow(clippy::type_complexity)]
pub fn unpack_s24_q4(words: &[u32], n: usize, k: usize) -> Result<(Vec<u8>, Vec<u8>, Vec<f16>, Vec<f16>)> {
    const OP: &str = "unpack_s24_q4";
    let numel = n * k;
    let blocks = check_geometry(OP, DType::S24Q4, numel, n, k)?;
    check_words(OP, DType::S24Q4, words, numel)?;
    let qs = (0..numel / 2).map(|i| ((words[i / 8] >> (4 * (i % 8))) & 15) as u8).collect();
    let base = (DType::S24Q4.scales_offset(numel) / 4) as usize;
    let positions = get_positions(words, base, numel / 2, 32, 3);
    let scales = (0..blocks).map(|b| f16::from_bits(words[base + 3 * b + 2] as u16)).collect();
    let mins = (0..blocks).map(|b| f16::from_bits((words[base + 3 * b + 2] >> 16) as u16)).collect();
    Ok((qs, positions, scales, mins))
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
