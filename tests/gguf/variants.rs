//! Metadata variants that SmolLM2 and stories260K do not exercise: Qwen2 (biases, no Q/K
//! permutation), Llama 3 RoPE scaling stored as rope_freqs.weight, and the pre-tokenizers
//! named by tokenizer.ggml.pre.

use super::*;
use shaderlm::checkpoint::config::Architecture;
use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// An architecture's config keys for hidden 8, 2 heads of 4, 1 KV head.
fn base(arch: &str) -> GgufBuilder {
    let mut b = GgufBuilder::new();
    let k = |s: &str| format!("{arch}.{s}");
    b.string("general.architecture", arch)
        .u32(&k("block_count"), 1)
        .u32(&k("context_length"), 128)
        .u32(&k("embedding_length"), 8)
        .u32(&k("feed_forward_length"), 16)
        .u32(&k("vocab_size"), 16)
        .u32(&k("attention.head_count"), 2)
        .u32(&k("attention.head_count_kv"), 1)
        .f32(&k("attention.layer_norm_rms_epsilon"), 1e-6);
    b
}

/// Rows numbered 0..rows, each `cols` F32 values equal to its row number.
fn numbered_rows(rows: usize, cols: usize) -> Vec<u8> {
    f32_bytes(&(0..rows * cols).map(|i| (i / cols) as f32).collect::<Vec<_>>())
}

fn first_column(values: &[f32], cols: usize) -> Vec<f32> {
    values.chunks(cols).map(|row| row[0]).collect()
}

#[test]
fn qwen2_has_biases_and_keeps_hf_row_order() {
    let mut b = base("qwen2");
    b.tensor("blk.0.attn_q.weight", &[8, 8], F32, &numbered_rows(8, 8));
    b.tensor("blk.0.attn_q.bias", &[8], F32, &numbered_rows(8, 1));
    let (_, file) = open_bytes("qwen2", &b.build());
    let file = file.unwrap();
    let c = file.config().unwrap();
    assert_eq!((c.architecture, c.attention_bias), (Architecture::Qwen2, true));
    assert_eq!((c.head_dim, c.num_key_value_heads, c.rope_theta), (4, 1, 10_000.0));
    let (_, q) = file.tensor_f32("model.layers.0.self_attn.q_proj.weight").unwrap();
    assert_eq!(first_column(&q, 8), vec![0., 1., 2., 3., 4., 5., 6., 7.], "Qwen2 is not permuted");
}

#[test]
fn llama_q_k_and_biases_are_unpermuted_per_head() {
    let mut b = base("llama");
    b.tensor("blk.0.attn_q.weight", &[8, 8], F32, &numbered_rows(8, 8));
    b.tensor("blk.0.attn_q.bias", &[8], F32, &numbered_rows(8, 1));
    b.tensor("blk.0.attn_k.weight", &[8, 4], F32, &numbered_rows(4, 8));
    b.tensor("blk.0.attn_v.weight", &[8, 4], F32, &numbered_rows(4, 8));
    let (_, file) = open_bytes("llama-permuted", &b.build());
    let file = file.unwrap();
    assert!(file.config().unwrap().attention_bias, "a q bias is present");
    // Two heads of 4 rows: HF row (h, j, i) is GGUF row h*4 + 2i + j.
    let (_, q) = file.tensor_f32("model.layers.0.self_attn.q_proj.weight").unwrap();
    assert_eq!(first_column(&q, 8), vec![0., 2., 1., 3., 4., 6., 5., 7.]);
    let (_, bias) = file.tensor_f32("model.layers.0.self_attn.q_proj.bias").unwrap();
    assert_eq!(bias, vec![0., 2., 1., 3., 4., 6., 5., 7.]);
    // K has one KV head of 4 rows.
    let (_, k) = file.tensor_f32("model.layers.0.self_attn.k_proj.weight").unwrap();
    assert_eq!(first_column(&k, 8), vec![0., 2., 1., 3.]);
    let (_, v) = file.tensor_f32("model.layers.0.self_attn.v_proj.weight").unwrap();
    assert_eq!(first_column(&v, 8), vec![0., 1., 2., 3.], "V keeps its order");

    // A head count that does not divide the rows is an error, not a silent mix-up.
    let mut b = base("llama");
    b.u32("llama.attention.key_length", 4);
    b.tensor("blk.0.attn_q.weight", &[8, 6], F32, &numbered_rows(6, 8));
    let (_, file) = open_bytes("llama-bad-heads", &b.build());
    match file.unwrap().tensor("model.layers.0.self_attn.q_proj.weight") {
        Err(Error::Format { message, .. }) => assert!(message.contains("do not split into 2 heads"), "{message}"),
        other => panic!("expected a format error, got {:?}", other.map(|v| v.shape)),
    }
}

/// Llama 3.1's divisors for frequency i of `dim`/2 (factor 8, low 1, high 4, original 8192).
fn llama3_divisors(theta: f64, dim: usize) -> Vec<f32> {
    (0..dim / 2)
        .map(|i| {
            let wavelen = 2.0 * std::f64::consts::PI * theta.powf(2.0 * i as f64 / dim as f64);
            if wavelen < 8192.0 / 4.0 {
                1.0
            } else if wavelen > 8192.0 {
                8.0
            } else {
                let smooth = (8192.0 / wavelen - 1.0) / 3.0;
                (1.0 / ((1.0 - smooth) / 8.0 + smooth)) as f32
            }
        })
        .collect()
}

#[test]
fn llama3_rope_scaling_from_rope_freqs() {
    let theta = 500_000.0;
    let mut b = base("llama");
    b.u32("llama.attention.key_length", 32).f32("llama.rope.freq_base", theta as f32);
    let divisors = llama3_divisors(theta, 32);
    assert!(divisors.iter().any(|&d| d > 1.0 && d < 8.0), "the test covers the smooth band");
    b.tensor("rope_freqs.weight", &[16], F32, &f32_bytes(&divisors));
    let (_, file) = open_bytes("llama3-rope", &b.build());
    let c = file.unwrap().config().unwrap();
    let s = c.rope_scaling.expect("Llama 3 scaling");
    assert_eq!((s.factor, s.low_freq_factor, s.high_freq_factor, s.original_max_position_embeddings), (8.0, 1.0, 4.0, 8192));
    assert_eq!(c.head_dim, 32);

    let mut wrong = divisors.clone();
    let in_band = divisors.iter().position(|&d| d > 1.0 && d < 8.0).unwrap();
    wrong[in_band] *= 1.1;
    let mut b = base("llama");
    b.u32("llama.attention.key_length", 32).f32("llama.rope.freq_base", theta as f32);
    b.tensor("rope_freqs.weight", &[16], F32, &f32_bytes(&wrong));
    let (_, file) = open_bytes("llama3-rope-wrong", &b.build());
    match file.unwrap().config() {
        Err(Error::Format { message, .. }) => assert!(message.contains(&format!("rope_freqs.weight[{in_band}]")), "{message}"),
        other => panic!("expected a format error, got {other:?}"),
    }

    let mut b = base("llama");
    b.string("llama.rope.scaling.type", "linear");
    let (_, file) = open_bytes("linear-rope", &b.build());
    match file.unwrap().config() {
        Err(Error::Format { message, .. }) => assert!(message.contains("\"linear\""), "{message}"),
        other => panic!("expected a format error, got {other:?}"),
    }
}

/// The pieces the pre-tokenizer of a byte-level BPE file named `pre` cuts `text` into.
fn pre_tokens(pre: &str, text: &str) -> Vec<String> {
    let mut b = GgufBuilder::new();
    b.string("tokenizer.ggml.model", "gpt2")
        .string("tokenizer.ggml.pre", pre)
        .strings("tokenizer.ggml.tokens", &["a"])
        .strings("tokenizer.ggml.merges", &[]);
    let file = GgufFile::from_bytes(format!("{pre}.gguf"), b.build()).unwrap();
    let parts = file.tokenizer().unwrap();
    let mut pieces = PreTokenizedString::from(text);
    parts.tokenizer.get_pre_tokenizer().unwrap().pre_tokenize(&mut pieces).unwrap();
    pieces
        .get_splits(OffsetReferential::Original, OffsetType::Byte)
        .into_iter()
        .map(|(s, _, _)| s.to_owned())
        .collect()
}

#[test]
fn pre_tokenizers_split_as_llama_cpp_does() {
    // Llama 3: digits in threes, punctuation keeps its newlines, a lone space before digits.
    assert_eq!(
        pre_tokens("llama-bpe", "Hello world 12345!!\n\n x"),
        ["Hello", "Ġworld", "Ġ", "123", "45", "!!ĊĊ", "Ġx"]
    );
    assert_eq!(pre_tokens("llama-bpe", "I'LL"), ["I", "'LL"], "case-insensitive contractions");
    // SmolLM: every digit alone, then GPT-2's expression.
    assert_eq!(
        pre_tokens("smollm", "Hello world 12345!!"),
        ["Hello", "Ġworld", "Ġ", "1", "2", "3", "4", "5", "!!"]
    );
    assert_eq!(pre_tokens("gpt-2", "Hello world 12345!!"), ["Hello", "Ġworld", "Ġ12345", "!!"]);
    assert_eq!(pre_tokens("qwen2", "Hello world 123"), ["Hello", "Ġworld", "Ġ", "1", "2", "3"]);
    // llama.cpp's default: punctuation runs, GPT-2, digit runs, then threes of ASCII digits.
    assert_eq!(
        pre_tokens("default", "Hello, world 12345"),
        ["Hello", ",", "Ġworld", "Ġ", "123", "45"]
    );
}
