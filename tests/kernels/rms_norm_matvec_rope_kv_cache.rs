//! rms_norm_matvec_rope_kv_cache vs its reference and vs the unfused pair on the GPU
//! (rms_norm_matvec into a qkv vector, then rope_kv_cache), which computes the same sums in the
//! same order: they agree to the bit.

use crate::common::*;
use crate::matvec::{assert_close_to_scale, random_case, SUM_ATOL, SUM_RTOL};
use crate::rms_norm_matvec::{normed_scale, random_norm_input};
use shaderlm_engine::kernels::rms_norm_matvec_rope_kv_cache::{fits, rms_norm_matvec_rope_kv_cache, Heads};
use shaderlm_engine::kernels::{rms_norm_matvec, rope, rope_kv_cache};
use shaderlm_engine::{reference, DType, Error, Gpu, Recorder, Tensor};

const EPS: f32 = 1e-5;

fn check(gpu: &Gpu, heads: Heads, k: usize, wdtype: DType, cache: DType, capacity: usize, pos: u32) {
    let Heads { n_heads, n_kv_heads, head_dim } = heads;
    let (qw, kvw) = (n_heads * head_dim, n_kv_heads * head_dim);
    let rows = qw + 2 * kvw;
    let case = format!(
        "rms_norm_matvec_rope_kv_cache heads={n_heads}/{n_kv_heads}x{head_dim} k={k} w={wdtype} cache={cache} capacity={capacity} pos={pos} [{}]",
        path(gpu)
    );
    let (ws, _) = random_case(rows, k, wdtype, (rows * 31 + k) as u64);
    let (xs, gs) = random_norm_input(k, k as u64 + 7);
    let round = |v: Vec<f32>| if cache == DType::F16 { round_f16(&v) } else { v };
    let mut rng = Rng::new(pos as u64 + 5);
    let k_before = round(rng.vec(capacity * kvw, 1.0));
    let v_before = round(rng.vec(capacity * kvw, 1.0));
    let freqs = rope::inv_freq(head_dim, 10_000.0, None);

    let t32 = |shape: &[usize], data: &[f32]| Tensor::from_f32(gpu, shape, DType::F32, data).unwrap();
    let (w, x, g, f) = (Tensor::from_f32(gpu, &[rows, k], wdtype, &ws).unwrap(), t32(&[k], &xs), t32(&[k], &gs), t32(&[head_dim / 2], &freqs));
    let p = Tensor::from_u32(gpu, &[1], &[pos]).unwrap();
    let q = Tensor::empty(gpu, &[1, qw], DType::F32).unwrap();
    let k_cache = Tensor::from_f32(gpu, &[capacity, kvw], cache, &k_before).unwrap();
    let v_cache = Tensor::from_f32(gpu, &[capacity, kvw], cache, &v_before).unwrap();
    assert!(fits(gpu, &w, &x, &g, &f, heads), "{case}: fits");
    let op = rms_norm_matvec_rope_kv_cache(gpu, &x, &g, &w, &f, &p, &q, &k_cache, &v_cache, heads, EPS).unwrap();
    let got_q = run_poisoned(gpu, &op, &q);
    let (got_k, got_v) = (k_cache.to_f32(gpu).unwrap(), v_cache.to_f32(gpu).unwrap());

    // The reference, to the sums' rounding (a rotation mixes two sums of the same size).
    let (mut want_k, mut want_v) = (k_before.clone(), v_before.clone());
    let want_q = reference::rms_norm_matvec_rope_kv_cache::rms_norm_matvec_rope_kv_cache(
        &xs, &gs, &ws, &freqs, pos, &mut want_k, &mut want_v, n_heads, n_kv_heads, head_dim, EPS,
    );
    let scale = normed_scale(&ws, &xs, &gs, rows);
    let pair_scale = |part: usize, width: usize| -> Vec<f32> {
        (0..width).map(|e| {
            let (head, d) = (e / head_dim, e % head_dim);
            let base = part + head * head_dim;
            scale[base + d] + scale[base + (d + head_dim / 2) % head_dim]
        }).collect()
    };
    assert_close_to_scale(&format!("{case} q"), &got_q, &want_q, &pair_scale(0, qw), SUM_RTOL, SUM_ATOL);
    let cache_rtol = if cache == DType::F16 { 1e-3 } else { SUM_RTOL };
    let row = pos as usize;
    if row < capacity {
        let range = row * kvw..(row + 1) * kvw;
        let k_scale: Vec<f32> = pair_scale(qw, kvw).iter().zip(&want_k[range.clone()]).map(|(s, v)| s + v.abs()).collect();
        let v_scale: Vec<f32> = scale[qw + kvw..].iter().zip(&want_v[range.clone()]).map(|(s, v)| s + v.abs()).collect();
        assert_close_to_scale(&format!("{case} k row"), &got_k[range.clone()], &want_k[range.clone()], &k_scale, cache_rtol, SUM_ATOL);
        assert_close_to_scale(&format!("{case} v row"), &got_v[range.clone()], &want_v[range.clone()], &v_scale, cache_rtol, SUM_ATOL);
    }
    for (i, (gv, b)) in got_k.iter().chain(&got_v).zip(k_before.iter().chain(&v_before)).enumerate() {
        let inside = (i % got_k.len()) / kvw == row;
        assert!(inside || gv.to_bits() == b.to_bits(), "{case}: cache element {i} outside row {row} changed");
    }

    // The unfused pair, on copies of the caches.
    let qkv = Tensor::empty(gpu, &[1, rows], DType::F32).unwrap();
    let q2 = Tensor::empty(gpu, &[1, qw], DType::F32).unwrap();
    let k_cache2 = Tensor::from_f32(gpu, &[capacity, kvw], cache, &k_before).unwrap();
    let v_cache2 = Tensor::from_f32(gpu, &[capacity, kvw], cache, &v_before).unwrap();
    let ops = [
        rms_norm_matvec::rms_norm_matvec(gpu, &x, &g, &w, &qkv, EPS).unwrap(),
        rope_kv_cache::rope_kv_cache(gpu, &qkv, &f, &p, &q2, &k_cache2, &v_cache2, n_heads, n_kv_heads, head_dim).unwrap(),
    ];
    let mut rec = Recorder::new(gpu);
    rec.run_all(&ops);
    rec.submit().unwrap();
    assert_close(&format!("{case} q vs the pair"), &got_q, &q2.to_f32(gpu).unwrap(), 0.0, 0.0);
    assert_close(&format!("{case} k_cache vs the pair"), &got_k, &k_cache2.to_f32(gpu).unwrap(), 0.0, 0.0);
    assert_close(&format!("{case} v_cache vs the pair"), &got_v, &v_cache2.to_f32(gpu).unwrap(), 0.0, 0.0);
}

#[test]
fn rms_norm_matvec_rope_kv_cache_matches_reference_and_the_unfused_pair() {
    let h = |n_heads, n_kv_heads, head_dim| Heads { n_heads, n_kv_heads, head_dim };
    for gpu in gpus() {
        for cache in [DType::F16, DType::F32] {
            check(gpu, h(1, 1, 8), 8, DType::F16, cache, 4, 0);
            check(gpu, h(9, 3, 64), 576, DType::F16, cache, 40, 17); // SmolLM2
            check(gpu, h(4, 2, 16), 64, DType::F16, cache, 10, 9);
            check(gpu, h(2, 2, 8), 36, DType::F32, cache, 10, 3);
            check(gpu, h(4, 1, 32), 128, DType::F32, cache, 8, 8); // pos at capacity: q only
            check(gpu, h(2, 1, 8), 16, DType::F16, cache, 100_010, 100_000); // a far position
        }
    }
}

#[test]
fn rms_norm_matvec_rope_kv_cache_rejects_what_it_cannot_take() {
    let gpu = &gpus()[0];
    let t = |shape: &[usize], dtype| Tensor::empty(gpu, shape, dtype).unwrap();
    let heads = Heads { n_heads: 2, n_kv_heads: 1, head_dim: 8 };
    let (x, g, w) = (t(&[16], DType::F32), t(&[16], DType::F32), t(&[32, 16], DType::F16));
    let (f, p, q) = (t(&[4], DType::F32), t(&[1], DType::U32), t(&[16], DType::F32));
    let (kc, vc) = (t(&[10, 8], DType::F16), t(&[10, 8], DType::F16));
    let f_ = rms_norm_matvec_rope_kv_cache;
    assert!(f_(gpu, &x, &g, &w, &f, &p, &q, &kc, &vc, heads, EPS).is_ok());
    let shape_err = |r: shaderlm_engine::Result<_>| matches!(r, Err(Error::Shape { .. }));
    assert!(shape_err(f_(gpu, &x, &g, &t(&[24, 16], DType::F16), &f, &p, &q, &kc, &vc, heads, EPS)), "w rows");
    assert!(shape_err(f_(gpu, &x, &g, &w, &t(&[2], DType::F32), &p, &q, &kc, &vc, heads, EPS)), "partial rotary");
    assert!(!fits(gpu, &w, &x, &g, &t(&[2], DType::F32), heads), "partial rotary");
    assert!(shape_err(f_(gpu, &x, &g, &w, &f, &p, &t(&[8], DType::F32), &kc, &vc, heads, EPS)), "q length");
    assert!(shape_err(f_(gpu, &x, &g, &w, &f, &p, &q, &kc, &t(&[9, 8], DType::F16), heads, EPS)), "v_cache rows");
    assert!(matches!(f_(gpu, &x, &g, &w, &f, &p, &q, &kc, &t(&[10, 8], DType::F32), heads, EPS), Err(Error::DType { .. })), "mixed caches");
    let odd = Heads { n_heads: 2, n_kv_heads: 1, head_dim: 4 };
    assert!(!fits(gpu, &t(&[16, 16], DType::F16), &x, &g, &t(&[2], DType::F32), odd), "head_dim % 8 != 0");
}
