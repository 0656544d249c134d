use crate::common::*;
use shaderlm_engine::{kernels, reference, DType, Error, Recorder, Tensor};

const EPS: f32 = 1e-5;

#[test]
fn add_rms_norm_matches_reference_and_the_unfused_pair() {
    for gpu in gpus() {
        // Rows from 2048 columns on use 1024 threads: 4096 and 5000 exercise that path.
        for (rows, n) in [(1, 1), (3, 7), (2, 33), (1, 257), (5, 1000), (1, 4096), (2, 5000)] {
            for wdtype in [DType::F32, DType::F16] {
                let mut rng = Rng::new((rows * 10_000 + n) as u64 + 17);
                let xs = rng.vec(rows * n, 2.0);
                let ys = rng.vec(rows * n, 1.0);
                let mut ws: Vec<f32> = rng.vec(n, 1.0).iter().map(|w| w + 1.0).collect();
                if wdtype == DType::F16 {
                    ws = round_f16(&ws);
                }
                let x = Tensor::from_f32(gpu, &[rows, n], DType::F32, &xs).unwrap();
                let y = Tensor::from_f32(gpu, &[rows, n], DType::F32, &ys).unwrap();
                let w = Tensor::from_f32(gpu, &[n], wdtype, &ws).unwrap();
                let out = Tensor::empty(gpu, &[rows, n], DType::F32).unwrap();
                let op = kernels::add_rms_norm::add_rms_norm(gpu, &x, &y, &w, &out, EPS).unwrap();
                let got = run_poisoned(gpu, &op, &out);
                let got_x = x.to_f32(gpu).unwrap();
                let mut want_x = xs.clone();
                let want = reference::add_rms_norm::add_rms_norm(&mut want_x, &ys, &ws, EPS);
                let case = format!("add_rms_norm rows={rows} n={n} weight={wdtype} [{}]", path(gpu));
                assert_close(&format!("{case} x"), &got_x, &want_x, 0.0, 0.0);
                assert_close(&case, &got, &want, 1e-5, 1e-5);

                // The unfused pair on the GPU, from the same inputs.
                let x2 = Tensor::from_f32(gpu, &[rows, n], DType::F32, &xs).unwrap();
                let out2 = Tensor::empty(gpu, &[rows, n], DType::F32).unwrap();
                let add = kernels::add::add(gpu, &x2, &y).unwrap();
                let norm = kernels::rms_norm::rms_norm(gpu, &x2, &w, &out2, EPS).unwrap();
                let mut rec = Recorder::new(gpu);
                rec.run(&add);
                rec.run(&norm);
                rec.submit().unwrap();
                assert_close(&format!("{case} vs add + rms_norm"), &got, &out2.to_f32(gpu).unwrap(), 1e-6, 1e-6);
            }
        }
    }
}

#[test]
fn add_rms_norm_rejects_mismatches() {
    let gpu = &gpus()[0];
    let t = |shape: &[usize], dtype| Tensor::empty(gpu, shape, dtype).unwrap();
    let (x, y, w, out) = (t(&[2, 8], DType::F32), t(&[2, 8], DType::F32), t(&[8], DType::F32), t(&[2, 8], DType::F32));
    let f = kernels::add_rms_norm::add_rms_norm;
    assert!(matches!(f(gpu, &x, &t(&[2, 9], DType::F32), &w, &out, EPS), Err(Error::Shape { .. })), "y shape");
    assert!(matches!(f(gpu, &x, &y, &t(&[9], DType::F32), &out, EPS), Err(Error::Shape { .. })), "weight shape");
    assert!(matches!(f(gpu, &x, &y, &w, &t(&[3, 8], DType::F32), EPS), Err(Error::Shape { .. })), "out shape");
    assert!(matches!(f(gpu, &x, &y, &w, &x, EPS), Err(Error::Shape { .. })), "out aliasing x");
    assert!(matches!(f(gpu, &x, &x, &w, &out, EPS), Err(Error::Shape { .. })), "y aliasing x");
    assert!(matches!(f(gpu, &x, &y, &t(&[8], DType::U32), &out, EPS), Err(Error::DType { .. })));
    assert!(matches!(f(gpu, &t(&[2, 8], DType::F16), &y, &w, &out, EPS), Err(Error::DType { .. })));
}
