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

#[test]
fn add_bias_matches_reference() {
    for gpu in gpus() {
        for (rows, n) in [(1, 1), (3, 7), (2, 33), (1, 257), (4, 1000), (7, 896)] {
            for bdtype in [DType::F32, DType::F16] {
                let mut rng = Rng::new((rows * 10_000 + n) as u64);
                let xs = rng.vec(rows * n, 2.0);
                let mut bs = rng.vec(n, 1.0);
                if bdtype == DType::F16 {
                    bs = round_f16(&bs);
                }
                let x = Tensor::from_f32(gpu, &[rows, n], DType::F32, &xs).unwrap();
                let b = Tensor::from_f32(gpu, &[n], bdtype, &bs).unwrap();
                run(gpu, &kernels::add::add_bias(gpu, &x, &b).unwrap());
                let mut want = xs.clone();
                reference::add::add_bias(&mut want, &bs);
                let case = format!("add_bias rows={rows} n={n} bias={bdtype} [{}]", path(gpu));
                assert_close(&case, &x.to_f32(gpu).unwrap(), &want, 1e-6, 1e-6);
            }
        }
    }
}

#[test]
fn add_bias_rejects_mismatches() {
    let gpu = &gpus()[0];
    let x = Tensor::empty(gpu, &[2, 8], DType::F32).unwrap();
    let b9 = Tensor::empty(gpu, &[9], DType::F32).unwrap();
    let bu = Tensor::empty(gpu, &[8], DType::U32).unwrap();
    let xh = Tensor::empty(gpu, &[2, 8], DType::F16).unwrap();
    let b = Tensor::empty(gpu, &[8], DType::F32).unwrap();
    let f = kernels::add::add_bias;
    assert!(matches!(f(gpu, &x, &b9), Err(shaderlm_engine::Error::Shape { .. })));
    assert!(matches!(f(gpu, &x, &bu), Err(shaderlm_engine::Error::DType { .. })));
    assert!(matches!(f(gpu, &xh, &b), Err(shaderlm_engine::Error::DType { .. })));
    let row = x.rows(0, 1).unwrap().reshape(&[8]).unwrap();
    assert!(matches!(f(gpu, &x, &row), Err(shaderlm_engine::Error::Shape { .. })), "bias aliasing x");
}

#[test]
fn copy_kernel_copies_every_word() {
    for gpu in gpus() {
        let mut rng = Rng::new(5);
        let words: Vec<u32> = (0..4100).map(|_| rng.next_u64() as u32).collect();
        let src = Tensor::from_words(gpu, &[4100], DType::U32, &words).unwrap();
        let dst = Tensor::empty(gpu, &[4100], DType::U32).unwrap();
        dst.fill_words(gpu, POISON).unwrap();
        run(gpu, &kernels::copy::copy(gpu, &src, &dst).unwrap());
        assert_eq!(dst.to_words(gpu).unwrap(), words, "[{}]", path(gpu));
        let odd = Tensor::empty(gpu, &[4101], DType::U32).unwrap();
        assert!(kernels::copy::copy(gpu, &src, &odd).is_err());
    }
}
