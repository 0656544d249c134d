use crate::common::*;
use shaderlm_engine::{kernels, reference, DType, Error, Tensor};

const EPS: f32 = 1e-5;

#[test]
fn rms_norm_matches_reference() {
    for gpu in gpus() {
        // Rows from 2048 columns on use 1024 threads: 4096 and 5000 exercise that path.
        for (rows, n) in [(1, 1), (3, 7), (2, 33), (1, 257), (5, 1000), (1, 4096), (2, 5000)] {
            for wdtype in [DType::F32, DType::F16] {
                let mut rng = Rng::new((rows * 10_000 + n) as u64);
                let xs = rng.vec(rows * n, 2.0);
                let mut ws: Vec<f32> = rng.vec(n, 1.0).iter().map(|w| w + 1.0).collect();
                if wdtype == DType::F16 {
                    ws = round_f16(&ws);
                }
                let x = Tensor::from_f32(gpu, &[rows, n], DType::F32, &xs).unwrap();
                let w = Tensor::from_f32(gpu, &[n], wdtype, &ws).unwrap();
                let out = Tensor::empty(gpu, &[rows, n], DType::F32).unwrap();
                let op = kernels::rms_norm::rms_norm(gpu, &x, &w, &out, EPS).unwrap();
                let got = run_poisoned(gpu, &op, &out);
                let want = reference::rms_norm::rms_norm(&xs, &ws, EPS);
                let case = format!("rms_norm rows={rows} n={n} weight={wdtype} [{}]", path(gpu));
                assert_close(&case, &got, &want, 1e-5, 1e-5);
            }
        }
    }
}

#[test]
fn rms_norm_accepts_a_single_row_vector() {
    for gpu in gpus() {
        let n = 33;
        let xs = Rng::new(5).vec(n, 3.0);
        let ws = Rng::new(6).vec(n, 1.0);
        let x = Tensor::from_f32(gpu, &[n], DType::F32, &xs).unwrap();
        let w = Tensor::from_f32(gpu, &[n], DType::F32, &ws).unwrap();
        let out = Tensor::empty(gpu, &[n], DType::F32).unwrap();
        let got = run_poisoned(gpu, &kernels::rms_norm::rms_norm(gpu, &x, &w, &out, 0.5).unwrap(), &out);
        let want = reference::rms_norm::rms_norm(&xs, &ws, 0.5);
        assert_close(&format!("rms_norm [n] eps=0.5 [{}]", path(gpu)), &got, &want, 1e-5, 1e-5);
    }
}

#[test]
fn rms_norm_rejects_mismatches() {
    let gpu = &gpus()[0];
    let x = Tensor::empty(gpu, &[2, 8], DType::F32).unwrap();
    let w = Tensor::empty(gpu, &[8], DType::F32).unwrap();
    let out = Tensor::empty(gpu, &[2, 8], DType::F32).unwrap();
    let w9 = Tensor::empty(gpu, &[9], DType::F32).unwrap();
    let out3 = Tensor::empty(gpu, &[3, 8], DType::F32).unwrap();
    let wu = Tensor::empty(gpu, &[8], DType::U32).unwrap();
    let xh = Tensor::empty(gpu, &[2, 8], DType::F16).unwrap();
    let f = kernels::rms_norm::rms_norm;
    assert!(matches!(f(gpu, &x, &w9, &out, EPS), Err(Error::Shape { .. })));
    assert!(matches!(f(gpu, &x, &w, &out3, EPS), Err(Error::Shape { .. })));
    assert!(matches!(f(gpu, &x, &w, &x, EPS), Err(Error::Shape { .. })), "out aliasing x");
    assert!(matches!(f(gpu, &x, &wu, &out, EPS), Err(Error::DType { .. })));
    assert!(matches!(f(gpu, &xh, &w, &out, EPS), Err(Error::DType { .. })));
}
