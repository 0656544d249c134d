#!/usr/bin/env python3
"""GGUF test files and expected values for tests/gguf.rs, written with llama.cpp's `gguf`
Python package (an independent writer and dequantizer).

Writes into tests/data/:
  blocks.gguf, blocks.json
      one tensor per stored type we read (F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q4_K Q5_K Q6_K), each
      2 rows x 256 elements of random block bytes (scales set to ordinary f16 values), and the
      values gguf.quants.dequantize gives for them.
  stories260k.gguf, stories260k.json
      Karpathy's stories260K as llama.cpp would store it: llama metadata from config.json, the
      SentencePiece-style tokenizer (tokens and types from tokenizer.json, scores from llama2.c's
      tok512.bin), and some of its tensors in several types, with Q and K rows permuted the way
      llama.cpp's converter permutes them. The json holds, per tensor, the shape and a few rows
      of the values in Hugging Face order as numpy computes them (dequantized by gguf-py, rows
      un-permuted by reshape/swapaxes). The script asserts that the permuted Q/K rows equal the
      original llama2.c checkpoint's rows (llama2.c, like llama.cpp, rotates adjacent pairs).
  smollm2_tensors.json (when the SmolLM2 GGUF is in the cache)
      per tensor of blk.0 and token_embd: shape, a few rows in HF order, the sum of all values.

Usage: python3 scripts/make-gguf-vectors.py   (needs: pip install gguf numpy safetensors)
"""

import json
import os
import struct
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as QT
from gguf import GGUFReader, GGUFWriter, TokenType
from gguf.quants import dequantize, quantize

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
STORIES = ROOT.parent / "shared" / "models" / "stories260K"
if not STORIES.exists():
    STORIES = Path("/work/shared/models/stories260K")

# Each block type: (type, bytes per block, byte offsets of its f16 scale fields).
BLOCK_TYPES = [
    (QT.Q8_0, 34, [0]),
    (QT.Q4_0, 18, [0]),
    (QT.Q4_1, 20, [0, 2]),
    (QT.Q4_K, 144, [0, 2]),
    (QT.Q5_K, 176, [0, 2]),
    (QT.Q6_K, 210, [208]),
]


def permute(w, n_head):
    """llama.cpp's converter: HF rotate_half rows -> adjacent-pair rows, per head."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute(w, n_head):
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def floats(a):
    return [float(x) for x in np.asarray(a, dtype=np.float32).ravel()]


def make_blocks():
    rng = np.random.default_rng(20261121)
    rows, cols = 2, 256
    w = GGUFWriter(str(DATA / "blocks.gguf"), arch="test")
    expected = {}
    plain = rng.standard_normal((rows, cols)).astype(np.float32)
    w.add_tensor("f32", plain)
    expected["f32"] = floats(plain)
    for name, qt in [("f16", QT.F16), ("bf16", QT.BF16)]:
        raw = quantize(plain, qt)
        w.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=qt)
        expected[name] = floats(dequantize(raw, qt))
    for qt, block_bytes, scale_offsets in BLOCK_TYPES:
        n_blocks = rows * cols // (32 if block_bytes < 100 else 256)
        raw = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
        for off in scale_offsets:
            scale = (rng.uniform(0.001, 0.05, n_blocks) * rng.choice([-1, 1], n_blocks)).astype(np.float16)
            raw[:, off : off + 2] = scale.view(np.uint8).reshape(n_blocks, 2)
        raw = raw.reshape(rows, -1)
        w.add_tensor(qt.name.lower(), raw, raw_shape=raw.shape, raw_dtype=qt)
        expected[qt.name.lower()] = floats(dequantize(raw, qt))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    out = {"about": "gguf.quants.dequantize of each tensor in blocks.gguf (2 x 256), row-major",
           "shape": [rows, cols], "values": expected}
    (DATA / "blocks.json").write_text(json.dumps(out) + "\n")


def read_tok512(path, n):
    """llama2.c tokenizer: i32 max_token_length, then per token f32 score, i32 len, bytes."""
    b = path.read_bytes()
    pos, scores, pieces = 4, [], []
    for _ in range(n):
        score, length = struct.unpack_from("<fi", b, pos)
        pos += 8
        pieces.append(b[pos : pos + length].decode("utf-8"))
        pos += length
        scores.append(score)
    return pieces, scores


def read_llama2c(path):
    """stories260K.bin (llama2.c v0): 7 i32 header, then fp32 tensors in a fixed order."""
    b = path.read_bytes()
    dim, hidden, layers, heads, kv_heads, vocab, seq = struct.unpack_from("<7i", b, 0)
    head = dim // heads
    shapes = [("tok", (abs(vocab), dim)), ("rms_att", (layers, dim)),
              ("wq", (layers, heads * head, dim)), ("wk", (layers, kv_heads * head, dim))]
    out, pos = {}, 28
    for name, shape in shapes:
        count = int(np.prod(shape))
        out[name] = np.frombuffer(b, dtype="<f4", count=count, offset=pos).reshape(shape)
        pos += 4 * count
    return out


def load_safetensors(path):
    from safetensors.numpy import load_file

    return load_file(str(path))


def make_stories():
    cfg = json.loads((STORIES / "config.json").read_text())
    tok = json.loads((STORIES / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    tokens = [None] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    pieces, scores = read_tok512(STORIES / "tok512.bin", len(tokens))
    # tok512.bin spells the specials <unk>, \n<s>\n, \n</s>\n and spaces as " ".
    for i in range(3, len(tokens)):
        assert pieces[i].replace(" ", "\u2581") == tokens[i], (i, pieces[i], tokens[i])
    types = []
    for i, t in enumerate(tokens):
        if i == 0:
            types.append(TokenType.UNKNOWN)
        elif i in (1, 2):
            types.append(TokenType.CONTROL)
        elif t.startswith("<0x") and len(t) == 6:
            types.append(TokenType.BYTE)
        else:
            types.append(TokenType.NORMAL)

    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    w = GGUFWriter(str(DATA / "stories260k.gguf"), arch="llama")
    w.add_name("stories260K (test subset)")
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_dimension_count(cfg["head_dim"])
    w.add_rope_freq_base(cfg["rope_theta"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(True)

    st = load_safetensors(STORIES / "model.safetensors")
    original = read_llama2c(STORIES / "stories260K.bin")
    # (GGUF name, HF name, stored type, rotary heads or None)
    plan = [
        ("token_embd.weight", "model.embed_tokens.weight", QT.Q4_1, None),
        ("blk.0.attn_norm.weight", "model.layers.0.input_layernorm.weight", QT.F32, None),
        ("blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj.weight", QT.F32, n_head),
        ("blk.0.attn_k.weight", "model.layers.0.self_attn.k_proj.weight", QT.F32, n_kv),
        ("blk.0.attn_v.weight", "model.layers.0.self_attn.v_proj.weight", QT.F16, None),
        ("blk.0.attn_output.weight", "model.layers.0.self_attn.o_proj.weight", QT.Q8_0, None),
        ("blk.1.attn_q.weight", "model.layers.1.self_attn.q_proj.weight", QT.Q8_0, n_head),
        ("blk.1.attn_k.weight", "model.layers.1.self_attn.k_proj.weight", QT.Q4_0, n_kv),
        ("blk.0.ffn_up.weight", "model.layers.0.mlp.up_proj.weight", QT.BF16, None),
        ("output_norm.weight", "model.norm.weight", QT.F32, None),
    ]
    expected = {}
    for gguf_name, hf_name, qt, heads in plan:
        hf = st[hf_name].astype(np.float32)
        stored = permute(hf, heads) if heads else hf
        if gguf_name == "blk.0.attn_q.weight":
            assert np.array_equal(stored, original["wq"][0]), "Q permutation != llama2.c layout"
        if gguf_name == "blk.0.attn_k.weight":
            assert np.array_equal(stored, original["wk"][0]), "K permutation != llama2.c layout"
        if qt == QT.F32:
            w.add_tensor(gguf_name, stored)
            back = stored
        else:
            raw = quantize(stored, qt)
            w.add_tensor(gguf_name, raw, raw_shape=raw.shape, raw_dtype=qt)
            back = dequantize(raw, qt).reshape(stored.shape)
        in_hf_order = unpermute(back, heads) if heads else back
        rows = in_hf_order.reshape(in_hf_order.shape[0], -1) if in_hf_order.ndim > 1 else in_hf_order[None, :]
        picks = sorted({0, min(1, rows.shape[0] - 1), rows.shape[0] // 2, rows.shape[0] - 1})
        expected[hf_name] = {
            "gguf_name": gguf_name,
            "type": qt.name,
            "shape": list(hf.shape),
            "rows": {str(r): floats(rows[r]) for r in picks},
            "sum": float(np.sum(in_hf_order, dtype=np.float64)),
        }
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    out = {"about": "stories260k.gguf: values in HF row order (gguf-py dequantize, numpy un-permute)",
           "config": cfg, "tensors": expected}
    (DATA / "stories260k.json").write_text(json.dumps(out) + "\n")


def make_smollm2():
    cache = Path(os.environ.get("SHADERLM_CACHE", Path.home() / ".cache" / "shaderlm"))
    path = cache / "smollm2-135m-instruct.gguf"
    if not path.exists():
        print(f"{path} absent: smollm2_tensors.json not made (run scripts/fetch-smollm2.sh)")
        return
    reader = GGUFReader(str(path))
    heads = {"blk.0.attn_q.weight": 9, "blk.0.attn_k.weight": 3}
    expected = {}
    for t in reader.tensors:
        if not (t.name.startswith("blk.0.") or t.name == "token_embd.weight"):
            continue
        shape = [int(x) for x in reversed(t.shape)]
        values = dequantize(np.asarray(t.data), t.tensor_type).reshape(shape)
        if t.name in heads:
            values = unpermute(values, heads[t.name])
        rows = values.reshape(shape[0], -1) if len(shape) > 1 else values[None, :]
        picks = sorted({0, min(1, rows.shape[0] - 1), rows.shape[0] // 2, rows.shape[0] - 1})
        expected[t.name] = {
            "type": t.tensor_type.name,
            "shape": shape,
            "rows": {str(r): floats(rows[r][:64]) for r in picks},
            "sum": float(np.sum(values, dtype=np.float64)),
        }
    out = {"about": "SmolLM2-135M-Instruct GGUF, HF row order: first 64 values of some rows "
           "and the f64 sum of all values (gguf-py dequantize, numpy un-permute)",
           "tensors": expected}
    (DATA / "smollm2_tensors.json").write_text(json.dumps(out) + "\n")


if __name__ == "__main__":
    DATA.mkdir(parents=True, exist_ok=True)
    make_blocks()
    make_stories()
    make_smollm2()
    for f in sorted(DATA.iterdir()):
        print(f"{f.stat().st_size:>8}  {f.relative_to(ROOT)}")
