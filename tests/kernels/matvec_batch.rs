//! matvec_batch vs reference::matmul: F32, F16, Q8, Q4 and Q4G128 weights, a few rows of x, several workgroup
//! shapes (the batch of x rows per workgroup dividing m or not), the accumulating form, a weight
//! bound in row chunks, and that `matmul` takes it for a few rows.
//!
//! Tolerance: as for matvec (tests/kernels/matvec.rs): each output is an f32 sum of K products,
//! per thread and then a tree, so 1e-5 of sum_k |x[b, k] W[n, k]| plus 1e-7; a missing or doubled
//! term (a wrong row of x, a wrong word of W) moves an output by about 1 / K of that sum.

use crate::common::*;
use crate::matvec::{assert_close_to_scale, SUM_ATOL, SUM_RTOL};
use shaderlm_engine::kernels::matvec_batch::{matvec_batch, matvec_batch_with, MatvecBatchConfig};
use shaderlm_engine::{reference, DType, Error, Gpu, GpuOptions, Tensor};

/// Runs `y (+)= x w^T` on random data and checks every element; `config` None: the default.
fn check(gpu: &Gpu, (m, n, k): (usize, usize, usize), dtype: DType, config: Option<MatvecBatchConfig>, accumulate: bool) {
    let case = format!("matvec_batch m={m} n={n} k={k} w={dtype} {config:?} accumulate={accumulate} [{}]", path(gpu));
    let mut rng = Rng::new((m * 7919 + n * 131 + k * 3 + accumulate as usize) as u64);
    let xs = rng.vec(m * k, 1.0);
    let mut ws = rng.vec(n * k, 1.0);
    if dtype == DType::F16 {
        ws = round_f16(&ws);
    }
    // A packed weight: the reference sees its dequantized values.
    let packed = match dtype {
        DType::Q8 => Some(shaderlm_engine::dtype::quantize_q8(&ws, n, k).unwrap()),
        DType::Q4 | DType::Q4G128 => {
            Some(shaderlm_engine::dtype::quantize_q4(&ws, n, k, dtype.group().unwrap()).unwrap())
        }
        _ => None,
    };
    if let Some(words) = &packed {
        ws = shaderlm_engine::dtype::dequantize(dtype, words, n, k).unwrap();
    }
    let y0 = rng.vec(m * n, 1.0);
    let x = Tensor::from_f32(gpu, &[m, k], DType::F32, &xs).unwrap();
    let w = match &packed {
        Some(words) => Tensor::from_words(gpu, &[n, k], dtype, words).unwrap(),
        None => Tensor::from_f32(gpu, &[n, k], dtype, &ws).unwrap(),
    };
    let y = Tensor::from_f32(gpu, &[m, n], DType::F32, &y0).unwrap();
    let config = config.unwrap_or_else(|| MatvecBatchConfig::for_gpu(gpu, m));
    let op = matvec_batch_with(gpu, &x, &w, &y, config, accumulate).unwrap();
    // The accumulating form reads y, so it starts from y0; the plain one is checked from poison.
    let got = if accumulate {
        run(gpu, &op);
        y.to_f32(gpu).unwrap()
    } else {
        run_poisoned(gpu, &op, &y)
    };
    let (mut want, mut scale) = (vec![0.0; m * n], vec![0.0; m * n]);
    reference::matmul::matmul(&xs, &ws, &mut want, (m, n, k));
    reference::matmul::matmul_abs(&xs, &ws, &mut scale, (m, n, k));
    if accumulate {
        for i in 0..m * n {
            want[i] += y0[i];
            scale[i] += y0[i].abs();
        }
    }
    assert_close_to_scale(&case, &got, &want, &scale, SUM_RTOL, SUM_ATOL);
}

const SHAPES: [(usize, usize, usize); 7] =
    [(1, 7, 8), (2, 33, 64), (5, 1, 16), (8, 257, 40), (9, 17, 96), (17, 40, 264), (64, 9, 128)];

#[test]
fn matvec_batch_matches_reference() {
    for gpu in gpus() {
        for dtype in [DType::F32, DType::F16] {
            for shape in SHAPES {
                check(gpu, shape, dtype, None, false);
            }
        }
    }
}

/// Q8, Q4 and Q4G128 weights (k a multiple of their group), with the default and other shapes.
#[test]
fn matvec_batch_packed_matches_reference() {
    let config = MatvecBatchConfig { workgroup_size: 32, rows_per_workgroup: 3, batch: 5 };
    for gpu in gpus() {
        for dtype in [DType::Q8, DType::Q4, DType::Q4G128] {
            for shape in [(1, 7, 128), (5, 33, 256), (9, 17, 384)] {
                check(gpu, shape, dtype, None, false);
                check(gpu, shape, dtype, Some(config), true);
            }
        }
    }
}

#[test]
fn matvec_batch_shapes_and_accumulate() {
    let configs = [
        MatvecBatchConfig { workgroup_size: 64, rows_per_workgroup: 1, batch: 1 },
        MatvecBatchConfig { workgroup_size: 32, rows_per_workgroup: 3, batch: 5 },
        MatvecBatchConfig { workgroup_size: 16, rows_per_workgroup: 8, batch: 2 },
        MatvecBatchConfig { workgroup_size: 128, rows_per_workgroup: 1, batch: 16 },
    ];
    for gpu in gpus() {
        for config in configs {
            for shape in [(3, 19, 48), (11, 33, 136)] {
                check(gpu, shape, DType::F16, Some(config), false);
                check(gpu, shape, DType::F32, Some(config), true);
            }
        }
    }
}

#[test]
fn matvec_batch_binds_a_large_weight_in_row_chunks() {
    let gpu = Gpu::with_options(GpuOptions { max_binding_bytes: Some(16 << 10), ..Default::default() }).unwrap();
    // 300 rows of 64 f16 (128 bytes each): 38 KiB, three chunks of at most 16 KiB.
    let w = Tensor::empty(&gpu, &[300, 64], DType::F16).unwrap();
    assert!(w.row_chunks(&gpu).unwrap().len() >= 3);
    check(&gpu, (6, 300, 64), DType::F16, None, false);
    check(&gpu, (6, 300, 64), DType::F32, None, true);
    // 300 Q4 rows of 256: 128 bytes of quants and 32 of scales each, over 16 KiB in all.
    let w = Tensor::empty(&gpu, &[300, 256], DType::Q4).unwrap();
    assert!(w.row_chunks(&gpu).unwrap().len() >= 2);
    check(&gpu, (6, 300, 256), DType::Q4, None, true);
    check(&gpu, (3, 300, 256), DType::Q8, None, false);
}

#[test]
fn matmul_takes_it_for_a_few_rows_of_a_float_weight() {
    use shaderlm_engine::kernels::matmul::matmul;
    let gpu = &gpus()[0];
    let x = Tensor::from_f32(gpu, &[4, 64], DType::F32, &Rng::new(1).vec(256, 1.0)).unwrap();
    let w = Tensor::from_f32(gpu, &[16, 64], DType::F16, &Rng::new(2).vec(1024, 1.0)).unwrap();
    let y = Tensor::empty(gpu, &[4, 16], DType::F32).unwrap();
    assert_eq!(matmul(gpu, &x, &w, &y).unwrap().labels(), ["matvec_batch"]);
    let x = Tensor::from_f32(gpu, &[65, 64], DType::F32, &Rng::new(3).vec(65 * 64, 1.0)).unwrap();
    let y = Tensor::empty(gpu, &[65, 16], DType::F32).unwrap();
    assert_ne!(matmul(gpu, &x, &w, &y).unwrap().labels(), ["matvec_batch"]);
}

#[test]
fn matvec_batch_rejects_bad_input() {
    let gpu = &gpus()[0];
    let t = |shape: &[usize], dtype| Tensor::empty(gpu, shape, dtype).unwrap();
    let (x, w, y) = (t(&[4, 64], DType::F32), t(&[16, 64], DType::F16), t(&[4, 16], DType::F32));
    let shape_err = |r: Result<_, Error>| assert!(matches!(r, Err(Error::Shape { .. })), "{:?}", r.err());
    shape_err(matvec_batch(gpu, &x, &w, &t(&[4, 15], DType::F32)));
    shape_err(matvec_batch(gpu, &t(&[4, 63], DType::F32), &w, &y));
    // k = 60 is not whole 16-byte words of f16
    shape_err(matvec_batch(gpu, &t(&[4, 60], DType::F32), &t(&[16, 60], DType::F16), &y));
    shape_err(matvec_batch(gpu, &x, &w, &x));
    let bad = MatvecBatchConfig { workgroup_size: 64, rows_per_workgroup: 4, batch: 5 };
    shape_err(matvec_batch_with(gpu, &x, &w, &y, bad, false));
    let bad = MatvecBatchConfig { workgroup_size: 48, rows_per_workgroup: 1, batch: 1 };
    shape_err(matvec_batch_with(gpu, &x, &w, &y, bad, false));
    assert!(matches!(matvec_batch(gpu, &x, &t(&[16, 64], DType::S24F16), &y), Err(Error::DType { .. })));
}
