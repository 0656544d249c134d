use crate::common::*;
use shaderlm_engine::{kernels, reference, DType, Error, Gpu, Tensor};

/// Heads and width of one case: (n_heads, n_kv_heads, head_dim).
type Heads = (usize, usize, usize);

struct Case {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    q_t: Tensor,
    out: Tensor,
    pos: Tensor,
    op: shaderlm_engine::Op,
}

/// Random q and caches (every cache row filled, also those past the keys in use, so a kernel
/// that reads past its last key fails) and the decode op built for them.
fn build(gpu: &Gpu, dtype: DType, capacity: usize, heads: Heads, scale: f32, seed: u64) -> Case {
    let (n_heads, n_kv_heads, head_dim) = heads;
    let mut rng = Rng::new(seed);
    let round = |v: Vec<f32>| if dtype == DType::F16 { round_f16(&v) } else { v };
    let q = rng.vec(n_heads * head_dim, 1.0);
    let k = round(rng.vec(capacity * n_kv_heads * head_dim, 1.0));
    let v = round(rng.vec(capacity * n_kv_heads * head_dim, 1.0));
    let q_t = Tensor::from_f32(gpu, &[1, n_heads * head_dim], DType::F32, &q).unwrap();
    let k_t = Tensor::from_f32(gpu, &[capacity, n_kv_heads * head_dim], dtype, &k).unwrap();
    let v_t = Tensor::from_f32(gpu, &[capacity, n_kv_heads * head_dim], dtype, &v).unwrap();
    let out = Tensor::empty(gpu, &[1, n_heads * head_dim], DType::F32).unwrap();
    let pos = Tensor::from_u32(gpu, &[1], &[0]).unwrap();
    let op = kernels::attention_decode::attention_decode(
        gpu, &q_t, &k_t, &v_t, &out, &pos, n_heads, n_kv_heads, head_dim, scale,
    )
    .unwrap();
    Case { q, k, v, q_t, out, pos, op }
}

/// Writes `pos`, runs the op, and compares with the reference.
fn run_at(gpu: &Gpu, c: &Case, pos: usize, heads: Heads, scale: f32, name: &str) {
    let (n_heads, n_kv_heads, head_dim) = heads;
    c.pos.write_u32(gpu, &[pos as u32]).unwrap();
    let got = run_poisoned(gpu, &c.op, &c.out);
    let want = reference::attention_decode::attention_decode(&c.q, &c.k, &c.v, pos, n_heads, n_kv_heads, head_dim, scale);
    assert_close(&format!("{name} pos={pos} [{}]", path(gpu)), &got, &want, 2e-5, 1e-4);
}

fn check(gpu: &Gpu, dtype: DType, kv_len: usize, capacity: usize, heads: Heads, scale: f32) {
    let c = build(gpu, dtype, capacity, heads, scale, (kv_len * 131 + capacity + heads.2) as u64);
    let name = format!("attention_decode {dtype} capacity={capacity} heads={heads:?} scale={scale}");
    run_at(gpu, &c, kv_len - 1, heads, scale, &name);
}

#[test]
fn attention_decode_matches_reference() {
    const GQA: Heads = (8, 2, 64);
    for gpu in gpus() {
        for dtype in [DType::F32, DType::F16] {
            // (kv length = pos + 1, capacity)
            for (kv_len, capacity) in [(1, 1), (17, 20), (300, 300), (2049, 2053)] {
                check(gpu, dtype, kv_len, capacity, GQA, 1.0 / 8.0);
            }
        }
    }
}

#[test]
fn attention_decode_other_shapes() {
    for gpu in gpus() {
        for (dtype, kv_len, capacity, heads, scale) in [
            (DType::F16, 65, 70, (4, 4, 40), 0.5),        // head_dim 40: lanes without a unit
            (DType::F32, 129, 200, (6, 1, 128), 0.2),     // one KV head shared by six
            (DType::F16, 100, 5000, (2, 1, 256), 1.0 / 16.0), // long splits, few in use
            (DType::F32, 64, 64, (12, 1, 64), 1.0 / 8.0), // twelve heads share one KV head
            (DType::F32, 33, 40, (3, 3, 8), 2.0),         // sharp softmax: the running max moves
        ] {
            check(gpu, dtype, kv_len, capacity, heads, scale);
        }
    }
}

#[test]
fn attention_decode_replays_at_new_positions() {
    // Built once, run at several positions by rewriting the pos tensor only.
    let heads = (8, 2, 64);
    for gpu in gpus() {
        let c = build(gpu, DType::F16, 700, heads, 1.0 / 8.0, 7);
        for pos in [5, 640, 0, 699, 64] {
            run_at(gpu, &c, pos, heads, 1.0 / 8.0, "attention_decode replay");
        }
        // Past the end: every cached key is used and nothing is read out of bounds.
        run_at(gpu, &c, 5000, heads, 1.0 / 8.0, "attention_decode past capacity");
        assert_eq!(c.q_t.shape(), &[1, 8 * 64]);
    }
}

#[test]
fn attention_decode_rejects_mismatches() {
    let gpu = &gpus()[0];
    let t = |shape: &[usize], dtype| Tensor::empty(gpu, shape, dtype).unwrap();
    let (q, k, v) = (t(&[1, 8 * 64], DType::F32), t(&[16, 2 * 64], DType::F32), t(&[16, 2 * 64], DType::F32));
    let (out, pos) = (t(&[1, 8 * 64], DType::F32), t(&[1], DType::U32));
    let f = kernels::attention_decode::attention_decode;
    assert!(f(gpu, &q, &k, &v, &out, &pos, 8, 2, 64, 0.125).is_ok());
    let shape_err = |r: shaderlm_engine::Result<_>| matches!(r, Err(Error::Shape { .. }));
    let dtype_err = |r: shaderlm_engine::Result<_>| matches!(r, Err(Error::DType { .. }));
    let two = (t(&[2, 8 * 64], DType::F32), t(&[2, 8 * 64], DType::F32));
    assert!(shape_err(f(gpu, &two.0, &k, &v, &two.1, &pos, 8, 2, 64, 0.125)), "two query rows");
    assert!(shape_err(f(gpu, &q, &k, &v, &out, &pos, 8, 3, 64, 0.125)), "n_heads not a multiple of n_kv_heads");
    assert!(shape_err(f(gpu, &t(&[1, 4 * 64], DType::F32), &k, &v, &out, &pos, 8, 2, 64, 0.125)), "q width");
    assert!(shape_err(f(gpu, &q, &k, &t(&[16, 3 * 64], DType::F32), &out, &pos, 8, 2, 64, 0.125)), "v width");
    assert!(shape_err(f(gpu, &q, &k, &v, &out, &pos, 8, 2, 48, 0.125)), "head_dim vs widths");
    assert!(shape_err(f(gpu, &q, &k, &v, &out, &pos, 8, 2, 0, 0.125)), "head_dim 0");
    assert!(shape_err(f(gpu, &q, &k, &v, &k, &pos, 8, 2, 64, 0.125)), "out aliases k");
    assert!(dtype_err(f(gpu, &q, &t(&[16, 2 * 64], DType::F16), &v, &out, &pos, 8, 2, 64, 0.125)), "k, v dtypes differ");
    assert!(dtype_err(f(gpu, &q, &k, &v, &t(&[1, 8 * 64], DType::F16), &pos, 8, 2, 64, 0.125)), "out f16");
    assert!(dtype_err(f(gpu, &q, &t(&[16, 2 * 64], DType::U32), &v, &out, &pos, 8, 2, 64, 0.125)), "k u32");
}

/// GPU time per step at model shapes (f16 cache of 4096 rows), for work on a real GPU:
/// `cargo test --release --test kernels attention_decode_bench -- --ignored --nocapture`.
#[test]
#[ignore]
fn attention_decode_bench() {
    let gpu = &gpus()[0];
    if !gpu.info().features.timestamp_query {
        return eprintln!("attention_decode_bench: no timestamp queries on {}", gpu.info().name);
    }
    // (name, n_heads, n_kv_heads, head_dim)
    for (name, heads) in [("Llama-3-8B", (32, 8, 128)), ("Llama-2-7B", (32, 32, 128)), ("SmolLM2-135M", (9, 3, 64))] {
        let capacity = 4096;
        let c = build(gpu, DType::F16, capacity, heads, 0.1, 1);
        for kv_len in [512, capacity] {
            c.pos.write_u32(gpu, &[kv_len as u32 - 1]).unwrap();
            let seconds = gpu_seconds(gpu, &c.op, 20);
            let kv_bytes = 2.0 * kv_len as f64 * (heads.1 * heads.2) as f64 * 2.0;
            eprintln!(
                "attention_decode {name} f16 kv_len={kv_len}: {:.1} us, K+V {:.0} GB/s [{}]",
                seconds * 1e6,
                kv_bytes / seconds / 1e9,
                gpu.info().name
            );
        }
    }
}

/// Mean GPU seconds of one recording of `op` (timestamp queries; the first two runs are warm-up).
pub fn gpu_seconds(gpu: &Gpu, op: &shaderlm_engine::Op, reps: usize) -> f64 {
    let mut rec = shaderlm_engine::Recorder::new(gpu);
    for _ in 0..reps + 2 {
        rec.run(op);
    }
    let times = rec.submit_timed().unwrap();
    times.iter().skip(2 * op.labels().len()).map(|t| t.seconds).sum::<f64>() / reps as f64
}
