//! Several GPUs on one adapter (lavapipe opened twice or three times): a model split by layers
//! computes what the unsplit model does, bit for bit; replicas return every prompt, in input
//! order, with the text one GPU gives; `--gpus` specs pick the adapters they should.

use shaderlm::engine::gpu::{select_adapters, AdapterEntry};
use shaderlm::llama::WeightDType;
use shaderlm::replicas::Replicas;
use shaderlm::{Error, GenerateOptions, LoadOptions, Model, Sampling};

use super::{stories, tiny, GPU_LOCK};

fn options(split_layers: Vec<usize>) -> LoadOptions {
    LoadOptions { dtype: WeightDType::F32, ctx: Some(96), prefill_chunk: 16, split_layers, ..Default::default() }
}

fn greedy(model: &mut Model, prompt: &str, max_tokens: usize) -> Vec<u32> {
    let options = GenerateOptions { max_tokens, sampling: Sampling::GREEDY, stop: vec![] };
    let mut generation = model.generate(prompt, &options).unwrap();
    for piece in &mut generation {
        piece.unwrap();
    }
    generation.ids().to_vec()
}

/// The prompt runs in two prefill chunks (16 rows, then the rest) and a one-token chunk path is
/// taken by decode: every hop shape the split model has.
const PROMPT: &str = "Once upon a time, there was a little girl named Lily. She loved to play outside in the sun";

#[test]
fn a_model_split_over_two_and_three_devices_computes_what_one_gpu_does() {
    let _g = GPU_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut whole = Model::load(stories(), &options(Vec::new())).unwrap();
    let ids = whole.tokenizer.encode(PROMPT, true).unwrap();
    assert!(ids.len() > 16, "the prompt must take two prefill chunks");
    let want_logits = whole.logits(&ids).unwrap();
    let want_ids = greedy(&mut whole, PROMPT, 24);
    drop(whole);

    for gpus in [vec![0, 0], vec![0, 0, 0]] {
        let mut split = Model::load(stories(), &options(gpus.clone())).unwrap();
        // Consecutive, non-empty, covering all five layers (the balance itself: split.rs's tests).
        let ranges = split.layer_ranges();
        assert_eq!((ranges.len(), ranges[0].start, ranges[ranges.len() - 1].end), (gpus.len(), 0, 5), "{ranges:?}");
        assert!(ranges.windows(2).all(|w| w[0].end == w[1].start && !w[0].is_empty()), "{ranges:?}");
        assert_eq!(split.gpus().len(), gpus.len());
        // Same kernels on the same shapes, an exact f32 hop: the same logits, bit for bit.
        assert_eq!(split.logits(&ids).unwrap(), want_logits, "{gpus:?}: logits");
        assert_eq!(greedy(&mut split, PROMPT, 24), want_ids, "{gpus:?}: greedy ids");
        // A second request reuses the cached prefix on every part.
        assert_eq!(greedy(&mut split, PROMPT, 8), want_ids[..8], "{gpus:?}: greedy ids after cache reuse");
    }
}

#[test]
fn a_split_of_one_part_equals_no_split() {
    let _g = GPU_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut whole = Model::load(stories(), &options(Vec::new())).unwrap();
    let mut one = Model::load(stories(), &options(vec![0])).unwrap();
    assert_eq!(one.layer_ranges(), vec![0..5]);
    let ids = whole.tokenizer.encode(PROMPT, true).unwrap();
    assert_eq!(one.logits(&ids).unwrap(), whole.logits(&ids).unwrap());
    assert_eq!(greedy(&mut one, PROMPT, 16), greedy(&mut whole, PROMPT, 16));
}

/// An untied lm_head and q/k/v biases (Qwen2-style), and a tied one read again on the last part
/// (Llama-3-style), split over two devices.
#[test]
fn split_tiny_qwen2_and_llama3_match_their_unsplit_logits() {
    let _g = GPU_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    for kind in [tiny::Kind::Qwen2, tiny::Kind::Llama3] {
        let dir = tiny::write(kind);
        let ids: Vec<u32> = (0..20).map(|i| (i * 37 + 5) % 512).collect();
        let want = Model::load(&dir, &options(Vec::new())).unwrap().logits(&ids).unwrap();
        let mut split = Model::load(&dir, &options(vec![0, 0])).unwrap();
        assert_eq!(split.layer_ranges(), vec![0..1, 1..2], "{kind:?}");
        assert_eq!(split.logits(&ids).unwrap(), want, "{kind:?}");
    }
}

#[test]
fn more_parts_than_layers_is_an_error() {
    let err = Model::load(stories(), &options(vec![0; 6])).err().unwrap();
    assert!(matches!(&err, Error::Input(m) if m.contains("5 layers into 6 parts")), "{err}");
}

#[test]
fn replicas_on_two_devices_return_every_prompt_in_order_with_one_gpu_text() {
    let _g = GPU_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let prompts: Vec<String> =
        ["Once upon a time", "The cat", "Lily and Ben", "One day", "The sun was", "A little dog"].map(String::from).to_vec();
    let options = GenerateOptions { max_tokens: 12, sampling: Sampling::GREEDY, stop: vec![] };
    let mut one = Model::load(stories(), &self::options(Vec::new())).unwrap();
    let want: Vec<String> = prompts.iter().map(|p| one.generate(p, &options).unwrap().text().unwrap()).collect();
    drop(one);

    let mut replicas = Replicas::load(stories(), &self::options(Vec::new()), &[0, 0]).unwrap();
    assert_eq!(replicas.models.len(), 2);
    // One prompt at a time per replica, then batches of 2 pulled from the shared queue.
    let mut runs = Vec::new();
    for batch in [1, 2] {
        let run = replicas.generate(&prompts, &options, batch).unwrap();
        assert_eq!(run.results.iter().map(|r| r.id).collect::<Vec<_>>(), (0..prompts.len()).collect::<Vec<_>>());
        for (r, text) in run.results.iter().zip(&want) {
            assert_eq!((&r.prompt, &r.text), (&prompts[r.id], text), "prompt {} at batch {batch}", r.id);
            assert!(r.tokens > 0 && r.ttft_ms > 0.0);
        }
        assert_eq!(run.per_replica.iter().map(|s| s.prompts).sum::<usize>(), prompts.len());
        assert_eq!(run.tokens, run.results.iter().map(|r| r.tokens).sum::<usize>());
        runs.push(run);
    }
    let run = &runs[0];

    let line: serde_json::Value = serde_json::from_str(&run.results[1].json_line()).unwrap();
    let keys: Vec<&str> = line.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    assert_eq!(keys.len(), 6, "{line}");
    for key in ["id", "prompt", "text", "tokens", "ttft_ms", "tokens_per_s"] {
        assert!(keys.contains(&key), "{key} missing from {line}");
    }
    assert_eq!((line["id"].as_u64(), line["prompt"].as_str()), (Some(1), Some("The cat")));
}

#[test]
fn gpu_specs_pick_real_gpus_for_all_and_allow_repeats() {
    let entry = |index, backend: &str, is_cpu| AdapterEntry {
        index,
        name: format!("adapter {index}"),
        backend: backend.into(),
        device_type: if is_cpu { "Cpu" } else { "DiscreteGpu" }.into(),
        is_cpu,
    };
    let list = [entry(0, "Vulkan", false), entry(1, "Vulkan", true), entry(2, "Vulkan", false), entry(3, "Dx12", false)];
    assert_eq!(select_adapters("all", &list).unwrap(), vec![0, 2], "real GPUs of the first backend");
    assert_eq!(select_adapters(" 2, 0,0 ", &list).unwrap(), vec![2, 0, 0]);
    assert_eq!(select_adapters("all", &[entry(0, "Vulkan", true)]).unwrap(), vec![0], "only a CPU adapter");
    for bad in ["4", "x", "0,,1", ""] {
        let err = select_adapters(bad, &list).err().unwrap();
        assert!(matches!(err, shaderlm::engine::Error::NoAdapter(_)), "{bad:?}: {err}");
    }
}

#[test]
fn a_prompts_file_has_one_prompt_per_line_or_a_json_string() {
    let path = std::env::temp_dir().join(format!("shaderlm-prompts-{}.txt", std::process::id()));
    std::fs::write(&path, "Once upon a time\n\n  \n\"two\\nlines\"\nThe cat\r\n").unwrap();
    let prompts = shaderlm::replicas::read_prompts(&path).unwrap();
    assert_eq!(prompts, ["Once upon a time", "two\nlines", "The cat"]);
    let numbered = shaderlm::replicas::read_prompt_lines(&path).unwrap();
    assert_eq!(numbered.iter().map(|(line, _)| *line).collect::<Vec<_>>(), [0, 3, 4]);
    std::fs::write(&path, "\"unterminated\n").unwrap();
    assert!(matches!(shaderlm::replicas::read_prompts(&path), Err(Error::Input(_))));
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(shaderlm::replicas::read_prompts(&path), Err(Error::Io { .. })));
}

#[test]
fn a_split_model_refuses_batched_decoding_with_a_reason() {
    let _g = GPU_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut model = Model::load(stories(), &options(vec![0, 0])).unwrap();
    let err = shaderlm::batch::BatchGenerator::new(&mut model, 2).err().unwrap();
    assert!(matches!(&err, Error::Input(m) if m.contains("--split-layers")), "{err}");
}
