use crate::common::*;
use shaderlm_engine::{kernels, reference, DType, Tensor};

#[test]
fn add_matches_reference() {
    for gpu in gpus() {
        for n in [1, 7, 33, 257, 1000, 70_001] {
            let mut rng = Rng::new(n as u64);
            let (xs, ys) = (rng.vec(n, 2.0), rng.vec(n, 2.0));
            let x = Tensor::from_f32(gpu, &[n], DType::F32, &xs).unwrap();
            let y = Tensor::from_f32(gpu, &[n], DType::F32, &ys).unwrap();
            run(gpu, &kernels::add::add(gpu, &x, &y).unwrap());
            let mut want = xs.clone();
            reference::add::add(&mut want, &ys);
            assert_close(&format!("add n={n} [{}]", path(gpu)), &x.to_f32(gpu).unwrap(), &want, 1e-6, 1e-6);
        }
    }
}

#[test]
fn add_rejects_mismatches() {
    let gpu = &gpus()[0];
    let x = Tensor::empty(gpu, &[8], DType::F32).unwrap();
    let y = Tensor::empty(gpu, &[9], DType::F32).unwrap();
    let h = Tensor::empty(gpu, &[8], DType::F16).unwrap();
    assert!(matches!(kernels::add::add(gpu, &x, &y), Err(shaderlm_engine::Error::Shape { .. })));
    assert!(matches!(kernels::add::add(gpu, &x, &h), Err(shaderlm_engine::Error::DType { .. })));
}
