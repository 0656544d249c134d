use crate::common::*;
use shaderlm_engine::{kernels, reference, DType, Error, Tensor};

/// Runs copy_rows of a random [n_rows, row_len] block into a randomly filled [capacity, row_len]
/// cache at `pos` and checks every element: written rows against the reference (to f16 rounding
/// when the cache is f16), every other row unchanged to the bit.
fn check(gpu: &shaderlm_engine::Gpu, dtype: DType, n_rows: usize, row_len: usize, capacity: usize, pos: u32) {
    let case = format!("copy_rows {dtype} T={n_rows} n={row_len} capacity={capacity} pos={pos} [{}]", path(gpu));
    let mut rng = Rng::new((n_rows * 1000 + row_len * 10 + pos as usize) as u64);
    let round = |v: Vec<f32>| if dtype == DType::F16 { round_f16(&v) } else { v };
    let src_data = rng.vec(n_rows * row_len, 3.0);
    let before = round(rng.vec(capacity * row_len, 3.0));
    let src = Tensor::from_f32(gpu, &[n_rows, row_len], DType::F32, &src_data).unwrap();
    let dst = Tensor::from_f32(gpu, &[capacity, row_len], dtype, &before).unwrap();
    let pos_t = Tensor::from_u32(gpu, &[1], &[pos]).unwrap();
    run(gpu, &kernels::copy_rows::copy_rows(gpu, &src, &dst, &pos_t).unwrap());
    let got = dst.to_f32(gpu).unwrap();

    let mut want = before.clone();
    reference::copy_rows::copy_rows(&round(src_data), &mut want, row_len, pos as usize);
    let tol = if dtype == DType::F16 { 1e-3 } else { 0.0 };
    assert_close(&case, &got, &want, 0.0, tol);
    // Outside the written block: bit-exact (f16 halves sharing a word with the block included).
    let block = (pos as usize * row_len).min(got.len())..((pos as usize + n_rows) * row_len).min(got.len());
    for (i, (g, b)) in got.iter().zip(&before).enumerate() {
        assert!(block.contains(&i) || g.to_bits() == b.to_bits(), "{case}: element {i} outside the block changed");
    }
}

#[test]
fn copy_rows_matches_reference() {
    for gpu in gpus() {
        for dtype in [DType::F32, DType::F16] {
            for (n_rows, row_len, capacity, pos) in [
                (1, 1, 1, 0),
                (1, 7, 9, 5),      // odd row: f16 rows straddle words
                (3, 33, 10, 3),
                (5, 64, 40, 17),
                (7, 257, 20, 1),
                (4, 33, 10, 8),    // runs off the end: rows 10, 11 are dropped
                (2, 7, 10, 10),    // starts at capacity: nothing written
                (2, 7, 10, 4000),  // far past capacity
            ] {
                check(gpu, dtype, n_rows, row_len, capacity, pos);
            }
        }
    }
}

#[test]
fn copy_rows_replays_at_new_positions() {
    let gpu = &gpus()[0];
    let (row_len, capacity) = (5, 6);
    let dst = Tensor::from_f32(gpu, &[capacity, row_len], DType::F16, &vec![9.0; capacity * row_len]).unwrap();
    let src = Tensor::empty(gpu, &[1, row_len], DType::F32).unwrap();
    let pos = Tensor::from_u32(gpu, &[1], &[0]).unwrap();
    let op = kernels::copy_rows::copy_rows(gpu, &src, &dst, &pos).unwrap();
    let mut want = vec![9.0; capacity * row_len];
    for p in [0u32, 3, 1, 5] {
        let row: Vec<f32> = (0..row_len).map(|i| (p as usize * 10 + i) as f32).collect();
        src.write_f32(gpu, &row).unwrap();
        pos.write_u32(gpu, &[p]).unwrap();
        run(gpu, &op);
        reference::copy_rows::copy_rows(&row, &mut want, row_len, p as usize);
    }
    assert_close("copy_rows replay", &dst.to_f32(gpu).unwrap(), &want, 0.0, 0.0);
}

#[test]
fn copy_rows_rejects_mismatches() {
    let gpu = &gpus()[0];
    let t = |shape: &[usize], dtype| Tensor::empty(gpu, shape, dtype).unwrap();
    let (src, dst, pos) = (t(&[2, 8], DType::F32), t(&[16, 8], DType::F16), t(&[1], DType::U32));
    let op = |s: &Tensor, d: &Tensor, p: &Tensor| kernels::copy_rows::copy_rows(gpu, s, d, p);
    assert!(op(&src, &dst, &pos).is_ok());
    assert!(matches!(op(&t(&[2, 9], DType::F32), &dst, &pos), Err(Error::Shape { .. })));
    assert!(matches!(op(&t(&[16], DType::F32), &dst, &pos), Err(Error::Shape { .. })));
    assert!(matches!(op(&src, &dst, &t(&[2], DType::U32)), Err(Error::Shape { .. })));
    assert!(matches!(op(&t(&[2, 8], DType::F16), &dst, &pos), Err(Error::DType { .. })));
    assert!(matches!(op(&src, &t(&[16, 8], DType::U32), &pos), Err(Error::DType { .. })));
    assert!(matches!(op(&src, &dst, &t(&[1], DType::F32)), Err(Error::DType { .. })));
    assert!(matches!(op(&src, &src, &pos), Err(Error::Shape { .. })));
}
