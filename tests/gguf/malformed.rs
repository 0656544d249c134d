//! Hostile and broken files: each is a clear `Error::Format` naming the file, never a panic or a
//! huge allocation. Also the positive case: a hand-built file with every metadata type.

use super::*;
use shaderlm::checkpoint::gguf::{Array, Value};
use shaderlm::checkpoint::StoredDType;

/// 2 x 32 F32 values: a valid tensor to surround with broken things.
fn f32_tensor() -> Vec<u8> {
    (0..64).flat_map(|i| (i as f32).to_le_bytes()).collect()
}

fn valid() -> GgufBuilder {
    let mut b = GgufBuilder::new();
    b.string("general.architecture", "llama");
    b.tensor("token_embd.weight", &[32, 2], F32, &f32_tensor());
    b
}

#[test]
fn every_metadata_type_and_tensor_shapes_round_trip() {
    let mut b = GgufBuilder::new();
    b.kv_raw(b"u8", T_U8, &[200])
        .kv_raw(b"i8", T_I8, &[0xfe])
        .kv_raw(b"u16", T_U16, &600u16.to_le_bytes())
        .kv_raw(b"i16", T_I16, &(-600i16).to_le_bytes())
        .u32("u32", 70_000)
        .kv_raw(b"i32", T_I32, &(-70_000i32).to_le_bytes())
        .f32("f32", 1.5)
        .bool("bool", true)
        .string("string", "héllo")
        .kv_raw(b"u64", T_U64, &(1u64 << 40).to_le_bytes())
        .kv_raw(b"i64", T_I64, &(-(1i64 << 40)).to_le_bytes())
        .kv_raw(b"f64", T_F64, &2.25f64.to_le_bytes())
        .strings("strings", &["a", "", "ü"])
        .f32s("f32s", &[0.5, -1.0]);
    // An array of two u8 arrays: [[1, 2], [3]].
    let mut nested = Vec::new();
    for inner in [&[1u8, 2][..], &[3u8][..]] {
        nested.extend(T_U8.to_le_bytes());
        nested.extend((inner.len() as u64).to_le_bytes());
        nested.extend_from_slice(inner);
    }
    b.array_raw("nested", T_ARRAY, 2, &nested);
    b.tensor("blk.3.attn_v.weight", &[32, 2], F32, &f32_tensor());
    b.tensor("blk.3.ffn_norm.weight", &[4], F16, &[0, 0x3c, 0, 0xc0, 0, 0, 0, 0]);
    b.tensor("rope_freqs.weight", &[2], F32, &[0, 0, 128, 63, 0, 0, 0, 64]);
    b.version = 2;

    let (_, file) = open_bytes("every-type", &b.build());
    let file = file.expect("a valid file opens");
    assert_eq!(file.version(), 2);
    let m = |k: &str| file.metadata(k).unwrap_or_else(|| panic!("{k} missing")).clone();
    assert_eq!(m("u8"), Value::U8(200));
    assert_eq!(m("i8"), Value::I8(-2));
    assert_eq!(m("u16"), Value::U16(600));
    assert_eq!(m("i16"), Value::I16(-600));
    assert_eq!(m("u32"), Value::U32(70_000));
    assert_eq!(m("i32"), Value::I32(-70_000));
    assert_eq!(m("f32"), Value::F32(1.5));
    assert_eq!(m("bool"), Value::Bool(true));
    assert_eq!(m("string"), Value::String("héllo".into()));
    assert_eq!(m("u64"), Value::U64(1 << 40));
    assert_eq!(m("i64"), Value::I64(-(1 << 40)));
    assert_eq!(m("f64"), Value::F64(2.25));
    assert_eq!(m("strings"), Value::Array(Array::String(vec!["a".into(), "".into(), "ü".into()])));
    assert_eq!(m("f32s"), Value::Array(Array::F32(vec![0.5, -1.0])));
    assert_eq!(m("nested"), Value::Array(Array::Array(vec![Array::U8(vec![1, 2]), Array::U8(vec![3])])));
    assert_eq!(file.metadata_entries().len(), 15);
    assert!(file.metadata("absent").is_none());

    // Shapes come back outermost first; HF names where there is one, GGUF names otherwise.
    let v = file.tensor("model.layers.3.self_attn.v_proj.weight").expect("by HF name");
    assert_eq!((v.shape.clone(), v.dtype), (vec![2, 32], StoredDType::F32));
    assert_eq!(v.bytes, &f32_tensor()[..]);
    assert_eq!(file.tensor("blk.3.attn_v.weight").expect("by GGUF name").bytes, v.bytes);
    let (shape, norm) = file.tensor_f32("model.layers.3.post_attention_layernorm.weight").expect("f16");
    assert_eq!((shape, norm), (vec![4], vec![1.0, -2.0, 0.0, 0.0]));
    let (_, freqs) = file.tensor_f32("rope_freqs.weight").expect("unmapped names stay");
    assert_eq!(freqs, vec![1.0, 2.0]);
    assert_eq!(file.tensors().len(), 3);
    assert!(matches!(file.tensor("model.norm.weight"), Err(Error::MissingTensor { .. })));
    for (k, v) in file.metadata_entries() {
        eprintln!("{k} = {v}");
    }
}

#[test]
fn a_gguf_file_can_be_shared_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<GgufFile>();
}

#[test]
fn bad_magic() {
    let mut bytes = valid().build();
    bytes[..4].copy_from_slice(b"GGML");
    expect_format_error("bad-magic", &bytes, "not a GGUF file");
    expect_format_error("empty", &[], "truncated");
}

#[test]
fn unknown_versions() {
    for version in [0u32, 1, 4, 0x0300_0000] {
        let mut b = valid();
        b.version = version;
        let msg = expect_format_error(&format!("version-{version}"), &b.build(), "only versions 2 and 3");
        assert!(msg.contains(&format!("version {version}")));
    }
    let mut b = valid();
    b.version = 0x0300_0000;
    expect_format_error("big-endian", &b.build(), "big-endian");
}

#[test]
fn counts_that_overflow_or_point_past_the_end() {
    let base = valid().build();
    let patch = |at: usize, v: u64| {
        let mut bytes = base.clone();
        bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
        bytes
    };
    // Header: tensor count at byte 8, kv count at byte 16.
    expect_format_error("tensor-count-max", &patch(8, u64::MAX), "tensor count");
    expect_format_error("tensor-count-past-eof", &patch(8, 1 << 20), "cannot fit");
    expect_format_error("kv-count-max", &patch(16, u64::MAX), "metadata key/value count");
    expect_format_error("kv-count-past-eof", &patch(16, 1000), "cannot fit");
    // The first key's length at byte 24.
    expect_format_error("key-length-max", &patch(24, u64::MAX), "cannot fit");
    expect_format_error("key-length-past-eof", &patch(24, base.len() as u64), "cannot fit");

    let mut b = GgufBuilder::new();
    b.array_raw("a", T_U64, u64::MAX / 4, &[]);
    expect_format_error("array-length-overflows", &b.build(), "the length of array \"a\"");
    let mut b = GgufBuilder::new();
    b.array_raw("a", T_U32, 100, &[0; 40]);
    expect_format_error("array-length-past-eof", &b.build(), "cannot fit");
    let mut b = GgufBuilder::new();
    b.array_raw("a", T_STRING, 2, &gguf_str(b"one"));
    expect_format_error("array-of-strings-past-eof", &b.build(), "cannot fit");
    let mut b = GgufBuilder::new();
    let mut long = (1u64 << 62).to_le_bytes().to_vec();
    long.extend(b"abc");
    b.kv_raw(b"s", T_STRING, &long);
    expect_format_error("string-length-past-eof", &b.build(), "the length of the value of \"s\"");
    let mut b = GgufBuilder::new();
    b.tensor_info(b"t", &[u64::MAX, u64::MAX], F32, 0);
    expect_format_error("element-count-overflows", &b.build(), "overflows");
}

#[test]
fn every_truncation_of_a_valid_file_is_an_error() {
    let mut b = valid();
    b.strings("tokenizer.ggml.tokens", &["a", "b"]).f32("x", 1.0);
    let bytes = b.build();
    for len in 0..bytes.len() {
        let result = GgufFile::from_bytes("cut.gguf", bytes[..len].to_vec());
        match result {
            Err(Error::Format { message, .. }) => assert!(
                message.contains("truncated") || message.contains("cannot fit") || message.contains("past the end"),
                "cut at {len}: {message}"
            ),
            Err(e) => panic!("cut at {len}: {e}"),
            Ok(_) => panic!("cut at {len} of {} opened", bytes.len()),
        }
    }
    assert!(GgufFile::from_bytes("whole.gguf", bytes).is_ok());
}

#[test]
fn unknown_value_types() {
    let mut b = GgufBuilder::new();
    b.kv_raw(b"odd", 13, &[0; 8]);
    let msg = expect_format_error("unknown-value-type", &b.build(), "unknown value type 13");
    assert!(msg.contains("\"odd\""));
    let mut b = GgufBuilder::new();
    b.array_raw("odd", 99, 1, &[0; 8]);
    expect_format_error("unknown-element-type", &b.build(), "unknown element type 99");
    let mut b = GgufBuilder::new();
    b.kv_raw(b"flag", T_BOOL, &[2]);
    expect_format_error("bool-not-0-or-1", &b.build(), "not 0 or 1");
}

#[test]
fn arrays_nested_too_deep() {
    // [[[[[u8]]]]]: five levels.
    let mut value = T_U8.to_le_bytes().to_vec();
    value.extend(0u64.to_le_bytes());
    for _ in 0..4 {
        let mut outer = T_ARRAY.to_le_bytes().to_vec();
        outer.extend(1u64.to_le_bytes());
        outer.extend(value);
        value = outer;
    }
    let mut b = GgufBuilder::new();
    b.kv_raw(b"deep", T_ARRAY, &value);
    expect_format_error("nested-too-deep", &b.build(), "nests arrays deeper");
}

#[test]
fn strings_that_are_not_utf8() {
    let mut b = GgufBuilder::new();
    b.kv_raw(b"bad\xff key", T_U32, &[0; 4]);
    expect_format_error("key-not-utf8", &b.build(), "not UTF-8");
    let mut b = GgufBuilder::new();
    b.kv_raw(b"k", T_STRING, &gguf_str(b"caf\xc3"));
    expect_format_error("value-not-utf8", &b.build(), "not UTF-8");
    let mut b = GgufBuilder::new();
    b.tensor_info(b"w\xc0", &[32], F32, 0).raw_data(&[0; 128]);
    expect_format_error("tensor-name-not-utf8", &b.build(), "not UTF-8");
}

#[test]
fn duplicates() {
    let mut b = valid();
    b.string("general.architecture", "llama");
    expect_format_error("duplicate-key", &b.build(), "appears twice");
    let mut b = valid();
    b.tensor("token_embd.weight", &[32, 2], F32, &f32_tensor());
    expect_format_error("duplicate-tensor", &b.build(), "appears twice");
}

#[test]
fn unknown_tensor_types_name_the_number() {
    let mut b = GgufBuilder::new();
    b.tensor("w", &[32], 99, &[0; 64]);
    expect_format_error("unknown-tensor-type", &b.build(), "unknown ggml type 99");
    let mut b = GgufBuilder::new();
    b.tensor("w", &[32], 6, &[0; 64]);
    let msg = expect_format_error("unsupported-tensor-type", &b.build(), "type 6 (Q5_0)");
    assert!(msg.contains("does not read"));
}

#[test]
fn tensor_sizes_that_disagree_with_type_and_shape() {
    // Data past the end of the file.
    let mut b = GgufBuilder::new();
    b.tensor("w", &[32, 4], F32, &[0; 256]); // 4 rows of 32 f32 need 512 bytes
    expect_format_error("tensor-past-eof", &b.build(), "past the end of the file");
    // Offset beyond the file.
    let mut b = GgufBuilder::new();
    b.tensor_info(b"w", &[32], F32, 1 << 40).raw_data(&[0; 128]);
    expect_format_error("offset-past-eof", &b.build(), "past the end of the file");
    // Two tensors that overlap: the first one's type and shape make it longer than its room.
    let mut b = GgufBuilder::new();
    b.tensor_info(b"a", &[64], F32, 0).tensor_info(b"b", &[32], F32, 128).raw_data(&[0; 512]);
    let msg = expect_format_error("tensors-overlap", &b.build(), "takes 256 bytes but tensor \"b\" starts 128 bytes after it");
    assert!(msg.contains("\"a\""));
    // A row that is not a whole number of blocks.
    let mut b = GgufBuilder::new();
    b.tensor("q", &[48, 2], Q8_0, &[0; 128]);
    expect_format_error("partial-block", &b.build(), "not a whole number of 32-element Q8_0 blocks");
    let mut b = GgufBuilder::new();
    b.tensor_info(b"w", &[32, 1, 1, 1, 1], F32, 0);
    expect_format_error("five-dims", &b.build(), "at most 4");
}

#[test]
fn misaligned_offsets_and_bad_alignment() {
    let mut b = GgufBuilder::new();
    b.tensor_info(b"w", &[32], F32, 16).raw_data(&[0; 256]);
    expect_format_error("misaligned-offset", &b.build(), "not a multiple of the alignment 32");

    // general.alignment = 64: offsets must follow it, and the data section starts on it.
    let mut b = GgufBuilder::new();
    b.alignment = 64;
    b.u32("general.alignment", 64);
    b.tensor("a", &[8], F32, &[0; 32]).tensor("b", &[8], F32, &[1; 32]);
    let (_, file) = open_bytes("alignment-64", &b.build());
    let file = file.expect("64-byte alignment opens");
    assert_eq!(file.tensors()[1].offset % 64, 0);
    assert_eq!(file.tensor("b").expect("b").bytes, &[1u8; 32][..]);
    let mut b = GgufBuilder::new();
    b.u32("general.alignment", 64);
    b.tensor_info(b"w", &[8], F32, 32).raw_data(&[0; 128]);
    expect_format_error("misaligned-for-64", &b.build(), "alignment 64");

    for bad in [0u32, 3, 48] {
        let mut b = GgufBuilder::new();
        b.u32("general.alignment", bad);
        expect_format_error(&format!("alignment-{bad}"), &b.build(), "not a power of two");
    }
}

#[test]
fn config_and_tokenizer_errors_name_what_is_missing() {
    let (_, file) = open_bytes("no-config", &valid().build());
    let file = file.expect("opens");
    match file.config() {
        Err(Error::Format { message, .. }) => assert!(message.contains("llama.embedding_length is missing"), "{message}"),
        other => panic!("expected a format error, got {:?}", other.map(|_| ())),
    }
    match file.tokenizer() {
        Err(Error::Format { message, .. }) => assert!(message.contains("tokenizer.ggml.model is missing"), "{message}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a tokenizer from nothing"),
    }
    let mut b = valid();
    b.string("tokenizer.ggml.model", "gpt2").strings("tokenizer.ggml.tokens", &["a", "b"]);
    b.strings("tokenizer.ggml.merges", &["a c"]).string("tokenizer.ggml.pre", "smollm");
    let (_, file) = open_bytes("bad-merge", &b.build());
    match file.expect("opens").tokenizer() {
        Err(Error::Format { message, .. }) => assert!(message.contains("byte-level BPE"), "{message}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a merge of unknown tokens was accepted"),
    }
    let mut b = valid();
    b.string("tokenizer.ggml.model", "gpt2").strings("tokenizer.ggml.tokens", &["a"]);
    b.strings("tokenizer.ggml.merges", &[]).string("tokenizer.ggml.pre", "mystery");
    let (_, file) = open_bytes("unknown-pre", &b.build());
    match file.expect("opens").tokenizer() {
        Err(Error::Format { message, .. }) => assert!(message.contains("\"mystery\""), "{message}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("an unknown pre-tokenizer was accepted"),
    }
}
