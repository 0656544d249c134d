//! Tokenizer glue: a thin layer over Hugging Face `tokenizers` that knows the model's special
//! tokens (BOS, EOS), decodes a stream of generated ids into text pieces, and renders chat
//! templates with minijinja the way transformers' `apply_chat_template` does.
//!
//! Sources: a Hugging Face folder (`tokenizer.json`, `tokenizer_config.json`,
//! `chat_template.jinja`), or any `tokenizers::Tokenizer` built elsewhere (the GGUF vocabulary).

use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// One turn of a conversation, as chat templates see it (`message.role`, `message.content`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// "system", "user" or "assistant".
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> ChatMessage {
        ChatMessage { role: role.into(), content: content.into() }
    }
}

/// ChatML, used by [`Tokenizer::apply_chat_template`] when the model brings no template of its own.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}\
{{ '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}\
{% endfor %}\
{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// A tokenizer with the model's special tokens and chat template.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Whether encoding with special tokens should start with BOS.
    add_bos: bool,
    bos_id: Option<u32>,
    eos_ids: Vec<u32>,
    chat_template: Option<String>,
}

impl Tokenizer {
    /// Reads `tokenizer.json` from `dir` and, when present, `tokenizer_config.json`
    /// (add_bos_token, bos_token, eos_token, chat_template) and `chat_template.jinja`
    /// (which, as in transformers, wins over the config's template).
    pub fn from_folder(dir: &Path) -> Result<Tokenizer> {
        let json_path = dir.join("tokenizer.json");
        let bytes = std::fs::read(&json_path).map_err(|source| Error::Io { path: json_path.clone(), source })?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes)
            .map_err(|e| Error::format(&json_path, format!("not a tokenizers file: {e}")))?;

        let config_path = dir.join("tokenizer_config.json");
        let config = if config_path.is_file() { read_json(&config_path)? } else { Value::Null };
        let err = |message: String| Error::format(&config_path, message);
        let special_id = |key: &str| -> Result<Option<u32>> {
            match special_token_text(&config, key).map_err(err)? {
                None => Ok(None),
                Some(text) => match inner.token_to_id(&text) {
                    Some(id) => Ok(Some(id)),
                    None => Err(err(format!("{key} {text:?} is not in the vocabulary"))),
                },
            }
        };
        let bos_id = special_id("bos_token")?;
        let eos_ids = special_id("eos_token")?.into_iter().collect();
        let add_bos = match config.get("add_bos_token") {
            None | Some(Value::Null) => false,
            Some(v) => v.as_bool().ok_or_else(|| err(format!("add_bos_token must be true or false, got {v}")))?,
        };

        let jinja_path = dir.join("chat_template.jinja");
        let chat_template = if jinja_path.is_file() {
            Some(std::fs::read_to_string(&jinja_path).map_err(|source| Error::Io { path: jinja_path, source })?)
        } else {
            config_chat_template(&config).map_err(err)?
        };
        Ok(Tokenizer { inner, add_bos, bos_id, eos_ids, chat_template })
    }

    /// Wraps a tokenizer built elsewhere (e.g. from GGUF metadata).
    pub fn from_tokenizers(
        inner: tokenizers::Tokenizer,
        add_bos: bool,
        bos_id: Option<u32>,
        eos_ids: Vec<u32>,
        chat_template: Option<String>,
    ) -> Tokenizer {
        Tokenizer { inner, add_bos, bos_id, eos_ids, chat_template }
    }

    /// A stand-in for checkpoints that ship no tokenizer (synthesized ones): it knows no text,
    /// so callers check [`crate::Model::has_tokenizer`] before encoding.
    pub fn placeholder() -> Tokenizer {
        let model = tokenizers::models::wordlevel::WordLevel::builder()
            .vocab([("<unk>".to_string(), 0u32)].into_iter().collect())
            .unk_token("<unk>".to_string())
            .build()
            .expect("a one-word vocabulary with its unk token is valid");
        Tokenizer::from_tokenizers(tokenizers::Tokenizer::new(model), false, None, Vec::new(), None)
    }

    /// Text to ids. With `add_special`, the tokenizer's own post-processor runs and, when the
    /// model wants BOS, the ids start with exactly one BOS (a prompt that already begins with
    /// the BOS text, such as a rendered chat template, does not get a second one). Without it,
    /// no BOS or EOS is added.
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        let encoding = self.inner.encode(text, add_special).map_err(|e| Error::Tokenizer(format!("encode: {e}")))?;
        let mut ids = encoding.get_ids().to_vec();
        if let (true, Some(bos)) = (add_special && self.add_bos, self.bos_id) {
            if ids.first() != Some(&bos) {
                ids.insert(0, bos);
            }
            while ids.len() >= 2 && ids[0] == bos && ids[1] == bos {
                ids.remove(0);
            }
        }
        Ok(ids)
    }

    /// Ids to text, leaving out special tokens (BOS, EOS, chat markers marked special).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(|e| Error::Tokenizer(format!("decode: {e}")))
    }

    /// A streaming decoder for generated ids, starting a fresh text.
    pub fn stream(&self) -> TokenStream {
        self.stream_after(&[])
    }

    /// A streaming decoder for ids that follow `context` (the prompt): the pieces it returns
    /// are exactly the text that the new ids add to the context's text (so the first
    /// generated word keeps its leading space).
    pub fn stream_after(&self, context: &[u32]) -> TokenStream {
        // A few ids of context are enough for the decoder to place spaces and join bytes.
        let keep = &context[context.len().saturating_sub(STREAM_CONTEXT)..];
        TokenStream { ids: keep.to_vec(), prefix: 0, read: keep.len() }
    }

    /// Renders `messages` with the model's chat template, or with [`CHATML_TEMPLATE`] when it
    /// has none. Variables as transformers gives them: `messages`, `add_generation_prompt`,
    /// `bos_token`, `eos_token`, `tools` and `documents` (none), and `raise_exception(msg)`;
    /// Python string methods (`.strip()`, `.startswith()`, ...) through minijinja's pycompat.
    /// Encode the result with `add_special = true`: a template that writes BOS itself does not
    /// get it twice.
    pub fn apply_chat_template(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let template = self.chat_template.as_deref().unwrap_or(CHATML_TEMPLATE);
        let token_text = |id: Option<u32>| id.and_then(|id| self.inner.id_to_token(id)).unwrap_or_default();
        let context = minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => token_text(self.bos_id),
            eos_token => token_text(self.eos_ids.first().copied()),
            tools => (),
            documents => (),
        };
        chat_environment().render_str(template, context).map_err(|e| Error::Tokenizer(format!("chat template: {e:#}")))
    }

    /// The model's own chat template, if it has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// Ids that end generation.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// Adds more ids that end generation (e.g. config.json's `eos_token_id` list).
    pub fn add_eos_ids(&mut self, ids: &[u32]) {
        for &id in ids {
            if !self.eos_ids.contains(&id) {
                self.eos_ids.push(id);
            }
        }
    }

    /// Whether encoding with special tokens starts with BOS.
    pub fn adds_bos(&self) -> bool {
        self.add_bos
    }

    /// Vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The wrapped `tokenizers::Tokenizer`.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

/// Ids of context a [`TokenStream`] keeps from before the text it streams.
const STREAM_CONTEXT: usize = 6;

/// Turns generated ids into text as they come. A token may hold part of a character (byte
/// fallback, byte-level BPE) or change how the previous one reads (a SentencePiece leading
/// space), so each step decodes the ids from `prefix` on and emits only the text past what
/// `prefix..read` decoded to, and only once it no longer ends in an incomplete character.
/// It holds no borrow of the tokenizer (each call takes it), so a generation loop that owns the
/// model mutably can keep one.
pub struct TokenStream {
    ids: Vec<u32>,
    /// Start of the window that is decoded each step.
    prefix: usize,
    /// End of the ids whose text has been emitted.
    read: usize,
}

impl TokenStream {
    /// Adds one id; returns the new text it completes, if any.
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<Option<String>> {
        self.ids.push(id);
        let piece = self.pending(tokenizer)?;
        // U+FFFD at the end: the last bytes are part of a character still to come.
        if piece.is_empty() || piece.ends_with('\u{FFFD}') {
            return Ok(None);
        }
        self.prefix = self.read;
        self.read = self.ids.len();
        Ok(Some(piece))
    }

    /// Text held back at the end of the stream (an incomplete character, as U+FFFD).
    pub fn finish(&mut self, tokenizer: &Tokenizer) -> Result<Option<String>> {
        let piece = self.pending(tokenizer)?;
        self.prefix = self.read;
        self.read = self.ids.len();
        Ok(if piece.is_empty() { None } else { Some(piece) })
    }

    /// Text of `prefix..` past the text of `prefix..read`.
    fn pending(&self, tokenizer: &Tokenizer) -> Result<String> {
        let before = tokenizer.decode(&self.ids[self.prefix..self.read])?;
        let now = tokenizer.decode(&self.ids[self.prefix..])?;
        // Should a decoder rewrite earlier text (rare), go by length, as text-generation-inference does.
        let piece = now.strip_prefix(before.as_str()).or_else(|| now.get(before.len()..)).unwrap_or_default();
        Ok(piece.to_string())
    }
}

/// A minijinja environment set up like transformers' chat-template sandbox: blocks trimmed
/// and left-stripped, loop controls, Python string methods, `raise_exception`.
fn chat_environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |message: String| -> std::result::Result<String, minijinja::Error> {
        Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, message))
    });
    env
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    serde_json::from_str(&text).map_err(|e| Error::format(path, format!("not valid JSON: {e}")))
}

/// The text of a special token in tokenizer_config.json: a string, or an AddedToken object
/// `{"content": "<s>", ...}` as older files write it.
fn special_token_text(config: &Value, key: &str) -> std::result::Result<Option<String>, String> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(v) => match v.get("content").and_then(Value::as_str) {
            Some(text) => Ok(Some(text.to_string())),
            None => Err(format!("{key} must be a string or {{\"content\": ...}}, got {v}")),
        },
    }
}

/// `chat_template` in tokenizer_config.json: a string, or a list of {name, template} of which
/// we take the one named "default" (else the first).
fn config_chat_template(config: &Value) -> std::result::Result<Option<String>, String> {
    match config.get("chat_template") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(template)) => Ok(Some(template.clone())),
        Some(Value::Array(named)) => {
            let template_of = |entry: &Value| entry.get("template").and_then(Value::as_str).map(str::to_string);
            let default = named.iter().find(|e| e.get("name").and_then(Value::as_str) == Some("default"));
            Ok(default.or(named.first()).and_then(template_of))
        }
        Some(v) => Err(format!("chat_template must be a string or a list of named templates, got {v}")),
    }
}
