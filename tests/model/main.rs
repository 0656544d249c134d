//! The model end to end: stories260K against its reference outputs, tiny random Qwen2-style and
//! Llama-3-style checkpoints against a CPU forward pass, and the errors a user can cause.

mod calib;
mod batch;
mod compress;
mod cpu_llama;
mod quant;
mod split;
mod tiny;

use std::path::PathBuf;
use std::sync::Mutex;

use shaderlm::llama::WeightDType;
use shaderlm::generate::FinishReason;
use shaderlm::{Error, GenerateOptions, LoadOptions, Model, Sampling};

fn stories() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/models/stories260K")
}

fn reference() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(stories().join("reference.json")).unwrap()).unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// Tests share one lavapipe; loading models in parallel only slows each other down.
static GPU_LOCK: Mutex<()> = Mutex::new(());

fn load(path: &std::path::Path, dtype: WeightDType) -> Model {
    Model::load(path, &LoadOptions { dtype, ctx: Some(256), prefill_chunk: 64, ..Default::default() }).unwrap()
}

#[test]
fn stories260k_logits_match_reference_f32() {
    let _g = GPU_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let r = reference();
    let mut model = load(&stories(), WeightDType::F32);
    let prompt = ids(&r["prompt_1"]["ids"]);
    assert_eq!(model.tokenizer.encode("Once upon a time", true).unwrap(), prompt);
    let logits = model.logits(&prompt).unwrap();
    let vocab = model.config.vocab_size;
    let last = &logits[(prompt.len() - 1) * vocab..];
    let want: Vec<f64> = r["prompt_1"]["last_position_logits"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let worst = last.iter().zip(&want).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-3, "largest logit difference {worst}");
}

#[test]
fn stories260k_greedy_text_matches_reference() {
    let _g = GPU_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let r = reference();
    for dtype in [WeightDType::F32, WeightDType::F16] {
        let mut model = load(&stories(), dtype);
        let options = GenerateOptions { max_tokens: 64, sampling: Sampling::GREEDY, stop: vec![] };
        let mut generation = model.generate("Once upon a time", &options).unwrap();
        let text: String = (&mut generation).map(|p| p.unwrap()).collect();
        let want_ids = ids(&r["prompt_1"]["greedy"]["ids"]);
        if dtype == WeightDType::F32 {
            assert_eq!(generation.ids(), &want_ids[..], "greedy ids (f32)");
            assert_eq!(text, r["prompt_1"]["greedy"]["text_generated_only"].as_str().unwrap());
        } else {
            // f16 weights round every weight; the first tokens (large margins) must still agree.
            assert_eq!(generation.ids()[..8], want_ids[..8], "greedy ids (f16)");
        }
    }
}

#[test]
fn stories260k_mean_nll_matches_reference() {
    let _g = GPU_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let r = reference();
    let mut model = load(&stories(), WeightDType::F32);
    let prompt = ids(&r["prompt_2"]["ids"]);
    let logits = model.logits(&prompt).unwrap();
    let vocab = model.config.vocab_size;
    let mut nll = 0.0;
    for t in 0..prompt.len() - 1 {
        let row = &logits[t * vocab..(t + 1) * vocab];
        let m = row.iter().cloned().fold(f32::MIN, f32::max) as f64;
        let z: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
        nll += -(row[prompt[t + 1] as usize] as f64 - m - z.ln());
    }
    let mean = nll / (prompt.len() - 1) as f64;
    let want = r["prompt_2"]["mean_nll"].as_f64().unwrap();
    assert!((mean - want).abs() < 1e-4, "mean NLL {mean}, reference {want}");
}

#[test]
fn chunked_prefill_and_cache_reuse_give_the_same_logits() {
    let _g = GPU_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let r = reference();
    let prompt = ids(&r["prompt_2"]["ids"]);
    let opts = |chunk| LoadOptions { dtype: WeightDType::F32, ctx: Some(128), prefill_chunk: chunk, ..Default::default() };
    let whole = Model::load(stories(), &opts(64)).unwrap().logits(&prompt).unwrap();
    let chunked = Model::load(stories(), &opts(7)).unwrap().logits(&prompt).unwrap();
    let worst = whole.iter().zip(&chunked).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(worst < 1e-4, "chunked prefill differs by {worst}");

    // Generating twice from the same prompt reuses the cache and gives the same text.
    let mut model = Model::load(stories(), &opts(64)).unwrap();
    let options = GenerateOptions { max_tokens: 20, ..Default::default() };
    let a = model.generate("Lily had a cat", &options).unwrap().text().unwrap();
    let gen = model.generate("Lily had a cat", &options).unwrap();
    assert_eq!(gen.stats.prefilled_tokens, 1, "all but the last prompt token came from the cache");
    assert_eq!(gen.text().unwrap(), a);
}

#[test]
fn sampling_is_seeded_and_stops_where_asked() {
    let _g = GPU_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut model = load(&stories(), WeightDType::F16);
    let sampled = |model: &mut Model, seed| {
        let sampling = Sampling { temperature: 1.0, top_k: 40, top_p: 0.9, min_p: 0.05, repeat_penalty: 1.1, seed };
        let options = GenerateOptions { max_tokens: 40, sampling, stop: vec![] };
        model.generate("Once upon a time", &options).unwrap().text().unwrap()
    };
    let a = sampled(&mut model, 7);
    assert_eq!(sampled(&mut model, 7), a, "same seed, same text");
    assert_ne!(sampled(&mut model, 8), a, "another seed, another text");

    let options = GenerateOptions { max_tokens: 64, stop: vec!["Lily".into()], ..Default::default() };
    let text = model.generate("Once upon a time", &options).unwrap().text().unwrap();
    assert_eq!(text, ", there was a little girl named ");
}

#[test]
fn tiny_qwen2_and_llama3_match_the_cpu_reference() {
    let _g = GPU_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    for kind in [tiny::Kind::Qwen2, tiny::Kind::Llama3] {
        let dir = tiny::write(kind);
        let ckpt = shaderlm::checkpoint::Checkpoint::open(&dir).unwrap();
        let cpu = cpu_llama::CpuLlama::load(&ckpt);
        let ids: Vec<u32> = (0..40).map(|i| (i * 37 + 11) % 500).collect();
        let want = cpu.logits(&ids);
        let mut model = Model::load(&dir, &LoadOptions { dtype: WeightDType::F32, ctx: Some(64), prefill_chunk: 16, ..Default::default() }).unwrap();
        let got = model.logits(&ids).unwrap();
        let vocab = model.config.vocab_size;
        let mut worst = 0f64;
        for (t, row) in want.iter().enumerate() {
            for (v, w) in row.iter().enumerate() {
                worst = worst.max((got[t * vocab + v] as f64 - w).abs());
            }
        }
        assert!(worst < 1e-3, "{kind:?}: largest logit difference {worst}");
    }
}

/// Generated ids and why generation ended.
fn run(model: &mut Model, prompt: &str, options: &GenerateOptions) -> (Vec<u32>, Option<FinishReason>) {
    let mut generation = model.generate(prompt, options).unwrap();
    for piece in &mut generation {
        piece.unwrap();
    }
    (generation.ids().to_vec(), generation.stats.finish)
}

#[test]
fn pipelined_decode_gives_the_same_ids_as_one_step_at_a_time() {
    let _g = GPU_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let want = ids(&reference()["prompt_1"]["greedy"]["ids"]);
    let load = |pipeline, ctx| {
        let options = LoadOptions { dtype: WeightDType::F32, ctx: Some(ctx), prefill_chunk: 64, pipeline, ..Default::default() };
        Model::load(stories(), &options).unwrap()
    };
    let greedy = |max_tokens, stop: &[&str]| GenerateOptions {
        max_tokens,
        sampling: Sampling::GREEDY,
        stop: stop.iter().map(|s| s.to_string()).collect(),
    };
    let sampled = GenerateOptions {
        max_tokens: 30,
        sampling: Sampling { temperature: 0.8, top_k: 40, top_p: 0.95, min_p: 0.0, repeat_penalty: 1.2, seed: 3 },
        stop: vec![],
    };
    let mut runs = Vec::new();
    for pipeline in [false, true] {
        let mut model = load(pipeline, 256);
        let mut out = Vec::new();
        // The reference continuation, to the token limit.
        let (ids, finish) = run(&mut model, "Once upon a time", &greedy(64, &[]));
        assert_eq!(ids, want, "pipeline {pipeline}: greedy ids");
        assert_eq!(finish, Some(FinishReason::MaxTokens));
        // Stopped by a stop string, so a step submitted ahead is dropped; then a prompt that
        // extends the cached one, whose prefix is reused: the dropped step's keys and values
        // (past the cached tokens) must not leak into it.
        out.push(run(&mut model, "Once upon a time", &greedy(64, &["Lily"])));
        assert_eq!(out[0].1, Some(FinishReason::StopString));
        let longer = "Once upon a time, there was a little girl named Lily. She";
        out.push(run(&mut model, longer, &greedy(24, &[])));
        assert_eq!(out[1], run(&mut load(pipeline, 256), longer, &greedy(24, &[])), "pipeline {pipeline}: reused prefix");
        // Sampling (the sampler appends each id to the penalty history on the GPU).
        out.push(run(&mut model, "Once upon a time", &sampled));
        // The context fills up before the token limit.
        let mut small = load(pipeline, 24);
        out.push(run(&mut small, "Once upon a time", &greedy(100, &[])));
        assert_eq!(out[3].1, Some(FinishReason::ContextFull));
        // One token only: nothing is submitted ahead.
        out.push(run(&mut model, "Once upon a time", &greedy(1, &[])));
        assert_eq!(out[4].0, want[..1]);
        runs.push(out);
    }
    assert_eq!(runs[0], runs[1], "pipelined and one step at a time");
}

/// The decode step's fused kernels (norm into the projections, stacked q/k/v with Qwen2's
/// biases, rope_kv_cache, the accumulating residual) against the CPU forward: each greedy id is
/// the CPU's argmax wherever the CPU's best two logits are not within rounding of each other.
#[test]
fn tiny_qwen2_and_llama3_decode_matches_the_cpu_reference() {
    let _g = GPU_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    for kind in [tiny::Kind::Qwen2, tiny::Kind::Llama3] {
        let dir = tiny::write(kind);
        let cpu = cpu_llama::CpuLlama::load(&shaderlm::checkpoint::Checkpoint::open(&dir).unwrap());
        let options = LoadOptions { dtype: WeightDType::F32, ctx: Some(64), prefill_chunk: 16, ..Default::default() };
        let mut model = Model::load(&dir, &options).unwrap();
        let prompt: Vec<u32> = (0..12).map(|i| (i * 37 + 11) % 500).collect();
        let generate = GenerateOptions { max_tokens: 12, ..Default::default() };
        let mut generation = model.generate_ids(prompt.clone(), &generate).unwrap();
        for piece in &mut generation {
            piece.unwrap();
        }
        let got = generation.ids().to_vec();
        assert!(got.len() >= 2, "{kind:?}: generated {got:?}");
        let all: Vec<u32> = prompt.iter().chain(&got).copied().collect();
        let logits = cpu.logits(&all);
        for (i, &id) in got.iter().enumerate() {
            let row = &logits[prompt.len() - 1 + i];
            let mut sorted: Vec<(usize, f64)> = row.iter().copied().enumerate().collect();
            sorted.sort_by(|a, b| b.1.total_cmp(&a.1));
            if sorted[0].1 - sorted[1].1 > 1e-3 {
                assert_eq!(id as usize, sorted[0].0, "{kind:?}: generated id {i}");
            }
        }
    }
}

#[test]
fn a_prompt_longer_than_the_context_is_an_error() {
    let _g = GPU_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut model = Model::load(stories(), &LoadOptions { ctx: Some(8), ..Default::default() }).unwrap();
    let err = model.generate("Once upon a time there was a girl named Lily", &GenerateOptions::default()).err().unwrap();
    assert!(matches!(err, Error::Input(_)), "{err}");
    assert!(err.to_string().contains("context"), "{err}");
    // Token ids past the vocabulary (512), given directly, on both paths that run a prompt.
    let err = model.generate_ids(vec![1, 600], &GenerateOptions::default()).err().unwrap();
    assert!(matches!(err, Error::Input(_)) && err.to_string().contains("600"), "{err}");
    let err = model.logits(&[1, 512]).err().unwrap();
    assert!(matches!(err, Error::Input(_)) && err.to_string().contains("512"), "{err}");
    let err = Model::load(stories(), &LoadOptions { ctx: Some(100_000), ..Default::default() }).err().unwrap();
    assert!(err.to_string().contains("max_position_embeddings"), "{err}");
}

#[test]
fn a_model_too_big_for_the_gpu_is_refused_before_loading() {
    let _g = GPU_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tiny::write_huge_config();
    let err = Model::load(&dir, &LoadOptions::default()).err().unwrap();
    assert!(matches!(err, Error::OutOfMemory { .. }), "{err}");
}

/// The default model, fetched by scripts/fetch-smollm2.sh into `$SHADERLM_CACHE` or
/// `~/.cache/shaderlm`.
fn smollm2() -> Option<PathBuf> {
    let cache = match std::env::var_os("SHADERLM_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/shaderlm"),
    };
    let path = cache.join("smollm2-135m-instruct.gguf");
    if !path.exists() {
        eprintln!("skipped: {} is absent (run scripts/fetch-smollm2.sh)", path.display());
        return None;
    }
    Some(path)
}

#[test]
fn smollm2_answers_the_capital_of_france() {
    let Some(path) = smollm2() else { return };
    let _g = GPU_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut model = Model::load(&path, &LoadOptions { ctx: Some(128), ..Default::default() }).unwrap();
    let messages = [shaderlm::tokenizer::ChatMessage::new("user", "What is the capital of France?")];
    let options = GenerateOptions { max_tokens: 24, ..Default::default() };
    let answer = model.chat(&messages, &options).unwrap().text().unwrap();
    assert_eq!(answer, "The capital of France is Paris.");
}

#[test]
fn perplexity_matches_a_cpu_computation_under_both_protocols() {
    use shaderlm::eval::{nll_sum, perplexity, prepare_text, windows, Protocol};
    let _g = GPU_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let text = "Once upon a time, there was a little girl.\nShe liked to play in the park with her dog.\n\
                One day the dog ran away and she was sad.\nHer mom helped her find it.\n";
    let ckpt = shaderlm::checkpoint::Checkpoint::open(&stories()).unwrap();
    let cpu = cpu_llama::CpuLlama::load(&ckpt);
    let mut model = load(&stories(), WeightDType::F32);
    let vocab = model.config.vocab_size;
    for (protocol, ctx) in [(Protocol::Papers, 24), (Protocol::LlamaCpp, 16)] {
        let ids = model.tokenizer.encode(&prepare_text(text, protocol), true).unwrap();
        let ws = windows(&ids, ctx, protocol, 1);
        assert!(ws.len() >= 2, "{protocol:?}: {} windows", ws.len());
        if protocol == Protocol::LlamaCpp {
            assert!(ws.iter().all(|(w, rows)| w[0] == 1 && *rows == (ctx / 2..ctx - 1)));
        }
        let (mut sum, mut count) = (0.0, 0);
        for (w, rows) in &ws {
            let logits: Vec<f32> = cpu.logits(w).into_iter().flatten().map(|v| v as f32).collect();
            sum += nll_sum(&logits, vocab, w, rows.clone());
            count += rows.len();
        }
        let want = (sum / count as f64).exp();
        let got = perplexity(&mut model, text, protocol, ctx, None, |_, _| {}).unwrap();
        assert_eq!(got.tokens, count);
        assert!((got.ppl - want).abs() < 1e-3 * want, "{protocol:?}: ppl {} vs CPU {want}", got.ppl);
    }
}

#[test]
fn a_config_that_disagrees_with_the_weights_is_an_error_naming_the_tensor() {
    let _g = GPU_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tiny::write(tiny::Kind::Llama3);
    // vocab 500 in config.json against a (512, 64) embedding table
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap().replace("\"vocab_size\":512", "\"vocab_size\":500");
    std::fs::write(dir.join("config.json"), config).unwrap();
    let err = Model::load(&dir, &LoadOptions::default()).err().unwrap();
    assert!(matches!(&err, Error::TensorShape { name, .. } if name == "model.embed_tokens.weight"), "{err}");

    // a layer's tensor missing
    let dir = tiny::write(tiny::Kind::Qwen2);
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap().replace("\"num_hidden_layers\":2", "\"num_hidden_layers\":3");
    std::fs::write(dir.join("config.json"), config).unwrap();
    let err = Model::load(&dir, &LoadOptions::default()).err().unwrap();
    assert!(matches!(&err, Error::MissingTensor { name, .. } if name.starts_with("model.layers.2.")), "{err}");
    assert!(err.to_string().contains(dir.to_str().unwrap()), "the message names the checkpoint: {err}");
}
