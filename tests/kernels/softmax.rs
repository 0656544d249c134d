use crate::common::*;
use shaderlm_engine::{kernels, reference, DType, Error, Tensor};

#[test]
fn softmax_matches_reference() {
    for gpu in gpus() {
        // Rows from 2048 columns on use 1024 threads.
        for (rows, n) in [(1, 1), (3, 7), (2, 33), (1, 257), (4, 1000), (2, 5000), (1, 32_000)] {
            let mut rng = Rng::new((rows * 100_000 + n) as u64);
            // Wide logits (|x| up to 20) so the max subtraction matters.
            let xs = rng.vec(rows * n, 20.0);
            let x = Tensor::from_f32(gpu, &[rows, n], DType::F32, &xs).unwrap();
            run(gpu, &kernels::softmax::softmax(gpu, &x).unwrap());
            let mut want = xs.clone();
            reference::softmax::softmax(&mut want, n);
            let case = format!("softmax rows={rows} n={n} [{}]", path(gpu));
            assert_close(&case, &x.to_f32(gpu).unwrap(), &want, 1e-7, 1e-4);
        }
    }
}

#[test]
fn softmax_is_stable_for_large_logits_and_minus_infinity() {
    for gpu in gpus() {
        // exp(1000) overflows f32: only the max subtraction keeps this finite.
        let xs = [1000.0, 999.0, f32::NEG_INFINITY, 998.0, -1000.0];
        let x = Tensor::from_f32(gpu, &[xs.len()], DType::F32, &xs).unwrap();
        run(gpu, &kernels::softmax::softmax(gpu, &x).unwrap());
        let mut want = xs.to_vec();
        reference::softmax::softmax(&mut want, xs.len());
        assert_close(&format!("softmax large logits [{}]", path(gpu)), &x.to_f32(gpu).unwrap(), &want, 1e-7, 1e-5);
    }
}

#[test]
fn softmax_rejects_mismatches() {
    let gpu = &gpus()[0];
    let h = Tensor::empty(gpu, &[2, 8], DType::F16).unwrap();
    let cube = Tensor::empty(gpu, &[2, 2, 2], DType::F32).unwrap();
    assert!(matches!(kernels::softmax::softmax(gpu, &h), Err(Error::DType { .. })));
    assert!(matches!(kernels::softmax::softmax(gpu, &cube), Err(Error::Shape { .. })));
}
