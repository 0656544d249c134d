//! A `tokenizers::Tokenizer` from a GGUF file's `tokenizer.ggml.*` metadata.
//!
//! Two families, both built from the `tokenizers` crate's parts (no BPE of our own):
//!
//! - `tokenizer.ggml.model = "gpt2"`: byte-level BPE. Vocabulary `tokens`, ranked `merges`
//!   ("left right"), and a pre-tokenizer chosen by `tokenizer.ggml.pre`: the regular
//!   expressions llama.cpp applies in sequence for that name, each splitting every piece further
//!   with matches kept as pieces (a `Split` with `Isolated` behaviour), then the byte-to-unicode
//!   mapping (`ByteLevel` without its own regex).
//! - `tokenizer.ggml.model = "llama"`: SentencePiece-style BPE with byte fallback. Only
//!   `scores` are stored, so the merges are derived the way Hugging Face converts a
//!   SentencePiece model: every split of a piece into two pieces of the vocabulary is a merge,
//!   ranked by the merged piece's score (higher first), ties by piece id, then by the ids of the
//!   two halves. Spaces become "▁", one is prepended when `add_space_prefix` (default true).
//!
//! Token types (`token_type`): 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
//! Unknown and control tokens become special added tokens (split out before the model runs,
//! skipped when decoding with `skip_special_tokens`); user-defined ones plain added tokens.

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{Vocab as BpeVocab, BPE};
use tokenizers::normalizers::{NormalizerWrapper, Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::processors::template::{SpecialToken, TemplateProcessing};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::{Array, GgufFile, Value};
use crate::error::{Error, Result};

/// A GGUF file's tokenizer and what generation needs to know about its special tokens.
pub struct TokenizerParts {
    /// Encoding with `add_special_tokens = true` prepends BOS when `add_bos` (and appends EOS
    /// when `add_eos`), as llama.cpp does for a raw prompt. Text produced by a chat template
    /// usually carries its own special tokens: encode it with `add_special_tokens = false`.
    pub tokenizer: Tokenizer,
    pub add_bos: bool,
    pub add_eos: bool,
    pub bos_id: Option<u32>,
    /// EOS, then end-of-turn and end-of-message ids when the file names them; any ends generation.
    pub eos_ids: Vec<u32>,
    /// `tokenizer.chat_template` (Jinja), when present.
    pub chat_template: Option<String>,
}

const TYPE_UNKNOWN: i64 = 2;
const TYPE_CONTROL: i64 = 3;
const TYPE_USER_DEFINED: i64 = 4;

/// GPT-2's pre-tokenizer regex (also what `ByteLevel` applies when it uses its own).
const GPT2_REGEX: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
/// Llama 3's, as its tokenizer.json states it.
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's: Llama 3's with single digits.
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The regexes llama.cpp applies, in order, for a `tokenizer.ggml.pre` name; and whether that
/// family adds BOS by default and matches whole words against the vocabulary before merging.
struct PreTokenizerSpec {
    regexes: &'static [&'static str],
    add_bos_default: bool,
    ignore_merges: bool,
}

fn pre_tokenizer_spec(pre: &str) -> Option<PreTokenizerSpec> {
    let spec = |regexes, add_bos_default, ignore_merges| PreTokenizerSpec { regexes, add_bos_default, ignore_merges };
    Some(match pre {
        "default" => spec(
            &[r"[\p{P}\$\+<=>\^~\|]+", GPT2_REGEX, r"\p{N}+", "[0-9][0-9][0-9]"],
            false,
            false,
        ),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" => spec(&[LLAMA3_REGEX], true, true),
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva" => {
            spec(&[r"\p{N}", GPT2_REGEX], false, false)
        }
        "gpt-2" | "mpt" | "olmo" | "jais" => spec(&[GPT2_REGEX], false, false),
        "qwen2" | "stablelm2" => spec(&[QWEN2_REGEX], false, false),
        "falcon" => spec(&[r"[\p{P}\$\+<=>\^~\|`]+", GPT2_REGEX, "[0-9][0-9][0-9]"], false, false),
        _ => return None,
    })
}

/// The vocabulary and special-token facts shared by both families.
struct Vocab {
    tokens: Vec<String>,
    /// Per token; all normal (1) when the file has no `token_type`.
    types: Vec<i64>,
    bos: Option<u32>,
    eos: Option<u32>,
    unk: Option<u32>,
}

pub(super) fn from_metadata(file: &GgufFile) -> Result<TokenizerParts> {
    let err = |m: String| Error::format(file.path(), m);
    let model = file.string_key("tokenizer.ggml.model")?.to_owned();
    let vocab = read_vocab(file)?;
    let chat_template = match file.metadata("tokenizer.chat_template") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => return Err(err(format!("tokenizer.chat_template is a {}, expected a string", v.type_name()))),
    };
    let (mut tokenizer, add_bos_default) = match model.as_str() {
        "gpt2" => byte_level_bpe(file, &vocab)?,
        "llama" => (sentencepiece_bpe(file, &vocab)?, true),
        other => {
            return Err(err(format!(
                "tokenizer model {other:?} is not supported (only \"gpt2\" and \"llama\")"
            )))
        }
    };
    // A family's default applies only when the file names a BOS token; an explicit flag must.
    let add_bos = optional_bool(file, "tokenizer.ggml.add_bos_token")?
        .unwrap_or(add_bos_default && vocab.bos.is_some());
    let add_eos = optional_bool(file, "tokenizer.ggml.add_eos_token")?.unwrap_or(false);

    add_special_tokens(&mut tokenizer, &vocab);
    let post = bos_eos_template(&vocab, add_bos, add_eos).map_err(err)?;
    tokenizer.with_post_processor(post);

    let mut eos_ids: Vec<u32> = vocab.eos.into_iter().collect();
    for key in ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
        if let Some(id) = token_id(file, key, vocab.tokens.len())? {
            if !eos_ids.contains(&id) {
                eos_ids.push(id);
            }
        }
    }
    Ok(TokenizerParts { tokenizer, add_bos, add_eos, bos_id: vocab.bos, eos_ids, chat_template })
}

fn read_vocab(file: &GgufFile) -> Result<Vocab> {
    let err = |m: String| Error::format(file.path(), m);
    let tokens = match file.metadata("tokenizer.ggml.tokens") {
        Some(Value::Array(Array::String(t))) => t.clone(),
        Some(v) => return Err(err(format!("tokenizer.ggml.tokens is {v}, expected an array of strings"))),
        None => return Err(err("tokenizer.ggml.tokens is missing".into())),
    };
    if tokens.is_empty() || u32::try_from(tokens.len()).is_err() {
        return Err(err(format!("tokenizer.ggml.tokens has {} entries", tokens.len())));
    }
    let types = match file.metadata("tokenizer.ggml.token_type") {
        None => vec![1; tokens.len()],
        Some(v) => match v.as_array().and_then(Array::to_i64s) {
            Some(t) if t.len() == tokens.len() => t,
            _ => {
                return Err(err(format!(
                    "tokenizer.ggml.token_type is {v}, expected {} integers",
                    tokens.len()
                )))
            }
        },
    };
    let n = tokens.len();
    Ok(Vocab {
        bos: token_id(file, "tokenizer.ggml.bos_token_id", n)?,
        eos: token_id(file, "tokenizer.ggml.eos_token_id", n)?,
        unk: token_id(file, "tokenizer.ggml.unknown_token_id", n)?,
        tokens,
        types,
    })
}

/// A token id from the metadata, checked to be in the vocabulary.
fn token_id(file: &GgufFile, key: &str, n_tokens: usize) -> Result<Option<u32>> {
    match file.optional_u32(key)? {
        Some(id) if id as usize >= n_tokens => Err(Error::format(
            file.path(),
            format!("{key} = {id} is outside the vocabulary of {n_tokens} tokens"),
        )),
        other => Ok(other),
    }
}

fn optional_bool(file: &GgufFile, key: &str) -> Result<Option<bool>> {
    match file.metadata(key) {
        None => Ok(None),
        Some(v) => v.as_bool().map(Some).ok_or_else(|| {
            Error::format(file.path(), format!("{key} is a {}, expected a bool", v.type_name()))
        }),
    }
}

/// token -> id, keeping the first id of a token string that appears twice (inserted last).
fn vocab_map(tokens: &[String]) -> BpeVocab {
    let mut map = BpeVocab::default();
    for (id, t) in tokens.iter().enumerate().rev() {
        map.insert(t.clone(), id as u32);
    }
    map
}

/// Returns the tokenizer (model, pre-tokenizer, decoder) and whether its family adds BOS by default.
fn byte_level_bpe(file: &GgufFile, vocab: &Vocab) -> Result<(Tokenizer, bool)> {
    let err = |m: String| Error::format(file.path(), m);
    let pre = match file.metadata("tokenizer.ggml.pre") {
        None => "default",
        Some(v) => v.as_str().ok_or_else(|| err(format!("tokenizer.ggml.pre is {v}, expected a string")))?,
    };
    let spec = pre_tokenizer_spec(pre)
        .ok_or_else(|| err(format!("pre-tokenizer {pre:?} (tokenizer.ggml.pre) is not supported")))?;
    let merges = match file.metadata("tokenizer.ggml.merges") {
        Some(Value::Array(Array::String(m))) => m,
        Some(v) => return Err(err(format!("tokenizer.ggml.merges is {v}, expected an array of strings"))),
        None => return Err(err("tokenizer.ggml.merges is missing (a \"gpt2\" tokenizer needs it)".into())),
    };
    let merges = merges
        .iter()
        .enumerate()
        .map(|(i, m)| match m.split_once(' ') {
            Some((a, b)) => Ok((a.to_owned(), b.to_owned())),
            None => Err(err(format!("merge {i} ({m:?}) is not two tokens separated by a space"))),
        })
        .collect::<Result<Vec<_>>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab_map(&vocab.tokens), merges)
        .ignore_merges(spec.ignore_merges)
        .build()
        .map_err(|e| err(format!("byte-level BPE: {e}")))?;

    let mut steps: Vec<PreTokenizerWrapper> = Vec::with_capacity(spec.regexes.len() + 1);
    for regex in spec.regexes {
        let split = Split::new(SplitPattern::Regex((*regex).to_owned()), SplitDelimiterBehavior::Isolated, false)
            .map_err(|e| err(format!("pre-tokenizer {pre:?}: regex {regex:?}: {e}")))?;
        steps.push(split.into());
    }
    steps.push(ByteLevel::new(false, true, false).into());

    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(PreTokenizerSequence::new(steps)));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    Ok((tokenizer, spec.add_bos_default))
}

fn sentencepiece_bpe(file: &GgufFile, vocab: &Vocab) -> Result<Tokenizer> {
    let err = |m: String| Error::format(file.path(), m);
    let scores = match file.metadata("tokenizer.ggml.scores") {
        Some(v) => match v.as_array().and_then(Array::to_f32s) {
            Some(s) if s.len() == vocab.tokens.len() => s,
            _ => return Err(err(format!("tokenizer.ggml.scores is {v}, expected {} floats", vocab.tokens.len()))),
        },
        None => return Err(err("tokenizer.ggml.scores is missing (a \"llama\" tokenizer needs it)".into())),
    };
    let ids = vocab_map(&vocab.tokens);
    let merges = sentencepiece_merges(&vocab.tokens, &scores, &ids);
    let unk = vocab
        .unk
        .or_else(|| vocab.types.iter().position(|&t| t == TYPE_UNKNOWN).map(|i| i as u32))
        .map(|id| vocab.tokens[id as usize].clone());
    let mut builder = BPE::builder().vocab_and_merges(ids, merges).fuse_unk(true).byte_fallback(true);
    if let Some(unk) = unk {
        builder = builder.unk_token(unk);
    }
    let bpe = builder.build().map_err(|e| err(format!("SentencePiece BPE: {e}")))?;

    let add_space_prefix = optional_bool(file, "tokenizer.ggml.add_space_prefix")?.unwrap_or(true);
    let to_metaspace = Replace::new(" ", "▁").map_err(|e| err(format!("normalizer: {e}")))?;
    let mut normalizers: Vec<NormalizerWrapper> = Vec::new();
    if add_space_prefix {
        normalizers.push(Prepend::new("▁".to_owned()).into());
    }
    normalizers.push(to_metaspace.into());

    let from_metaspace = Replace::new("▁", " ").map_err(|e| err(format!("decoder: {e}")))?;
    let mut decoders: Vec<DecoderWrapper> =
        vec![from_metaspace.into(), ByteFallback::new().into(), Fuse::new().into()];
    if add_space_prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }

    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_normalizer(Some(NormalizerSequence::new(normalizers)));
    tokenizer.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(tokenizer)
}

/// Merges of a SentencePiece BPE vocabulary, in Hugging Face's order (see the module comment).
fn sentencepiece_merges(
    tokens: &[String],
    scores: &[f32],
    ids: &BpeVocab,
) -> Vec<(String, String)> {
    // (score of the merged piece, merged id, left id, right id)
    let mut ranked: Vec<(f32, u32, u32, u32)> = Vec::new();
    for (merged_id, piece) in tokens.iter().enumerate() {
        for (cut, _) in piece.char_indices().skip(1) {
            let (left, right) = piece.split_at(cut);
            if let (Some(&l), Some(&r)) = (ids.get(left), ids.get(right)) {
                ranked.push((scores[merged_id], merged_id as u32, l, r));
            }
        }
    }
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then((a.1, a.2, a.3).cmp(&(b.1, b.2, b.3))));
    ranked
        .into_iter()
        .map(|(_, _, l, r)| (tokens[l as usize].clone(), tokens[r as usize].clone()))
        .collect()
}

/// Unknown and control tokens as special added tokens, user-defined ones as plain added tokens.
fn add_special_tokens(tokenizer: &mut Tokenizer, vocab: &Vocab) {
    let mut special = Vec::new();
    let mut user = Vec::new();
    for (token, &kind) in vocab.tokens.iter().zip(&vocab.types) {
        if token.is_empty() {
            continue;
        }
        match kind {
            TYPE_UNKNOWN | TYPE_CONTROL => special.push(AddedToken::from(token.clone(), true)),
            TYPE_USER_DEFINED => user.push(AddedToken::from(token.clone(), false).normalized(false)),
            _ => {}
        }
    }
    tokenizer.add_special_tokens(&special);
    tokenizer.add_tokens(&user);
}

/// A post-processor that adds BOS and/or EOS around each sequence; None when it adds neither.
fn bos_eos_template(
    vocab: &Vocab,
    add_bos: bool,
    add_eos: bool,
) -> std::result::Result<Option<TemplateProcessing>, String> {
    if !add_bos && !add_eos {
        return Ok(None);
    }
    let mut specials = Vec::new();
    let mut special = |name: &str, id: Option<u32>| -> std::result::Result<(), String> {
        let id = id.ok_or(format!(
            "tokenizer.ggml.add_{name}_token is true but there is no tokenizer.ggml.{name}_token_id"
        ))?;
        let content = vocab.tokens[id as usize].clone();
        specials.push(SpecialToken::new(name.into(), vec![id], vec![content]).map_err(|e| e.to_string())?);
        Ok(())
    };
    let (mut single, mut pair) = (Vec::new(), Vec::new());
    if add_bos {
        special("bos", vocab.bos)?;
        single.push("bos");
        pair.push("bos");
    }
    single.push("$A");
    pair.push("$A");
    if add_eos {
        special("eos", vocab.eos)?;
        single.push("eos");
        pair.push("eos");
    }
    if add_bos {
        pair.push("bos:1");
    }
    pair.push("$B:1");
    if add_eos {
        pair.push("eos:1");
    }
    let mut builder = TemplateProcessing::builder();
    builder.try_single(single.join(" "))?;
    builder.try_pair(pair.join(" "))?;
    builder.special_tokens(specials);
    builder.build().map(Some).map_err(|e| e.to_string())
}
