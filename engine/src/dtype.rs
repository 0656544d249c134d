//! Element types as they are stored in GPU buffers.
//!
//! WGSL storage has no 8- or 16-bit types without extensions, so everything is addressed as
//! 32-bit words: F16 packs two halves per u32 (element `i` is half `i % 2` of word `i / 2`, read
//! with `unpack2x16float`), which works on every adapter whether or not it has shader-f16.
//! Packed quantized formats (groups of values plus scales) will join this enum with their own
//! geometry; `bytes_for` is the one place that turns an element count into a byte size.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// IEEE half, two per 32-bit word.
    F16,
    /// 32-bit unsigned integer (token ids, positions, indices).
    U32,
}

impl DType {
    /// Bytes a tensor of `numel` elements occupies, rounded up to whole 32-bit words.
    pub fn bytes_for(self, numel: usize) -> u64 {
        let n = numel as u64;
        match self {
            DType::F32 | DType::U32 => 4 * n,
            DType::F16 => 4 * n.div_ceil(2),
        }
    }

    /// Bytes per element as a float, for bandwidth arithmetic.
    pub fn bytes_per_element(self) -> f64 {
        match self {
            DType::F32 | DType::U32 => 4.0,
            DType::F16 => 2.0,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::U32 => "u32",
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
