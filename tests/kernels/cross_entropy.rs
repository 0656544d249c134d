use crate::common::*;
use shaderlm_engine::{kernels, reference, DType, Tensor};

#[test]
fn cross_entropy_matches_reference() {
    for gpu in gpus() {
        for (rows, n) in [(1, 1), (7, 33), (33, 257), (3, 1000), (2, 49152)] {
            let mut rng = Rng::new((rows * n) as u64);
            let xs = rng.vec(rows * n, 8.0);
            let ts: Vec<u32> = (0..rows).map(|_| rng.below(n as u32)).collect();
            let x = Tensor::from_f32(gpu, &[rows, n], DType::F32, &xs).unwrap();
            let t = Tensor::from_u32(gpu, &[rows], &ts).unwrap();
            let nll = Tensor::empty(gpu, &[rows], DType::F32).unwrap();
            let got = run_poisoned(gpu, &kernels::cross_entropy::cross_entropy(gpu, &x, &t, &nll).unwrap(), &nll);
            let want = reference::cross_entropy::cross_entropy(&xs, n, &ts);
            assert_close(&format!("cross_entropy {rows}x{n} [{}]", path(gpu)), &got, &want, 1e-4, 1e-5);
        }
    }
}

#[test]
fn cross_entropy_rejects_mismatches() {
    let gpu = &gpus()[0];
    let x = Tensor::empty(gpu, &[4, 10], DType::F32).unwrap();
    let t = Tensor::empty(gpu, &[3], DType::U32).unwrap();
    let nll = Tensor::empty(gpu, &[4], DType::F32).unwrap();
    assert!(kernels::cross_entropy::cross_entropy(gpu, &x, &t, &nll).is_err());
    let t = Tensor::empty(gpu, &[4], DType::F32).unwrap();
    assert!(matches!(kernels::cross_entropy::cross_entropy(gpu, &x, &t, &nll), Err(shaderlm_engine::Error::DType { .. })));
}
