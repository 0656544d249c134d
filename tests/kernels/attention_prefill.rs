use crate::common::*;
use shaderlm_engine::{kernels, reference, DType, Error, Gpu, Tensor};

/// Heads and width of one case: (n_heads, n_kv_heads, head_dim).
type Heads = (usize, usize, usize);

/// Random q and caches (every cache row filled, also those past the keys in use, so a kernel
/// that reads past its last key fails), the prefill op on the GPU, the reference on the CPU.
fn check(gpu: &Gpu, dtype: DType, n_rows: usize, pos: usize, capacity: usize, heads: Heads, scale: f32) {
    let (n_heads, n_kv_heads, head_dim) = heads;
    let case = format!(
        "attention_prefill {dtype} T={n_rows} pos={pos} capacity={capacity} heads={n_heads}/{n_kv_heads} \
         head_dim={head_dim} scale={scale} [{}]",
        path(gpu)
    );
    let mut rng = Rng::new((n_rows * 7919 + pos * 31 + head_dim) as u64);
    let round = |v: Vec<f32>| if dtype == DType::F16 { round_f16(&v) } else { v };
    let q_data = rng.vec(n_rows * n_heads * head_dim, 1.0);
    let k_data = round(rng.vec(capacity * n_kv_heads * head_dim, 1.0));
    let v_data = round(rng.vec(capacity * n_kv_heads * head_dim, 1.0));
    let q = Tensor::from_f32(gpu, &[n_rows, n_heads * head_dim], DType::F32, &q_data).unwrap();
    let k = Tensor::from_f32(gpu, &[capacity, n_kv_heads * head_dim], dtype, &k_data).unwrap();
    let v = Tensor::from_f32(gpu, &[capacity, n_kv_heads * head_dim], dtype, &v_data).unwrap();
    let out = Tensor::empty(gpu, &[n_rows, n_heads * head_dim], DType::F32).unwrap();
    let pos_t = Tensor::from_u32(gpu, &[1], &[pos as u32]).unwrap();
    let op = kernels::attention_prefill::attention_prefill(
        gpu, &q, &k, &v, &out, &pos_t, n_heads, n_kv_heads, head_dim, scale,
    )
    .unwrap();
    let got = run_poisoned(gpu, &op, &out);
    let want = reference::attention_prefill::attention_prefill(
        &q_data, &k_data, &v_data, pos, n_heads, n_kv_heads, head_dim, scale,
    );
    assert_close(&case, &got, &want, 2e-5, 1e-4);
}

#[test]
fn attention_prefill_matches_reference() {
    const GQA: Heads = (8, 2, 64);
    for gpu in gpus() {
        for dtype in [DType::F32, DType::F16] {
            // (T, pos, capacity)
            for (n_rows, pos, capacity) in [(1, 0, 4), (13, 0, 16), (300, 0, 301), (13, 50, 70), (40, 77, 117)] {
                check(gpu, dtype, n_rows, pos, capacity, GQA, 1.0 / 8.0);
            }
        }
    }
}

#[test]
fn attention_prefill_other_shapes() {
    for gpu in gpus() {
        for (dtype, n_rows, pos, capacity, heads, scale) in [
            (DType::F16, 21, 5, 30, (4, 4, 40), 0.5),    // head_dim 40: lanes without a column
            (DType::F32, 17, 3, 20, (6, 1, 128), 0.2),   // one KV head shared by six
            (DType::F16, 9, 30, 40, (2, 1, 256), 1.0 / 16.0),
            (DType::F32, 33, 2, 40, (3, 3, 8), 2.0),     // sharp softmax: the running max moves
        ] {
            check(gpu, dtype, n_rows, pos, capacity, heads, scale);
        }
    }
}

#[test]
fn attention_prefill_clamps_at_capacity() {
    // pos + T > capacity: the kernel must stay inside the cache; rows past it see every key.
    for gpu in gpus() {
        check(gpu, DType::F16, 13, 15, 20, (8, 2, 64), 1.0 / 8.0);
        check(gpu, DType::F32, 5, 100, 20, (8, 2, 64), 1.0 / 8.0);
    }
}

#[test]
fn attention_prefill_rejects_mismatches() {
    let gpu = &gpus()[0];
    let t = |shape: &[usize], dtype| Tensor::empty(gpu, shape, dtype).unwrap();
    let (q, k, v) = (t(&[3, 8 * 64], DType::F32), t(&[16, 2 * 64], DType::F16), t(&[16, 2 * 64], DType::F16));
    let (out, pos) = (t(&[3, 8 * 64], DType::F32), t(&[1], DType::U32));
    let f = kernels::attention_prefill::attention_prefill;
    assert!(f(gpu, &q, &k, &v, &out, &pos, 8, 2, 64, 0.125).is_ok());
    let shape_err = |r: shaderlm_engine::Result<_>| matches!(r, Err(Error::Shape { .. }));
    let dtype_err = |r: shaderlm_engine::Result<_>| matches!(r, Err(Error::DType { .. }));
    assert!(shape_err(f(gpu, &q, &k, &v, &out, &pos, 8, 3, 64, 0.125)), "n_heads not a multiple of n_kv_heads");
    assert!(shape_err(f(gpu, &t(&[3, 7 * 64], DType::F32), &k, &v, &out, &pos, 8, 2, 64, 0.125)), "q width");
    assert!(shape_err(f(gpu, &q, &k, &v, &t(&[2, 8 * 64], DType::F32), &pos, 8, 2, 64, 0.125)), "out rows");
    assert!(shape_err(f(gpu, &q, &t(&[16, 64], DType::F16), &v, &out, &pos, 8, 2, 64, 0.125)), "k width");
    assert!(shape_err(f(gpu, &q, &k, &t(&[15, 128], DType::F16), &out, &pos, 8, 2, 64, 0.125)), "v rows");
    assert!(shape_err(f(gpu, &q, &k, &v, &out, &t(&[2], DType::U32), 8, 2, 64, 0.125)), "pos shape");
    assert!(shape_err(f(gpu, &q, &k, &v, &out, &pos, 8, 2, 60, 0.125)), "head_dim % 8");
    let wide = (t(&[1, 512], DType::F32), t(&[4, 512], DType::F32));
    assert!(shape_err(f(gpu, &wide.0, &wide.1, &wide.1, &t(&[1, 512], DType::F32), &pos, 1, 1, 512, 0.1)), "head_dim 512");
    assert!(shape_err(f(gpu, &q, &k, &v, &q, &pos, 8, 2, 64, 0.125)), "out aliases q");
    assert!(dtype_err(f(gpu, &t(&[3, 8 * 64], DType::F16), &k, &v, &out, &pos, 8, 2, 64, 0.125)), "q f16");
    assert!(dtype_err(f(gpu, &q, &k, &t(&[16, 2 * 64], DType::F32), &out, &pos, 8, 2, 64, 0.125)), "k, v dtypes differ");
    assert!(dtype_err(f(gpu, &q, &k, &v, &out, &t(&[1], DType::F32), 8, 2, 64, 0.125)), "pos f32");
}

/// GPU time of a prompt at model shapes (f16 cache), for work on a real GPU:
/// `cargo test --release --test kernels attention_prefill_bench -- --ignored --nocapture`.
#[test]
#[ignore]
fn attention_prefill_bench() {
    let gpu = &gpus()[0];
    if !gpu.info().features.timestamp_query {
        return eprintln!("attention_prefill_bench: no timestamp queries on {}", gpu.info().name);
    }
    for (name, (n_heads, n_kv_heads, head_dim)) in [("Llama-3-8B", (32, 8, 128)), ("SmolLM2-135M", (9, 3, 64))] {
        for n_rows in [512, 2048] {
            let mut rng = Rng::new(1);
            let kv = |rng: &mut Rng| {
                let data = rng.vec(n_rows * n_kv_heads * head_dim, 1.0);
                Tensor::from_f32(gpu, &[n_rows, n_kv_heads * head_dim], DType::F16, &data).unwrap()
            };
            let (k, v) = (kv(&mut rng), kv(&mut rng));
            let q_data = rng.vec(n_rows * n_heads * head_dim, 1.0);
            let q = Tensor::from_f32(gpu, &[n_rows, n_heads * head_dim], DType::F32, &q_data).unwrap();
            let out = Tensor::empty(gpu, &[n_rows, n_heads * head_dim], DType::F32).unwrap();
            let pos = Tensor::from_u32(gpu, &[1], &[0]).unwrap();
            let op = kernels::attention_prefill::attention_prefill(
                gpu, &q, &k, &v, &out, &pos, n_heads, n_kv_heads, head_dim, 0.1,
            )
            .unwrap();
            let seconds = crate::attention_decode::gpu_seconds(gpu, &op, 5);
            // Two products (QK^T and PV) over the causal half of the scores.
            let flops = 4.0 * (n_heads * head_dim) as f64 * (n_rows * (n_rows + 1) / 2) as f64;
            eprintln!(
                "attention_prefill {name} f16 T={n_rows}: {:.1} us, {:.2} TFLOP/s [{}]",
                seconds * 1e6,
                flops / seconds / 1e12,
                gpu.info().name
            );
        }
    }
}
