use crate::common::*;
use shaderlm_engine::{kernels, reference, DType, Error, Tensor};

/// Runs argmax on `rows` rows of `xs` and returns the indices (output poisoned first).
fn gpu_argmax(gpu: &shaderlm_engine::Gpu, rows: usize, xs: &[f32]) -> Vec<u32> {
    let n = xs.len() / rows;
    let x = Tensor::from_f32(gpu, &[rows, n], DType::F32, xs).unwrap();
    let out = Tensor::empty(gpu, &[rows], DType::U32).unwrap();
    out.fill_words(gpu, POISON).unwrap();
    run(gpu, &kernels::argmax::argmax(gpu, &x, &out).unwrap());
    out.to_u32(gpu).unwrap()
}

#[test]
fn argmax_matches_reference() {
    for gpu in gpus() {
        // 4096 columns per block: 9000 is three blocks, 151936 is 38.
        for (rows, n) in [(1, 1), (2, 7), (3, 33), (1, 257), (4, 1000), (3, 9000), (1, 32_000), (1, 151_936)] {
            let xs = Rng::new((rows * 1_000_000 + n) as u64).vec(rows * n, 10.0);
            let got = gpu_argmax(gpu, rows, &xs);
            assert_eq!(got, reference::argmax::argmax(&xs, n), "argmax rows={rows} n={n} [{}]", path(gpu));
        }
    }
}

#[test]
fn argmax_ties_go_to_the_lowest_index() {
    for gpu in gpus() {
        for n in [7, 1000, 40_000] {
            let mut xs = Rng::new(n as u64).vec(n, 1.0);
            // The maximum appears three times, in different threads and (n = 40000) blocks.
            for i in [n / 3, n / 2, n - 1] {
                xs[i] = 5.0;
            }
            assert_eq!(gpu_argmax(gpu, 1, &xs), vec![(n / 3) as u32], "ties n={n} [{}]", path(gpu));
            // All equal: index 0.
            assert_eq!(gpu_argmax(gpu, 1, &vec![-2.5; n]), vec![0], "all equal n={n} [{}]", path(gpu));
        }
        // -0.0 and 0.0 are equal: the first wins.
        assert_eq!(gpu_argmax(gpu, 1, &[-1.0, -0.0, 0.0, -3.0]), vec![1], "signed zeros [{}]", path(gpu));
    }
}

#[test]
fn argmax_never_picks_nan() {
    for gpu in gpus() {
        // Two blocks per row: the second row's only number is in its second block.
        let n = 5000;
        let mut xs = Rng::new(3).vec(n, 1.0);
        xs[10] = f32::NAN;
        xs[400] = 7.0;
        xs[4999] = f32::NAN;
        let mut row2 = vec![f32::NAN; n];
        row2[4500] = f32::NEG_INFINITY;
        let row3 = vec![f32::NAN; n];
        let mut all = xs.clone();
        all.extend(&row2);
        all.extend(&row3);
        let got = gpu_argmax(gpu, 3, &all);
        assert_eq!(got, vec![400, 4500, 0], "NaN rows [{}]", path(gpu));
        assert_eq!(got, reference::argmax::argmax(&all, n));
        // Infinity is a value like any other.
        assert_eq!(gpu_argmax(gpu, 1, &[1.0, f32::INFINITY, f32::NAN, 2.0]), vec![1]);
    }
}

#[test]
fn argmax_rejects_mismatches() {
    let gpu = &gpus()[0];
    let x = Tensor::empty(gpu, &[2, 8], DType::F32).unwrap();
    let out = Tensor::empty(gpu, &[2], DType::U32).unwrap();
    let out3 = Tensor::empty(gpu, &[3], DType::U32).unwrap();
    let outf = Tensor::empty(gpu, &[2], DType::F32).unwrap();
    let xh = Tensor::empty(gpu, &[2, 8], DType::F16).unwrap();
    let f = kernels::argmax::argmax;
    assert!(f(gpu, &x, &out).is_ok());
    assert!(matches!(f(gpu, &x, &out3), Err(Error::Shape { .. })));
    assert!(matches!(f(gpu, &x, &outf), Err(Error::DType { .. })));
    assert!(matches!(f(gpu, &xh, &out), Err(Error::DType { .. })));
}
