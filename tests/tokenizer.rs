//! Tokenizer glue: stories260K (SentencePiece-style BPE with byte fallback) against its
//! reference ids and text, BOS handling, streaming decode of split characters, chat templates.

use std::path::{Path, PathBuf};

use serde_json::Value;
use shaderlm::tokenizer::{ChatMessage, Tokenizer, CHATML_TEMPLATE};
use shaderlm::Error;

fn stories_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/models/stories260K")
}

fn stories() -> Tokenizer {
    Tokenizer::from_folder(&stories_dir()).unwrap()
}

fn reference() -> Value {
    serde_json::from_str(&std::fs::read_to_string(stories_dir().join("reference.json")).unwrap()).unwrap()
}

fn ids(value: &Value) -> Vec<u32> {
    value.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect()
}

/// A fresh folder holding stories260K's tokenizer.json and the given tokenizer_config.json.
fn folder_with_config(test: &str, config: Option<&str>) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shaderlm-tokenizer-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(stories_dir().join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    if let Some(config) = config {
        std::fs::write(dir.join("tokenizer_config.json"), config).unwrap();
    }
    dir
}

/// Streams `ids` one by one; returns the pieces and how many pushes gave nothing.
fn stream_all(tokenizer: &Tokenizer, context: &[u32], ids: &[u32]) -> (String, usize) {
    let mut stream = tokenizer.stream_after(context);
    let (mut text, mut held) = (String::new(), 0);
    for &id in ids {
        match stream.push(tokenizer, id).unwrap() {
            Some(piece) => text += &piece,
            None => held += 1,
        }
    }
    if let Some(rest) = stream.finish(tokenizer).unwrap() {
        text += &rest;
    }
    (text, held)
}

#[test]
fn stories260k_matches_reference_ids_and_text() {
    let tokenizer = stories();
    let reference = reference();
    let prompt = &reference["prompt_1"];
    let prompt_ids = ids(&prompt["ids"]);
    assert_eq!(tokenizer.encode(prompt["text"].as_str().unwrap(), true).unwrap(), prompt_ids);
    let story = &reference["prompt_2"];
    assert_eq!(tokenizer.encode(story["text"].as_str().unwrap(), true).unwrap(), ids(&story["ids"]));

    let greedy = &prompt["greedy"];
    let all: Vec<u32> = prompt_ids.iter().copied().chain(ids(&greedy["ids"])).collect();
    assert_eq!(tokenizer.decode(&all).unwrap(), greedy["text_with_prompt"].as_str().unwrap());
    assert_eq!((tokenizer.bos_id(), tokenizer.eos_ids()), (Some(1), &[2u32][..]));
    assert!(tokenizer.adds_bos() && tokenizer.chat_template().is_none());
    assert_eq!(tokenizer.vocab_size(), 512);
    assert_eq!((tokenizer.token_to_id("</s>"), tokenizer.id_to_token(1).as_deref()), (Some(2), Some("<s>")));
}

#[test]
fn round_trip_including_multibyte_text() {
    let tokenizer = stories();
    for text in ["Once upon a time", "  two spaces\tand a tab\nnew line", "héllo wörld", "日本語 🙂 ok", ""] {
        let ids = tokenizer.encode(text, false).unwrap();
        assert_eq!(tokenizer.decode(&ids).unwrap(), text, "{ids:?}");
    }
}

#[test]
fn bos_handling() {
    let tokenizer = stories();
    let plain = tokenizer.encode("Once upon a time", false).unwrap();
    assert_ne!(plain[0], 1, "no BOS without special tokens");
    let with = tokenizer.encode("Once upon a time", true).unwrap();
    assert_eq!(with[0], 1);
    assert_eq!(&with[1..], &plain[..]);
    // Text that already starts with the BOS text (a rendered template) gets one BOS, not two.
    let rendered = tokenizer.encode("<s>Once upon a time", true).unwrap();
    assert_eq!(rendered[..2], [1, plain[0]]);

    // A tokenizer.json whose post-processor adds nothing: BOS comes from add_bos alone.
    let mut json: Value =
        serde_json::from_str(&std::fs::read_to_string(stories_dir().join("tokenizer.json")).unwrap()).unwrap();
    json["post_processor"] = Value::Null;
    let inner = tokenizers::Tokenizer::from_bytes(json.to_string().as_bytes()).unwrap();
    let with_bos = Tokenizer::from_tokenizers(inner.clone(), true, Some(1), vec![2], None);
    assert_eq!(with_bos.encode("Once upon a time", true).unwrap(), with);
    assert_eq!(with_bos.encode("Once upon a time", false).unwrap(), plain);
    let without_bos = Tokenizer::from_tokenizers(inner, false, Some(1), vec![2], None);
    assert_eq!(without_bos.encode("Once upon a time", true).unwrap(), plain);
}

#[test]
fn streaming_decode_of_split_characters_equals_full_decode() {
    let tokenizer = stories();
    // The vocabulary has none of these characters: byte fallback gives one token per byte.
    let text = "Lily saw 日本 and 🙂, then héllo.";
    let all = tokenizer.encode(text, true).unwrap();
    let (streamed, held) = stream_all(&tokenizer, &[], &all);
    assert_eq!(streamed, tokenizer.decode(&all).unwrap());
    assert_eq!(streamed, text);
    // 日 and 本 (3 bytes each), 🙂 (4), é (2): all but the last byte of each are held back.
    assert!(held >= 8, "bytes of unfinished characters were held back ({held})");
}

#[test]
fn streaming_after_a_prompt_keeps_leading_spaces() {
    let tokenizer = stories();
    let greedy = &reference()["prompt_1"]["greedy"];
    let prompt_ids = ids(&reference()["prompt_1"]["ids"]);
    let (streamed, _) = stream_all(&tokenizer, &prompt_ids, &ids(&greedy["ids"]));
    assert_eq!(streamed, greedy["text_generated_only"].as_str().unwrap());
    let full = greedy["text_with_prompt"].as_str().unwrap();
    assert_eq!(format!("Once upon a time{streamed}"), full);
}

/// A byte-level BPE (GPT-2 / SmolLM2 style): every byte is a token, a few merges, no byte
/// fallback; a character of several bytes arrives over several tokens.
fn byte_level_tokenizer() -> tokenizers::Tokenizer {
    use tokenizers::models::bpe::{Vocab, BPE};
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    let mut alphabet: Vec<char> = ByteLevel::alphabet().into_iter().collect();
    alphabet.sort_unstable();
    let mut vocab: Vocab = alphabet.iter().enumerate().map(|(i, c)| (c.to_string(), i as u32)).collect();
    let merges = vec![("Ġ".to_string(), "t".to_string()), ("Ġt".to_string(), "h".to_string())];
    for (a, b) in &merges {
        let id = vocab.len() as u32;
        vocab.insert(format!("{a}{b}"), id);
    }
    let bpe = BPE::builder().vocab_and_merges(vocab, merges).build().unwrap();
    let mut tokenizer = tokenizers::Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    tokenizer
}

#[test]
fn streaming_decode_byte_level_bpe() {
    let tokenizer = Tokenizer::from_tokenizers(byte_level_tokenizer(), false, None, vec![], None);
    let text = "the thé 世界🙂 th";
    let all = tokenizer.encode(text, true).unwrap();
    assert!(all.len() > text.chars().count(), "multi-byte characters took several tokens");
    assert_eq!(tokenizer.decode(&all).unwrap(), text);
    let (streamed, held) = stream_all(&tokenizer, &[], &all);
    assert_eq!(streamed, text);
    // é (2 bytes), 世 and 界 (3 each), 🙂 (4): all but the last byte of each are held back.
    assert!(held >= 8, "held back {held}");

    // An unfinished character at the very end comes out of finish() as U+FFFD.
    let mut stream = tokenizer.stream();
    let world = tokenizer.encode("世", false).unwrap();
    assert_eq!(world.len(), 3);
    assert_eq!(stream.push(&tokenizer, world[0]).unwrap(), None);
    assert_eq!(stream.finish(&tokenizer).unwrap().as_deref(), Some("\u{FFFD}"));
}

const CHATML_CONFIG: &str = r#"{"add_bos_token": false, "bos_token": "<s>", "eos_token": {"content": "</s>"},
  "chat_template": "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"}"#;

fn conversation() -> Vec<ChatMessage> {
    vec![ChatMessage::new("system", "You are helpful."), ChatMessage::new("user", "What is the capital of France?")]
}

const CHATML_EXPECTED: &str = "<|im_start|>system\nYou are helpful.<|im_end|>\n\
<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";

#[test]
fn chatml_template_from_tokenizer_config() {
    let dir = folder_with_config("chatml", Some(CHATML_CONFIG));
    let tokenizer = Tokenizer::from_folder(&dir).unwrap();
    assert!(!tokenizer.adds_bos());
    assert_eq!(tokenizer.eos_ids(), &[2]);
    assert_eq!(tokenizer.apply_chat_template(&conversation(), true).unwrap(), CHATML_EXPECTED);
    let no_prompt = tokenizer.apply_chat_template(&conversation(), false).unwrap();
    assert_eq!(no_prompt, CHATML_EXPECTED.strip_suffix("<|im_start|>assistant\n").unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn no_template_falls_back_to_chatml() {
    let tokenizer = stories();
    assert_eq!(tokenizer.apply_chat_template(&conversation(), true).unwrap(), CHATML_EXPECTED);
    let own =
        Tokenizer::from_tokenizers(tokenizer.inner().clone(), true, Some(1), vec![2], Some(CHATML_TEMPLATE.into()));
    assert_eq!(own.apply_chat_template(&conversation(), true).unwrap(), CHATML_EXPECTED);
}

/// A Llama-2-style template: bos/eos tokens, raise_exception, .strip(), loop variables,
/// whitespace control, trim_blocks.
const LLAMA2_TEMPLATE: &str = "{% if messages[0]['role'] == 'system' %}\
{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}\
{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}
{% for message in loop_messages %}
{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\
{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}
{% if loop.index0 == 0 and system_message != false %}\
{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}\
{% else %}{% set content = message['content'] %}{% endif %}
{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}\
{% elif message['role'] == 'assistant' %}{{ ' '  + content | trim + ' ' + eos_token }}{% endif %}
{% endfor %}";

#[test]
fn hugging_face_style_template() {
    let tokenizer =
        Tokenizer::from_tokenizers(stories().inner().clone(), true, Some(1), vec![2], Some(LLAMA2_TEMPLATE.into()));
    let messages = vec![
        ChatMessage::new("system", "Be brief."),
        ChatMessage::new("user", "  Hi  "),
        ChatMessage::new("assistant", " Hello. "),
        ChatMessage::new("user", "Tell a story"),
    ];
    let rendered = tokenizer.apply_chat_template(&messages, true).unwrap();
    assert_eq!(
        rendered,
        // strip() takes the spaces after "Hi" only: the system prefix comes first (as in Python).
        "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n  Hi [/INST] Hello. </s><s>[INST] Tell a story [/INST]"
    );
    // The rendered text carries its own BOS: encoding adds no second one.
    let ids = tokenizer.encode(&rendered, true).unwrap();
    assert_eq!(ids.iter().filter(|&&id| id == 1).count(), 2);
    assert_eq!(ids[0..2], [1, tokenizer.encode("[", false).unwrap()[0]]);

    let bad = vec![ChatMessage::new("user", "a"), ChatMessage::new("user", "b")];
    match tokenizer.apply_chat_template(&bad, true) {
        Err(Error::Tokenizer(message)) => assert!(message.contains("must alternate"), "{message}"),
        other => panic!("expected a Tokenizer error, got {other:?}"),
    }
}

#[test]
fn template_sources_in_a_folder() {
    // A list of named templates: "default" is taken.
    let config = r#"{"chat_template": [{"name": "tool_use", "template": "TOOLS"},
                                      {"name": "default", "template": "DEFAULT {{ messages | length }}"}]}"#;
    let dir = folder_with_config("template-list", Some(config));
    let tokenizer = Tokenizer::from_folder(&dir).unwrap();
    assert_eq!(tokenizer.apply_chat_template(&conversation(), true).unwrap(), "DEFAULT 2");
    // chat_template.jinja wins over the config's template, as in transformers.
    std::fs::write(dir.join("chat_template.jinja"), "JINJA {{ messages[1].content.upper() }}").unwrap();
    let tokenizer = Tokenizer::from_folder(&dir).unwrap();
    assert_eq!(tokenizer.apply_chat_template(&conversation(), true).unwrap(), "JINJA WHAT IS THE CAPITAL OF FRANCE?");
    let _ = std::fs::remove_dir_all(&dir);

    // No tokenizer_config.json at all: no BOS added by us, no special tokens known.
    let dir = folder_with_config("no-config", None);
    let tokenizer = Tokenizer::from_folder(&dir).unwrap();
    assert_eq!((tokenizer.bos_id(), tokenizer.eos_ids().len(), tokenizer.adds_bos()), (None, 0, false));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn broken_template_is_a_tokenizer_error() {
    let tokenizer =
        Tokenizer::from_tokenizers(stories().inner().clone(), true, Some(1), vec![2], Some("{% for %}".into()));
    assert!(matches!(tokenizer.apply_chat_template(&conversation(), true), Err(Error::Tokenizer(_))));
}

#[test]
fn bad_tokenizer_folders() {
    let dir = folder_with_config("bad", None);
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    match Tokenizer::from_folder(&dir) {
        Err(Error::Io { path, .. }) => assert_eq!(path, dir.join("tokenizer.json")),
        other => panic!("expected Io, got {:?}", other.err()),
    }
    std::fs::write(dir.join("tokenizer.json"), "{\"model\": 3}").unwrap();
    match Tokenizer::from_folder(&dir) {
        Err(Error::Format { path, .. }) => assert_eq!(path, dir.join("tokenizer.json")),
        other => panic!("expected Format, got {:?}", other.err()),
    }
    let _ = std::fs::remove_dir_all(&dir);

    for (i, config) in ["{\"eos_token\": \"<|im_end|>\"}", "{\"add_bos_token\": 1}", "not json"].iter().enumerate() {
        let dir = folder_with_config(&format!("bad-config-{i}"), Some(config));
        match Tokenizer::from_folder(&dir) {
            Err(Error::Format { path, message }) => assert_eq!(path, dir.join("tokenizer_config.json"), "{message}"),
            other => panic!("expected Format, got {:?}", other.err()),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
