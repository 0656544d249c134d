//! attention_decode_batched: each query row at its own position over its own cache slot.

use crate::common::*;
use shaderlm_engine::kernels::attention_decode::attention_decode_batched;
use shaderlm_engine::{reference, DType, Error, Gpu, Tensor};

/// (n_heads, n_kv_heads, head_dim).
type Heads = (usize, usize, usize);

/// Random queries and caches (every slot and row filled, so reading another slot's keys or keys
/// past a row's position fails), run at `pos` (one per row), compared with the reference.
fn check(gpu: &Gpu, dtype: DType, capacity: usize, pos: &[u32], heads: Heads, scale: f32) {
    let (n_heads, n_kv_heads, head_dim) = heads;
    let rows = pos.len();
    let case = format!("attention_decode_batched {dtype} capacity={capacity} pos={pos:?} heads={heads:?} [{}]", path(gpu));
    let mut rng = Rng::new((rows * 977 + capacity * 31 + head_dim) as u64);
    let round = |v: Vec<f32>| if dtype == DType::F16 { round_f16(&v) } else { v };
    let (qw, kvw) = (n_heads * head_dim, n_kv_heads * head_dim);
    let q = rng.vec(rows * qw, 1.0);
    let k = round(rng.vec(rows * capacity * kvw, 1.0));
    let v = round(rng.vec(rows * capacity * kvw, 1.0));
    let q_t = Tensor::from_f32(gpu, &[rows, qw], DType::F32, &q).unwrap();
    let k_t = Tensor::from_f32(gpu, &[rows, capacity, kvw], dtype, &k).unwrap();
    let v_t = Tensor::from_f32(gpu, &[rows, capacity, kvw], dtype, &v).unwrap();
    let out = Tensor::empty(gpu, &[rows, qw], DType::F32).unwrap();
    let pos_t = Tensor::from_u32(gpu, &[rows], pos).unwrap();
    let op = attention_decode_batched(gpu, &q_t, &k_t, &v_t, &out, &pos_t, n_heads, n_kv_heads, head_dim, scale).unwrap();
    let got = run_poisoned(gpu, &op, &out);
    let want = reference::attention_decode::attention_decode_batched(&q, &k, &v, pos, n_heads, n_kv_heads, head_dim, scale);
    assert_close(&case, &got, &want, 2e-5, 1e-4);

    // Replayed at other positions (rotated among the rows) by rewriting pos only.
    let moved: Vec<u32> = (0..rows).map(|b| pos[(b + 1) % rows]).collect();
    pos_t.write_u32(gpu, &moved).unwrap();
    let got = run_poisoned(gpu, &op, &out);
    let want = reference::attention_decode::attention_decode_batched(&q, &k, &v, &moved, n_heads, n_kv_heads, head_dim, scale);
    assert_close(&format!("{case} replayed at {moved:?}"), &got, &want, 2e-5, 1e-4);
}

#[test]
fn attention_decode_batched_matches_reference() {
    for gpu in gpus() {
        for dtype in [DType::F32, DType::F16] {
            check(gpu, dtype, 1, &[0], (8, 2, 64), 1.0 / 8.0);
            check(gpu, dtype, 300, &[0, 299, 17, 5000, 128], (8, 2, 64), 1.0 / 8.0); // 5000: past the end
            check(gpu, dtype, 33, &[32, 0, 7], (4, 4, 40), 0.5); // head_dim 40
            check(gpu, dtype, 20, &[3, 19], (6, 1, 128), 0.2); // one KV head shared by six
        }
        let many: Vec<u32> = (0..33).map(|b| (b * 5 % 17) as u32).collect();
        check(gpu, DType::F16, 17, &many, (9, 3, 64), 0.125); // SmolLM2's heads, 33 rows
    }
}

#[test]
fn attention_decode_batched_rejects_mismatches() {
    let gpu = &gpus()[0];
    let t = |shape: &[usize], dtype| Tensor::empty(gpu, shape, dtype).unwrap();
    let (q, k, v) = (t(&[3, 8 * 64], DType::F32), t(&[3, 16, 2 * 64], DType::F32), t(&[3, 16, 2 * 64], DType::F32));
    let (out, pos) = (t(&[3, 8 * 64], DType::F32), t(&[3], DType::U32));
    let f = attention_decode_batched;
    assert!(f(gpu, &q, &k, &v, &out, &pos, 8, 2, 64, 0.125).is_ok());
    let shape_err = |r: shaderlm_engine::Result<_>| matches!(r, Err(Error::Shape { .. }));
    let dtype_err = |r: shaderlm_engine::Result<_>| matches!(r, Err(Error::DType { .. }));
    assert!(shape_err(f(gpu, &q, &k, &v, &out, &t(&[1], DType::U32), 8, 2, 64, 0.125)), "one position for three rows");
    let two = (t(&[2, 8 * 64], DType::F32), t(&[2, 8 * 64], DType::F32));
    assert!(shape_err(f(gpu, &two.0, &k, &v, &two.1, &pos, 8, 2, 64, 0.125)), "rows vs slots");
    assert!(shape_err(f(gpu, &q, &t(&[48, 2 * 64], DType::F32), &t(&[48, 2 * 64], DType::F32), &out, &pos, 8, 2, 64, 0.125)), "2-D caches");
    assert!(shape_err(f(gpu, &q, &k, &t(&[3, 15, 2 * 64], DType::F32), &out, &pos, 8, 2, 64, 0.125)), "v rows");
    assert!(shape_err(f(gpu, &q, &k, &v, &out, &pos, 8, 3, 64, 0.125)), "n_heads not a multiple of n_kv_heads");
    assert!(shape_err(f(gpu, &q, &k, &v, &q, &pos, 8, 2, 64, 0.125)), "out aliases q");
    assert!(dtype_err(f(gpu, &q, &t(&[3, 16, 2 * 64], DType::F16), &v, &out, &pos, 8, 2, 64, 0.125)), "k, v dtypes differ");
    assert!(dtype_err(f(gpu, &q, &k, &v, &out, &t(&[3], DType::F32), 8, 2, 64, 0.125)), "pos f32");
}
