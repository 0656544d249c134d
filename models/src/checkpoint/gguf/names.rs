//! GGUF tensor names to Hugging Face names (one table), and the rotary row order of Q and K.

/// Per-layer tensors: `blk.N.<gguf>` is `model.layers.N.<hf>`.
const LAYER_NAMES: &[(&str, &str)] = &[
    ("attn_norm.weight", "input_layernorm.weight"),
    ("attn_q.weight", "self_attn.q_proj.weight"),
    ("attn_q.bias", "self_attn.q_proj.bias"),
    ("attn_k.weight", "self_attn.k_proj.weight"),
    ("attn_k.bias", "self_attn.k_proj.bias"),
    ("attn_v.weight", "self_attn.v_proj.weight"),
    ("attn_v.bias", "self_attn.v_proj.bias"),
    ("attn_output.weight", "self_attn.o_proj.weight"),
    ("ffn_norm.weight", "post_attention_layernorm.weight"),
    ("ffn_gate.weight", "mlp.gate_proj.weight"),
    ("ffn_up.weight", "mlp.up_proj.weight"),
    ("ffn_down.weight", "mlp.down_proj.weight"),
];

/// Tensors outside the layers.
const GLOBAL_NAMES: &[(&str, &str)] = &[
    ("token_embd.weight", "model.embed_tokens.weight"),
    ("output_norm.weight", "model.norm.weight"),
    ("output.weight", "lm_head.weight"),
];

/// The Hugging Face name of a GGUF tensor, or None for tensors with no counterpart
/// (`rope_freqs.weight`, other architectures' extras).
pub fn hf_name(gguf_name: &str) -> Option<String> {
    if let Some(&(_, hf)) = GLOBAL_NAMES.iter().find(|(g, _)| *g == gguf_name) {
        return Some(hf.to_owned());
    }
    let (layer, rest) = split_layer(gguf_name)?;
    let &(_, hf) = LAYER_NAMES.iter().find(|(g, _)| *g == rest)?;
    Some(format!("model.layers.{layer}.{hf}"))
}

/// `blk.12.attn_q.weight` -> (12, "attn_q.weight").
fn split_layer(gguf_name: &str) -> Option<(usize, &str)> {
    let rest = gguf_name.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((layer.parse().ok()?, rest))
}

/// Which head count the rotary rows of a GGUF tensor are grouped by, if its rows were permuted
/// by llama.cpp's converter: Q (weight and bias) by the attention heads, K by the KV heads.
pub(crate) enum RotaryHeads {
    Query,
    Key,
}

pub(crate) fn rotary_heads(gguf_name: &str) -> Option<RotaryHeads> {
    let (_, rest) = split_layer(gguf_name)?;
    match rest {
        "attn_q.weight" | "attn_q.bias" => Some(RotaryHeads::Query),
        "attn_k.weight" | "attn_k.bias" => Some(RotaryHeads::Key),
        _ => None,
    }
}

/// Row order of a Q or K projection in a llama-architecture GGUF.
///
/// Hugging Face Llama applies RoPE with `rotate_half`: in each head of `head_dim` rows, row i
/// pairs with row i + head_dim/2. llama.cpp rotates adjacent pairs (2i, 2i+1), so its converter
/// permutes the rows of q_proj and k_proj, per head, with
/// `w.reshape(n_head, 2, head_dim/2, cols).swapaxes(1, 2).reshape(rows, cols)`: GGUF row
/// h*head_dim + 2i + j holds HF row h*head_dim + j*head_dim/2 + i (j in 0..2, i in
/// 0..head_dim/2). This returns, for each HF row r, the GGUF row it is stored in:
/// `hf[r] = gguf[map[r]]`. None when `rows` is not a positive multiple of `2 * n_head`.
pub fn rotary_row_map(rows: usize, n_head: usize) -> Option<Vec<usize>> {
    let pair_rows = n_head.checked_mul(2)?;
    if n_head == 0 || rows == 0 || !rows.is_multiple_of(pair_rows) {
        return None;
    }
    let head_dim = rows / n_head;
    let half = head_dim / 2;
    Some(
        (0..rows)
            .map(|r| {
                let (head, within) = (r / head_dim, r % head_dim);
                let (j, i) = (within / half, within % half);
                head * head_dim + 2 * i + j
            })
            .collect(),
    )
}

/// `data` holds `rows` equal rows in GGUF's rotary order (any element type: dequantized f32,
/// or raw block bytes, since a row is a whole number of blocks); returns them in Hugging Face
/// order. None when `data` does not split into `rows` rows or `rows` into `2 * n_head` halves.
pub fn unpermute_rows<T: Copy>(data: &[T], rows: usize, n_head: usize) -> Option<Vec<T>> {
    let map = rotary_row_map(rows, n_head)?;
    if !data.len().is_multiple_of(rows) {
        return None;
    }
    let row_len = data.len() / rows;
    let mut out = Vec::with_capacity(data.len());
    for &src in &map {
        out.extend_from_slice(&data[src * row_len..(src + 1) * row_len]);
    }
    Some(out)
}
