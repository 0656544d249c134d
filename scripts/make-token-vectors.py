#!/usr/bin/env python3
"""Expected token ids for the GGUF tokenizer tests (tests/gguf.rs), from Hugging Face tokenizers.

Writes:
  tests/data/smollm2_tokens.json      ids of SmolLM2-135M-Instruct's tokenizer for TEXTS
  tests/data/stories260k_tokens.json  ids of stories260K's SentencePiece-style tokenizer for TEXTS
                                      (its tokenizer GGUF is made by make-gguf-vectors.py)

SmolLM2: the reference is a `tokenizers` Tokenizer built the way SmolLM2's own tokenizer.json
is (byte-level BPE over the same vocabulary and merges, pre-tokenizer Digits(individual) then
ByteLevel with the GPT-2 regex, the 17 control tokens as special tokens), with the vocabulary and
merges read from the GGUF by the `gguf` package. It is cross-checked against transformers'
own GGUF import (AutoTokenizer.from_pretrained(..., gguf_file=...)) when transformers is
installed (with torch, which its GGUF import needs): the script fails if the two disagree.

stories260K: the reference is the tokenizer.json shipped in ../shared/models/stories260K (built
from llama2.c's tok512.bin and checked there against llama2.c's own encoder), encoded without
BOS; the Rust test adds BOS itself where it checks add_bos.

Usage (needs: pip install gguf tokenizers transformers):
  python3 scripts/make-token-vectors.py [path/to/smollm2-135m-instruct.gguf]
"""

import hashlib
import json
import os
import sys
from pathlib import Path

from gguf import GGUFReader
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
STORIES = ROOT.parent / "shared" / "models" / "stories260K"
if not STORIES.exists():
    STORIES = Path("/work/shared/models/stories260K")

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "12345 3.14159",
    'fn main() { println!("hi"); }',
    "café naïve",
    "日本語の文章",
    "I ❤️ 🦀",
    "a    b\n\n\nc  \t d",
    "<|im_start|>user\nhi<|im_end|>",
    "What is the capital of France?",
    " leading space, trailing space ",
    "",
    "don't you're I'LL we've",
]


def field_strings(reader, key):
    f = reader.fields[key]
    return [bytes(f.parts[i]).decode("utf-8") for i in f.data]


def field_ints(reader, key):
    f = reader.fields[key]
    return [int(f.parts[i][0]) for i in f.data]


def smollm2_reference(gguf_path):
    reader = GGUFReader(gguf_path)
    tokens = field_strings(reader, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in field_strings(reader, "tokenizer.ggml.merges")]
    types = field_ints(reader, "tokenizer.ggml.token_type")
    pre = bytes(reader.fields["tokenizer.ggml.pre"].parts[-1]).decode()
    assert pre == "smollm", pre
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True) for t, ty in zip(tokens, types) if ty == 3])
    return tok


def transformers_ids(gguf_path, texts):
    """transformers' GGUF tokenizer import, as an independent check: (ids per text, None), or
    (None, why not) when it cannot run (it needs torch as well as transformers and gguf)."""
    try:
        from transformers import AutoTokenizer

        p = Path(gguf_path)
        tok = AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name)
    except Exception as e:  # missing packages surface as several exception types
        return None, f"{type(e).__name__}: {e}".splitlines()[0]
    return [tok.encode(t, add_special_tokens=False) for t in texts], None


def main():
    cache = Path(os.environ.get("SHADERLM_CACHE", Path.home() / ".cache" / "shaderlm"))
    gguf_path = sys.argv[1] if len(sys.argv) > 1 else str(cache / "smollm2-135m-instruct.gguf")
    digest = hashlib.sha256(Path(gguf_path).read_bytes()).hexdigest()

    tok = smollm2_reference(gguf_path)
    cases = []
    for text in TEXTS:
        enc = tok.encode(text, add_special_tokens=False)
        assert tok.decode(enc.ids, skip_special_tokens=False) == text, text
        cases.append({"text": text, "ids": enc.ids, "tokens": enc.tokens})
    checked_with = []
    other, why_not = transformers_ids(gguf_path, TEXTS)
    if other is None:
        print(f"not cross-checked with transformers ({why_not})")
    else:
        import transformers

        for case, ids in zip(cases, other):
            if case["ids"] != ids:
                sys.exit(f"transformers disagrees on {case['text']!r}: {ids} vs {case['ids']}")
        checked_with.append(f"transformers {transformers.__version__} AutoTokenizer(gguf_file=...)")
    out = {
        "about": "SmolLM2-135M-Instruct token ids (no BOS: add_bos_token is false) from HF "
        "tokenizers built like SmolLM2's tokenizer.json; made by scripts/make-token-vectors.py",
        "gguf_sha256": digest,
        "cross_checked_with": checked_with,
        "cases": cases,
    }
    (DATA / "smollm2_tokens.json").write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n")

    stories = Tokenizer.from_file(str(STORIES / "tokenizer.json"))
    cases = []
    for text in TEXTS:
        enc = stories.encode(text, add_special_tokens=False)
        cases.append({"text": text, "ids": enc.ids, "tokens": enc.tokens})
    out = {
        "about": "stories260K token ids without BOS from its tokenizer.json (HF tokenizers, "
        "SentencePiece-style BPE with byte fallback); made by scripts/make-token-vectors.py",
        "tokenizer_json_sha256": hashlib.sha256((STORIES / "tokenizer.json").read_bytes()).hexdigest(),
        "cases": cases,
    }
    (DATA / "stories260k_tokens.json").write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {DATA / 'smollm2_tokens.json'} and {DATA / 'stories260k_tokens.json'}")
    print("cross-checked with:", checked_with or "nothing")


if __name__ == "__main__":
    main()
