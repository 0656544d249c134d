//! Block formats: blocks built by hand from the format description with known scales and
//! quants (values chosen so that every product is exact in f32, so the checks are exact), then
//! random blocks against llama.cpp's Python dequantizer (tests/data/blocks.gguf + blocks.json).

use super::*;
use shaderlm::checkpoint::gguf::{block_layout, dequantize, stored_bytes};
use shaderlm::checkpoint::StoredDType;

fn f16_bytes(x: f32) -> [u8; 2] {
    half::f16::from_f32(x).to_bits().to_le_bytes()
}

#[test]
fn plain_types() {
    let f32s: Vec<u8> = [1.5f32, -0.0, f32::MAX].iter().flat_map(|x| x.to_le_bytes()).collect();
    assert_eq!(dequantize(StoredDType::F32, &f32s, 3).unwrap(), vec![1.5, -0.0, f32::MAX]);
    // f16: 1, -2, 65504 (largest), 2^-24 (smallest subnormal), -0.
    let f16s: Vec<u8> = [0x3c00u16, 0xc000, 0x7bff, 0x0001, 0x8000].iter().flat_map(|x| x.to_le_bytes()).collect();
    let got = dequantize(StoredDType::F16, &f16s, 5).unwrap();
    assert_eq!(got, vec![1.0, -2.0, 65504.0, 2f32.powi(-24), -0.0]);
    assert!(got[4].is_sign_negative());
    // bf16 is the top half of an f32: 1, -3, 3.140625.
    let bf16s: Vec<u8> = [0x3f80u16, 0xc040, 0x4049].iter().flat_map(|x| x.to_le_bytes()).collect();
    assert_eq!(dequantize(StoredDType::BF16, &bf16s, 3).unwrap(), vec![1.0, -3.0, 3.140625]);
}

#[test]
fn q8_0_block() {
    let d = 0.25;
    let q: Vec<i8> = (0..32).map(|i| (i * 8 - 128) as i8).collect();
    let mut block = f16_bytes(d).to_vec();
    block.extend(q.iter().map(|&x| x as u8));
    let expected: Vec<f32> = q.iter().map(|&x| d * x as f32).collect();
    assert_eq!(dequantize(StoredDType::Q8_0, &block, 32).unwrap(), expected);
}

/// 32 4-bit values into 16 bytes: element i in the low nibble of byte i, element 16 + i in the
/// high nibble.
fn pack_nibbles_32(q: &[u8]) -> Vec<u8> {
    (0..16).map(|i| q[i] | (q[i + 16] << 4)).collect()
}

#[test]
fn q4_0_block() {
    let d = 0.5;
    let q: Vec<u8> = (0..32).map(|i| ((i * 5 + 1) % 16) as u8).collect();
    let mut block = f16_bytes(d).to_vec();
    block.extend(pack_nibbles_32(&q));
    let expected: Vec<f32> = q.iter().map(|&x| d * (x as f32 - 8.0)).collect();
    assert_eq!(dequantize(StoredDType::Q4_0, &block, 32).unwrap(), expected);
}

#[test]
fn q4_1_block() {
    let (d, m) = (0.5, -1.25);
    let q: Vec<u8> = (0..32).map(|i| ((i * 7 + 3) % 16) as u8).collect();
    let mut block = f16_bytes(d).to_vec();
    block.extend(f16_bytes(m));
    block.extend(pack_nibbles_32(&q));
    let expected: Vec<f32> = q.iter().map(|&x| d * x as f32 + m).collect();
    assert_eq!(dequantize(StoredDType::Q4_1, &block, 32).unwrap(), expected);
}

/// Eight 6-bit (scale, min) pairs into the 12 bytes of Q4_K/Q5_K, as the format describes:
/// sub-blocks 0-3 in the low 6 bits of bytes j (scale) and j+4 (min); sub-blocks 4-7 with their
/// low 4 bits in byte j+4 (scale in the low nibble, min in the high one) and their top 2 bits in
/// the top 2 bits of byte j-4 (scale) and byte j (min).
fn pack_k_scales(sc: &[u8; 8], m: &[u8; 8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    s[..4].copy_from_slice(&sc[..4]);
    s[4..8].copy_from_slice(&m[..4]);
    for j in 4..8 {
        s[j + 4] = (sc[j] & 15) | ((m[j] & 15) << 4);
        s[j - 4] |= (sc[j] >> 4) << 6;
        s[j] |= (m[j] >> 4) << 6;
    }
    s
}

// Scales and mins that use all 6 bits, including the top two of sub-blocks 4-7.
const K_SC: [u8; 8] = [1, 2, 3, 63, 17, 33, 48, 5];
const K_M: [u8; 8] = [0, 1, 40, 3, 20, 63, 36, 7];

#[test]
fn q4_k_block() {
    let (d, dmin) = (0.5f32, 0.25f32);
    let q: Vec<u8> = (0..256).map(|e| ((e * 7 + 3) % 16) as u8).collect();
    let mut block = f16_bytes(d).to_vec();
    block.extend(f16_bytes(dmin));
    block.extend(pack_k_scales(&K_SC, &K_M));
    // 64-element chunk c: elements 64c..64c+32 in the low nibbles of qs[32c..32c+32], the next
    // 32 in their high nibbles.
    let mut qs = [0u8; 128];
    for (e, &qe) in q.iter().enumerate() {
        let (c, within) = (e / 64, e % 64);
        let byte = 32 * c + within % 32;
        qs[byte] |= if within < 32 { qe } else { qe << 4 };
    }
    block.extend(qs);
    assert_eq!(block.len(), 144);
    let expected: Vec<f32> = (0..256)
        .map(|e| {
            let j = e / 32;
            (d as f64 * K_SC[j] as f64 * q[e] as f64 - dmin as f64 * K_M[j] as f64) as f32
        })
        .collect();
    assert_eq!(dequantize(StoredDType::Q4K, &block, 256).unwrap(), expected);
}

#[test]
fn q5_k_block() {
    let (d, dmin) = (0.5f32, 0.25f32);
    let q: Vec<u8> = (0..256).map(|e| ((e * 11 + 5) % 32) as u8).collect();
    let mut block = f16_bytes(d).to_vec();
    block.extend(f16_bytes(dmin));
    block.extend(pack_k_scales(&K_SC, &K_M));
    // The low 4 bits as in Q4_K; the fifth bit of element 64c + l is bit 2c of qh[l], of
    // element 64c + 32 + l bit 2c + 1 of qh[l].
    let (mut qh, mut qs) = ([0u8; 32], [0u8; 128]);
    for (e, &qe) in q.iter().enumerate() {
        let (c, within) = (e / 64, e % 64);
        let l = within % 32;
        let low = qe & 15;
        qs[32 * c + l] |= if within < 32 { low } else { low << 4 };
        let bit = 2 * c + usize::from(within >= 32);
        qh[l] |= (qe >> 4) << bit;
    }
    block.extend(qh);
    block.extend(qs);
    assert_eq!(block.len(), 176);
    let expected: Vec<f32> = (0..256)
        .map(|e| {
            let j = e / 32;
            (d as f64 * K_SC[j] as f64 * q[e] as f64 - dmin as f64 * K_M[j] as f64) as f32
        })
        .collect();
    assert_eq!(dequantize(StoredDType::Q5K, &block, 256).unwrap(), expected);
}

#[test]
fn q6_k_block() {
    let d = 0.5f32;
    let scales: [i8; 16] = [1, -2, 3, -4, 5, -6, 7, -8, 9, -10, 11, -12, 13, -14, 127, -128];
    let q: Vec<u8> = (0..256).map(|e| ((e * 13 + 7) % 64) as u8).collect();
    // Element e = 128h + 32k + l (h: half, k in 0..4, l in 0..32): low 4 bits in
    // ql[64h + l + 32(k % 2)] (low nibble for k < 2, high nibble after), top 2 bits in bits
    // 2k..2k+2 of qh[32h + l]; scale scales[e / 16].
    let (mut ql, mut qh) = ([0u8; 128], [0u8; 64]);
    for (e, &qe) in q.iter().enumerate() {
        let (h, k, l) = (e / 128, (e % 128) / 32, e % 32);
        let low = qe & 15;
        ql[64 * h + l + 32 * (k % 2)] |= if k < 2 { low } else { low << 4 };
        qh[32 * h + l] |= (qe >> 4) << (2 * k);
    }
    let mut block = ql.to_vec();
    block.extend(qh);
    block.extend(scales.iter().map(|&s| s as u8));
    block.extend(f16_bytes(d));
    assert_eq!(block.len(), 210);
    let expected: Vec<f32> =
        (0..256).map(|e| (d as f64 * scales[e / 16] as f64 * (q[e] as f64 - 32.0)) as f32).collect();
    assert_eq!(dequantize(StoredDType::Q6K, &block, 256).unwrap(), expected);
}

#[test]
fn geometry_and_length_errors() {
    assert_eq!(block_layout(StoredDType::Q4K), (256, 144));
    assert_eq!(stored_bytes(StoredDType::Q8_0, 64), Some(68));
    assert_eq!(stored_bytes(StoredDType::Q8_0, 33), None);
    assert_eq!(stored_bytes(StoredDType::Q8_0, usize::MAX / 32 * 32), None, "overflow");
    assert!(dequantize(StoredDType::Q8_0, &[0; 34], 31).is_err(), "not whole blocks");
    assert!(dequantize(StoredDType::Q8_0, &[0; 33], 32).is_err(), "too few bytes");
    assert!(dequantize(StoredDType::F32, &[0; 8], 1).is_err(), "too many bytes");
    assert_eq!(dequantize(StoredDType::Q4K, &[], 0).unwrap(), Vec::<f32>::new());
}

/// Random blocks of every type, written and dequantized by llama.cpp's `gguf` Python package.
#[test]
fn random_blocks_match_gguf_py() {
    let file = GgufFile::open(&data_dir().join("blocks.gguf")).expect("tests/data/blocks.gguf");
    let expected = read_json("blocks.json");
    let names = ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q4_k", "q5_k", "q6_k"];
    assert_eq!(file.tensors().len(), names.len());
    for name in names {
        let (shape, got) = file.tensor_f32(name).expect(name);
        assert_eq!(shape, vec![2, 256], "{name}");
        let want = json_f32s(&expected["values"][name]);
        let diff = max_rel_diff(&got, &want);
        eprintln!("{name:>5} ({:?}): max relative difference from gguf-py {diff:e}", file.tensor_info(name).unwrap().dtype);
        // Products of an f16 scale and small integers: the same up to f32 operation order.
        assert!(diff <= 1e-6, "{name}: {diff}");
    }
}
