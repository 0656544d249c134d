//! tests/data/stories260k.gguf: Karpathy's stories260K as llama.cpp stores it, written by the
//! `gguf` Python package (scripts/make-gguf-vectors.py): llama metadata, a SentencePiece-style
//! tokenizer, and some tensors in seven types with Q/K rows in llama.cpp's permuted order.

use super::*;
use shaderlm::checkpoint::config::Architecture;
use shaderlm::checkpoint::gguf::{rotary_row_map, unpermute_rows};
use shaderlm::checkpoint::StoredDType;

fn open() -> GgufFile {
    GgufFile::open(&data_dir().join("stories260k.gguf")).expect("tests/data/stories260k.gguf")
}

#[test]
fn config_from_metadata() {
    let c = open().config().expect("config");
    let want = &read_json("stories260k.json")["config"];
    let n = |k: &str| want[k].as_u64().unwrap() as usize;
    assert_eq!(c.architecture, Architecture::Llama);
    assert_eq!(c.hidden_size, n("hidden_size"));
    assert_eq!(c.intermediate_size, n("intermediate_size"));
    assert_eq!(c.num_hidden_layers, n("num_hidden_layers"));
    assert_eq!(c.num_attention_heads, n("num_attention_heads"));
    assert_eq!(c.num_key_value_heads, n("num_key_value_heads"));
    assert_eq!(c.head_dim, n("head_dim"));
    assert_eq!(c.vocab_size, n("vocab_size"));
    assert_eq!(c.max_position_embeddings, n("max_position_embeddings"));
    assert_eq!(c.rms_norm_eps, 1e-5);
    assert_eq!(c.rope_theta, 10_000.0);
    assert_eq!(c.partial_rotary_factor, 1.0);
    assert_eq!(c.rope_scaling, None);
    assert!(c.tie_word_embeddings, "no output.weight");
    assert!(!c.attention_bias);
    assert_eq!((c.bos_token_id, c.eos_token_ids.clone()), (Some(1), vec![2]));
}

#[test]
fn tensors_in_hf_order_match_gguf_py() {
    let file = open();
    let want = read_json("stories260k.json");
    let tensors = want["tensors"].as_object().unwrap();
    assert_eq!(tensors.len(), file.tensors().len());
    for (hf_name, w) in tensors {
        let (shape, values) = file.tensor_f32(hf_name).unwrap_or_else(|e| panic!("{e}"));
        let want_shape: Vec<usize> = w["shape"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
        assert_eq!(shape, want_shape, "{hf_name}");
        let row_len = values.len() / shape[0].max(1);
        let row_len = if shape.len() == 1 { values.len() } else { row_len };
        let mut worst = 0f32;
        for (row, expected) in w["rows"].as_object().unwrap() {
            let r: usize = row.parse().unwrap();
            let got = &values[r * row_len..(r + 1) * row_len];
            worst = worst.max(max_rel_diff(got, &json_f32s(expected)));
        }
        let sum: f64 = values.iter().map(|&x| x as f64).sum();
        let want_sum = w["sum"].as_f64().unwrap();
        eprintln!("{hf_name} ({}): rows differ by {worst:e}, sum {sum} vs {want_sum}", w["type"]);
        assert!(worst <= 1e-6, "{hf_name}: {worst}");
        assert!((sum - want_sum).abs() <= 1e-4 * want_sum.abs().max(1.0), "{hf_name}: sum {sum} vs {want_sum}");
    }
}

/// Q and K come back exactly as the Hugging Face checkpoint has them (F32 rows, so byte-exact),
/// while `tensor_raw` still shows the file's own order.
#[test]
fn q_and_k_rows_equal_the_hf_checkpoint() {
    let Some(dir) = stories_dir() else {
        eprintln!("skipped: ../shared/models/stories260K is absent");
        return;
    };
    let hf = read_safetensors(&dir.join("model.safetensors"));
    let file = open();
    for name in ["model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight"] {
        let view = file.tensor(name).unwrap();
        assert_eq!(view.dtype, StoredDType::F32);
        assert_eq!(view.name, name);
        let (shape, bytes) = &hf[name];
        assert_eq!(&view.shape, shape);
        assert!(view.bytes == &bytes[..], "{name}: rows differ from the HF checkpoint");
        let raw = file.tensor_raw(name).unwrap();
        assert!(raw.bytes != &bytes[..], "{name}: the file's order is not HF's");
        // The same reordering, applied by hand to the raw rows.
        let heads = if name.contains("q_proj") { 8 } else { 4 };
        assert_eq!(unpermute_rows(raw.bytes, shape[0], heads).unwrap(), bytes.to_vec());
    }
    // v_proj (F16) is not permuted: its values are the checkpoint's rounded to f16.
    let (_, v) = file.tensor_f32("model.layers.0.self_attn.v_proj.weight").unwrap();
    let (_, raw) = &hf["model.layers.0.self_attn.v_proj.weight"];
    for (got, chunk) in v.iter().zip(raw.chunks_exact(4)) {
        let x = f32::from_le_bytes(chunk.try_into().unwrap());
        assert_eq!(*got, half::f16::from_f32(x).to_f32());
    }
}

#[test]
fn rotary_row_map_by_hand() {
    // One head of 8 rows: GGUF stores (0, 4), (1, 5), (2, 6), (3, 7) as adjacent pairs.
    assert_eq!(rotary_row_map(8, 1).unwrap(), vec![0, 2, 4, 6, 1, 3, 5, 7]);
    // Two heads of 4.
    assert_eq!(rotary_row_map(8, 2).unwrap(), vec![0, 2, 1, 3, 4, 6, 5, 7]);
    assert_eq!(rotary_row_map(6, 2), None);
    assert_eq!(rotary_row_map(8, 0), None);
    assert_eq!(rotary_row_map(0, 1), None);
    assert_eq!(unpermute_rows(&[10, 11, 20, 21, 30, 31, 40, 41], 4, 1).unwrap(), vec![10, 11, 30, 31, 20, 21, 40, 41]);
    assert_eq!(unpermute_rows(&[1, 2, 3], 2, 1), None);
}

#[test]
fn sentencepiece_tokenizer_matches_hf() {
    let parts = open().tokenizer().expect("tokenizer");
    assert!(parts.add_bos && !parts.add_eos);
    assert_eq!((parts.bos_id, parts.eos_ids.clone(), parts.chat_template.clone()), (Some(1), vec![2], None));
    let want = read_json("stories260k_tokens.json");
    for case in want["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let ids: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
        let got = parts.tokenizer.encode(text, false).unwrap();
        assert_eq!(got.get_ids(), &ids[..], "{text:?}: tokens {:?}", got.get_tokens());
        let with_bos = parts.tokenizer.encode(text, true).unwrap();
        assert_eq!(with_bos.get_ids()[0], 1, "{text:?}: BOS first");
        assert_eq!(&with_bos.get_ids()[1..], &ids[..]);
        // Byte fallback and the prefix space undo exactly (special tokens aside).
        if !text.contains('<') {
            assert_eq!(parts.tokenizer.decode(&ids, false).unwrap(), text, "decode");
        }
    }
}

/// safetensors: u64 header length, JSON header {name: {dtype, shape, data_offsets}}, data.
fn read_safetensors(path: &Path) -> std::collections::HashMap<String, (Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let mut out = std::collections::HashMap::new();
    for (name, info) in header.as_object().unwrap() {
        if name == "__metadata__" {
            continue;
        }
        assert_eq!(info["dtype"], "F32");
        let shape = info["shape"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
        let range = info["data_offsets"].as_array().unwrap();
        let (a, b) = (range[0].as_u64().unwrap() as usize, range[1].as_u64().unwrap() as usize);
        out.insert(name.clone(), (shape, data[a..b].to_vec()));
    }
    out
}
