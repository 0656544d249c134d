//! GGUF blocks repacked into the engine's packed formats without a second rounding.
//!
//! A block's quants and scale (and min) are copied as they are: the engine's dequantized value
//! is the GGUF formula's exactly (dequant.rs documents the blocks):
//!
//! ```text
//! Q8_0 -> Q8    d * q                          scale d
//! Q4_1 -> Q4    d * q + m                      scale d, min m
//! Q4_0 -> Q4    d * (q - 8) = q * d + (-8 d)   scale d, min -8 d (exact in f16 while |d| <= 8188)
//! ```
//!
//! (Bit for bit, but for Q4_0's zero: `d * 0` is -0 for a negative d, our `8 d - 8 d` is +0.)
//! Other pairs (a group of 128 from blocks of 32, Q4_K's 6-bit sub-block scales) are not exact
//! and return `None`: the caller quantizes the dequantized values instead.

use half::f16;
use shaderlm_engine::dtype::{pack_q4_from_blocks, pack_q8_from_blocks};
use shaderlm_engine::DType;

use crate::checkpoint::{StoredDType, TensorView};
use crate::error::Result;

/// The packed storage words of `view` (`[n, k]`, HF row order) as `target`, when its blocks
/// carry over exactly; `None` when they do not (another block type or group size, or a Q4_0
/// scale whose `-8 d` is no f16).
pub fn repack_blocks(view: &TensorView, target: DType) -> Result<Option<Vec<u32>>> {
    let (n, k) = match *view.shape {
        [n, k] => (n, k),
        _ => return Ok(None),
    };
    let n_elements = view.len()?;
    let block_bytes = match (view.dtype, target) {
        (StoredDType::Q8_0, DType::Q8) => 34,
        (StoredDType::Q4_0, DType::Q4) => 18,
        (StoredDType::Q4_1, DType::Q4) => 20,
        _ => return Ok(None),
    };
    if !k.is_multiple_of(32) || view.bytes.len() != n_elements / 32 * block_bytes {
        return Ok(None); // the reader has checked the sizes; leave anything odd to dequantize
    }
    let half_at = |b: &[u8], at: usize| f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]]));
    let blocks = view.bytes.chunks_exact(block_bytes);
    let packed = if view.dtype == StoredDType::Q8_0 {
        let scales: Vec<f16> = blocks.clone().map(|b| half_at(b, 0)).collect();
        let qs: Vec<i8> = blocks.flat_map(|b| b[2..34].iter().map(|&q| q as i8)).collect();
        pack_q8_from_blocks(&qs, &scales, n, k)?
    } else {
        let with_min = view.dtype == StoredDType::Q4_1;
        let mut qs = Vec::with_capacity(n_elements);
        let (mut scales, mut mins) = (Vec::new(), Vec::new());
        for b in blocks {
            let d = half_at(b, 0);
            let min = if with_min { half_at(b, 2) } else { f16::from_f32(-8.0 * d.to_f32()) };
            if !min.is_finite() {
                return Ok(None);
            }
            // Elements 0..16: the low nibbles of the 16 bytes; 16..32: their high nibbles.
            let nibbles = &b[block_bytes - 16..];
            qs.extend(nibbles.iter().map(|q| q & 0x0f));
            qs.extend(nibbles.iter().map(|q| q >> 4));
            scales.push(d);
            mins.push(min);
        }
        pack_q4_from_blocks(&qs, &scales, &mins, n, k, 32)?
    };
    Ok(Some(packed))
}
