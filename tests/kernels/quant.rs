//! Packed weights (Q8, Q4, Q4G128): the CPU formats (round trip, exact GGUF repacking), the
//! GPU quantizer (bit-identical to the CPU one), matvec and matmul against the CPU reference of
//! the same format (dequantize, then an f64 dot) on every path, row chunks, and errors.
//!
//! Tolerances. Round trip: Q8 is exact arithmetic (`q * scale` is an exact f32), so every
//! element is within scale / 2, with no slack. Q4's `q * scale + min` and the `x - min` the
//! quantizer rounds are one f32 rounding each: scale / 2 plus 2^-22 of |x| + |min|.
//! matvec / matmul: the GPU sums in f32 (matvec as scale * sum(q x) + min * sum(x) per group),
//! the reference in f64; we allow 1e-5 of sum_k (|q scale| + |min|) |x[k]| plus 1e-7, the
//! bound used for float weights (tests/kernels/matvec.rs) with the terms the kernel adds.

use std::sync::OnceLock;

use half::f16;
use shaderlm::checkpoint::gguf::dequantize as gguf_dequantize;
use shaderlm::checkpoint::StoredDType;
use shaderlm_engine::dtype::{self as packing, dequantize, quantize_q4, quantize_q8};
use shaderlm_engine::kernels::matvec::{matvec, matvec_with, MatvecConfig};
use shaderlm_engine::kernels::{matmul::matmul, quantize::quantize};
use shaderlm_engine::{reference, DType, Error, Gpu, GpuOptions, Tensor};

use crate::common::*;
use crate::matvec::{assert_close_to_scale, SUM_ATOL, SUM_RTOL};

const PACKED: [DType; 3] = [DType::Q8, DType::Q4, DType::Q4G128];

/// Random `[n, k]` weights whose groups differ in scale (1e-3 .. 10) and offset, so that
/// scales and mins cover several binades; a few groups are constant, hold zeros, are
/// one-signed, or (for Q8) put values exactly halfway between two steps.
fn weights(n: usize, k: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let mut w = Vec::with_capacity(n * k);
    for g in 0..(n * k).div_ceil(32) {
        let scale = 10f32.powf(rng.uniform() * 2.0 - 1.0);
        let offset = if g % 5 == 0 { rng.uniform() * scale } else { 0.0 };
        for i in 0..32 {
            w.push(match g % 17 {
                3 => 0.5,
                7 if i % 3 == 0 => 0.0,
                11 => (rng.uniform() * scale).abs(),
                // amax 63.5: the Q8 scale is 0.5 and (j + 1/2) * 0.5 are ties.
                13 if i == 0 => 63.5,
                13 => (i as f32 + 0.5) * 0.5 * if i % 2 == 0 { 1.0 } else { -1.0 },
                _ => rng.uniform() * scale + offset,
            });
        }
    }
    w.truncate(n * k);
    w
}

fn quantize_cpu(dtype: DType, w: &[f32], n: usize, k: usize) -> Vec<u32> {
    match dtype {
        DType::Q8 => quantize_q8(w, n, k).unwrap(),
        d => quantize_q4(w, n, k, d.group().unwrap()).unwrap(),
    }
}

/// The words of a packed tensor that hold data (its quants and its scales, not the padding).
fn data_words(dtype: DType, words: &[u32], numel: usize) -> Vec<u32> {
    let quants = (dtype.quant_bytes(numel) / 4) as usize;
    let scales = (dtype.scales_offset(numel) / 4) as usize;
    let scale_words = dtype.scale_bytes(numel).div_ceil(4) as usize;
    words[..quants].iter().chain(&words[scales..scales + scale_words]).copied().collect()
}

/// Per element, the largest |term| the kernels add for it: |q scale| (+ |min| for Q4).
fn term_magnitudes(dtype: DType, words: &[u32], n: usize, k: usize) -> Vec<f32> {
    match dtype {
        DType::Q8 => dequantize(dtype, words, n, k).unwrap().iter().map(|v| v.abs()).collect(),
        d => {
            let g = d.group().unwrap();
            let (qs, scales, mins) = packing::unpack_q4(words, n, k, g).unwrap();
            let term = |(e, &q): (usize, &u8)| (q as f32 * scales[e / g].to_f32()).abs() + mins[e / g].to_f32().abs();
            qs.iter().enumerate().map(term).collect()
        }
    }
}

// ---- CPU formats ----------------------------------------------------------------------------

#[test]
fn packed_geometry() {
    assert_eq!(DType::Q8.bytes_for(64), 256 + 4);
    assert_eq!(DType::Q8.bytes_for(96), 256 + 8); // three scales: a padded half word
    assert_eq!(DType::Q4.bytes_for(4096), 2048 + 512);
    assert_eq!(DType::Q4G128.bytes_for(4096), 2048 + 128);
    assert_eq!(DType::Q8.scales_offset(4096 * 4096), 4096 * 4096);
    for d in PACKED {
        let numel = 1 << 20;
        let per = d.bytes_for(numel) as f64 / numel as f64;
        assert!((per - d.bytes_per_element()).abs() < 1e-3, "{d}: {per} bytes per element");
        assert!(d.is_packed() && !d.is_float());
    }
    assert_eq!(DType::q4(32), Some(DType::Q4));
    assert_eq!(DType::q4(128), Some(DType::Q4G128));
    assert_eq!(DType::q4(64), None);
}

#[test]
fn q8_round_trip_within_half_a_step() {
    let (n, k) = (37, 96);
    let w = weights(n, k, 1);
    let words = quantize_q8(&w, n, k).unwrap();
    let (qs, scales) = packing::unpack_q8(&words, n, k).unwrap();
    let deq = dequantize(DType::Q8, &words, n, k).unwrap();
    for e in 0..n * k {
        let s = scales[e / 32].to_f32();
        assert_eq!(deq[e], qs[e] as f32 * s, "dequantize is q * scale");
        assert!((w[e] - deq[e]).abs() <= s / 2.0, "element {e}: {} -> {} (scale {s})", w[e], deq[e]);
        assert!(qs[e] != -128, "symmetric: |q| <= 127");
    }
    // The largest |x| of each (non-zero) group maps to +-127 or near it.
    assert!(qs.iter().any(|&q| q == 127 || q == -127));
}

#[test]
fn q4_round_trip_within_half_a_step() {
    for group in [32, 128] {
        let (n, k) = (21, 384);
        let w = weights(n, k, 2);
        let words = quantize_q4(&w, n, k, group).unwrap();
        let (qs, scales, mins) = packing::unpack_q4(&words, n, k, group).unwrap();
        let deq = dequantize(DType::q4(group).unwrap(), &words, n, k).unwrap();
        for e in 0..n * k {
            let (s, m) = (scales[e / group].to_f32(), mins[e / group].to_f32());
            assert_eq!(deq[e], qs[e] as f32 * s + m, "dequantize is q * scale + min");
            let tol = s / 2.0 + 2f32.powi(-22) * (w[e].abs() + m.abs());
            assert!((w[e] - deq[e]).abs() <= tol, "group {group}, element {e}: {} -> {} (scale {s}, min {m})", w[e], deq[e]);
        }
        assert!(qs.contains(&0) && qs.contains(&15), "group {group}: the range is used");
    }
}

#[test]
fn rounding_is_to_nearest_with_ties_away_from_zero() {
    assert_eq!(packing::steps_to_nearest(2.5, 1.0, 127), 3);
    assert_eq!(packing::steps_to_nearest(2.4999998, 1.0, 127), 2);
    assert_eq!(packing::steps_to_nearest(0.25, 0.5, 15), 1);
    assert_eq!(packing::steps_to_nearest(1000.0, 1.0, 15), 15);
    assert_eq!(packing::steps_to_nearest(3.0, 0.0, 15), 0);
    // One group of 32: max 127 * 0.5 = 63.5 gives scale 0.5 exactly; 0.75 is a tie (1.5 steps).
    let mut w = vec![0.0f32; 32];
    w[0] = 63.5;
    w[1] = 0.75;
    w[2] = -0.75;
    w[3] = 0.7499999;
    let (qs, scales) = packing::unpack_q8(&quantize_q8(&w, 1, 32).unwrap(), 1, 32).unwrap();
    assert_eq!(scales[0].to_f32(), 0.5);
    assert_eq!(&qs[..4], &[127, 2, -2, 1]);
    // f16 rounding toward -inf / +inf.
    assert_eq!(packing::f16_down(0.1).to_f32(), f16::from_bits(0x2e66).to_f32());
    assert_eq!(packing::f16_up(0.1).to_f32(), f16::from_bits(0x2e67).to_f32());
    assert_eq!(packing::f16_down(1e-9).to_bits(), 0x0000);
    assert_eq!(packing::f16_up(1e-9).to_bits(), 0x0001);
    assert_eq!(packing::f16_down(-1e-9).to_bits(), 0x8001);
    assert_eq!(packing::f16_up(1.0).to_bits(), 0x3c00);
}

/// f16 values across the range: signs, subnormals, large.
fn random_f16(rng: &mut Rng) -> f16 {
    let v = f16::from_bits(rng.below(0x7c00) as u16 | if rng.below(2) == 1 { 0x8000 } else { 0 });
    if rng.below(3) == 0 { f16::from_f32(rng.uniform() * 0.1) } else { v }
}

/// GGUF Q8_0, Q4_0 and Q4_1 blocks built here, repacked into our formats from their parts:
/// our dequantized values equal the GGUF formula's (the checkpoint reader's) exactly. (Bit for
/// bit but for one case: where Q4_0 has q = 8 and d < 0, `d * (q - 8)` is -0 and our
/// `q * d + (-8 d)` is +0.)
#[test]
fn gguf_blocks_repack_exactly() {
    let (n, k) = (3, 96);
    let blocks = n * k / 32;
    let mut rng = Rng::new(3);
    // Bits, with -0 read as +0.
    let bits = |v: &[f32]| v.iter().map(|&x| if x == 0.0 { 0 } else { x.to_bits() }).collect::<Vec<_>>();

    // Q8_0: f16 d | i8 q[32].
    let (mut bytes, mut qs, mut ds) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..blocks {
        let d = random_f16(&mut rng);
        let q: Vec<i8> = (0..32).map(|_| rng.below(256) as u8 as i8).collect();
        bytes.extend(d.to_bits().to_le_bytes());
        bytes.extend(q.iter().map(|&v| v as u8));
        ds.push(d);
        qs.extend(q);
    }
    let words = packing::pack_q8_from_blocks(&qs, &ds, n, k).unwrap();
    let want = gguf_dequantize(StoredDType::Q8_0, &bytes, n * k).unwrap();
    assert_eq!(bits(&dequantize(DType::Q8, &words, n, k).unwrap()), bits(&want), "Q8_0");
    assert_eq!(packing::unpack_q8(&words, n, k).unwrap(), (qs, ds), "Q8 unpack inverts pack");

    // Q4_0: f16 d | u8 qs[16]; element i < 16 the low nibble of qs[i], i >= 16 the high one of
    // qs[i - 16]; x = d * (q - 8) = q * d + (-8 d).
    // Q4_1: f16 d | f16 m | u8 qs[16]; x = d * q + m.
    for with_min in [false, true] {
        let (mut bytes, mut qs, mut ds, mut ms) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..blocks {
            // Q4_0's min is -8 d: keep |d| <= 8188 so that it is a finite f16.
            let d = if with_min { random_f16(&mut rng) } else { f16::from_f32(random_f16(&mut rng).to_f32() % 8188.0) };
            let m = if with_min { random_f16(&mut rng) } else { f16::from_f32(-8.0 * d.to_f32()) };
            let q: Vec<u8> = (0..32).map(|_| rng.below(16) as u8).collect();
            bytes.extend(d.to_bits().to_le_bytes());
            if with_min {
                bytes.extend(m.to_bits().to_le_bytes());
            }
            bytes.extend((0..16).map(|i| q[i] | (q[i + 16] << 4)));
            ds.push(d);
            ms.push(m);
            qs.extend(q);
        }
        let format = if with_min { StoredDType::Q4_1 } else { StoredDType::Q4_0 };
        let words = packing::pack_q4_from_blocks(&qs, &ds, &ms, n, k, 32).unwrap();
        let want = gguf_dequantize(format, &bytes, n * k).unwrap();
        assert_eq!(bits(&dequantize(DType::Q4, &words, n, k).unwrap()), bits(&want), "{format:?}");
        assert_eq!(packing::unpack_q4(&words, n, k, 32).unwrap(), (qs, ds, ms), "Q4 unpack inverts pack");
    }
}

#[test]
fn cpu_formats_reject_bad_input() {
    let w = vec![0.5f32; 2 * 48];
    assert!(shape(quantize_q8(&w, 2, 48)), "k = 48 is not a multiple of 32");
    assert!(shape(quantize_q4(&w, 2, 48, 32)), "k = 48 is not a multiple of 32");
    assert!(shape(quantize_q4(&vec![0.5; 2 * 64], 2, 64, 128)), "k = 64 is not a multiple of 128");
    assert!(shape(quantize_q4(&vec![0.5; 2 * 64], 2, 64, 64)), "no group of 64");
    assert!(shape(quantize_q8(&vec![0.5; 63], 2, 32)), "too few values");
    let qs = vec![0u8; 64];
    let one = vec![f16::ONE; 2];
    assert!(packing::pack_q4_from_blocks(&qs, &one, &one, 2, 32, 32).is_ok());
    assert!(shape(packing::pack_q4_from_blocks(&qs, &one[..1], &one, 2, 32, 32)), "one scale short");
    assert!(shape(packing::pack_q4_from_blocks(&qs, &one, &one[..1], 2, 32, 32)), "one min short");
    assert!(shape(packing::pack_q4_from_blocks(&[16u8; 64], &one, &one, 2, 32, 32)), "a quant of 16");
    assert!(shape(packing::pack_q8_from_blocks(&[0i8; 64], &one[..1], 2, 32)), "one scale short");
    assert!(matches!(dequantize(DType::F16, &[0; 4], 1, 8), Err(Error::DType { .. })));
    assert!(matches!(dequantize(DType::Q8, &[0; 4], 1, 32), Err(Error::Shape { .. })), "too few words");
}

// ---- GPU quantizer --------------------------------------------------------------------------

#[test]
fn gpu_quantize_equals_cpu_quantizer() {
    for gpu in gpus() {
        for dtype in PACKED {
            let g = dtype.group().unwrap();
            for (n, k) in [(1, g), (7, 3 * g), (33, 256), (5, 1024)] {
                for input in [DType::F32, DType::F16] {
                    let case = format!("quantize [{n}, {k}] {input} -> {dtype} [{}]", path(gpu));
                    let mut w = weights(n, k, (n * k) as u64);
                    // Extremes: a group of tiny values (f16-subnormal scales and mins) and, in
                    // f32, values beyond the f16 range.
                    if n * k >= 2 * g {
                        w[g..2 * g].iter_mut().for_each(|v| *v *= 1e-6);
                    }
                    if input == DType::F16 {
                        w = round_f16(&w);
                    } else if n * k >= 3 * g {
                        w[2 * g] = 1e5;
                        w[2 * g + 1] = -7e4;
                    }
                    let src = Tensor::from_f32(gpu, &[n, k], input, &w).unwrap();
                    let out = Tensor::empty(gpu, &[n, k], dtype).unwrap();
                    out.fill_words(gpu, 0xdead_beef).unwrap();
                    run(gpu, &quantize(gpu, &src, &out).unwrap());
                    let got = data_words(dtype, &out.to_words(gpu).unwrap(), n * k);
                    let want = data_words(dtype, &quantize_cpu(dtype, &w, n, k), n * k);
                    let bad: Vec<usize> = (0..want.len()).filter(|&i| got[i] != want[i]).collect();
                    assert!(bad.is_empty(), "{case}: {} of {} words differ, first at {}", bad.len(), want.len(), bad[0]);
                }
            }
        }
    }
}

// ---- matvec and matmul ----------------------------------------------------------------------

/// Quantized weight `[n, k]` on the GPU (CPU-quantized) and its dequantized values.
fn packed_weight(gpu: &Gpu, dtype: DType, n: usize, k: usize, seed: u64) -> (Tensor, Vec<f32>, Vec<f32>) {
    let words = quantize_cpu(dtype, &weights(n, k, seed), n, k);
    let w = Tensor::from_words(gpu, &[n, k], dtype, &words).unwrap();
    (w, dequantize(dtype, &words, n, k).unwrap(), term_magnitudes(dtype, &words, n, k))
}

fn check_matvec(gpu: &Gpu, dtype: DType, n: usize, k: usize) {
    let case = format!("matvec n={n} k={k} w={dtype} [{}]", path(gpu));
    let (w, deq, terms) = packed_weight(gpu, dtype, n, k, (n * 31 + k) as u64);
    let xs = Rng::new(k as u64).vec(k, 1.0);
    let x = Tensor::from_f32(gpu, &[k], DType::F32, &xs).unwrap();
    let y = Tensor::empty(gpu, &[n], DType::F32).unwrap();
    let op = matvec(gpu, &w, &x, &y).unwrap();
    let format = if dtype == DType::Q8 { "q8" } else { "q4" };
    let subgroup = if gpu.info().features.subgroups { "_subgroup" } else { "" };
    assert_eq!(op.labels(), [format!("matvec_{format}{subgroup}")], "{case}: shader");
    let got = run_poisoned(gpu, &op, &y);
    let (mut want, mut scale) = (vec![0.0; n], vec![0.0; n]);
    reference::matvec::matvec(&deq, &xs, &mut want);
    reference::matvec::matvec_abs(&terms, &xs, &mut scale);
    assert_close_to_scale(&case, &got, &want, &scale, SUM_RTOL, SUM_ATOL);
}

fn check_matmul(gpu: &Gpu, dtype: DType, m: usize, n: usize, k: usize) {
    let case = format!("matmul m={m} n={n} k={k} w={dtype} [{}]", path(gpu));
    let (w, deq, terms) = packed_weight(gpu, dtype, n, k, (n * 7 + k) as u64);
    let xs = Rng::new((m * 131 + k) as u64).vec(m * k, 1.0);
    let x = Tensor::from_f32(gpu, &[m, k], DType::F32, &xs).unwrap();
    let y = Tensor::empty(gpu, &[m, n], DType::F32).unwrap();
    let got = run_poisoned(gpu, &matmul(gpu, &x, &w, &y).unwrap(), &y);
    let (mut want, mut scale) = (vec![0.0; m * n], vec![0.0; m * n]);
    reference::matmul::matmul(&xs, &deq, &mut want, (m, n, k));
    reference::matmul::matmul_abs(&xs, &terms, &mut scale, (m, n, k));
    assert_close_to_scale(&case, &got, &want, &scale, SUM_RTOL, SUM_ATOL);
}

/// K values per dtype: multiples of the group, one of them long.
fn ks(dtype: DType) -> &'static [usize] {
    if dtype == DType::Q4G128 { &[128, 384, 4096] } else { &[32, 96, 4096] }
}

#[test]
fn matvec_packed_matches_reference() {
    for gpu in gpus() {
        for dtype in PACKED {
            for &k in ks(dtype) {
                for n in [1, 7, 33, 257] {
                    check_matvec(gpu, dtype, n, k);
                }
            }
        }
    }
}

/// The workgroup shapes other GPUs get (`matvec` on lavapipe uses 32 threads): the discrete-GPU
/// default, more threads than a row has words, odd row counts.
#[test]
fn matvec_packed_other_workgroup_shapes_match_reference() {
    for gpu in gpus() {
        for (workgroup_size, rows_per_workgroup) in [(256, 4), (128, 8), (64, 3), (1, 2)] {
            let config = MatvecConfig { workgroup_size, rows_per_workgroup };
            for dtype in PACKED {
                for (n, k) in [(37, 4 * dtype.group().unwrap()), (5, 4096)] {
                    let case = format!("matvec n={n} k={k} w={dtype} {config:?} [{}]", path(gpu));
                    let (w, deq, terms) = packed_weight(gpu, dtype, n, k, 11);
                    let xs = Rng::new(12).vec(k, 1.0);
                    let x = Tensor::from_f32(gpu, &[k], DType::F32, &xs).unwrap();
                    let y = Tensor::empty(gpu, &[n], DType::F32).unwrap();
                    let got = run_poisoned(gpu, &matvec_with(gpu, &w, &x, &y, config).unwrap(), &y);
                    let (mut want, mut scale) = (vec![0.0; n], vec![0.0; n]);
                    reference::matvec::matvec(&deq, &xs, &mut want);
                    reference::matvec::matvec_abs(&terms, &xs, &mut scale);
                    assert_close_to_scale(&case, &got, &want, &scale, SUM_RTOL, SUM_ATOL);
                }
            }
        }
    }
}

#[test]
fn matmul_packed_matches_reference() {
    for gpu in gpus() {
        for dtype in PACKED {
            for &k in ks(dtype) {
                for (m, n) in [(1, 7), (7, 33), (33, 257), (65, 1), (257, 7)] {
                    if k * (m + n) <= 300 * 1024 {
                        check_matmul(gpu, dtype, m, n, k);
                    }
                }
            }
        }
    }
}

// ---- row chunks -----------------------------------------------------------------------------

/// The adapter with storage bindings capped at 64 KiB (fast and portable).
fn small_binding_gpus() -> &'static [Gpu] {
    static GPUS: OnceLock<Vec<Gpu>> = OnceLock::new();
    GPUS.get_or_init(|| {
        let fast = GpuOptions { max_binding_bytes: Some(64 << 10), ..Default::default() };
        let portable = GpuOptions { subgroups: false, shader_f16: false, cooperative_matrix: false, ..fast.clone() };
        vec![Gpu::with_options(fast).unwrap(), Gpu::with_options(portable).unwrap()]
    })
}

/// A Q4 weight larger than one binding: its chunks tile the rows with aligned quants and
/// scales, and matvec, matmul and the GPU quantizer over chunks match the reference.
#[test]
fn packed_row_chunks_match_reference() {
    for gpu in small_binding_gpus() {
        let (limit, align) = (gpu.info().max_binding_bytes, gpu.info().binding_alignment);
        for (dtype, n, k) in [(DType::Q4, 1001, 256), (DType::Q4G128, 301, 768), (DType::Q8, 77, 1056)] {
            let case = format!("chunks of [{n}, {k}] {dtype} [{}]", path(gpu));
            let (w, deq, terms) = packed_weight(gpu, dtype, n, k, 9);
            let chunks = w.row_chunks(gpu).unwrap();
            assert!(chunks.len() > 1, "{case}: split");
            let mut next = 0;
            for (first, c) in &chunks {
                assert_eq!(*first, next, "{case}: contiguous");
                assert!(dtype.quant_bytes(c.numel()) <= limit, "{case}: quants fit");
                assert_eq!(c.offset(), dtype.quant_bytes(first * k), "{case}: quants of the first row");
                assert_eq!(c.scales_offset(), dtype.scales_offset(n * k) + dtype.scale_bytes(first * k));
                assert_eq!((c.offset() % align, c.scales_offset() % align), (0, 0), "{case}: aligned");
                next += c.shape()[0];
            }
            assert_eq!(next, n, "{case}: every row");

            let xs = Rng::new(5).vec(k, 1.0);
            let x = Tensor::from_f32(gpu, &[k], DType::F32, &xs).unwrap();
            let y = Tensor::empty(gpu, &[n], DType::F32).unwrap();
            let op = matvec(gpu, &w, &x, &y).unwrap();
            assert_eq!(op.labels().len(), chunks.len(), "{case}: a dispatch per chunk");
            let got = run_poisoned(gpu, &op, &y);
            let (mut want, mut scale) = (vec![0.0; n], vec![0.0; n]);
            reference::matvec::matvec(&deq, &xs, &mut want);
            reference::matvec::matvec_abs(&terms, &xs, &mut scale);
            assert_close_to_scale(&format!("{case} matvec"), &got, &want, &scale, SUM_RTOL, SUM_ATOL);

            let m = 3;
            let xs = Rng::new(6).vec(m * k, 1.0);
            let x = Tensor::from_f32(gpu, &[m, k], DType::F32, &xs).unwrap();
            let y = Tensor::empty(gpu, &[m, n], DType::F32).unwrap();
            let got = run_poisoned(gpu, &matmul(gpu, &x, &w, &y).unwrap(), &y);
            let (mut want, mut scale) = (vec![0.0; m * n], vec![0.0; m * n]);
            reference::matmul::matmul(&xs, &deq, &mut want, (m, n, k));
            reference::matmul::matmul_abs(&xs, &terms, &mut scale, (m, n, k));
            assert_close_to_scale(&format!("{case} matmul"), &got, &want, &scale, SUM_RTOL, SUM_ATOL);

            // The quantizer's input (f16, 4x the quants' bytes) bounds its chunks too.
            let values = round_f16(&weights(n, k, 10));
            let src = Tensor::from_f32(gpu, &[n, k], DType::F16, &values).unwrap();
            let out = Tensor::empty(gpu, &[n, k], dtype).unwrap();
            let op = quantize(gpu, &src, &out).unwrap();
            assert!(op.labels().len() >= src.byte_size().div_ceil(limit) as usize, "{case}: quantize chunks");
            run(gpu, &op);
            let got = data_words(dtype, &out.to_words(gpu).unwrap(), n * k);
            assert!(got == data_words(dtype, &quantize_cpu(dtype, &values, n, k), n * k), "{case}: quantize");
        }
    }
}

// ---- errors ---------------------------------------------------------------------------------

fn shape<T>(r: Result<T, Error>) -> bool {
    matches!(r, Err(Error::Shape { .. }))
}

fn dtype<T>(r: Result<T, Error>) -> bool {
    matches!(r, Err(Error::DType { .. }))
}

#[test]
fn packed_tensors_and_kernels_reject_bad_input() {
    let gpu = &gpus()[0];
    let t = |s: &[usize], d| Tensor::empty(gpu, s, d).unwrap();

    // The last axis must be whole groups.
    assert!(shape(Tensor::empty(gpu, &[4, 48], DType::Q8)));
    assert!(shape(Tensor::empty(gpu, &[4, 64], DType::Q4G128)));
    assert!(shape(t(&[4, 64], DType::Q4).reshape(&[16, 16])));
    assert!(t(&[4, 64], DType::Q4).reshape(&[8, 32]).is_ok());
    // Packed tensors are written as words, not f32.
    assert!(dtype(t(&[1, 32], DType::Q8).write_f32(gpu, &[0.0; 32])));

    let (w, x, y) = (t(&[4, 64], DType::Q4), t(&[64], DType::F32), t(&[4], DType::F32));
    assert!(matvec(gpu, &w, &x, &y).is_ok());
    assert!(dtype(matvec(gpu, &w, &t(&[64], DType::F16), &y)), "f16 x");
    assert!(dtype(matvec(gpu, &w, &x, &t(&[4], DType::F16))), "f16 y");
    assert!(shape(matvec(gpu, &w, &t(&[32], DType::F32), &y)), "x too short");
    assert!(shape(matvec(gpu, &w, &x, &x)), "y aliases x");
    let xm = t(&[2, 64], DType::F32);
    assert!(matmul(gpu, &xm, &w, &t(&[2, 4], DType::F32)).is_ok());
    assert!(dtype(matmul(gpu, &t(&[2, 64], DType::F16), &w, &t(&[2, 4], DType::F32))), "f16 x");
    assert!(shape(matmul(gpu, &t(&[2, 32], DType::F32), &w, &t(&[2, 4], DType::F32))), "k differs");

    // quantize: float in, packed out, same shape, distinct buffers.
    let src = t(&[4, 64], DType::F16);
    assert!(quantize(gpu, &src, &w).is_ok());
    assert!(dtype(quantize(gpu, &src, &t(&[4, 64], DType::F16))), "f16 out");
    assert!(dtype(quantize(gpu, &w, &t(&[4, 64], DType::Q8))), "packed in");
    assert!(dtype(quantize(gpu, &t(&[4, 64], DType::U32), &w)), "u32 in");
    assert!(shape(quantize(gpu, &t(&[4, 96], DType::F16), &w)), "shape differs");

    // A row view of a packed tensor is two ranges: no raw word access, no copies.
    let q8 = t(&[3, 32], DType::Q8);
    let view = q8.rows(2, 1).unwrap();
    assert!(!view.is_contiguous() && q8.is_contiguous());
    assert!(q8.rows(0, 3).unwrap().is_contiguous(), "all rows: the tensor itself");
    // Rows 0..9 of ten: quants (144 bytes) and scales (at 256) sit where a 9-row tensor's
    // would, but its padding is row 9's quants: still a view.
    assert!(!t(&[10, 32], DType::Q4).rows(0, 9).unwrap().is_contiguous());
    assert!(shape(view.to_words(gpu)));
    assert!(shape(view.write_words(gpu, &[0; 9])));
    let mut rec = shaderlm_engine::Recorder::new(gpu);
    assert!(shape(rec.copy(&view, &t(&[1, 32], DType::Q8))));
    // Q8 rows of one group: an odd first row would start its scales mid-word.
    assert!(shape(q8.rows(1, 1)));
}
