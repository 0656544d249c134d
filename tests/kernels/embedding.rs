use crate::common::*;
use shaderlm_engine::{kernels, reference, DType, Error, Gpu, GpuOptions, Tensor};

/// Gathers `ids` from a random `[vocab, dim]` table of `dtype` on `gpu`, checks every element,
/// and returns the number of dispatches (one per row chunk).
fn check(gpu: &Gpu, vocab: usize, dim: usize, dtype: DType, ids: &[u32], case: &str) -> usize {
    let mut values = Rng::new((vocab * 1000 + dim) as u64).vec(vocab * dim, 3.0);
    if dtype == DType::F16 {
        values = round_f16(&values);
    }
    let table = Tensor::from_f32(gpu, &[vocab, dim], dtype, &values).unwrap();
    let ids_t = Tensor::from_u32(gpu, &[ids.len()], ids).unwrap();
    let out = Tensor::empty(gpu, &[ids.len(), dim], DType::F32).unwrap();
    let op = kernels::embedding::embedding(gpu, &table, &ids_t, &out).unwrap();
    let got = run_poisoned(gpu, &op, &out);
    let want = reference::embedding::embedding(&values, dim, ids);
    let case = format!("{case} vocab={vocab} dim={dim} table={dtype} dispatches={}", op.labels().len());
    assert_close(&case, &got, &want, 0.0, 0.0);
    op.labels().len()
}

#[test]
fn embedding_matches_reference() {
    for gpu in gpus() {
        for dim in [1, 7, 33, 257, 1000] {
            for dtype in [DType::F32, DType::F16] {
                let vocab = 50;
                let ids: Vec<u32> = {
                    let mut rng = Rng::new(dim as u64);
                    (0..9).map(|_| rng.below(vocab as u32)).chain([0, 49, 7, 7]).collect()
                };
                check(gpu, vocab, dim, dtype, &ids, &format!("embedding [{}]", path(gpu)));
            }
        }
    }
}

#[test]
fn embedding_writes_zeros_for_out_of_range_ids() {
    let gpu = &gpus()[0];
    check(gpu, 20, 5, DType::F16, &[3, 20, 19, u32::MAX, 0], "embedding out-of-range ids");
    check(gpu, 20, 5, DType::F32, &[21, 2], "embedding out-of-range ids");
}

#[test]
fn embedding_binds_a_large_table_in_row_chunks() {
    // A 16 KiB binding limit splits these small tables into several chunks.
    let small = Gpu::with_options(GpuOptions { max_binding_bytes: Some(16 << 10), ..Default::default() }).unwrap();
    let (vocab, ids) = (301, [0u32, 300, 150, 150, 77, 299, 1, 200, 300, 301, 123_456, 64]);
    // Odd dims: f16 rows start mid-word, and chunks must still start on even elements.
    for (dim, dtype) in [(37, DType::F16), (37, DType::F32), (33, DType::F16), (64, DType::F16)] {
        let table_bytes = dtype.bytes_for(vocab * dim);
        assert!(table_bytes > 16 << 10, "the table must not fit one binding");
        let dispatches = check(&small, vocab, dim, dtype, &ids, "embedding chunked");
        assert!(dispatches > 1, "dim={dim} {dtype}: expected several chunks, got {dispatches}");
    }
}

#[test]
fn embedding_rejects_mismatches() {
    let gpu = &gpus()[0];
    let table = Tensor::empty(gpu, &[10, 4], DType::F16).unwrap();
    let ids = Tensor::from_u32(gpu, &[3], &[1, 2, 3]).unwrap();
    let out = Tensor::empty(gpu, &[3, 4], DType::F32).unwrap();
    let f = kernels::embedding::embedding;
    assert!(f(gpu, &table, &ids, &out).is_ok());
    let out_wrong = Tensor::empty(gpu, &[3, 5], DType::F32).unwrap();
    assert!(matches!(f(gpu, &table, &ids, &out_wrong), Err(Error::Shape { .. })));
    let out_f16 = Tensor::empty(gpu, &[3, 4], DType::F16).unwrap();
    assert!(matches!(f(gpu, &table, &ids, &out_f16), Err(Error::DType { .. })));
    let ids_f32 = Tensor::empty(gpu, &[3], DType::F32).unwrap();
    assert!(matches!(f(gpu, &table, &ids_f32, &out), Err(Error::DType { .. })));
    let flat_table = Tensor::empty(gpu, &[40], DType::F32).unwrap();
    assert!(matches!(f(gpu, &flat_table, &ids, &out), Err(Error::Shape { .. })));
    let ids_2d = Tensor::from_u32(gpu, &[1, 3], &[1, 2, 3]).unwrap();
    assert!(matches!(f(gpu, &table, &ids_2d, &out), Err(Error::Shape { .. })));
}
