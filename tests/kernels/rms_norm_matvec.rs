//! rms_norm_matvec vs its reference and vs the unfused pair (rms_norm, then matvec) on the GPU.
//! The fused kernel scales the row sums once instead of each normalised element, so it agrees
//! with the pair to rounding, under the matvec tests' tolerance (see tests/kernels/matvec.rs).

use crate::common::*;
use crate::matvec::{assert_close_to_scale, random_case, SUM_ATOL, SUM_RTOL};
use shaderlm_engine::kernels::{matvec, rms_norm, rms_norm_matvec};
use shaderlm_engine::{reference, DType, Error, Gpu, Recorder, Tensor};

const EPS: f32 = 1e-5;

/// Random x (scaled so its rms is far from 1) and a norm weight near 1.
pub fn random_norm_input(k: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut rng = Rng::new(seed);
    let x = rng.vec(k, 5.0);
    let g = rng.vec(k, 0.5).iter().map(|v| v + 1.0).collect();
    (x, g)
}

/// `sum_k |W[r, k] n[k]|` for the normalised x: the scale of the sums' rounding.
pub fn normed_scale(ws: &[f32], xs: &[f32], gs: &[f32], rows: usize) -> Vec<f32> {
    let normed = reference::rms_norm::rms_norm(xs, gs, EPS);
    let mut scale = vec![0.0; rows];
    reference::matvec::matvec_abs(ws, &normed, &mut scale);
    scale
}

/// The unfused ops on the GPU: rms_norm into a scratch vector, then `then(scratch)`.
pub fn unfused(gpu: &Gpu, x: &Tensor, g: &Tensor, then: impl FnOnce(&Tensor) -> Vec<shaderlm_engine::Op>) {
    let normed = Tensor::empty(gpu, x.shape(), DType::F32).unwrap();
    let mut ops = vec![rms_norm::rms_norm(gpu, x, g, &normed, EPS).unwrap()];
    ops.extend(then(&normed));
    let mut rec = Recorder::new(gpu);
    rec.run_all(&ops);
    rec.submit().unwrap();
}

#[test]
fn rms_norm_matvec_matches_reference_and_the_unfused_pair() {
    for gpu in gpus() {
        for (rows, k, dtype) in [
            (1, 8, DType::F16),
            (7, 64, DType::F16),
            (33, 576, DType::F16),
            (960, 576, DType::F16), // SmolLM2's stacked q/k/v
            (257, 1000, DType::F16),
            (5, 36, DType::F32),
            (130, 520, DType::F32),
        ] {
            let case = format!("rms_norm_matvec rows={rows} k={k} w={dtype} [{}]", path(gpu));
            let (ws, _) = random_case(rows, k, dtype, (rows * 7919 + k) as u64);
            let (xs, gs) = random_norm_input(k, k as u64);
            let w = Tensor::from_f32(gpu, &[rows, k], dtype, &ws).unwrap();
            let x = Tensor::from_f32(gpu, &[k], DType::F32, &xs).unwrap();
            let g = Tensor::from_f32(gpu, &[k], DType::F32, &gs).unwrap();
            let y = Tensor::empty(gpu, &[rows], DType::F32).unwrap();
            assert!(rms_norm_matvec::fits(gpu, &w, &x, &g), "{case}: fits");
            let got = run_poisoned(gpu, &rms_norm_matvec::rms_norm_matvec(gpu, &x, &g, &w, &y, EPS).unwrap(), &y);
            let want = reference::rms_norm_matvec::rms_norm_matvec(&xs, &gs, &ws, rows, EPS);
            let scale = normed_scale(&ws, &xs, &gs, rows);
            assert_close_to_scale(&case, &got, &want, &scale, SUM_RTOL, SUM_ATOL);

            let y2 = Tensor::empty(gpu, &[rows], DType::F32).unwrap();
            unfused(gpu, &x, &g, |normed| vec![matvec::matvec(gpu, &w, normed, &y2).unwrap()]);
            let pair = y2.to_f32(gpu).unwrap();
            assert_close_to_scale(&format!("{case} vs rms_norm + matvec"), &got, &pair, &scale, SUM_RTOL, SUM_ATOL);
        }
    }
}

#[test]
fn rms_norm_matvec_rejects_what_it_cannot_take() {
    let gpu = &gpus()[0];
    let t = |shape: &[usize], dtype| Tensor::empty(gpu, shape, dtype).unwrap();
    let f = rms_norm_matvec::rms_norm_matvec;
    let (w, x, g, y) = (t(&[16, 64], DType::F16), t(&[64], DType::F32), t(&[64], DType::F32), t(&[16], DType::F32));
    assert!(f(gpu, &x, &g, &w, &y, EPS).is_ok());
    assert!(matches!(f(gpu, &t(&[63], DType::F32), &g, &w, &y, EPS), Err(Error::Shape { .. })), "x length");
    assert!(matches!(f(gpu, &x, &t(&[32], DType::F32), &w, &y, EPS), Err(Error::Shape { .. })), "g length");
    assert!(matches!(f(gpu, &x, &g, &w, &t(&[15], DType::F32), EPS), Err(Error::Shape { .. })), "y length");
    assert!(matches!(f(gpu, &x, &g, &w, &x.rows(0, 16).unwrap(), EPS), Err(Error::Shape { .. })), "y aliasing x");
    let (w12, x12, g12) = (t(&[16, 12], DType::F16), t(&[12], DType::F32), t(&[12], DType::F32));
    assert!(!rms_norm_matvec::fits(gpu, &w12, &x12, &g12), "k % 8 != 0");
    assert!(matches!(f(gpu, &x12, &g12, &w12, &y, EPS), Err(Error::Shape { .. })), "k % 8 != 0");
    assert!(!rms_norm_matvec::fits(gpu, &w, &x, &t(&[64], DType::F16)), "f16 norm weight");
    assert!(matches!(f(gpu, &x, &t(&[64], DType::F16), &w, &y, EPS), Err(Error::DType { .. })));
    assert!(matches!(f(gpu, &x, &g, &t(&[16, 64], DType::U32), &y, EPS), Err(Error::DType { .. })));
}
