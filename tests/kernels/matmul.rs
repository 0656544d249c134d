//! matmul vs reference::matmul, F32 and F16 weights, on every path.
//!
//! Tolerance: as for matvec (see tests/kernels/matvec.rs): the GPU sums K products in f32 in
//! order, erring by at most about K * 2^-24 of sum_k |x[m, k] W[n, k]|; we allow 1e-5 of that
//! sum (K <= 257 here, so about 16x the worst case) plus 1e-7. Where `matmul` takes the tensor
//! cores (F16 weights, K % 4 == 0, an adapter with cooperative matrices) x is rounded to f16:
//! the reference gets x rounded the same way and the tolerance of tests/kernels/matmul_coop.rs.

use crate::common::*;
use crate::matmul_coop::{matmul_rtol, x_as_matmul_sees};
use crate::matvec::{assert_close_to_scale, SUM_ATOL, SUM_RTOL};
use shaderlm_engine::kernels::matmul::{matmul, matmul_with, MatmulConfig};
use shaderlm_engine::{reference, DType, Error, Gpu, Tensor};

fn check(gpu: &Gpu, m: usize, n: usize, k: usize, dtype: DType) {
    check_with(gpu, m, n, k, dtype, None)
}

/// `config`: None for what `matmul` picks on this adapter, else that workgroup shape.
fn check_with(gpu: &Gpu, m: usize, n: usize, k: usize, dtype: DType, config: Option<MatmulConfig>) {
    let case = format!("matmul m={m} n={n} k={k} w={dtype} {config:?} [{}]", path(gpu));
    let mut rng = Rng::new((m * 7919 + n * 131 + k) as u64);
    let xs = rng.vec(m * k, 1.0);
    let mut ws = rng.vec(n * k, 1.0);
    if dtype == DType::F16 {
        ws = round_f16(&ws);
    }
    let x = Tensor::from_f32(gpu, &[m, k], DType::F32, &xs).unwrap();
    let w = Tensor::from_f32(gpu, &[n, k], dtype, &ws).unwrap();
    let y = Tensor::empty(gpu, &[m, n], DType::F32).unwrap();
    let op = match config {
        Some(c) => matmul_with(gpu, &x, &w, &y, c).unwrap(),
        None => matmul(gpu, &x, &w, &y).unwrap(),
    };
    let got = run_poisoned(gpu, &op, &y);
    // An explicit config is always the tiled kernel; `matmul` may take the tensor cores.
    let (xs, rtol) = match config {
        Some(_) => (xs, SUM_RTOL),
        None => (x_as_matmul_sees(gpu, dtype, k, &xs), matmul_rtol(gpu, dtype, k, SUM_RTOL)),
    };
    let (mut want, mut scale) = (vec![0.0; m * n], vec![0.0; m * n]);
    reference::matmul::matmul(&xs, &ws, &mut want, (m, n, k));
    reference::matmul::matmul_abs(&xs, &ws, &mut scale, (m, n, k));
    assert_close_to_scale(&case, &got, &want, &scale, rtol, SUM_ATOL);
}

const NK: [(usize, usize); 6] = [(1, 1), (7, 33), (33, 7), (257, 100), (100, 257), (64, 64)];

#[test]
fn matmul_f32_matches_reference() {
    for gpu in gpus() {
        for m in [1, 7, 33, 65] {
            for (n, k) in NK {
                check(gpu, m, n, k, DType::F32);
            }
        }
    }
}

#[test]
fn matmul_f16_matches_reference() {
    for gpu in gpus() {
        for m in [1, 7, 33, 65] {
            for (n, k) in NK {
                check(gpu, m, n, k, DType::F16);
            }
        }
    }
}

#[test]
fn matmul_rejects_mismatches() {
    let gpu = &gpus()[0];
    let t = |shape: &[usize], dtype| Tensor::empty(gpu, shape, dtype).unwrap();
    let (x, w, y) = (t(&[3, 8], DType::F32), t(&[5, 8], DType::F16), t(&[3, 5], DType::F32));
    assert!(matmul(gpu, &x, &w, &y).is_ok());

    let shape = |r: Result<_, Error>| matches!(r, Err(Error::Shape { .. }));
    let dtype = |r: Result<_, Error>| matches!(r, Err(Error::DType { .. }));
    assert!(shape(matmul(gpu, &t(&[3, 9], DType::F32), &w, &y)), "k differs");
    assert!(shape(matmul(gpu, &x, &w, &t(&[3, 4], DType::F32))), "y columns");
    assert!(shape(matmul(gpu, &x, &w, &t(&[4, 5], DType::F32))), "y rows");
    assert!(shape(matmul(gpu, &x, &w, &t(&[15], DType::F32))), "y not 2-D");
    assert!(shape(matmul(gpu, &t(&[24], DType::F32), &w, &y)), "x not 2-D");
    let square = t(&[3, 5], DType::F32);
    assert!(shape(matmul(gpu, &square, &t(&[5, 5], DType::F32), &square)), "y aliases x");
    assert!(dtype(matmul(gpu, &t(&[3, 8], DType::F16), &w, &y)), "f16 x");
    assert!(dtype(matmul(gpu, &x, &t(&[5, 8], DType::U32), &y)), "u32 w");
    assert!(dtype(matmul(gpu, &x, &w, &t(&[3, 5], DType::F16))), "f16 y");
}

/// Both workgroup shapes `matmul` picks (16 x 16 on a GPU, 8 x 8 on a CPU adapter), whatever
/// the adapter, plus an odd one.
#[test]
fn matmul_workgroup_shapes_match_reference() {
    let gpu = &gpus()[0];
    for (threads_m, threads_n) in [(16, 16), (8, 8), (4, 8)] {
        let config = Some(MatmulConfig { threads_m, threads_n });
        for dtype in [DType::F32, DType::F16] {
            for (m, n, k) in [(1, 7, 33), (33, 257, 100), (65, 100, 257)] {
                check_with(gpu, m, n, k, dtype, config);
            }
        }
    }
    let (x, w, y) = (
        Tensor::empty(gpu, &[2, 4], DType::F32).unwrap(),
        Tensor::empty(gpu, &[3, 4], DType::F32).unwrap(),
        Tensor::empty(gpu, &[2, 3], DType::F32).unwrap(),
    );
    let bad = MatmulConfig { threads_m: 0, threads_n: 8 };
    assert!(matches!(matmul_with(gpu, &x, &w, &y, bad), Err(Error::Shape { .. })));
}
