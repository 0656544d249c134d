//! 2:4 sparse weights (S24F16, S24Q4): the CPU formats (exact round trip for f16, half a step
//! for q4, every group keeps its non-zeros), and matvec, matvec_accumulate and matmul against
//! the CPU reference of the same format (dequantize, then an f64 dot) on every path, row
//! chunks, and errors.
//!
//! Tolerances. S24F16 stores its f16 inputs exactly. S24Q4 rounds each kept value to within
//! scale / 2 plus one f32 rounding (as Q4, tests/kernels/quant.rs). The kernels sum in f32, the
//! reference in f64; we allow 1e-5 of sum_k |term_k x[k]| plus 1e-7, where a term is the kept
//! value (S24F16) or |q scale| + |min| (S24Q4, summed as scale * sum(q x) + min * sum(x)): the
//! bound the float and Q4 matvec tests use. The S24Q4 `Dot4` path rounds x to int8 per block of
//! 32 first (both its terms use the rounded x): its reference is the sum over x as
//! `reference::matvec::round_x_int8` rounds it, with the same tolerance plus, for each x value
//! that lies on a rounding boundary (the GPU may round it the other way), one step of x times
//! the term (as tests/kernels/quant.rs does for Q4).

use shaderlm_engine::dtype::{self as packing, dequantize, pack_s24_f16, pack_s24_q4};
use shaderlm_engine::kernels::matmul::matmul;
use shaderlm_engine::kernels::matvec::{
    matvec, matvec_accumulate, matvec_quant_accumulate_with, matvec_quant_with, matvec_with, MatvecConfig,
    QuantMatvecConfig, QuantPath, MAX_S24_ROWS,
};
use shaderlm_engine::{reference, DType, Error, Gpu, Tensor};

use crate::common::*;
use crate::matvec::{assert_close_to_scale, SUM_ATOL, SUM_RTOL};

const SPARSE: [DType; 2] = [DType::S24F16, DType::S24Q4];

/// Random 2:4 sparse `[n, k]` values: each group of four holds two non-zeros (most groups), one
/// or none, at random positions; blocks of 64 differ in scale (1e-3 .. 10) and some in offset,
/// so that Q4 scales and mins cover several binades. Rounded through f16 (as S24F16 stores them).
fn sparse_weights(n: usize, k: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let mut w = vec![0.0; n * k];
    for (b, block) in w.chunks_mut(64).enumerate() {
        let scale = 10f32.powf(rng.uniform() * 2.0 - 1.0);
        let offset = if b % 5 == 0 { rng.uniform() * scale } else { 0.0 };
        for group in block.chunks_mut(4) {
            let count = [2, 2, 2, 2, 1, 0][rng.below(6) as usize];
            let first = rng.below(4) as usize;
            let second = (first + 1 + rng.below(3) as usize) % 4;
            for &p in [first, second].iter().take(count) {
                // Never exactly zero: a non-zero the test meant to keep.
                let v = rng.uniform() * scale + offset;
                group[p] = if v == 0.0 { scale } else { v };
            }
        }
    }
    round_f16(&w)
}

fn pack(dtype: DType, w: &[f32], n: usize, k: usize) -> Vec<u32> {
    match dtype {
        DType::S24F16 => pack_s24_f16(w, n, k).unwrap(),
        _ => pack_s24_q4(w, n, k).unwrap(),
    }
}

/// Per element, the largest |term| the kernels add for it: the kept value (S24F16), or
/// |q scale| + |min| (S24Q4); zero where pruned.
fn term_magnitudes(dtype: DType, words: &[u32], n: usize, k: usize) -> Vec<f32> {
    if dtype == DType::S24F16 {
        return dequantize(dtype, words, n, k).unwrap().iter().map(|v| v.abs()).collect();
    }
    let (qs, positions, scales, mins) = packing::unpack_s24_q4(words, n, k).unwrap();
    let mut terms = vec![0.0; n * k];
    for (i, (&q, &p)) in qs.iter().zip(&positions).enumerate() {
        let (s, m) = (scales[i / 32].to_f32(), mins[i / 32].to_f32());
        terms[(i / 2) * 4 + p as usize] = (q as f32 * s).abs() + m.abs();
    }
    terms
}

/// A sparse weight on `gpu` with its dequantized values and term magnitudes.
fn sparse_weight(gpu: &Gpu, dtype: DType, n: usize, k: usize, seed: u64) -> (Tensor, Vec<f32>, Vec<f32>) {
    let words = pack(dtype, &sparse_weights(n, k, seed), n, k);
    let w = Tensor::from_words(gpu, &[n, k], dtype, &words).unwrap();
    (w, dequantize(dtype, &words, n, k).unwrap(), term_magnitudes(dtype, &words, n, k))
}

// ---- CPU formats ----------------------------------------------------------------------------

#[test]
fn sparse_geometry() {
    // S24F16 [1, 4096]: 4096 bytes of values, then (aligned) 512 of positions.
    assert_eq!(DType::S24F16.bytes_for(4096), 4096 + 512);
    // S24Q4 [1, 4096]: 1024 bytes of quants, then 64 blocks of 12 bytes.
    assert_eq!(DType::S24Q4.bytes_for(4096), 1024 + 768);
    for d in SPARSE {
        let numel = 1 << 20;
        let per = d.bytes_for(numel) as f64 / numel as f64;
        assert!((per - d.bytes_per_element()).abs() < 1e-3, "{d}: {per} bytes per element");
        assert!(d.is_packed() && d.is_sparse() && !d.is_float());
    }
    assert_eq!((DType::S24F16.group(), DType::S24Q4.group()), (Some(32), Some(64)));
    assert!(DType::S24Q4.bytes_per_element() < DType::Q4.bytes_per_element());
    assert!(DType::S24F16.bytes_per_element() < 0.6 * DType::F16.bytes_per_element());
}

#[test]
fn s24_f16_round_trip_is_exact_and_keeps_every_non_zero() {
    let (n, k) = (9, 192);
    let w = sparse_weights(n, k, 1);
    let words = pack_s24_f16(&w, n, k).unwrap();
    assert_eq!(dequantize(DType::S24F16, &words, n, k).unwrap(), w, "f16 values come back exactly");
    let (values, positions) = packing::unpack_s24_f16(&words, n, k).unwrap();
    for (j, group) in w.chunks(4).enumerate() {
        let kept = [positions[2 * j], positions[2 * j + 1]];
        assert!(kept[0] < kept[1] && kept[1] < 4, "group {j}: positions {kept:?}");
        for p in (0..4).filter(|&p| group[p] != 0.0) {
            assert!(kept.contains(&(p as u8)), "group {j}: non-zero at {p} kept");
        }
    }
    let again = packing::pack_s24_f16_from_parts(&values, &positions, n, k).unwrap();
    assert!(again == words, "parts repack to the same words");
}

#[test]
fn s24_q4_round_trip_within_half_a_step_and_pruned_stay_zero() {
    let (n, k) = (7, 384);
    let w = sparse_weights(n, k, 2);
    let words = pack_s24_q4(&w, n, k).unwrap();
    let (qs, positions, scales, mins) = packing::unpack_s24_q4(&words, n, k).unwrap();
    let deq = dequantize(DType::S24Q4, &words, n, k).unwrap();
    for j in 0..n * k / 4 {
        let kept = [positions[2 * j] as usize, positions[2 * j + 1] as usize];
        for p in 0..4 {
            let e = 4 * j + p;
            if let Some(slot) = kept.iter().position(|&q| q == p) {
                let i = 2 * j + slot;
                let (s, m) = (scales[i / 32].to_f32(), mins[i / 32].to_f32());
                assert_eq!(deq[e], qs[i] as f32 * s + m, "dequantize is q * scale + min");
                let tol = s / 2.0 + 2f32.powi(-22) * (w[e].abs() + m.abs());
                assert!((w[e] - deq[e]).abs() <= tol, "element {e}: {} -> {} (scale {s}, min {m})", w[e], deq[e]);
            } else {
                assert_eq!(w[e], 0.0, "group {j}: the non-zero at {p} is kept");
                assert_eq!(deq[e], 0.0, "pruned elements are exactly zero");
            }
        }
    }
    assert!(qs.contains(&0) && qs.contains(&15), "the range is used");
    let again = packing::pack_s24_q4_from_parts(&qs, &positions, &scales, &mins, n, k).unwrap();
    assert!(again == words, "parts repack to the same words");
}

/// Parts unpacked from two weights and concatenated pack into the stacked weight (how the model
/// stacks q/k/v rows: models/src/llama.rs `stack_packed_rows`).
#[test]
fn parts_of_stacked_rows_concatenate() {
    let k = 192;
    let (top, bottom) = (sparse_weights(3, k, 5), sparse_weights(5, k, 6));
    let both: Vec<f32> = top.iter().chain(&bottom).copied().collect();
    let (a, b) = (pack_s24_f16(&top, 3, k).unwrap(), pack_s24_f16(&bottom, 5, k).unwrap());
    let ((va, pa), (vb, pb)) = (packing::unpack_s24_f16(&a, 3, k).unwrap(), packing::unpack_s24_f16(&b, 5, k).unwrap());
    let stacked = packing::pack_s24_f16_from_parts(&[va, vb].concat(), &[pa, pb].concat(), 8, k).unwrap();
    assert!(stacked == pack_s24_f16(&both, 8, k).unwrap(), "s24f16");
    let (a, b) = (pack_s24_q4(&top, 3, k).unwrap(), pack_s24_q4(&bottom, 5, k).unwrap());
    let (qa, pa, sa, ma) = packing::unpack_s24_q4(&a, 3, k).unwrap();
    let (qb, pb, sb, mb) = packing::unpack_s24_q4(&b, 5, k).unwrap();
    let (q, p, s, m) = ([qa, qb].concat(), [pa, pb].concat(), [sa, sb].concat(), [ma, mb].concat());
    let stacked = packing::pack_s24_q4_from_parts(&q, &p, &s, &m, 8, k).unwrap();
    assert!(stacked == pack_s24_q4(&both, 8, k).unwrap(), "s24q4");
}

#[test]
fn packing_rejects_dense_groups_and_bad_parts() {
    let shape = |r: Result<Vec<u32>, Error>| matches!(r, Err(Error::Shape { .. }));
    let mut w = vec![0.0; 64];
    w[40..43].copy_from_slice(&[1.0, 2.0, 3.0]);
    assert!(shape(pack_s24_f16(&w, 1, 64)), "three non-zeros in a group");
    assert!(shape(pack_s24_q4(&w, 1, 64)), "three non-zeros in a group");
    assert!(shape(pack_s24_f16(&[0.0; 48], 1, 48)), "k not a multiple of 32");
    assert!(shape(pack_s24_q4(&[0.0; 96], 1, 96)), "k not a multiple of 64");
    assert!(shape(pack_s24_f16(&[0.0; 64], 2, 64)), "length");
    let half = half::f16::ONE;
    assert!(shape(packing::pack_s24_f16_from_parts(&[half; 16], &[1; 16], 1, 32)), "equal positions");
    // The lower position first: the matvec kernels pick each slot's x among three positions.
    assert!(shape(packing::pack_s24_f16_from_parts(&[half; 16], &[2, 1].repeat(8), 1, 32)), "descending");
    let descending = [3u8, 0].repeat(16);
    assert!(shape(packing::pack_s24_q4_from_parts(&[1; 32], &descending, &[half], &[half], 1, 64)), "descending");
    assert!(shape(packing::pack_s24_f16_from_parts(&[half; 16], &[0, 4].repeat(8), 1, 32)), "position 4");
    let ok = [0u8, 1].repeat(16);
    assert!(packing::pack_s24_q4_from_parts(&[1; 32], &ok, &[half], &[half], 1, 64).is_ok());
    assert!(shape(packing::pack_s24_q4_from_parts(&[16; 32], &ok, &[half], &[half], 1, 64)), "q > 15");
    assert!(shape(packing::pack_s24_q4_from_parts(&[1; 32], &ok, &[], &[half], 1, 64)), "scale count");
}

// ---- kernels --------------------------------------------------------------------------------

/// What a sparse matvec on `path` should give for the weight (dequantized `deq`, term
/// magnitudes `terms`, `[n, k]`) and x `xs`: the reference y and, per row, the scale its
/// tolerance is proportional to, the x-rounding slack of `Dot4` folded in (so that
/// `SUM_ATOL + SUM_RTOL * scale` is the whole bound).
fn sparse_matvec_want(deq: &[f32], terms: &[f32], n: usize, xs: &[f32], path: QuantPath) -> (Vec<f32>, Vec<f32>) {
    let (mut want, mut scale) = (vec![0.0; n], vec![0.0; n]);
    reference::matvec::matvec_abs(terms, xs, &mut scale);
    if path == QuantPath::Float {
        reference::matvec::matvec(deq, xs, &mut want);
        return (want, scale);
    }
    let (rounded, slack) = reference::matvec::round_x_int8(xs);
    let (mut rounded_scale, mut off) = (vec![0.0; n], vec![0.0; n]);
    reference::matvec::matvec(deq, &rounded, &mut want);
    reference::matvec::matvec_abs(terms, &rounded, &mut rounded_scale);
    reference::matvec::matvec_abs(terms, &slack, &mut off);
    for r in 0..n {
        scale[r] = scale[r].max(rounded_scale[r]) + off[r] / SUM_RTOL;
    }
    (want, scale)
}

/// The shader a sparse matvec of `dtype` on `path` records on `gpu`.
fn sparse_shader(gpu: &Gpu, dtype: DType, path: QuantPath) -> &'static str {
    match (dtype, path, gpu.info().features.subgroups) {
        (DType::S24Q4, QuantPath::Dot4, _) => "matvec_s24q4_dot4",
        (_, _, true) => "matvec_s24_subgroup",
        (_, _, false) => "matvec_s24",
    }
}

/// The paths a sparse `dtype` offers on `gpu`: `Float`, and `Dot4` for S24Q4 with subgroups.
fn sparse_paths(gpu: &Gpu, dtype: DType) -> Vec<QuantPath> {
    if dtype == DType::S24Q4 && gpu.info().features.subgroups {
        vec![QuantPath::Float, QuantPath::Dot4]
    } else {
        vec![QuantPath::Float]
    }
}

fn check_matvec(gpu: &Gpu, dtype: DType, n: usize, k: usize, accumulate: bool) {
    let case = format!("matvec n={n} k={k} w={dtype} accumulate={accumulate} [{}]", path(gpu));
    let (w, deq, terms) = sparse_weight(gpu, dtype, n, k, (n * 31 + k) as u64);
    let mut rng = Rng::new(k as u64);
    let xs = rng.vec(k, 1.0);
    let x = Tensor::from_f32(gpu, &[k], DType::F32, &xs).unwrap();
    let y0 = rng.vec(n, 1.0);
    let y = Tensor::from_f32(gpu, &[n], DType::F32, &y0).unwrap();
    let path = QuantMatvecConfig::for_weight(gpu, &w).path;
    let (mut want, mut scale) = sparse_matvec_want(&deq, &terms, n, &xs, path);
    let got = if accumulate {
        let op = matvec_accumulate(gpu, &w, &x, &y).unwrap();
        run(gpu, &op);
        for i in 0..n {
            want[i] += y0[i];
            scale[i] += y0[i].abs();
        }
        y.to_f32(gpu).unwrap()
    } else {
        let op = matvec(gpu, &w, &x, &y).unwrap();
        assert_eq!(op.labels(), [sparse_shader(gpu, dtype, path)], "{case}: shader");
        run_poisoned(gpu, &op, &y)
    };
    assert_close_to_scale(&case, &got, &want, &scale, SUM_RTOL, SUM_ATOL);
}

#[test]
fn matvec_sparse_matches_reference() {
    for gpu in gpus() {
        for dtype in SPARSE {
            for k in [64, 192, 1024] {
                for n in [1, 7, 33, 257] {
                    check_matvec(gpu, dtype, n, k, false);
                }
            }
        }
    }
}

#[test]
fn matvec_accumulate_sparse_adds_into_y() {
    for gpu in gpus() {
        for dtype in SPARSE {
            for (n, k) in [(1, 64), (33, 192), (257, 1024)] {
                check_matvec(gpu, dtype, n, k, true);
            }
        }
    }
}

/// Every path (`Float`; `Dot4` for S24Q4 on subgroup adapters) in the workgroup shapes the
/// defaults and the sweep use: one row, odd row counts, more threads than a row has value words,
/// the most rows, one thread; plain and (odd n) accumulating.
#[test]
fn matvec_sparse_every_path_and_shape_matches_reference() {
    for gpu in gpus() {
        for dtype in SPARSE {
            for path in sparse_paths(gpu, dtype) {
                for (workgroup_size, rows_per_workgroup) in [(32, 1), (64, 3), (256, 8), (128, MAX_S24_ROWS), (1, 2)] {
                    let config = QuantMatvecConfig { workgroup_size, rows_per_workgroup, path };
                    for (n, k) in [(37, 192), (6, 2048), (1, 64)] {
                        check_matvec_with(gpu, dtype, n, k, config);
                    }
                }
            }
        }
    }
}

/// matvec_quant_with (and, for an odd `n`, matvec_quant_accumulate_with) of a sparse `[n, k]`
/// weight in `config` against the reference of its path.
fn check_matvec_with(gpu: &Gpu, dtype: DType, n: usize, k: usize, config: QuantMatvecConfig) {
    let case = format!("matvec n={n} k={k} w={dtype} {config:?} [{}]", path(gpu));
    let (w, deq, terms) = sparse_weight(gpu, dtype, n, k, (n * 13 + k) as u64);
    let mut rng = Rng::new(12 + k as u64);
    let xs = rng.vec(k, 1.0);
    let x = Tensor::from_f32(gpu, &[k], DType::F32, &xs).unwrap();
    let y = Tensor::empty(gpu, &[n], DType::F32).unwrap();
    let op = matvec_quant_with(gpu, &w, &x, &y, config).unwrap();
    assert_eq!(op.labels(), [sparse_shader(gpu, dtype, config.path)], "{case}: shader");
    let got = run_poisoned(gpu, &op, &y);
    let (mut want, mut scale) = sparse_matvec_want(&deq, &terms, n, &xs, config.path);
    assert_close_to_scale(&case, &got, &want, &scale, SUM_RTOL, SUM_ATOL);
    if n % 2 == 1 {
        let y0 = rng.vec(n, 1.0);
        y.write_f32(gpu, &y0).unwrap();
        run(gpu, &matvec_quant_accumulate_with(gpu, &w, &x, &y, config).unwrap());
        for i in 0..n {
            want[i] += y0[i];
            scale[i] += y0[i].abs();
        }
        let got = y.to_f32(gpu).unwrap();
        assert_close_to_scale(&format!("{case} accumulate"), &got, &want, &scale, SUM_RTOL, SUM_ATOL);
    }
}

/// `matvec_with` (a `MatvecConfig`) takes the `Float` path of a sparse weight in that shape.
#[test]
fn matvec_with_sparse_takes_the_float_path() {
    for gpu in gpus() {
        for dtype in SPARSE {
            let (n, k) = (37, 192);
            let case = format!("matvec_with n={n} k={k} w={dtype} [{}]", path(gpu));
            let (w, deq, terms) = sparse_weight(gpu, dtype, n, k, 11);
            let xs = Rng::new(12).vec(k, 1.0);
            let x = Tensor::from_f32(gpu, &[k], DType::F32, &xs).unwrap();
            let y = Tensor::empty(gpu, &[n], DType::F32).unwrap();
            let config = MatvecConfig { workgroup_size: 64, rows_per_workgroup: 16 };
            let op = matvec_with(gpu, &w, &x, &y, config).unwrap();
            assert_eq!(op.labels(), [sparse_shader(gpu, dtype, QuantPath::Float)], "{case}: shader");
            let got = run_poisoned(gpu, &op, &y);
            let (want, scale) = sparse_matvec_want(&deq, &terms, n, &xs, QuantPath::Float);
            assert_close_to_scale(&case, &got, &want, &scale, SUM_RTOL, SUM_ATOL);
        }
    }
}

fn check_matmul(gpu: &Gpu, w: &Tensor, deq: &[f32], terms: &[f32], m: usize, case: &str) {
    let (n, k) = (w.shape()[0], w.shape()[1]);
    let xs = Rng::new((m * 131 + k) as u64).vec(m * k, 1.0);
    let x = Tensor::from_f32(gpu, &[m, k], DType::F32, &xs).unwrap();
    let y = Tensor::empty(gpu, &[m, n], DType::F32).unwrap();
    let got = run_poisoned(gpu, &matmul(gpu, &x, w, &y).unwrap(), &y);
    let (mut want, mut scale) = (vec![0.0; m * n], vec![0.0; m * n]);
    reference::matmul::matmul(&xs, deq, &mut want, (m, n, k));
    reference::matmul::matmul_abs(&xs, terms, &mut scale, (m, n, k));
    assert_close_to_scale(case, &got, &want, &scale, SUM_RTOL, SUM_ATOL);
}

#[test]
fn matmul_sparse_matches_reference() {
    for gpu in gpus() {
        for dtype in SPARSE {
            for k in [64, 192, 1024] {
                for (m, n) in [(1, 7), (7, 33), (33, 257), (65, 1), (257, 7)] {
                    if k * (m + n) <= 100 * 1024 {
                        let case = format!("matmul m={m} n={n} k={k} w={dtype} [{}]", path(gpu));
                        let (w, deq, terms) = sparse_weight(gpu, dtype, n, k, (n * 7 + k) as u64);
                        check_matmul(gpu, &w, &deq, &terms, m, &case);
                    }
                }
            }
        }
    }
}

/// `Tensor::from_f32` packs a sparse dtype on the CPU; `to_f32` unpacks it.
#[test]
fn sparse_tensors_upload_from_f32() {
    let gpu = &gpus()[0];
    let (n, k) = (3, 128);
    let w = sparse_weights(n, k, 4);
    let t = Tensor::from_f32(gpu, &[n, k], DType::S24F16, &w).unwrap();
    assert_eq!(t.to_f32(gpu).unwrap(), w);
    let t = Tensor::from_f32(gpu, &[n, k], DType::S24Q4, &w).unwrap();
    let words = pack_s24_q4(&w, n, k).unwrap();
    assert_eq!(t.to_f32(gpu).unwrap(), dequantize(DType::S24Q4, &words, n, k).unwrap());
}

// ---- row chunks -----------------------------------------------------------------------------

/// A sparse weight larger than one binding: its chunks tile the rows with aligned values and
/// meta, and matvec, matvec_accumulate and matmul over chunks match the reference.
#[test]
fn sparse_row_chunks_match_reference() {
    for gpu in small_binding_gpus() {
        for (dtype, n, k) in [(DType::S24F16, 301, 1024), (DType::S24Q4, 601, 1024)] {
            let case = format!("chunks of [{n}, {k}] {dtype} [{}]", path(gpu));
            let (w, deq, terms) = sparse_weight(gpu, dtype, n, k, 9);
            let chunks = assert_packed_chunks_tile(&case, gpu, &w, n, k);

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

            // The S24Q4 Dot4 path over the same chunks (subgroup adapters).
            for path in sparse_paths(gpu, dtype).into_iter().filter(|&p| p == QuantPath::Dot4) {
                let config = QuantMatvecConfig { workgroup_size: 32, rows_per_workgroup: 4, path };
                let op = matvec_quant_with(gpu, &w, &x, &y, config).unwrap();
                assert_eq!(op.labels().len(), chunks.len(), "{case} {path:?}: a dispatch per chunk");
                let got = run_poisoned(gpu, &op, &y);
                let (want, scale) = sparse_matvec_want(&deq, &terms, n, &xs, path);
                assert_close_to_scale(&format!("{case} {path:?}"), &got, &want, &scale, SUM_RTOL, SUM_ATOL);
            }
            run_poisoned(gpu, &matvec(gpu, &w, &x, &y).unwrap(), &y);

            // Accumulating onto the result doubles it.
            run(gpu, &matvec_accumulate(gpu, &w, &x, &y).unwrap());
            let doubled: Vec<f32> = want.iter().map(|v| 2.0 * v).collect();
            let scale2: Vec<f32> = scale.iter().map(|v| 2.0 * v).collect();
            let got = y.to_f32(gpu).unwrap();
            assert_close_to_scale(&format!("{case} accumulate"), &got, &doubled, &scale2, SUM_RTOL, SUM_ATOL);

            check_matmul(gpu, &w, &deq, &terms, 3, &format!("{case} matmul"));
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

/// What a result was, for a failure message: the error, or "Ok".
fn outcome<T>(r: &Result<T, Error>) -> String {
    match r {
        Ok(_) => "Ok".to_string(),
        Err(e) => format!("{e:?}"),
    }
}

/// Asserts that `$r` (an expression giving a Result) matches `$check` (shape, dtype or ok),
/// naming the case and what came back (an H200 run failed here once with no way to tell which
/// line: every check now says what it got).
macro_rules! expect {
    ($check:ident, $r:expr, $($case:tt)+) => {{
        let r = $r;
        let what = outcome(&r);
        assert!($check(r), "{}: expected {}, got {what}", format!($($case)+), stringify!($check));
    }};
}

fn ok<T>(r: Result<T, Error>) -> bool {
    r.is_ok()
}

/// Bad shapes, dtypes and configs give errors, good ones ops. (This test once panicked on the
/// H200 with no word of which check: in main between the qspeed and second sparse merges it still
/// held `dtype(matvec_accumulate(Q4))`, which the packed accumulate epilogue had made false on
/// every adapter; each check now says what it got.)
#[test]
fn sparse_tensors_and_kernels_reject_bad_input() {
    let gpu = &gpus()[0];
    let t = |s: &[usize], d| Tensor::empty(gpu, s, d).unwrap();

    // The last axis must be whole blocks.
    expect!(shape, Tensor::empty(gpu, &[4, 48], DType::S24F16), "s24f16 k = 48");
    expect!(shape, Tensor::empty(gpu, &[4, 96], DType::S24Q4), "s24q4 k = 96");
    // A group with three non-zeros cannot be uploaded.
    let mut dense = vec![0.0; 64];
    dense[..3].copy_from_slice(&[1.0, 2.0, 3.0]);
    expect!(shape, Tensor::from_f32(gpu, &[1, 64], DType::S24F16, &dense), "s24f16 three non-zeros");
    expect!(shape, Tensor::from_f32(gpu, &[1, 64], DType::S24Q4, &dense), "s24q4 three non-zeros");

    for d in SPARSE {
        let (w, x, y) = (t(&[4, 64], d), t(&[64], DType::F32), t(&[4], DType::F32));
        expect!(ok, matvec(gpu, &w, &x, &y), "{d}: matvec");
        expect!(ok, matvec_accumulate(gpu, &w, &x, &y), "{d}: matvec_accumulate");
        expect!(dtype, matvec(gpu, &w, &t(&[64], DType::F16), &y), "{d}: f16 x");
        expect!(dtype, matvec(gpu, &w, &x, &t(&[4], DType::F16)), "{d}: f16 y");
        expect!(shape, matvec(gpu, &w, &t(&[32], DType::F32), &y), "{d}: x too short");
        expect!(shape, matvec_accumulate(gpu, &w, &x, &t(&[5], DType::F32)), "{d}: y too long");
        expect!(shape, matvec(gpu, &w, &x, &x), "{d}: y aliases x");
        let xm = t(&[2, 64], DType::F32);
        expect!(ok, matmul(gpu, &xm, &w, &t(&[2, 4], DType::F32)), "{d}: matmul");
        expect!(shape, matmul(gpu, &t(&[2, 128], DType::F32), &w, &t(&[2, 4], DType::F32)), "{d}: matmul k");
        expect!(shape, matmul(gpu, &xm, &w, &t(&[2, 5], DType::F32)), "{d}: matmul y");

        // Workgroup shapes: up to MAX_S24_ROWS rows on the float path, a power-of-two size.
        let config = |workgroup_size, rows_per_workgroup| QuantMatvecConfig {
            workgroup_size,
            rows_per_workgroup,
            path: QuantPath::Float,
        };
        expect!(ok, matvec_quant_with(gpu, &w, &x, &y, config(64, MAX_S24_ROWS)), "{d}: most rows");
        expect!(shape, matvec_quant_with(gpu, &w, &x, &y, config(64, MAX_S24_ROWS + 1)), "{d}: rows");
        expect!(shape, matvec_quant_with(gpu, &w, &x, &y, config(64, 0)), "{d}: no rows");
        expect!(shape, matvec_quant_with(gpu, &w, &x, &y, config(48, 2)), "{d}: 48 threads");
    }

    // Dot4: S24Q4 only, and only with subgroups.
    let (x, y) = (t(&[64], DType::F32), t(&[4], DType::F32));
    let dot4 = QuantMatvecConfig { workgroup_size: 32, rows_per_workgroup: 2, path: QuantPath::Dot4 };
    expect!(shape, matvec_quant_with(gpu, &t(&[4, 64], DType::S24F16), &x, &y, dot4), "s24f16 Dot4");
    for g in gpus() {
        let on = |s: &[usize], d| Tensor::empty(g, s, d).unwrap();
        let (w, x, y) = (on(&[4, 64], DType::S24Q4), on(&[64], DType::F32), on(&[4], DType::F32));
        let r = matvec_quant_with(g, &w, &x, &y, dot4);
        if g.info().features.subgroups {
            expect!(ok, r, "s24q4 Dot4 [{}]", path(g));
        } else {
            expect!(shape, r, "s24q4 Dot4 without subgroups [{}]", path(g));
        }
    }
}
