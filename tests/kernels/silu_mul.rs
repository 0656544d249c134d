use crate::common::*;
use shaderlm_engine::{kernels, reference, DType, Error, Tensor};

#[test]
fn silu_mul_matches_reference() {
    for gpu in gpus() {
        for (rows, n) in [(1, 1), (1, 7), (3, 33), (2, 257), (1, 1000), (5, 70_001)] {
            let mut rng = Rng::new((rows * 100_000 + n) as u64);
            // Gates up to |g| = 12 cover both tails of the sigmoid.
            let (gs, us) = (rng.vec(rows * n, 12.0), rng.vec(rows * n, 2.0));
            let gate = Tensor::from_f32(gpu, &[rows, n], DType::F32, &gs).unwrap();
            let up = Tensor::from_f32(gpu, &[rows, n], DType::F32, &us).unwrap();
            let out = Tensor::empty(gpu, &[rows, n], DType::F32).unwrap();
            let got = run_poisoned(gpu, &kernels::silu_mul::silu_mul(gpu, &gate, &up, &out).unwrap(), &out);
            let want = reference::silu_mul::silu_mul(&gs, &us);
            assert_close(&format!("silu_mul rows={rows} n={n} [{}]", path(gpu)), &got, &want, 1e-6, 1e-5);
        }
    }
}

#[test]
fn silu_mul_saturates_without_nan() {
    for gpu in gpus() {
        let gs = [-1000.0, -90.0, -88.0, 0.0, 88.0, 1000.0];
        let us = [1.5; 6];
        let gate = Tensor::from_f32(gpu, &[6], DType::F32, &gs).unwrap();
        let up = Tensor::from_f32(gpu, &[6], DType::F32, &us).unwrap();
        let out = Tensor::empty(gpu, &[6], DType::F32).unwrap();
        let got = run_poisoned(gpu, &kernels::silu_mul::silu_mul(gpu, &gate, &up, &out).unwrap(), &out);
        let want = reference::silu_mul::silu_mul(&gs, &us);
        assert_close(&format!("silu_mul extremes [{}]", path(gpu)), &got, &want, 1e-6, 1e-5);
    }
}

#[test]
fn silu_mul_rejects_mismatches() {
    let gpu = &gpus()[0];
    let a = Tensor::empty(gpu, &[2, 8], DType::F32).unwrap();
    let b = Tensor::empty(gpu, &[2, 8], DType::F32).unwrap();
    let out = Tensor::empty(gpu, &[2, 8], DType::F32).unwrap();
    let wide = Tensor::empty(gpu, &[2, 9], DType::F32).unwrap();
    let flat = Tensor::empty(gpu, &[16], DType::F32).unwrap();
    let h = Tensor::empty(gpu, &[2, 8], DType::F16).unwrap();
    let f = kernels::silu_mul::silu_mul;
    assert!(matches!(f(gpu, &a, &wide, &out), Err(Error::Shape { .. })));
    assert!(matches!(f(gpu, &a, &b, &flat), Err(Error::Shape { .. })));
    assert!(matches!(f(gpu, &a, &b, &a), Err(Error::Shape { .. })), "out aliasing gate");
    assert!(matches!(f(gpu, &a, &b, &b), Err(Error::Shape { .. })), "out aliasing up");
    assert!(matches!(f(gpu, &h, &b, &out), Err(Error::DType { .. })));
    assert!(matches!(f(gpu, &a, &b, &h), Err(Error::DType { .. })));
}
