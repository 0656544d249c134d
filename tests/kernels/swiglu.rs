use crate::common::*;
use shaderlm_engine::{kernels, reference, DType, Error, Tensor};

#[test]
fn swiglu_matches_reference_and_silu_mul_on_the_halves() {
    for gpu in gpus() {
        for (rows, n) in [(1, 1), (1, 7), (3, 33), (2, 257), (1, 1000), (5, 70_001)] {
            let mut rng = Rng::new((rows * 100_000 + n) as u64 + 3);
            // Gates up to |g| = 12 cover both tails of the sigmoid.
            let gus: Vec<f32> = (0..rows)
                .flat_map(|_| {
                    let mut row = rng.vec(n, 12.0);
                    row.extend(rng.vec(n, 2.0));
                    row
                })
                .collect();
            let gu = Tensor::from_f32(gpu, &[rows, 2 * n], DType::F32, &gus).unwrap();
            let out = Tensor::empty(gpu, &[rows, n], DType::F32).unwrap();
            let got = run_poisoned(gpu, &kernels::swiglu::swiglu(gpu, &gu, &out).unwrap(), &out);
            let case = format!("swiglu rows={rows} n={n} [{}]", path(gpu));
            assert_close(&case, &got, &reference::swiglu::swiglu(&gus, n), 1e-6, 1e-5);

            // silu_mul on the halves, copied into their own tensors: the same arithmetic.
            let half = |from: usize| -> Vec<f32> { gus.chunks(2 * n).flat_map(|r| r[from..from + n].to_vec()).collect() };
            let gate = Tensor::from_f32(gpu, &[rows, n], DType::F32, &half(0)).unwrap();
            let up = Tensor::from_f32(gpu, &[rows, n], DType::F32, &half(n)).unwrap();
            let out2 = Tensor::empty(gpu, &[rows, n], DType::F32).unwrap();
            let unfused = run_poisoned(gpu, &kernels::silu_mul::silu_mul(gpu, &gate, &up, &out2).unwrap(), &out2);
            assert_close(&format!("{case} vs silu_mul"), &got, &unfused, 0.0, 0.0);
        }
    }
}

#[test]
fn swiglu_rejects_mismatches() {
    let gpu = &gpus()[0];
    let t = |shape: &[usize], dtype| Tensor::empty(gpu, shape, dtype).unwrap();
    let f = kernels::swiglu::swiglu;
    assert!(f(gpu, &t(&[2, 16], DType::F32), &t(&[2, 8], DType::F32)).is_ok());
    assert!(matches!(f(gpu, &t(&[2, 15], DType::F32), &t(&[2, 8], DType::F32)), Err(Error::Shape { .. })), "odd gu");
    assert!(matches!(f(gpu, &t(&[2, 16], DType::F32), &t(&[3, 8], DType::F32)), Err(Error::Shape { .. })), "rows");
    assert!(matches!(f(gpu, &t(&[16], DType::F32), &t(&[8], DType::F32)), Err(Error::Shape { .. })), "rank");
    let gu = t(&[2, 16], DType::F32);
    assert!(matches!(f(gpu, &gu, &gu.rows(0, 1).unwrap().reshape(&[2, 8]).unwrap()), Err(Error::Shape { .. })), "aliasing");
    assert!(matches!(f(gpu, &t(&[2, 16], DType::F16), &t(&[2, 8], DType::F32)), Err(Error::DType { .. })));
}
