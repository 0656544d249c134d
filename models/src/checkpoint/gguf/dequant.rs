//! GGUF element and block formats, turned into f32.
//!
//! Every block format stores a run of consecutive elements of one row (the innermost dimension
//! is always a whole number of blocks). Block layouts, all little-endian, `f16` an IEEE half:
//!
//! ```text
//! Q8_0  32 elements, 34 bytes:  f16 d | i8 q[32]                      x[i] = d * q[i]
//! Q4_0  32 elements, 18 bytes:  f16 d | u8 qs[16]                     x[i] = d * (nibble(i) - 8)
//! Q4_1  32 elements, 20 bytes:  f16 d | f16 m | u8 qs[16]             x[i] = d * nibble(i) + m
//!       nibble(i): the low nibble of qs[i] for i < 16, the high nibble of qs[i - 16] after.
//! Q4_K 256 elements, 144 bytes: f16 d | f16 dmin | u8 scales[12] | u8 qs[128]
//!       8 sub-blocks of 32, each with a 6-bit scale sc and 6-bit min m (see `k_scale_min`);
//!       x = d * sc * q - dmin * m, q a 4-bit value. Elements 64c..64c+32 are the low nibbles
//!       of qs[32c..32c+32] (sub-block 2c), elements 64c+32..64c+64 their high nibbles (2c+1).
//! Q5_K 256 elements, 176 bytes: f16 d | f16 dmin | u8 scales[12] | u8 qh[32] | u8 qs[128]
//!       as Q4_K with a fifth bit: element 64c+l takes bit 2c of qh[l], element 64c+32+l bit
//!       2c+1 of qh[l], worth 16.
//! Q6_K 256 elements, 210 bytes: u8 ql[128] | u8 qh[64] | i8 scales[16] | f16 d
//!       16 sub-blocks of 16 with an 8-bit signed scale; x = d * scale * (q - 32), q 6 bits:
//!       the low 4 from ql, the high 2 from qh (see `q6_k`).
//! ```

use crate::checkpoint::StoredDType;
use crate::error::{Error, Result};

/// (elements per block, bytes per block) of a stored type; plain types are blocks of one.
pub fn block_layout(dtype: StoredDType) -> (usize, usize) {
    match dtype {
        StoredDType::F32 => (1, 4),
        StoredDType::F16 | StoredDType::BF16 => (1, 2),
        StoredDType::Q8_0 => (32, 34),
        StoredDType::Q4_0 => (32, 18),
        StoredDType::Q4_1 => (32, 20),
        StoredDType::Q4K => (256, 144),
        StoredDType::Q5K => (256, 176),
        StoredDType::Q6K => (256, 210),
    }
}

/// Bytes that `n` elements of `dtype` take, or None when `n` is not a whole number of blocks
/// (or the size overflows).
pub fn stored_bytes(dtype: StoredDType, n: usize) -> Option<usize> {
    let (block_elems, block_bytes) = block_layout(dtype);
    if !n.is_multiple_of(block_elems) {
        return None;
    }
    (n / block_elems).checked_mul(block_bytes)
}

/// The `n` elements stored in `bytes` as `dtype`, as f32. `bytes` must hold exactly `n`
/// elements (whole blocks).
pub fn dequantize(dtype: StoredDType, bytes: &[u8], n: usize) -> Result<Vec<f32>> {
    let need = stored_bytes(dtype, n).ok_or_else(|| {
        let (block_elems, _) = block_layout(dtype);
        Error::Input(format!(
            "dequantize {dtype:?}: {n} elements are not a whole number of {block_elems}-element blocks"
        ))
    })?;
    if bytes.len() != need {
        return Err(Error::Input(format!(
            "dequantize {dtype:?}: {n} elements take {need} bytes, got {}",
            bytes.len()
        )));
    }
    let mut out = vec![0f32; n];
    let (block_elems, block_bytes) = block_layout(dtype);
    let blocks = bytes.chunks_exact(block_bytes).zip(out.chunks_exact_mut(block_elems));
    match dtype {
        StoredDType::F32 => blocks.for_each(|(b, x)| x[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        StoredDType::F16 => blocks.for_each(|(b, x)| x[0] = f16(b, 0)),
        StoredDType::BF16 => blocks.for_each(|(b, x)| x[0] = bf16(b)),
        StoredDType::Q8_0 => blocks.for_each(|(b, x)| q8_0(b, x)),
        StoredDType::Q4_0 => blocks.for_each(|(b, x)| q4_0(b, x)),
        StoredDType::Q4_1 => blocks.for_each(|(b, x)| q4_1(b, x)),
        StoredDType::Q4K => blocks.for_each(|(b, x)| q4_k(b, x)),
        StoredDType::Q5K => blocks.for_each(|(b, x)| q5_k(b, x)),
        StoredDType::Q6K => blocks.for_each(|(b, x)| q6_k(b, x)),
    }
    Ok(out)
}

/// The IEEE half at `b[at..at + 2]`.
fn f16(b: &[u8], at: usize) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

/// bfloat16 is the top half of an f32.
fn bf16(b: &[u8]) -> f32 {
    f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16)
}

fn q8_0(b: &[u8], x: &mut [f32]) {
    let d = f16(b, 0);
    for (xi, &q) in x.iter_mut().zip(&b[2..34]) {
        *xi = d * f32::from(q as i8);
    }
}

fn q4_0(b: &[u8], x: &mut [f32]) {
    let d = f16(b, 0);
    let qs = &b[2..18];
    for (i, &q) in qs.iter().enumerate() {
        x[i] = d * f32::from((q & 0x0f) as i8 - 8);
        x[i + 16] = d * f32::from((q >> 4) as i8 - 8);
    }
}

fn q4_1(b: &[u8], x: &mut [f32]) {
    let (d, m) = (f16(b, 0), f16(b, 2));
    let qs = &b[4..20];
    for (i, &q) in qs.iter().enumerate() {
        x[i] = d * f32::from(q & 0x0f) + m;
        x[i + 16] = d * f32::from(q >> 4) + m;
    }
}

/// Scale and min of sub-block `j` (0..8) of a Q4_K/Q5_K block, 6 bits each, packed into 12
/// bytes: sub-blocks 0-3 keep theirs in the low 6 bits of bytes j (scale) and j+4 (min);
/// sub-blocks 4-7 keep their low 4 bits in the nibbles of byte j+4 (scale low, min high) and
/// their top 2 bits in the top 2 bits of bytes j-4 (scale) and j (min).
pub(crate) fn k_scale_min(scales: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (scales[j] & 63, scales[j + 4] & 63)
    } else {
        let sc = (scales[j + 4] & 0x0f) | ((scales[j - 4] >> 6) << 4);
        let m = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
        (sc, m)
    }
}

fn q4_k(b: &[u8], x: &mut [f32]) {
    let (d, dmin) = (f16(b, 0), f16(b, 2));
    let scales = &b[4..16];
    let qs = &b[16..144];
    for c in 0..4 {
        let (sc_lo, m_lo) = k_scale_min(scales, 2 * c);
        let (sc_hi, m_hi) = k_scale_min(scales, 2 * c + 1);
        let (d_lo, min_lo) = (d * f32::from(sc_lo), dmin * f32::from(m_lo));
        let (d_hi, min_hi) = (d * f32::from(sc_hi), dmin * f32::from(m_hi));
        for l in 0..32 {
            let q = qs[32 * c + l];
            x[64 * c + l] = d_lo * f32::from(q & 0x0f) - min_lo;
            x[64 * c + 32 + l] = d_hi * f32::from(q >> 4) - min_hi;
        }
    }
}

fn q5_k(b: &[u8], x: &mut [f32]) {
    let (d, dmin) = (f16(b, 0), f16(b, 2));
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for c in 0..4 {
        let (sc_lo, m_lo) = k_scale_min(scales, 2 * c);
        let (sc_hi, m_hi) = k_scale_min(scales, 2 * c + 1);
        let (d_lo, min_lo) = (d * f32::from(sc_lo), dmin * f32::from(m_lo));
        let (d_hi, min_hi) = (d * f32::from(sc_hi), dmin * f32::from(m_hi));
        for l in 0..32 {
            let q = qs[32 * c + l];
            let hi_lo = ((qh[l] >> (2 * c)) & 1) << 4;
            let hi_hi = ((qh[l] >> (2 * c + 1)) & 1) << 4;
            x[64 * c + l] = d_lo * f32::from((q & 0x0f) | hi_lo) - min_lo;
            x[64 * c + 32 + l] = d_hi * f32::from((q >> 4) | hi_hi) - min_hi;
        }
    }
}

/// Each half (128 elements) of a Q6_K block uses 64 bytes of ql, 32 of qh and 8 scales. Within
/// the half, element 32k + l (k in 0..4, l in 0..32) takes its low 4 bits from ql[l] (k = 0, 2)
/// or ql[l + 32] (k = 1, 3) — the low nibble for k < 2, the high nibble after — and its high 2
/// bits from bits 2k..2k+2 of qh[l]; its scale is scales[2k + l / 16].
fn q6_k(b: &[u8], x: &mut [f32]) {
    let d = f16(b, 208);
    for half in 0..2 {
        let ql = &b[64 * half..64 * half + 64];
        let qh = &b[128 + 32 * half..128 + 32 * half + 32];
        let scales = &b[192 + 8 * half..192 + 8 * half + 8];
        let out = &mut x[128 * half..128 * half + 128];
        for k in 0..4 {
            for l in 0..32 {
                let low_byte = ql[l + 32 * (k % 2)];
                let low = if k < 2 { low_byte & 0x0f } else { low_byte >> 4 };
                let high = (qh[l] >> (2 * k)) & 3;
                let q = i16::from(low | (high << 4)) - 32;
                let scale = f32::from(scales[2 * k + l / 16] as i8);
                out[32 * k + l] = d * scale * f32::from(q);
            }
        }
    }
}
