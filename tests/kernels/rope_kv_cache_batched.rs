use crate::common::*;
use shaderlm_engine::kernels::{rope, rope_kv_cache::rope_kv_cache_batched};
use shaderlm_engine::{reference, DType, Error, Gpu, Tensor};

/// As tests/kernels/rope_kv_cache.rs: exact angle reduction leaves f32 sin/cos and rounding.
const ATOL: f32 = 2e-6;
const RTOL: f32 = 1e-5;

/// Runs the op on random qkv over randomly filled caches, a different position per row (some at
/// or past the capacity); checks q and every cache element against the reference (written rows
/// to f16 rounding, every other element to the bit).
fn check(gpu: &Gpu, (n_heads, n_kv_heads, head_dim, rot_dim): (usize, usize, usize, usize), capacity: usize, pos: &[u32], dtype: DType) {
    let rows = pos.len();
    let (qw, kvw) = (n_heads * head_dim, n_kv_heads * head_dim);
    let case = format!(
        "rope_kv_cache_batched B={rows} heads={n_heads}/{n_kv_heads} head_dim={head_dim} rot_dim={rot_dim} capacity={capacity} pos={pos:?} cache={dtype} [{}]",
        path(gpu)
    );
    let mut rng = Rng::new((rows * 1000 + qw * 10 + capacity) as u64);
    let round = |v: Vec<f32>| if dtype == DType::F16 { round_f16(&v) } else { v };
    let qkv_data = rng.vec(rows * (qw + 2 * kvw), 1.0);
    let k_before = round(rng.vec(rows * capacity * kvw, 1.0));
    let v_before = round(rng.vec(rows * capacity * kvw, 1.0));
    let freqs = rope::inv_freq(rot_dim, 10_000.0, None);

    let qkv = Tensor::from_f32(gpu, &[rows, qw + 2 * kvw], DType::F32, &qkv_data).unwrap();
    let f = Tensor::from_f32(gpu, &[freqs.len()], DType::F32, &freqs).unwrap();
    let p = Tensor::from_u32(gpu, &[rows], pos).unwrap();
    let q = Tensor::empty(gpu, &[rows, qw], DType::F32).unwrap();
    let k_cache = Tensor::from_f32(gpu, &[rows, capacity, kvw], dtype, &k_before).unwrap();
    let v_cache = Tensor::from_f32(gpu, &[rows, capacity, kvw], dtype, &v_before).unwrap();
    let op = rope_kv_cache_batched(gpu, &qkv, &f, &p, &q, &k_cache, &v_cache, n_heads, n_kv_heads, head_dim).unwrap();
    let got_q = run_poisoned(gpu, &op, &q);
    let got_k = k_cache.to_f32(gpu).unwrap();
    let got_v = v_cache.to_f32(gpu).unwrap();

    let (mut want_k, mut want_v) = (k_before.clone(), v_before.clone());
    let want_q = reference::rope_kv_cache_batched::rope_kv_cache_batched(
        &qkv_data, &freqs, pos, &mut want_k, &mut want_v, n_heads, n_kv_heads, head_dim,
    );
    assert_close(&format!("{case} q"), &got_q, &want_q, ATOL, RTOL);
    let (cache_atol, cache_rtol) = if dtype == DType::F16 { (1e-3, 1e-3) } else { (ATOL, RTOL) };
    assert_close(&format!("{case} k_cache"), &got_k, &want_k, cache_atol, cache_rtol);
    assert_close(&format!("{case} v_cache"), &got_v, &want_v, cache_atol, cache_rtol);
    // Exactly one row per slot may change: row pos[b] of slot b.
    for (i, (g, b)) in got_k.iter().chain(&got_v).zip(k_before.iter().chain(&v_before)).enumerate() {
        let i = i % got_k.len();
        let (slot, row) = (i / (capacity * kvw), i % (capacity * kvw) / kvw);
        assert!(row == pos[slot] as usize || g.to_bits() == b.to_bits(), "{case}: slot {slot} row {row} changed");
    }
}

#[test]
fn rope_kv_cache_batched_matches_reference() {
    for gpu in gpus() {
        for dtype in [DType::F32, DType::F16] {
            check(gpu, (1, 1, 2, 2), 1, &[0], dtype);
            check(gpu, (9, 3, 64, 64), 40, &[17, 0, 39, 5, 40, 1, 22], dtype); // SmolLM2's heads; row 4 past the end
            check(gpu, (5, 1, 64, 32), 20, &[3, 19, 0], dtype); // partial rotary
            check(gpu, (3, 3, 10, 2), 8, &[7, 1], dtype); // head_dim 10: odd pairs per head
            check(gpu, (2, 1, 8, 8), 100_010, &[100_000, 9], dtype); // a far position
            let many: Vec<u32> = (0..33).map(|b| (b * 7 % 13) as u32).collect();
            check(gpu, (4, 2, 8, 8), 13, &many, dtype);
        }
    }
}

#[test]
fn rope_kv_cache_batched_rejects_mismatches() {
    let gpu = &gpus()[0];
    let t = |shape: &[usize], dtype| Tensor::empty(gpu, shape, dtype).unwrap();
    let (qkv, f, p, q) = (t(&[2, 32], DType::F32), t(&[4], DType::F32), t(&[2], DType::U32), t(&[2, 16], DType::F32));
    let (kc, vc) = (t(&[2, 10, 8], DType::F16), t(&[2, 10, 8], DType::F16));
    let op = rope_kv_cache_batched;
    // 2 heads and 1 KV head of 8: rows of 16 + 8 + 8 = 32.
    assert!(op(gpu, &qkv, &f, &p, &q, &kc, &vc, 2, 1, 8).is_ok());
    let shape_err = |r: shaderlm_engine::Result<_>| matches!(r, Err(Error::Shape { .. }));
    assert!(shape_err(op(gpu, &t(&[2, 31], DType::F32), &f, &p, &q, &kc, &vc, 2, 1, 8)), "qkv width");
    assert!(shape_err(op(gpu, &qkv, &f, &t(&[1], DType::U32), &q, &kc, &vc, 2, 1, 8)), "one position for two rows");
    assert!(shape_err(op(gpu, &qkv, &f, &p, &t(&[3, 16], DType::F32), &kc, &vc, 2, 1, 8)), "q rows");
    assert!(shape_err(op(gpu, &qkv, &f, &p, &q, &t(&[3, 10, 8], DType::F16), &t(&[3, 10, 8], DType::F16), 2, 1, 8)), "slots vs rows");
    assert!(shape_err(op(gpu, &qkv, &f, &p, &q, &t(&[20, 8], DType::F16), &t(&[20, 8], DType::F16), 2, 1, 8)), "2-D caches");
    assert!(shape_err(op(gpu, &qkv, &f, &p, &q, &kc, &t(&[2, 9, 8], DType::F16), 2, 1, 8)), "v_cache rows");
    assert!(shape_err(op(gpu, &qkv, &t(&[5], DType::F32), &p, &q, &kc, &vc, 2, 1, 8)), "inv_freq too long");
    assert!(shape_err(op(gpu, &qkv, &f, &p, &qkv, &kc, &vc, 2, 1, 8)), "q aliasing qkv");
    let dtype_err = |r: shaderlm_engine::Result<_>| matches!(r, Err(Error::DType { .. }));
    assert!(dtype_err(op(gpu, &qkv, &f, &p, &q, &kc, &t(&[2, 10, 8], DType::F32), 2, 1, 8)), "mixed caches");
    assert!(dtype_err(op(gpu, &qkv, &f, &t(&[2], DType::F32), &q, &kc, &vc, 2, 1, 8)), "pos dtype");
}
