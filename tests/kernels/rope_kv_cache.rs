use crate::common::*;
use shaderlm_engine::kernels::{copy_rows, rope, rope_kv_cache::rope_kv_cache};
use shaderlm_engine::{reference, DType, Error, Gpu, Recorder, Tensor};

/// As tests/kernels/rope.rs: exact angle reduction leaves f32 sin/cos and rounding.
const ATOL: f32 = 2e-6;
const RTOL: f32 = 1e-5;

struct Case {
    rows: usize,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    rot_dim: usize,
    capacity: usize,
    pos: u32,
}

/// Runs the fused op on random qkv over randomly filled caches; checks q and every cache element
/// against the reference (written rows to f16 rounding, other rows to the bit) and against the
/// four unfused ops on the GPU.
fn check(gpu: &Gpu, c: &Case, dtype: DType) {
    let (qw, kvw) = (c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim);
    let case = format!(
        "rope_kv_cache T={} heads={}/{} head_dim={} rot_dim={} capacity={} pos={} cache={dtype} [{}]",
        c.rows, c.n_heads, c.n_kv_heads, c.head_dim, c.rot_dim, c.capacity, c.pos, path(gpu)
    );
    let mut rng = Rng::new((c.rows * 1000 + qw * 10 + c.pos as usize) as u64);
    let round = |v: Vec<f32>| if dtype == DType::F16 { round_f16(&v) } else { v };
    let qkv_data = rng.vec(c.rows * (qw + 2 * kvw), 1.0);
    let k_before = round(rng.vec(c.capacity * kvw, 1.0));
    let v_before = round(rng.vec(c.capacity * kvw, 1.0));
    let freqs = rope::inv_freq(c.rot_dim, 10_000.0, None);

    let qkv = Tensor::from_f32(gpu, &[c.rows, qw + 2 * kvw], DType::F32, &qkv_data).unwrap();
    let f = Tensor::from_f32(gpu, &[freqs.len()], DType::F32, &freqs).unwrap();
    let p = Tensor::from_u32(gpu, &[1], &[c.pos]).unwrap();
    let q = Tensor::empty(gpu, &[c.rows, qw], DType::F32).unwrap();
    let k_cache = Tensor::from_f32(gpu, &[c.capacity, kvw], dtype, &k_before).unwrap();
    let v_cache = Tensor::from_f32(gpu, &[c.capacity, kvw], dtype, &v_before).unwrap();
    let op = rope_kv_cache(gpu, &qkv, &f, &p, &q, &k_cache, &v_cache, c.n_heads, c.n_kv_heads, c.head_dim).unwrap();
    let got_q = run_poisoned(gpu, &op, &q);
    let got_k = k_cache.to_f32(gpu).unwrap();
    let got_v = v_cache.to_f32(gpu).unwrap();

    let (mut want_k, mut want_v) = (k_before.clone(), v_before.clone());
    let want_q = reference::rope_kv_cache::rope_kv_cache(
        &qkv_data, &freqs, c.pos, &mut want_k, &mut want_v, c.n_heads, c.n_kv_heads, c.head_dim,
    );
    assert_close(&format!("{case} q"), &got_q, &want_q, ATOL, RTOL);
    let (cache_atol, cache_rtol) = if dtype == DType::F16 { (1e-3, 1e-3) } else { (ATOL, RTOL) };
    assert_close(&format!("{case} k_cache"), &got_k, &want_k, cache_atol, cache_rtol);
    assert_close(&format!("{case} v_cache"), &got_v, &want_v, cache_atol, cache_rtol);
    let block = (c.pos as usize * kvw).min(got_k.len())..((c.pos as usize + c.rows) * kvw).min(got_k.len());
    for (i, (g, b)) in got_k.iter().chain(&got_v).zip(k_before.iter().chain(&v_before)).enumerate() {
        let inside = block.contains(&(i % got_k.len()));
        assert!(inside || g.to_bits() == b.to_bits(), "{case}: cache element {i} outside the written rows changed");
    }

    // The unfused ops: rope on copies of q and k, then copy_rows of k and v.
    let part = |from: usize, width: usize| {
        let data: Vec<f32> = qkv_data.chunks(qw + 2 * kvw).flat_map(|r| r[from..from + width].to_vec()).collect();
        Tensor::from_f32(gpu, &[c.rows, width], DType::F32, &data).unwrap()
    };
    let (q2, k2, v2) = (part(0, qw), part(qw, kvw), part(qw + kvw, kvw));
    let k_cache2 = Tensor::from_f32(gpu, &[c.capacity, kvw], dtype, &k_before).unwrap();
    let v_cache2 = Tensor::from_f32(gpu, &[c.capacity, kvw], dtype, &v_before).unwrap();
    let ops = [
        rope::rope(gpu, &q2, &f, &p, c.n_heads, c.head_dim).unwrap(),
        rope::rope(gpu, &k2, &f, &p, c.n_kv_heads, c.head_dim).unwrap(),
        copy_rows::copy_rows(gpu, &k2, &k_cache2, &p).unwrap(),
        copy_rows::copy_rows(gpu, &v2, &v_cache2, &p).unwrap(),
    ];
    let mut rec = Recorder::new(gpu);
    rec.run_all(&ops);
    rec.submit().unwrap();
    assert_close(&format!("{case} q vs rope"), &got_q, &q2.to_f32(gpu).unwrap(), 1e-6, 1e-6);
    assert_close(&format!("{case} k_cache vs rope + copy_rows"), &got_k, &k_cache2.to_f32(gpu).unwrap(), 1e-6, 1e-6);
    assert_close(&format!("{case} v_cache vs copy_rows"), &got_v, &v_cache2.to_f32(gpu).unwrap(), 0.0, 0.0);
}

#[test]
fn rope_kv_cache_matches_reference_and_the_unfused_ops() {
    let c = |rows, n_heads, n_kv_heads, head_dim, rot_dim, capacity, pos| Case {
        rows,
        n_heads,
        n_kv_heads,
        head_dim,
        rot_dim,
        capacity,
        pos,
    };
    let cases = [
        c(1, 1, 1, 2, 2, 1, 0),
        c(1, 9, 3, 64, 64, 40, 17),     // SmolLM2's decode step
        c(33, 9, 3, 64, 64, 40, 1),     // and a prefill chunk
        c(7, 4, 2, 8, 8, 10, 5),        // runs off the end: rows 10, 11 are dropped
        c(2, 2, 1, 16, 16, 10, 10),     // starts at capacity: nothing written
        c(3, 5, 1, 64, 32, 20, 3),      // partial rotary
        c(2, 3, 3, 10, 2, 8, 1),        // head_dim 10: odd pairs per head
        c(1, 2, 1, 8, 8, 100_010, 100_000), // a far position
    ];
    for gpu in gpus() {
        for case in &cases {
            for dtype in [DType::F32, DType::F16] {
                check(gpu, case, dtype);
            }
        }
    }
}

#[test]
fn rope_kv_cache_rejects_mismatches() {
    let gpu = &gpus()[0];
    let t = |shape: &[usize], dtype| Tensor::empty(gpu, shape, dtype).unwrap();
    let (qkv, f, p, q) = (t(&[2, 32], DType::F32), t(&[4], DType::F32), t(&[1], DType::U32), t(&[2, 16], DType::F32));
    let (kc, vc) = (t(&[10, 8], DType::F16), t(&[10, 8], DType::F16));
    // 2 heads and 1 KV head of 8: rows of 16 + 8 + 8 = 32.
    assert!(rope_kv_cache(gpu, &qkv, &f, &p, &q, &kc, &vc, 2, 1, 8).is_ok());
    let shape_err = |r: shaderlm_engine::Result<_>| matches!(r, Err(Error::Shape { .. }));
    assert!(shape_err(rope_kv_cache(gpu, &t(&[2, 31], DType::F32), &f, &p, &q, &kc, &vc, 2, 1, 8)), "qkv width");
    assert!(shape_err(rope_kv_cache(gpu, &qkv, &f, &p, &t(&[3, 16], DType::F32), &kc, &vc, 2, 1, 8)), "q rows");
    assert!(shape_err(rope_kv_cache(gpu, &qkv, &f, &p, &q, &kc, &t(&[9, 8], DType::F16), 2, 1, 8)), "v_cache rows");
    assert!(shape_err(rope_kv_cache(gpu, &qkv, &t(&[5], DType::F32), &p, &q, &kc, &vc, 2, 1, 8)), "inv_freq too long");
    assert!(shape_err(rope_kv_cache(gpu, &t(&[2, 28], DType::F32), &f, &p, &t(&[2, 14], DType::F32), &t(&[10, 7], DType::F16), &t(&[10, 7], DType::F16), 2, 1, 7)), "odd head_dim");
    assert!(shape_err(rope_kv_cache(gpu, &qkv, &f, &p, &qkv, &kc, &vc, 2, 1, 8)), "q aliasing qkv");
    let dtype_err = |r: shaderlm_engine::Result<_>| matches!(r, Err(Error::DType { .. }));
    assert!(dtype_err(rope_kv_cache(gpu, &qkv, &f, &p, &q, &kc, &t(&[10, 8], DType::F32), 2, 1, 8)), "mixed caches");
    assert!(dtype_err(rope_kv_cache(gpu, &qkv, &f, &t(&[1], DType::F32), &q, &kc, &vc, 2, 1, 8)), "pos dtype");
}
