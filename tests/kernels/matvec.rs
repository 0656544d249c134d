//! matvec vs reference::matvec, F32 and F16 weights, on the vectorized and scalar shaders and
//! on every path (subgroup and portable reduction).
//!
//! Tolerance: the GPU sums in f32, the reference in f64. Summing K products in f32 (partial sums
//! per thread, then a tree) errs by at most about (K / threads + log2 threads) * 2^-24 of the
//! sum of |terms|, which is under 1e-5 of it for every shape here; we allow 1e-5 of
//! sum_k |W[n, k] x[k]| plus 1e-7. A missing or doubled term moves an output by about
//! 1 / K of that sum, far more than the tolerance, so such bugs fail.

use crate::common::*;
use shaderlm_engine::kernels::matvec::{matvec, matvec_with, MatvecConfig};
use shaderlm_engine::{reference, DType, Error, Gpu, Tensor};

pub const SUM_RTOL: f32 = 1e-5;
pub const SUM_ATOL: f32 = 1e-7;

/// Every element within `atol + rtol * scale[i]` of `want[i]`, where `scale` is the sum of the
/// absolute values of the terms summed (what an f32 accumulation's rounding is proportional to).
#[track_caller]
pub fn assert_close_to_scale(case: &str, got: &[f32], want: &[f32], scale: &[f32], rtol: f32, atol: f32) {
    assert_eq!(got.len(), want.len(), "{case}: length");
    let bad: Vec<usize> = (0..got.len())
        .filter(|&i| {
            let err = (got[i] - want[i]).abs();
            err.is_nan() || err > atol + rtol * scale[i]
        })
        .collect();
    if let Some(&i) = bad.first() {
        panic!(
            "{case}: {} of {} elements off (first at {i}: got {}, want {}, tolerance {atol} + {rtol} * {})",
            bad.len(),
            got.len(),
            got[i],
            want[i],
            scale[i]
        );
    }
}

/// Random weight `[n, k]` (as the reference sees it: rounded through f16 for F16) and x.
pub fn random_case(n: usize, k: usize, dtype: DType, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut rng = Rng::new(seed);
    let mut w = rng.vec(n * k, 1.0);
    if dtype == DType::F16 {
        w = round_f16(&w);
    }
    (w, rng.vec(k, 1.0))
}

/// Runs matvec on `gpu` for a random case and checks every output against the reference.
fn check(gpu: &Gpu, n: usize, k: usize, dtype: DType, config: Option<MatvecConfig>) {
    let case = format!("matvec n={n} k={k} w={dtype} config={config:?} [{}]", path(gpu));
    let (ws, xs) = random_case(n, k, dtype, (n * 1_000_003 + k) as u64);
    let w = Tensor::from_f32(gpu, &[n, k], dtype, &ws).unwrap();
    let x = Tensor::from_f32(gpu, &[k], DType::F32, &xs).unwrap();
    let y = Tensor::empty(gpu, &[n], DType::F32).unwrap();
    let op = match config {
        Some(c) => matvec_with(gpu, &w, &x, &y, c),
        None => matvec(gpu, &w, &x, &y),
    }
    .unwrap();
    let elements_per_word = if dtype == DType::F16 { 8 } else { 4 };
    let shader = match (k.is_multiple_of(elements_per_word), gpu.info().features.subgroups) {
        (true, true) => "matvec_subgroup",
        (true, false) => "matvec",
        (false, _) => "matvec_scalar",
    };
    assert_eq!(op.labels(), [shader], "{case}: shader");
    let got = run_poisoned(gpu, &op, &y);
    let (mut want, mut scale) = (vec![0.0; n], vec![0.0; n]);
    reference::matvec::matvec(&ws, &xs, &mut want);
    reference::matvec::matvec_abs(&ws, &xs, &mut scale);
    assert_close_to_scale(&case, &got, &want, &scale, SUM_RTOL, SUM_ATOL);
}

// k % 8 == 0 takes the vectorized shaders; other k the scalar one (F32 with k % 4 == 0 is
// vectorized too: 36).
const SHAPES: [(usize, usize); 11] =
    [(1, 1), (7, 33), (33, 7), (9, 36), (5, 8), (33, 64), (257, 1000), (1000, 257), (3, 1000), (64, 4096), (130, 520)];

#[test]
fn matvec_f32_matches_reference() {
    for gpu in gpus() {
        for (n, k) in SHAPES {
            check(gpu, n, k, DType::F32, None);
        }
    }
}

#[test]
fn matvec_f16_matches_reference() {
    for gpu in gpus() {
        for (n, k) in SHAPES {
            check(gpu, n, k, DType::F16, None);
        }
    }
}

#[test]
fn matvec_other_workgroup_shapes_match_reference() {
    // The default (what a discrete GPU gets) and odd ones; `matvec` on lavapipe uses another.
    let configs = [(256, 2), (256, 4), (32, 1), (64, 3), (128, 8), (1, 2)];
    assert_eq!(MatvecConfig::default(), MatvecConfig { workgroup_size: 256, rows_per_workgroup: 2 });
    for gpu in gpus() {
        for (workgroup_size, rows_per_workgroup) in configs {
            let config = MatvecConfig { workgroup_size, rows_per_workgroup };
            for dtype in [DType::F32, DType::F16] {
                for (n, k) in [(37, 1000), (11, 33)] {
                    check(gpu, n, k, dtype, Some(config));
                }
            }
        }
    }
}

#[test]
fn matvec_accepts_row_shaped_vectors() {
    let gpu = &gpus()[0];
    let (n, k) = (5, 16);
    let (ws, xs) = random_case(n, k, DType::F16, 5);
    let w = Tensor::from_f32(gpu, &[n, k], DType::F16, &ws).unwrap();
    let x = Tensor::from_f32(gpu, &[1, k], DType::F32, &xs).unwrap();
    let y = Tensor::empty(gpu, &[1, n], DType::F32).unwrap();
    let got = run_poisoned(gpu, &matvec(gpu, &w, &x, &y).unwrap(), &y);
    let (mut want, mut scale) = (vec![0.0; n], vec![0.0; n]);
    reference::matvec::matvec(&ws, &xs, &mut want);
    reference::matvec::matvec_abs(&ws, &xs, &mut scale);
    assert_close_to_scale("matvec [1, k] x, [1, n] y", &got, &want, &scale, SUM_RTOL, SUM_ATOL);
}

#[test]
fn matvec_rejects_mismatches() {
    let gpu = &gpus()[0];
    let t = |shape: &[usize], dtype| Tensor::empty(gpu, shape, dtype).unwrap();
    let (w, x, y) = (t(&[4, 8], DType::F16), t(&[8], DType::F32), t(&[4], DType::F32));
    assert!(matvec(gpu, &w, &x, &y).is_ok());

    let shape = |r: Result<_, Error>| matches!(r, Err(Error::Shape { .. }));
    let dtype = |r: Result<_, Error>| matches!(r, Err(Error::DType { .. }));
    assert!(shape(matvec(gpu, &w, &t(&[9], DType::F32), &y)), "x too long");
    assert!(shape(matvec(gpu, &w, &x, &t(&[3], DType::F32))), "y too short");
    assert!(shape(matvec(gpu, &w, &t(&[2, 8], DType::F32), &y)), "x with two rows");
    assert!(shape(matvec(gpu, &t(&[32], DType::F16), &x, &y)), "w not 2-D");
    assert!(shape(matvec(gpu, &w, &x, &x)), "y aliases x");
    assert!(dtype(matvec(gpu, &t(&[4, 8], DType::U32), &x, &y)), "u32 weight");
    assert!(dtype(matvec(gpu, &w, &t(&[8], DType::F16), &y)), "f16 x");
    assert!(dtype(matvec(gpu, &w, &x, &t(&[4], DType::F16))), "f16 y");

    let bad = |workgroup_size, rows_per_workgroup| {
        matvec_with(gpu, &w, &x, &y, MatvecConfig { workgroup_size, rows_per_workgroup }).is_err()
    };
    assert!(bad(96, 4), "workgroup size not a power of two");
    assert!(bad(64, 0), "zero rows per workgroup");
    assert!(bad(64, 9), "more rows per workgroup than the accumulators hold");
    assert!(bad(1 << 20, 1), "workgroup larger than the device allows");
    assert!(bad(1 << 12, 8), "workgroup larger than the device allows");
}

#[test]
fn matvec_degenerate_shapes() {
    for gpu in gpus() {
        // k == 0: every output is an empty sum.
        let w = Tensor::empty(gpu, &[3, 0], DType::F16).unwrap();
        let x = Tensor::empty(gpu, &[0], DType::F32).unwrap();
        let y = Tensor::empty(gpu, &[3], DType::F32).unwrap();
        let got = run_poisoned(gpu, &matvec(gpu, &w, &x, &y).unwrap(), &y);
        assert_eq!(got, [0.0; 3], "k = 0 [{}]", path(gpu));
        // n == 0: nothing to do.
        let w = Tensor::empty(gpu, &[0, 8], DType::F32).unwrap();
        let x = Tensor::from_f32(gpu, &[8], DType::F32, &[1.0; 8]).unwrap();
        let y = Tensor::empty(gpu, &[0], DType::F32).unwrap();
        assert!(matvec(gpu, &w, &x, &y).unwrap().labels().is_empty());
    }
}

#[test]
fn matvec_accumulate_adds_into_y() {
    for gpu in gpus() {
        // Scalar (k = 33), vectorized F16 (64) and F32 (36) shaders.
        for (n, k, dtype) in [(7, 33, DType::F16), (33, 64, DType::F16), (9, 36, DType::F32), (257, 1000, DType::F16)] {
            let case = format!("matvec_accumulate n={n} k={k} w={dtype} [{}]", path(gpu));
            let (ws, xs) = random_case(n, k, dtype, (n * 31 + k) as u64);
            let y0 = Rng::new(n as u64).vec(n, 4.0);
            let w = Tensor::from_f32(gpu, &[n, k], dtype, &ws).unwrap();
            let x = Tensor::from_f32(gpu, &[k], DType::F32, &xs).unwrap();
            let y = Tensor::from_f32(gpu, &[n], DType::F32, &y0).unwrap();
            run(gpu, &shaderlm_engine::kernels::matvec::matvec_accumulate(gpu, &w, &x, &y).unwrap());
            let (mut want, mut scale) = (vec![0.0; n], vec![0.0; n]);
            reference::matvec::matvec(&ws, &xs, &mut want);
            reference::matvec::matvec_abs(&ws, &xs, &mut scale);
            let want: Vec<f32> = want.iter().zip(&y0).map(|(a, b)| a + b).collect();
            let scale: Vec<f32> = scale.iter().zip(&y0).map(|(a, b)| a + b.abs()).collect();
            assert_close_to_scale(&case, &y.to_f32(gpu).unwrap(), &want, &scale, SUM_RTOL, SUM_ATOL);
        }
    }
}
