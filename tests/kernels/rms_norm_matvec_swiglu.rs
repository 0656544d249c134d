//! rms_norm_matvec_swiglu vs its reference and vs the unfused ops (rms_norm, matvec over the
//! stacked weight, swiglu) on the GPU.

use crate::common::*;
use crate::matvec::{assert_close_to_scale, random_case, SUM_ATOL, SUM_RTOL};
use crate::rms_norm_matvec::{normed_scale, random_norm_input, unfused};
use shaderlm_engine::kernels::{matvec, rms_norm_matvec, rms_norm_matvec_swiglu, swiglu};
use shaderlm_engine::{reference, DType, Error, Tensor};

const EPS: f32 = 1e-5;

#[test]
fn rms_norm_matvec_swiglu_matches_reference_and_the_unfused_ops() {
    for gpu in gpus() {
        for (n, k, dtype) in [
            (1, 8, DType::F16),
            (7, 64, DType::F16),
            (33, 576, DType::F16),
            (257, 1000, DType::F16),
            (1536, 576, DType::F16), // SmolLM2's gate/up
            (5, 36, DType::F32),
            (130, 520, DType::F32),
        ] {
            let case = format!("rms_norm_matvec_swiglu n={n} k={k} w={dtype} [{}]", path(gpu));
            let (ws, _) = random_case(2 * n, k, dtype, (n * 7919 + k) as u64);
            let (xs, gs) = random_norm_input(k, k as u64 + 1);
            let w = Tensor::from_f32(gpu, &[2 * n, k], dtype, &ws).unwrap();
            let x = Tensor::from_f32(gpu, &[k], DType::F32, &xs).unwrap();
            let g = Tensor::from_f32(gpu, &[k], DType::F32, &gs).unwrap();
            let out = Tensor::empty(gpu, &[n], DType::F32).unwrap();
            assert!(rms_norm_matvec::fits(gpu, &w, &x, &g), "{case}: fits");
            let op = rms_norm_matvec_swiglu::rms_norm_matvec_swiglu(gpu, &x, &g, &w, &out, EPS).unwrap();
            let got = run_poisoned(gpu, &op, &out);

            // silu(a) * b from f64 sums; the tolerance follows the sums': d(silu(a) b) =
            // silu'(a) b da + silu(a) db, with |silu'| <= 1.1 and |silu(a)| <= |a| + 1.
            let want = reference::rms_norm_matvec_swiglu::rms_norm_matvec_swiglu(&xs, &gs, &ws, n, EPS);
            let ab = reference::rms_norm_matvec::rms_norm_matvec(&xs, &gs, &ws, 2 * n, EPS);
            let scale = normed_scale(&ws, &xs, &gs, 2 * n);
            let tol: Vec<f32> =
                (0..n).map(|i| 1.1 * ab[n + i].abs() * scale[i] + (ab[i].abs() + 1.0) * scale[n + i]).collect();
            assert_close_to_scale(&case, &got, &want, &tol, SUM_RTOL, SUM_ATOL);

            let gu = Tensor::empty(gpu, &[1, 2 * n], DType::F32).unwrap();
            let out2 = Tensor::empty(gpu, &[1, n], DType::F32).unwrap();
            unfused(gpu, &x, &g, |normed| {
                vec![matvec::matvec(gpu, &w, normed, &gu).unwrap(), swiglu::swiglu(gpu, &gu, &out2).unwrap()]
            });
            let ops = out2.to_f32(gpu).unwrap();
            assert_close_to_scale(&format!("{case} vs rms_norm + matvec + swiglu"), &got, &ops, &tol, SUM_RTOL, SUM_ATOL);
        }
    }
}

#[test]
fn rms_norm_matvec_swiglu_rejects_what_it_cannot_take() {
    let gpu = &gpus()[0];
    let t = |shape: &[usize], dtype| Tensor::empty(gpu, shape, dtype).unwrap();
    let f = rms_norm_matvec_swiglu::rms_norm_matvec_swiglu;
    let (w, x, g, out) = (t(&[16, 64], DType::F16), t(&[64], DType::F32), t(&[64], DType::F32), t(&[8], DType::F32));
    assert!(f(gpu, &x, &g, &w, &out, 1e-5).is_ok());
    assert!(matches!(f(gpu, &x, &g, &t(&[15, 64], DType::F16), &out, 1e-5), Err(Error::Shape { .. })), "odd rows");
    assert!(matches!(f(gpu, &x, &g, &w, &t(&[16], DType::F32), 1e-5), Err(Error::Shape { .. })), "out length");
    assert!(matches!(f(gpu, &x, &g, &t(&[16, 12], DType::F16), &out, 1e-5), Err(Error::Shape { .. })), "k % 8 != 0");
    assert!(matches!(f(gpu, &x, &g, &w, &x.rows(0, 8).unwrap(), 1e-5), Err(Error::Shape { .. })), "out aliasing x");
    assert!(matches!(f(gpu, &x, &g, &t(&[16, 64], DType::U32), &out, 1e-5), Err(Error::DType { .. })));
}
