//! Seeded random mutations of a valid file through the same harness as the cargo-fuzz target
//! (`shaderlm::checkpoint::gguf::exercise`): parse, read and dequantize every tensor, build the
//! config and the tokenizer. Any outcome but a panic is fine.

use super::*;
use shaderlm::checkpoint::gguf::exercise;

/// A small but complete llama file: metadata for the config, a byte-level BPE tokenizer, and
/// tensors of several types (Q and K permuted ones among them).
pub fn seed_file() -> Vec<u8> {
    let mut b = GgufBuilder::new();
    b.string("general.architecture", "llama")
        .u32("llama.block_count", 1)
        .u32("llama.context_length", 64)
        .u32("llama.embedding_length", 32)
        .u32("llama.feed_forward_length", 64)
        .u32("llama.attention.head_count", 4)
        .u32("llama.attention.head_count_kv", 2)
        .u32("llama.rope.dimension_count", 8)
        .f32("llama.rope.freq_base", 10000.0)
        .f32("llama.attention.layer_norm_rms_epsilon", 1e-5)
        .string("tokenizer.ggml.model", "gpt2")
        .string("tokenizer.ggml.pre", "smollm")
        .strings("tokenizer.ggml.tokens", &["<|endoftext|>", "a", "b", "ab", "Ġ", "Ġa", "1", "<|im_start|>"])
        .i32s("tokenizer.ggml.token_type", &[3, 1, 1, 1, 1, 1, 1, 3])
        .strings("tokenizer.ggml.merges", &["a b", "Ġ a"])
        .u32("tokenizer.ggml.bos_token_id", 0)
        .u32("tokenizer.ggml.eos_token_id", 0)
        .bool("tokenizer.ggml.add_bos_token", true)
        .string("tokenizer.chat_template", "{{ messages }}");
    let f32s = |n: usize| -> Vec<u8> { (0..n).flat_map(|i| (i as f32 * 0.25).to_le_bytes()).collect() };
    let q8 = |blocks: usize| -> Vec<u8> { (0..blocks * 34).map(|i| (i * 7 % 256) as u8).collect() };
    b.tensor("token_embd.weight", &[32, 8], Q8_0, &q8(8))
        .tensor("blk.0.attn_norm.weight", &[32], F32, &f32s(32))
        .tensor("blk.0.attn_q.weight", &[32, 32], Q8_0, &q8(32))
        .tensor("blk.0.attn_k.weight", &[32, 16], F16, &(0..1024).map(|i| (i % 60) as u8).collect::<Vec<_>>())
        .tensor("blk.0.attn_v.weight", &[32, 16], Q4_0, &vec![0x35; 16 * 18])
        .tensor("blk.0.attn_output.weight", &[32, 32], Q4_1, &vec![0x36; 32 * 20])
        .tensor("blk.0.ffn_up.weight", &[256, 1], Q4_K, &[0x21; 144])
        .tensor("blk.0.ffn_down.weight", &[32, 2], BF16, &[0x3f; 128])
        .tensor("output_norm.weight", &[32], F32, &f32s(32));
    b.build()
}

/// A SentencePiece-style ("llama") tokenizer with scores, byte tokens and control tokens.
pub fn sentencepiece_seed_file() -> Vec<u8> {
    let mut b = GgufBuilder::new();
    b.string("general.architecture", "llama")
        .string("tokenizer.ggml.model", "llama")
        .strings("tokenizer.ggml.tokens", &["<unk>", "<s>", "</s>", "<0x41>", "<0xC3>", "▁", "a", "b", "ab", "▁a", "▁ab"])
        .f32s("tokenizer.ggml.scores", &[0.0, 0.0, 0.0, 0.0, 0.0, -1.0, -2.0, -3.0, -4.0, -5.0, -6.0])
        .i32s("tokenizer.ggml.token_type", &[2, 3, 3, 6, 6, 1, 1, 1, 1, 1, 1])
        .u32("tokenizer.ggml.bos_token_id", 1)
        .u32("tokenizer.ggml.eos_token_id", 2)
        .u32("tokenizer.ggml.unknown_token_id", 0);
    b.build()
}

#[test]
fn the_sentencepiece_seed_is_valid() {
    let bytes = sentencepiece_seed_file();
    let file = GgufFile::from_bytes("spm-seed.gguf", bytes.clone()).expect("the seed opens");
    let parts = file.tokenizer().expect("tokenizer");
    // BOS, "▁ab", "a", "A" by byte fallback, then "é": its first byte has a token, its second
    // does not, so the whole character is unknown.
    let enc = parts.tokenizer.encode("abaAé", true).unwrap();
    assert_eq!(enc.get_ids(), &[1, 10, 6, 3, 0], "{:?}", enc.get_tokens());
    exercise(&bytes);
}

#[test]
fn the_seed_file_is_valid() {
    let bytes = seed_file();
    let file = GgufFile::from_bytes("seed.gguf", bytes.clone()).expect("the seed opens");
    let config = file.config().expect("config");
    assert_eq!((config.num_attention_heads, config.vocab_size), (4, 8));
    for t in file.tensors() {
        file.tensor_f32(&t.gguf_name).unwrap_or_else(|e| panic!("{e}"));
    }
    let parts = file.tokenizer().expect("tokenizer");
    assert_eq!(parts.tokenizer.encode("ab a<|im_start|>1", true).unwrap().get_ids(), &[0, 3, 5, 7, 6]);
    exercise(&bytes);
}

/// One random change: flip bits, write an interesting integer, cut, duplicate or delete a run.
fn mutate(bytes: &mut Vec<u8>, rng: &mut Rng) {
    let len = bytes.len();
    match rng.below(6) {
        0 => {
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(len);
                bytes[at] ^= 1 << rng.below(8);
            }
        }
        1 => {
            let at = rng.below(len);
            bytes[at] = rng.next_u64() as u8;
        }
        2 => {
            // An interesting u32 or u64 over whatever field lies there.
            let interesting = [0u64, 1, 2, 3, 4, 31, 32, 255, 256, 0xffff_ffff, 1 << 32, u64::MAX, u64::MAX / 2, len as u64, len as u64 + 1];
            let v = interesting[rng.below(interesting.len())];
            let width = if rng.below(2) == 0 { 4 } else { 8 };
            let at = rng.below(len.saturating_sub(width).max(1));
            let le = v.to_le_bytes();
            bytes[at..at + width.min(len - at)].copy_from_slice(&le[..width.min(len - at)]);
        }
        3 => bytes.truncate(rng.below(len)),
        4 => {
            let at = rng.below(len);
            let n = 1 + rng.below(64).min(len - at - 1);
            let run: Vec<u8> = bytes[at..at + n].to_vec();
            let to = rng.below(len);
            bytes.splice(to..to, run);
        }
        _ => {
            let at = rng.below(len);
            let n = 1 + rng.below(16).min(len - at - 1);
            bytes.drain(at..at + n);
        }
    }
}

#[test]
fn random_mutations_never_panic() {
    let seeds = [seed_file(), sentencepiece_seed_file()];
    let cases = 8000;
    let mut opened = 0;
    let start = std::time::Instant::now();
    for case in 0..cases {
        let mut rng = Rng::new(case);
        let mut bytes = seeds[case as usize % seeds.len()].clone();
        for _ in 0..1 + rng.below(3) {
            if bytes.is_empty() {
                break;
            }
            mutate(&mut bytes, &mut rng);
        }
        let result = std::panic::catch_unwind(|| exercise(&bytes));
        if result.is_err() {
            let path = std::env::temp_dir().join(format!("gguf-mutation-{case}.gguf"));
            let _ = std::fs::write(&path, &bytes);
            panic!("mutation case {case} panicked; input saved to {}", path.display());
        }
        opened += usize::from(GgufFile::from_bytes("m.gguf", bytes).is_ok());
    }
    eprintln!("{cases} mutations in {:?}: {opened} still opened, the rest were rejected", start.elapsed());
}

/// Writes the seed file into tests/fuzz/seeds/gguf for the cargo-fuzz target:
/// `cargo test --test gguf write_fuzz_seed -- --ignored`.
#[test]
#[ignore]
fn write_fuzz_seed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/seeds/gguf");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tiny-llama.gguf"), seed_file()).unwrap();
    std::fs::write(dir.join("tiny-sentencepiece.gguf"), sentencepiece_seed_file()).unwrap();
    std::fs::copy(data_dir().join("blocks.gguf"), dir.join("blocks.gguf")).unwrap();
}
