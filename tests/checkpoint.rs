//! Checkpoint reading: the real stories260K folder, and hostile files that must give typed
//! errors naming the file, never a panic.

use std::path::{Path, PathBuf};

use shaderlm::checkpoint::config::{Architecture, Llama3RopeScaling};
use shaderlm::checkpoint::{Checkpoint, Config, StoredDType};
use shaderlm::Error;

fn stories_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/models/stories260K")
}

/// A fresh empty folder under the system temp dir, unique to this process and test.
fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shaderlm-checkpoint-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A model folder with stories260K's config.json and `weights` as model.safetensors.
fn folder_with_weights(test: &str, weights: &[u8]) -> PathBuf {
    let dir = temp_dir(test);
    std::fs::copy(stories_dir().join("config.json"), dir.join("config.json")).unwrap();
    std::fs::write(dir.join("model.safetensors"), weights).unwrap();
    dir
}

/// A safetensors file: 8-byte header length, the header, the data.
fn safetensors(header: &str, data: &[u8]) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

#[track_caller]
fn assert_format_error<T>(result: Result<T, Error>, file: &Path, words: &str) {
    match result {
        Err(Error::Format { path, message }) => {
            assert_eq!(path, file, "error names the wrong file: {message}");
            assert!(message.contains(words), "message {message:?} should contain {words:?}");
            let shown = Error::Format { path, message }.to_string();
            assert!(shown.contains(&file.display().to_string()), "{shown}");
        }
        Err(other) => panic!("expected a Format error about {file:?}, got {other:?}"),
        Ok(_) => panic!("expected a Format error about {file:?}, got Ok"),
    }
}

/// Opening a folder whose model.safetensors is `weights` fails with a Format error naming it.
#[track_caller]
fn assert_bad_weights(test: &str, weights: &[u8], words: &str) {
    let dir = folder_with_weights(test, weights);
    assert_format_error(Checkpoint::open(&dir), &dir.join("model.safetensors"), words);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- the real model ----

#[test]
fn stories260k_config() {
    let checkpoint = Checkpoint::open(&stories_dir()).unwrap();
    let c = checkpoint.config();
    assert_eq!(c.architecture, Architecture::Llama);
    assert_eq!(
        (c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads),
        (64, 172, 5, 8, 4)
    );
    assert_eq!((c.head_dim, c.vocab_size, c.max_position_embeddings, c.rot_dim()), (8, 512, 512, 8));
    assert_eq!((c.rms_norm_eps, c.rope_theta, c.partial_rotary_factor), (1e-5, 10000.0, 1.0));
    assert_eq!(c.rope_scaling, None);
    assert!(c.tie_word_embeddings && !c.attention_bias);
    assert_eq!((c.bos_token_id, c.eos_token_ids.as_slice()), (Some(1), &[2u32][..]));
    assert_eq!(checkpoint.path(), stories_dir());
}

#[test]
fn stories260k_tensors() {
    let checkpoint = Checkpoint::open(&stories_dir()).unwrap();
    let names = checkpoint.tensor_names();
    // embeddings + final norm + 9 per layer; tied, so no lm_head.
    assert_eq!(names.len(), 2 + 5 * 9);
    assert!(names.windows(2).all(|w| w[0] < w[1]), "names are sorted");
    assert!(checkpoint.has_tensor("model.norm.weight") && !checkpoint.has_tensor("lm_head.weight"));

    let q = checkpoint.expect_shape("model.layers.0.self_attn.q_proj.weight", &[64, 64]).unwrap();
    assert_eq!(q.dtype, StoredDType::F32);
    checkpoint.expect_shape("model.layers.4.self_attn.k_proj.weight", &[32, 64]).unwrap();
    checkpoint.expect_shape("model.layers.2.mlp.down_proj.weight", &[64, 172]).unwrap();

    // The embedding table is stored unchanged from llama2.c's stories260K.bin, right after its
    // 7-int32 header: an independent check of the values.
    let embed = checkpoint.expect_shape("model.embed_tokens.weight", &[512, 64]).unwrap();
    let values = embed.to_f32().unwrap();
    let bin = std::fs::read(stories_dir().join("stories260K.bin")).unwrap();
    let from_bin: Vec<f32> =
        bin[28..28 + 512 * 64 * 4].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    assert_eq!(values, from_bin);
    assert!(values.iter().any(|&v| v != 0.0));

    let halves = embed.to_f16_bits().unwrap();
    assert_eq!(halves.len(), values.len());
    for (h, v) in halves.iter().zip(&values).take(100) {
        assert_eq!(*h, half::f16::from_f32(*v).to_bits());
    }
}

#[test]
fn wrong_shape_is_a_tensor_shape_error() {
    let checkpoint = Checkpoint::open(&stories_dir()).unwrap();
    match checkpoint.expect_shape("model.norm.weight", &[65]) {
        Err(Error::TensorShape { path, name, expected, got }) => {
            assert_eq!((path, name.as_str()), (stories_dir(), "model.norm.weight"));
            assert_eq!((expected, got), (vec![65], vec![64]));
        }
        other => panic!("expected TensorShape, got {other:?}"),
    }
}

#[test]
fn missing_tensor_names_folder_and_tensor() {
    let checkpoint = Checkpoint::open(&stories_dir()).unwrap();
    match checkpoint.tensor("lm_head.weight") {
        Err(e @ Error::MissingTensor { .. }) => {
            let text = e.to_string();
            assert!(text.contains("lm_head.weight") && text.contains("stories260K"), "{text}");
        }
        other => panic!("expected MissingTensor, got {other:?}"),
    }
}

// ---- folders ----

#[test]
fn missing_folder_is_io_error() {
    let dir = std::env::temp_dir().join("shaderlm-checkpoint-no-such-folder");
    match Checkpoint::open(&dir) {
        Err(Error::Io { path, .. }) => assert_eq!(path, dir),
        other => panic!("expected Io, got {:?}", other.err()),
    }
}

#[test]
fn missing_config_is_io_error_naming_it() {
    let dir = temp_dir("missing-config");
    std::fs::copy(stories_dir().join("model.safetensors"), dir.join("model.safetensors")).unwrap();
    match Checkpoint::open(&dir) {
        Err(Error::Io { path, .. }) => assert_eq!(path, dir.join("config.json")),
        other => panic!("expected Io, got {:?}", other.err()),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn config_not_json() {
    let dir = temp_dir("config-not-json");
    std::fs::write(dir.join("config.json"), "{\"hidden_size\": 64,").unwrap();
    assert_format_error(Checkpoint::open(&dir), &dir.join("config.json"), "not valid JSON");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn folder_without_weights() {
    let dir = temp_dir("no-weights");
    std::fs::copy(stories_dir().join("config.json"), dir.join("config.json")).unwrap();
    assert_format_error(Checkpoint::open(&dir), &dir, "model.safetensors");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_file_is_not_a_folder() {
    let file = stories_dir().join("config.json");
    assert_format_error(Checkpoint::open(&file), &file, "model folder");
}

// ---- config.json ----

const LLAMA: &str = r#"{"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 172,
    "num_hidden_layers": 2, "num_attention_heads": 8, "vocab_size": 512"#;

fn config(extra: &str) -> Result<Config, Error> {
    Config::from_json_str(&format!("{LLAMA}{extra}}}"), Path::new("dir/config.json"))
}

#[track_caller]
fn assert_config_error(extra: &str, words: &str) {
    assert_format_error(config(extra), Path::new("dir/config.json"), words);
}

#[test]
fn config_defaults_follow_transformers() {
    let c = config("").unwrap();
    assert_eq!((c.num_key_value_heads, c.head_dim, c.max_position_embeddings), (8, 8, 2048));
    assert_eq!((c.rms_norm_eps, c.rope_theta, c.partial_rotary_factor), (1e-6, 10000.0, 1.0));
    assert!(!c.tie_word_embeddings && !c.attention_bias && c.rope_scaling.is_none());
    assert_eq!((c.bos_token_id, c.eos_token_ids.clone()), (Some(1), vec![2]));
    c.validate().unwrap();
}

#[test]
fn config_explicit_values() {
    let c = config(
        r#", "num_key_value_heads": 2, "head_dim": 16, "partial_rotary_factor": 0.3, "rope_theta": 500000,
        "eos_token_id": [128001, 128009], "bos_token_id": null, "tie_word_embeddings": true, "vocab_size": 128256"#,
    )
    .unwrap();
    assert_eq!((c.num_key_value_heads, c.head_dim, c.rope_theta), (2, 16, 500000.0));
    // 16 * 0.3 = 4.8 -> 4 (even).
    assert_eq!(c.rot_dim(), 4);
    assert_eq!((c.bos_token_id, c.eos_token_ids), (None, vec![128001, 128009]));
    assert!(c.tie_word_embeddings);
}

#[test]
fn config_llama3_rope_scaling() {
    let scaling = Llama3RopeScaling {
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 8192,
    };
    for key in ["rope_type", "type"] {
        let c = config(&format!(
            r#", "rope_scaling": {{"{key}": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}"#
        ))
        .unwrap();
        assert_eq!(c.rope_scaling, Some(scaling));
    }
    // transformers 5 layout.
    let c = config(
        r#", "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
        "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}"#,
    )
    .unwrap();
    assert_eq!((c.rope_scaling, c.rope_theta), (Some(scaling), 500000.0));
    let c = config(r#", "rope_parameters": {"rope_type": "default", "rope_theta": 100000.0}"#).unwrap();
    assert_eq!((c.rope_scaling, c.rope_theta), (None, 100000.0));
    assert_config_error(r#", "rope_scaling": {"rope_type": "llama3", "factor": 8.0}"#, "low_freq_factor");
}

#[test]
fn config_unsupported_rope_scaling() {
    for kind in ["linear", "dynamic", "yarn", "longrope"] {
        assert_config_error(&format!(r#", "rope_scaling": {{"type": "{kind}", "factor": 2.0}}"#), kind);
    }
}

#[test]
fn config_qwen2_and_mistral() {
    let qwen = LLAMA.replace("LlamaForCausalLM", "Qwen2ForCausalLM");
    let c = Config::from_json_str(&format!("{qwen}, \"sliding_window\": 64}}"), Path::new("q.json")).unwrap();
    assert_eq!((c.architecture, c.attention_bias, c.max_position_embeddings), (Architecture::Qwen2, true, 2048));
    assert_eq!((c.bos_token_id, c.eos_token_ids.len()), (None, 0));

    let mistral = LLAMA.replace("LlamaForCausalLM", "MistralForCausalLM");
    let c = Config::from_json_str(&format!("{mistral}, \"sliding_window\": 1024}}"), Path::new("m.json")).unwrap();
    assert_eq!((c.architecture, c.attention_bias), (Architecture::Llama, false));
    assert_eq!(c.max_position_embeddings, 1024, "context cut to the sliding window");
}

#[test]
fn config_missing_required_key() {
    for key in ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"] {
        let text = format!("{LLAMA}}}").replace(&format!("\"{key}\""), "\"renamed\"");
        let result = Config::from_json_str(&text, Path::new("dir/config.json"));
        assert_format_error(result, Path::new("dir/config.json"), &format!("required key {key} is missing"));
    }
}

#[test]
fn config_wrong_types() {
    assert_config_error(r#", "num_key_value_heads": "4""#, "num_key_value_heads");
    assert_config_error(r#", "rms_norm_eps": true"#, "rms_norm_eps");
    assert_config_error(r#", "eos_token_id": [2, -1]"#, "eos_token_id");
    assert_format_error(Config::from_json_str("[1, 2]", Path::new("x.json")), Path::new("x.json"), "object");
}

#[test]
fn config_heads_must_divide_hidden() {
    assert_config_error(r#", "num_attention_heads": 7"#, "not a multiple of num_attention_heads 7");
    // With head_dim given, hidden need not be heads * head_dim (as in some Qwen/Gemma shapes).
    let c = config(r#", "num_attention_heads": 7, "num_key_value_heads": 1, "head_dim": 16"#).unwrap();
    assert_eq!(c.head_dim, 16);
}

#[test]
fn config_kv_heads_must_divide_heads() {
    assert_config_error(r#", "num_key_value_heads": 3"#, "not a multiple of num_key_value_heads 3");
}

#[test]
fn config_unknown_architecture() {
    let text = LLAMA.replace("LlamaForCausalLM", "GPT2LMHeadModel");
    let result = Config::from_json_str(&format!("{text}}}"), Path::new("dir/config.json"));
    assert_format_error(result, Path::new("dir/config.json"), "GPT2LMHeadModel");
}

#[test]
fn config_sizes_are_bounded() {
    assert_config_error(r#", "hidden_size": 1099511627776, "head_dim": 8"#, "hidden_size");
    assert_config_error(r#", "vocab_size": 100000000"#, "vocab_size");
    assert_config_error(r#", "num_hidden_layers": 0"#, "num_hidden_layers");
    assert_config_error(r#", "num_hidden_layers": 5000"#, "num_hidden_layers");
    assert_config_error(r#", "intermediate_size": 18446744073709551615"#, "intermediate_size");
    assert_config_error(r#", "rms_norm_eps": 0.0"#, "rms_norm_eps");
    assert_config_error(r#", "eos_token_id": 512"#, "512");
    let mut c = config("").unwrap();
    c.head_dim = 0;
    assert!(matches!(c.validate(), Err(Error::Format { .. })));
}

// ---- safetensors ----

#[test]
fn truncated_safetensors() {
    let real = std::fs::read(stories_dir().join("model.safetensors")).unwrap();
    let header_end = 8 + u64::from_le_bytes(real[..8].try_into().unwrap()) as usize;
    let cases = [
        (0, "too short"),
        (5, "too short"),
        (8, "runs past the end"),
        (100, "runs past the end"),
        (header_end - 1, "runs past the end"),
        (header_end, "run past the end of the data"),
        (header_end + 1000, "run past the end of the data"),
        (real.len() - 1, "run past the end of the data"),
    ];
    for (i, (cut, words)) in cases.into_iter().enumerate() {
        assert_bad_weights(&format!("truncated-{i}"), &real[..cut], words);
    }
}

#[test]
fn header_length_past_end_of_file() {
    let mut bytes = safetensors("{}", &[]);
    bytes[..8].copy_from_slice(&1000u64.to_le_bytes());
    assert_bad_weights("header-past-eof", &bytes, "runs past the end of the file");
}

#[test]
fn header_length_huge() {
    for (i, len) in [u64::MAX, 1 << 40, 200 << 20].into_iter().enumerate() {
        let mut bytes = safetensors("{}", &[]);
        bytes[..8].copy_from_slice(&len.to_le_bytes());
        assert_bad_weights(&format!("header-huge-{i}"), &bytes, "limit");
    }
}

#[test]
fn header_not_utf8_or_json() {
    let mut bytes = safetensors("{\"a\": 1}", &[]);
    bytes[10] = 0xff;
    assert_bad_weights("header-not-utf8", &bytes, "not UTF-8");
    assert_bad_weights("header-not-json", &safetensors("{\"a\": ", &[]), "not valid JSON");
    assert_bad_weights("header-not-object", &safetensors("[]", &[]), "not a JSON object");
    let entry = r#"{"w": {"dtype": "F32", "shape": [1]}}"#;
    assert_bad_weights("header-no-offsets", &safetensors(entry, &[0; 4]), "data_offsets");
}

#[test]
fn offsets_past_end() {
    let header = r#"{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}"#;
    assert_bad_weights("offsets-past-end", &safetensors(header, &[0; 12]), "run past the end of the data");
    let header = r#"{"w": {"dtype": "F32", "shape": [0], "data_offsets": [8, 4]}}"#;
    assert_bad_weights("offsets-reversed", &safetensors(header, &[0; 12]), "end before they begin");
}

#[test]
fn overlapping_offsets() {
    let header = r#"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                    "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}"#;
    assert_bad_weights("overlap", &safetensors(header, &[0; 12]), "overlap");
}

#[test]
fn shape_overflow() {
    let header = r#"{"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 4]}}"#;
    assert_bad_weights("shape-overflow", &safetensors(header, &[0; 4]), "overflows");
    let header = r#"{"w": {"dtype": "F32", "shape": [4611686018427387904], "data_offsets": [0, 4]}}"#;
    assert_bad_weights("bytes-overflow", &safetensors(header, &[0; 4]), "overflows");
    let header = r#"{"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}"#;
    assert_bad_weights("shape-negative", &safetensors(header, &[0; 4]), "shape");
}

#[test]
fn unknown_dtype() {
    let header = r#"{"w": {"dtype": "Q7", "shape": [1], "data_offsets": [0, 4]}}"#;
    assert_bad_weights("unknown-dtype", &safetensors(header, &[0; 4]), "unknown dtype \"Q7\"");
}

#[test]
fn byte_length_mismatch() {
    let header = r#"{"w": {"dtype": "F16", "shape": [3], "data_offsets": [0, 8]}}"#;
    assert_bad_weights("length-mismatch", &safetensors(header, &[0; 8]), "holds 8 bytes but shape [3] of F16 needs 6");
}

#[test]
fn known_but_unsupported_dtype_fails_only_for_that_tensor() {
    let header = r#"{"ids": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]},
                    "w": {"dtype": "F32", "shape": [1], "data_offsets": [16, 20]}}"#;
    let mut data = vec![0u8; 16];
    data.extend_from_slice(&1.5f32.to_le_bytes());
    let dir = folder_with_weights("i64", &safetensors(header, &data));
    let checkpoint = Checkpoint::open(&dir).unwrap();
    assert_eq!(checkpoint.tensor("w").unwrap().to_f32().unwrap(), vec![1.5]);
    assert_format_error(checkpoint.tensor("ids"), &dir.join("model.safetensors"), "I64");
    drop(checkpoint);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn half_and_bfloat_conversions() {
    let values = [1.0f32, -2.5, 0.333, 65504.0];
    let mut data = Vec::new();
    for v in values {
        data.extend_from_slice(&half::f16::from_f32(v).to_le_bytes());
    }
    for v in values {
        data.extend_from_slice(&half::bf16::from_f32(v).to_le_bytes());
    }
    // The header is padded so the data starts 8-aligned, as real files do; the reader does not need it.
    let header = r#"{"h": {"dtype": "F16", "shape": [2, 2], "data_offsets": [0, 8]},
                    "b": {"dtype": "BF16", "shape": [4], "data_offsets": [8, 16]}, "__metadata__": {"format": "pt"}}  "#;
    let dir = folder_with_weights("halves", &safetensors(header, &data));
    let checkpoint = Checkpoint::open(&dir).unwrap();
    let h = checkpoint.tensor("h").unwrap();
    let expected: Vec<f32> = values.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
    assert_eq!(h.to_f32().unwrap(), expected);
    let expected_bits: Vec<u16> = values.iter().map(|&v| half::f16::from_f32(v).to_bits()).collect();
    assert_eq!(h.to_f16_bits().unwrap(), expected_bits);
    let b = checkpoint.tensor("b").unwrap();
    assert_eq!(b.dtype, StoredDType::BF16);
    let expected: Vec<f32> = values.iter().map(|&v| half::bf16::from_f32(v).to_f32()).collect();
    assert_eq!(b.to_f32().unwrap(), expected);
    drop(checkpoint);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- shards ----

fn write_sharded(test: &str, index: &str) -> PathBuf {
    let dir = temp_dir(test);
    std::fs::copy(stories_dir().join("config.json"), dir.join("config.json")).unwrap();
    let one = r#"{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}"#;
    let two = r#"{"b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}"#;
    std::fs::write(dir.join("model-00001-of-00002.safetensors"), safetensors(one, &2.0f32.to_le_bytes())).unwrap();
    let data: Vec<u8> = [3.0f32, 4.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(dir.join("model-00002-of-00002.safetensors"), safetensors(two, &data)).unwrap();
    std::fs::write(dir.join("model.safetensors.index.json"), index).unwrap();
    dir
}

const INDEX: &str = r#"{"metadata": {"total_size": 12}, "weight_map": {
    "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}"#;

#[test]
fn sharded_folder_opens() {
    let dir = write_sharded("shards", INDEX);
    let checkpoint = Checkpoint::open(&dir).unwrap();
    assert_eq!(checkpoint.tensor_names(), vec!["a", "b"]);
    assert_eq!(checkpoint.tensor("a").unwrap().to_f32().unwrap(), vec![2.0]);
    assert_eq!(checkpoint.tensor("b").unwrap().to_f32().unwrap(), vec![3.0, 4.0]);
    drop(checkpoint);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn shard_index_pointing_to_missing_shard() {
    let index = INDEX.replace("model-00002-of-00002", "model-00003-of-00002");
    let dir = write_sharded("missing-shard", &index);
    match Checkpoint::open(&dir) {
        Err(e @ Error::Io { .. }) => assert!(e.to_string().contains("model-00003-of-00002.safetensors"), "{e}"),
        other => panic!("expected Io naming the shard, got {:?}", other.err()),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn shard_index_inconsistent() {
    let index_path = |dir: &Path| dir.join("model.safetensors.index.json");
    // The index puts `b` in the first shard.
    let index =
        INDEX.replace(r#""b": "model-00002-of-00002.safetensors""#, r#""b": "model-00001-of-00002.safetensors""#);
    let dir = write_sharded("shard-wrong-file", &index);
    assert_format_error(Checkpoint::open(&dir), &index_path(&dir), "does not hold it");
    let _ = std::fs::remove_dir_all(&dir);

    let index = INDEX.replace("model-00002-of-00002.safetensors", "../model-00002-of-00002.safetensors");
    let dir = write_sharded("shard-escapes", &index);
    assert_format_error(Checkpoint::open(&dir), &index_path(&dir), "not a file name");
    let _ = std::fs::remove_dir_all(&dir);

    let dir = write_sharded("shard-no-map", r#"{"metadata": {}}"#);
    assert_format_error(Checkpoint::open(&dir), &index_path(&dir), "weight_map");
    let _ = std::fs::remove_dir_all(&dir);
}
