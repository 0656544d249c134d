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
//! The `Dot4` matvec path rounds x to int8 first: its reference is the same sum over x as
//! `reference::matvec::round_x_int8` rounds it (the min term over the exact x), with the same
//! tolerance plus, for each x value that lies on a rounding boundary (the GPU may round it the
//! other way), one step of x times |q scale|.

use half::f16;
use shaderlm::checkpoint::gguf::dequantize as gguf_dequantize;
use shaderlm::checkpoint::StoredDType;
use shaderlm_engine::dtype::{self as packing, dequantize, quantize_q4, quantize_q8};
use shaderlm_engine::kernels::matvec::{
    matvec, matvec_accumulate, matvec_quant_accumulate_with, matvec_quant_with, matvec_with, MatvecConfig,
    QuantMatvecConfig, QuantPath,
};
use shaderlm_engine::kernels::rms_norm_matvec::{fits_packed, rms_norm_matvec};
use shaderlm_engine::kernels::rms_norm_matvec_rope_kv_cache::{self as norm_qkv_rope, Heads};
use shaderlm_engine::kernels::rms_norm_matvec_swiglu::rms_norm_matvec_swiglu;
use shaderlm_engine::kernels::rope::inv_freq;
use shaderlm_engine::kernels::{matmul::matmul, quantize::quantize};
use shaderlm_engine::{reference, DType, Error, Gpu, Tensor};

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

/// What a packed matvec on `path` should give for the weight `words` `[n, k]` and x `xs`:
/// the reference y and, per row, the scale its tolerance is proportional to, the x-rounding slack
/// folded in (so that `atol + SUM_RTOL * scale` is the whole bound).
fn packed_matvec_want(
    dtype: DType,
    words: &[u32],
    n: usize,
    k: usize,
    xs: &[f32],
    path: QuantPath,
) -> (Vec<f32>, Vec<f32>) {
    let deq = dequantize(dtype, words, n, k).unwrap();
    let terms = term_magnitudes(dtype, words, n, k);
    let (mut want, mut scale) = (vec![0.0; n], vec![0.0; n]);
    reference::matvec::matvec_abs(&terms, xs, &mut scale);
    if path == QuantPath::Float {
        reference::matvec::matvec(&deq, xs, &mut want);
        return (want, scale);
    }
    let (rounded, slack) = reference::matvec::round_x_int8(xs);
    // The kernel's two sums: sum (q scale) * rounded x, and (Q4) sum min * exact x.
    let (products, mins): (Vec<f32>, Vec<f32>) = match dtype {
        DType::Q8 => (deq, vec![0.0; n * k]),
        d => {
            let g = d.group().unwrap();
            let (qs, scales, mins) = packing::unpack_q4(words, n, k, g).unwrap();
            let qscale = qs.iter().enumerate().map(|(e, &q)| q as f32 * scales[e / g].to_f32()).collect();
            (qscale, (0..n * k).map(|e| mins[e / g].to_f32()).collect())
        }
    };
    let [mut by_rounded, mut by_min, mut rounded_scale, mut off] = [(); 4].map(|_| vec![0.0; n]);
    reference::matvec::matvec(&products, &rounded, &mut by_rounded);
    reference::matvec::matvec(&mins, xs, &mut by_min);
    reference::matvec::matvec_abs(&terms, &rounded, &mut rounded_scale);
    reference::matvec::matvec_abs(&products, &slack, &mut off);
    for r in 0..n {
        want[r] = by_rounded[r] + by_min[r];
        scale[r] = scale[r].max(rounded_scale[r]) + off[r] / SUM_RTOL;
    }
    (want, scale)
}

/// The shader a packed matvec on `path` records.
fn packed_shader(gpu: &Gpu, dtype: DType, path: QuantPath) -> String {
    let format = if dtype == DType::Q8 { "q8" } else { "q4" };
    match (path, gpu.info().features.subgroups) {
        (QuantPath::Dot4, _) => format!("matvec_{format}_dot4"),
        (QuantPath::Float, true) => format!("matvec_{format}_subgroup"),
        (QuantPath::Float, false) => format!("matvec_{format}"),
    }
}

/// The quant paths `gpu` offers.
fn quant_paths(gpu: &Gpu) -> Vec<QuantPath> {
    if gpu.info().features.subgroups { vec![QuantPath::Float, QuantPath::Dot4] } else { vec![QuantPath::Float] }
}

fn check_matvec(gpu: &Gpu, dtype: DType, n: usize, k: usize) {
    let words = quantize_cpu(dtype, &weights(n, k, (n * 31 + k) as u64), n, k);
    let w = Tensor::from_words(gpu, &[n, k], dtype, &words).unwrap();
    let quant = QuantMatvecConfig::for_weight(gpu, &w).path;
    let case = format!("matvec n={n} k={k} w={dtype} {quant:?} [{}]", path(gpu));
    let xs = Rng::new(k as u64).vec(k, 1.0);
    let x = Tensor::from_f32(gpu, &[k], DType::F32, &xs).unwrap();
    let y = Tensor::empty(gpu, &[n], DType::F32).unwrap();
    let op = matvec(gpu, &w, &x, &y).unwrap();
    assert_eq!(op.labels(), [packed_shader(gpu, dtype, quant)], "{case}: shader");
    let got = run_poisoned(gpu, &op, &y);
    let (want, scale) = packed_matvec_want(dtype, &words, n, k, &xs, quant);
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

/// Every path in the shapes other GPUs get (`matvec` on lavapipe uses 32 threads): the
/// discrete-GPU defaults, more threads than a row has blocks, odd row counts, the most rows.
#[test]
fn matvec_packed_paths_and_workgroup_shapes_match_reference() {
    for gpu in gpus() {
        for quant in quant_paths(gpu) {
            let most_rows = if quant == QuantPath::Dot4 { 16 } else { 8 };
            for (workgroup_size, rows_per_workgroup) in [(256, 4), (128, 8), (64, 3), (1, 2), (32, most_rows)] {
                let config = QuantMatvecConfig { workgroup_size, rows_per_workgroup, path: quant };
                for dtype in PACKED {
                    for (n, k) in [(37, 4 * dtype.group().unwrap()), (5, 4096)] {
                        let case = format!("matvec n={n} k={k} w={dtype} {config:?} [{}]", path(gpu));
                        let words = quantize_cpu(dtype, &weights(n, k, 11), n, k);
                        let w = Tensor::from_words(gpu, &[n, k], dtype, &words).unwrap();
                        let xs = Rng::new(12).vec(k, 1.0);
                        let x = Tensor::from_f32(gpu, &[k], DType::F32, &xs).unwrap();
                        let y = Tensor::empty(gpu, &[n], DType::F32).unwrap();
                        let op = matvec_quant_with(gpu, &w, &x, &y, config).unwrap();
                        assert_eq!(op.labels(), [packed_shader(gpu, dtype, quant)], "{case}: shader");
                        let got = run_poisoned(gpu, &op, &y);
                        let (want, scale) = packed_matvec_want(dtype, &words, n, k, &xs, quant);
                        assert_close_to_scale(&case, &got, &want, &scale, SUM_RTOL, SUM_ATOL);
                    }
                }
            }
        }
        // matvec_with keeps its meaning for packed weights: the Float path in that shape.
        let (n, k) = (9, 64);
        let words = quantize_cpu(DType::Q4, &weights(n, k, 13), n, k);
        let w = Tensor::from_words(gpu, &[n, k], DType::Q4, &words).unwrap();
        let xs = Rng::new(14).vec(k, 1.0);
        let x = Tensor::from_f32(gpu, &[k], DType::F32, &xs).unwrap();
        let y = Tensor::empty(gpu, &[n], DType::F32).unwrap();
        let op = matvec_with(gpu, &w, &x, &y, MatvecConfig { workgroup_size: 64, rows_per_workgroup: 3 }).unwrap();
        assert_eq!(op.labels(), [packed_shader(gpu, DType::Q4, QuantPath::Float)]);
        let got = run_poisoned(gpu, &op, &y);
        let (want, scale) = packed_matvec_want(DType::Q4, &words, n, k, &xs, QuantPath::Float);
        assert_close_to_scale("matvec_with q4", &got, &want, &scale, SUM_RTOL, SUM_ATOL);
    }
}

/// y += W x on every path (the default through `matvec_accumulate`, each path explicitly),
/// starting from random y: every row gains exactly its product.
#[test]
fn matvec_packed_accumulate_adds_into_y() {
    for gpu in gpus() {
        for dtype in PACKED {
            let (n, k) = (33, 2 * dtype.group().unwrap());
            let words = quantize_cpu(dtype, &weights(n, k, 21), n, k);
            let w = Tensor::from_words(gpu, &[n, k], dtype, &words).unwrap();
            let xs = Rng::new(22).vec(k, 1.0);
            let y0 = Rng::new(23).vec(n, 4.0);
            let x = Tensor::from_f32(gpu, &[k], DType::F32, &xs).unwrap();
            let y = Tensor::empty(gpu, &[n], DType::F32).unwrap();
            let default = QuantMatvecConfig::for_weight(gpu, &w);
            let mut cases = vec![(default, matvec_accumulate(gpu, &w, &x, &y).unwrap())];
            for quant in quant_paths(gpu) {
                let config = QuantMatvecConfig { workgroup_size: 64, rows_per_workgroup: 3, path: quant };
                cases.push((config, matvec_quant_accumulate_with(gpu, &w, &x, &y, config).unwrap()));
            }
            for (config, op) in cases {
                let case = format!("accumulate n={n} k={k} w={dtype} {config:?} [{}]", path(gpu));
                y.write_f32(gpu, &y0).unwrap();
                run(gpu, &op);
                let got = y.to_f32(gpu).unwrap();
                let (mut want, mut scale) = packed_matvec_want(dtype, &words, n, k, &xs, config.path);
                for r in 0..n {
                    want[r] += y0[r];
                    scale[r] += y0[r].abs();
                }
                assert_close_to_scale(&case, &got, &want, &scale, SUM_RTOL, SUM_ATOL);
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

// ---- norm fused into the packed matvec (the Dot4 path) ------------------------------------

/// rms_norm_matvec and rms_norm_matvec_swiglu over packed weights on subgroup adapters: the
/// norm computed by reference::rms_norm, then the Dot4 matvec's reference (x * g / rms rounded to
/// int8 per block differs from the kernel's rounded x * g only by rounding, which the boundary
/// slack covers), then for the gate reference::swiglu. The swiglu tolerance propagates the two
/// sums' bounds through silu(a) * b (|silu'| < 1.1).
#[test]
fn rms_norm_matvec_packed_matches_reference() {
    const EPS: f32 = 1e-5;
    for gpu in gpus() {
        for dtype in PACKED {
            for (n, k) in [(1, dtype.group().unwrap()), (33, 2 * dtype.group().unwrap()), (7, 1024)] {
                let case = format!("rms_norm_matvec n={n} k={k} w={dtype} [{}]", path(gpu));
                let rows = 2 * n;
                let words = quantize_cpu(dtype, &weights(rows, k, 31), rows, k);
                let w = Tensor::from_words(gpu, &[rows, k], dtype, &words).unwrap();
                let mut rng = Rng::new(32);
                let xs = rng.vec(k, 5.0);
                let gs: Vec<f32> = rng.vec(k, 0.5).iter().map(|v| v + 1.0).collect();
                let x = Tensor::from_f32(gpu, &[k], DType::F32, &xs).unwrap();
                let g = Tensor::from_f32(gpu, &[k], DType::F32, &gs).unwrap();
                if !gpu.info().features.subgroups {
                    assert!(!fits_packed(gpu, &w, &x, &g), "{case}: needs subgroups");
                    let y = Tensor::empty(gpu, &[rows], DType::F32).unwrap();
                    assert!(shape(rms_norm_matvec(gpu, &x, &g, &w, &y, EPS)), "{case}: refused");
                    continue;
                }
                assert!(fits_packed(gpu, &w, &x, &g), "{case}: fits");
                let normed = reference::rms_norm::rms_norm(&xs, &gs, EPS);
                let (want, scale) = packed_matvec_want(dtype, &words, rows, k, &normed, QuantPath::Dot4);

                let y = Tensor::empty(gpu, &[rows], DType::F32).unwrap();
                let got = run_poisoned(gpu, &rms_norm_matvec(gpu, &x, &g, &w, &y, EPS).unwrap(), &y);
                assert_close_to_scale(&case, &got, &want, &scale, SUM_RTOL, SUM_ATOL);

                let out = Tensor::empty(gpu, &[n], DType::F32).unwrap();
                let op = rms_norm_matvec_swiglu(gpu, &x, &g, &w, &out, EPS).unwrap();
                let got = run_poisoned(gpu, &op, &out);
                let want_out = reference::swiglu::swiglu(&want, n);
                let silu = |a: f32| a / (1.0 + (-a).exp());
                for i in 0..n {
                    let (ta, tb) = (SUM_ATOL + SUM_RTOL * scale[i], SUM_ATOL + SUM_RTOL * scale[n + i]);
                    let (a, b) = (want[i], want[n + i]);
                    let tol = 1.1 * ta * (b.abs() + tb) + silu(a).abs() * tb + 1e-6 * want_out[i].abs();
                    let err = (got[i] - want_out[i]).abs();
                    assert!(err <= tol, "{case} swiglu: out[{i}] = {}, want {} (tolerance {tol})", got[i], want_out[i]);
                }
            }
        }
    }
}

/// rms_norm_matvec_rope_kv_cache over packed weights (subgroup adapters): the norm, the Dot4
/// matvec's reference over the stacked q/k/v rows, then reference::rope_kv_cache; each rotated
/// element mixes two sums, so its tolerance is the sum of theirs (f32 cache).
#[test]
fn rms_norm_matvec_rope_kv_cache_packed_matches_reference() {
    const EPS: f32 = 1e-5;
    let heads = Heads { n_heads: 4, n_kv_heads: 2, head_dim: 16 };
    let (qw, kvw, capacity, pos) = (64, 32, 3, 2u32);
    let rows = qw + 2 * kvw;
    for gpu in gpus().iter().filter(|g| g.info().features.subgroups) {
        for dtype in PACKED {
            let k = 2 * dtype.group().unwrap();
            let case = format!("rms_norm_matvec_rope_kv_cache k={k} w={dtype} [{}]", path(gpu));
            let words = quantize_cpu(dtype, &weights(rows, k, 41), rows, k);
            let mut rng = Rng::new(42);
            let xs = rng.vec(k, 5.0);
            let gs: Vec<f32> = rng.vec(k, 0.5).iter().map(|v| v + 1.0).collect();
            let (k_before, v_before) = (rng.vec(capacity * kvw, 1.0), rng.vec(capacity * kvw, 1.0));
            let freqs = inv_freq(heads.head_dim, 10_000.0, None);
            let t32 = |shape: &[usize], data: &[f32]| Tensor::from_f32(gpu, shape, DType::F32, data).unwrap();
            let w = Tensor::from_words(gpu, &[rows, k], dtype, &words).unwrap();
            let (x, g, f) = (t32(&[k], &xs), t32(&[k], &gs), t32(&[heads.head_dim / 2], &freqs));
            let p = Tensor::from_u32(gpu, &[1], &[pos]).unwrap();
            let q = Tensor::empty(gpu, &[qw], DType::F32).unwrap();
            let (k_cache, v_cache) = (t32(&[capacity, kvw], &k_before), t32(&[capacity, kvw], &v_before));
            assert!(norm_qkv_rope::fits(gpu, &w, &x, &g, &f, heads), "{case}: fits");
            let (kc, vc) = (&k_cache, &v_cache);
            let op = norm_qkv_rope::rms_norm_matvec_rope_kv_cache(gpu, &x, &g, &w, &f, &p, &q, kc, vc, heads, EPS);
            let op = op.unwrap();
            let got_q = run_poisoned(gpu, &op, &q);
            let (got_k, got_v) = (k_cache.to_f32(gpu).unwrap(), v_cache.to_f32(gpu).unwrap());

            let normed = reference::rms_norm::rms_norm(&xs, &gs, EPS);
            let (qkv, scale) = packed_matvec_want(dtype, &words, rows, k, &normed, QuantPath::Dot4);
            let (mut want_k, mut want_v) = (k_before.clone(), v_before.clone());
            let want_q =
                reference::rope_kv_cache::rope_kv_cache(&qkv, &freqs, pos, &mut want_k, &mut want_v, 4, 2, 16);
            // Element e of a rotated part mixes the sums of e and its pair partner.
            let pair_scale = |part: usize, width: usize| -> Vec<f32> {
                let hd = heads.head_dim;
                (0..width).map(|e| scale[part + e] + scale[part + e / hd * hd + (e % hd + hd / 2) % hd]).collect()
            };
            assert_close_to_scale(&format!("{case} q"), &got_q, &want_q, &pair_scale(0, qw), SUM_RTOL, SUM_ATOL);
            let row = pos as usize * kvw..(pos as usize + 1) * kvw;
            let k_scale = pair_scale(qw, kvw);
            let (gk, wk) = (&got_k[row.clone()], &want_k[row.clone()]);
            assert_close_to_scale(&format!("{case} k"), gk, wk, &k_scale, SUM_RTOL, SUM_ATOL);
            let (gv, wv, v_scale) = (&got_v[row.clone()], &want_v[row.clone()], &scale[qw + kvw..]);
            assert_close_to_scale(&format!("{case} v"), gv, wv, v_scale, SUM_RTOL, SUM_ATOL);
            assert_eq!(got_k[..row.start], k_before[..row.start], "{case}: other cache rows untouched");
        }
    }
}

// ---- row chunks -----------------------------------------------------------------------------

/// A Q4 weight larger than one binding: its chunks tile the rows with aligned quants and
/// scales, and matvec, matmul and the GPU quantizer over chunks match the reference.
#[test]
fn packed_row_chunks_match_reference() {
    for gpu in small_binding_gpus() {
        for (dtype, n, k) in [(DType::Q4, 1001, 256), (DType::Q4G128, 301, 768), (DType::Q8, 77, 1056)] {
            let case = format!("chunks of [{n}, {k}] {dtype} [{}]", path(gpu));
            let (w, deq, terms) = packed_weight(gpu, dtype, n, k, 9);
            let chunks = assert_packed_chunks_tile(&case, gpu, &w, n, k);

            let xs = Rng::new(5).vec(k, 1.0);
            let x = Tensor::from_f32(gpu, &[k], DType::F32, &xs).unwrap();
            let y = Tensor::empty(gpu, &[n], DType::F32).unwrap();
            let words = quantize_cpu(dtype, &weights(n, k, 9), n, k);
            for quant in quant_paths(gpu) {
                let config = QuantMatvecConfig { path: quant, ..QuantMatvecConfig::for_weight(gpu, &w) };
                let op = matvec_quant_with(gpu, &w, &x, &y, config).unwrap();
                assert_eq!(op.labels().len(), chunks.len(), "{case}: a dispatch per chunk");
                let got = run_poisoned(gpu, &op, &y);
                let (want, scale) = packed_matvec_want(dtype, &words, n, k, &xs, quant);
                assert_close_to_scale(&format!("{case} matvec {quant:?}"), &got, &want, &scale, SUM_RTOL, SUM_ATOL);
            }

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
            let limit = gpu.info().max_binding_bytes;
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
    let config = |rows_per_workgroup, path| QuantMatvecConfig { workgroup_size: 64, rows_per_workgroup, path };
    assert!(shape(matvec_quant_with(gpu, &w, &x, &y, config(9, QuantPath::Float))), "Float rows");
    assert!(shape(matvec_quant_with(gpu, &w, &x, &y, config(0, QuantPath::Float))), "no rows");
    if gpu.info().features.subgroups {
        assert!(matvec_quant_with(gpu, &w, &x, &y, config(16, QuantPath::Dot4)).is_ok());
        assert!(shape(matvec_quant_with(gpu, &w, &x, &y, config(17, QuantPath::Dot4))), "Dot4 rows");
    }
    let portable = gpus().iter().find(|g| !g.info().features.subgroups);
    if let Some(p) = portable {
        let (w, x, y) = (
            Tensor::empty(p, &[4, 64], DType::Q4).unwrap(),
            Tensor::empty(p, &[64], DType::F32).unwrap(),
            Tensor::empty(p, &[4], DType::F32).unwrap(),
        );
        assert!(shape(matvec_quant_with(p, &w, &x, &y, config(2, QuantPath::Dot4))), "Dot4 without subgroups");
        assert_eq!(QuantMatvecConfig::for_weight(p, &w).path, QuantPath::Float);
    }
    let f16_w = t(&[4, 64], DType::F16);
    assert!(dtype(matvec_quant_with(gpu, &f16_w, &x, &y, config(2, QuantPath::Float))), "float w");
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
