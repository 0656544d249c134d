//! matvec_swiglu vs its reference and vs the unfused pair (matvec over the stacked weight, then
//! swiglu) on the GPU, which sums in the same order: the two must agree to the bit.

use crate::common::*;
use crate::matvec::{random_case, SUM_ATOL, SUM_RTOL};
use shaderlm_engine::kernels::{matvec, matvec_swiglu, swiglu};
use shaderlm_engine::{reference, DType, Error, Recorder, Tensor};

#[test]
fn matvec_swiglu_matches_reference_and_the_unfused_pair() {
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
            let case = format!("matvec_swiglu n={n} k={k} w={dtype} [{}]", path(gpu));
            let (ws, xs) = random_case(2 * n, k, dtype, (n * 7919 + k) as u64);
            let w = Tensor::from_f32(gpu, &[2 * n, k], dtype, &ws).unwrap();
            let x = Tensor::from_f32(gpu, &[k], DType::F32, &xs).unwrap();
            let out = Tensor::empty(gpu, &[n], DType::F32).unwrap();
            assert!(matvec_swiglu::fits(gpu, &w, &x), "{case}: fits");
            let got = run_poisoned(gpu, &matvec_swiglu::matvec_swiglu(gpu, &w, &x, &out).unwrap(), &out);

            // Reference: silu(g) * u with g, u from f64 sums; the tolerance follows the sums'.
            let want = reference::matvec_swiglu::matvec_swiglu(&ws, &xs, n);
            let mut gu = vec![0.0; 2 * n];
            let mut scale = vec![0.0; 2 * n];
            reference::matvec::matvec(&ws, &xs, &mut gu);
            reference::matvec::matvec_abs(&ws, &xs, &mut scale);
            // d(silu(g) u) = silu'(g) u dg + silu(g) du, with |silu'| <= 1.1 and |silu(g)| <= |g| + 1.
            let tol: Vec<f32> =
                (0..n).map(|i| 1.1 * gu[n + i].abs() * scale[i] + (gu[i].abs() + 1.0) * scale[n + i]).collect();
            crate::matvec::assert_close_to_scale(&case, &got, &want, &tol, SUM_RTOL, SUM_ATOL);

            // The unfused pair.
            let gu_t = Tensor::empty(gpu, &[2 * n], DType::F32).unwrap();
            let out2 = Tensor::empty(gpu, &[1, n], DType::F32).unwrap();
            let ops = [
                matvec::matvec(gpu, &w, &x, &gu_t).unwrap(),
                swiglu::swiglu(gpu, &gu_t.reshape(&[1, 2 * n]).unwrap(), &out2).unwrap(),
            ];
            let mut rec = Recorder::new(gpu);
            rec.run_all(&ops);
            rec.submit().unwrap();
            assert_close(&format!("{case} vs matvec + swiglu"), &got, &out2.to_f32(gpu).unwrap(), 0.0, 0.0);
        }
    }
}

#[test]
fn matvec_swiglu_rejects_what_it_cannot_take() {
    let gpu = &gpus()[0];
    let t = |shape: &[usize], dtype| Tensor::empty(gpu, shape, dtype).unwrap();
    let f = matvec_swiglu::matvec_swiglu;
    let (w, x, out) = (t(&[16, 64], DType::F16), t(&[64], DType::F32), t(&[8], DType::F32));
    assert!(f(gpu, &w, &x, &out).is_ok());
    assert!(matches!(f(gpu, &t(&[15, 64], DType::F16), &x, &out), Err(Error::Shape { .. })), "odd rows");
    assert!(matches!(f(gpu, &w, &t(&[63], DType::F32), &out), Err(Error::Shape { .. })), "x length");
    assert!(matches!(f(gpu, &w, &x, &t(&[16], DType::F32)), Err(Error::Shape { .. })), "out length");
    let w_odd = t(&[16, 12], DType::F16);
    assert!(!matvec_swiglu::fits(gpu, &w_odd, &t(&[12], DType::F32)), "k % 8 != 0");
    assert!(matches!(f(gpu, &w_odd, &t(&[12], DType::F32), &out), Err(Error::Shape { .. })), "k % 8 != 0");
    assert!(matches!(f(gpu, &t(&[16, 64], DType::U32), &x, &out), Err(Error::DType { .. })));
    assert!(matches!(f(gpu, &w, &x, &x.reshape(&[64]).unwrap().rows(0, 8).unwrap()), Err(Error::Shape { .. })), "out aliasing x");
}
