// rope_kv_cache.wgsl: RoPE on the queries and keys of a stacked q/k/v projection, and the keys
// and values stored in the KV cache, in one pass.
//   Row t of qkv is [q (n_heads heads) | k (n_kv_heads) | v (n_kv_heads)], each head head_dim
//   long, at position p(t) in cache c(t): p(t) = pos[0] + t in the one cache (a prompt), or with
//   BATCHED p(t) = pos[t] in cache slot t (the new tokens of a batch of sequences). With
//   rope(h, p) the Hugging Face "rotate_half" rotation of head h (rope.wgsl: for i < half,
//   a = h[i], b = h[i + half], angle = p * inv_freq[i]: h[i] = a cos - b sin,
//   h[i + half] = b cos + a sin; elements from 2 * half on unchanged):
//     q[t, :]                = rope(q heads of row t, p(t))
//     k_cache[c(t), p(t), :] = rope(k heads of row t, p(t))   (rows with p >= capacity are skipped)
//     v_cache[c(t), p(t), :] = v of row t
//
// Bindings:
//   0  qkv: array<f32>       (n_rows, (n_heads + 2 n_kv_heads) * head_dim) row-major, read
//   1  inv_freq: array<f32>  (half) radians per position of each pair (rope::inv_freq)
//   2  pos: array<u32>       (1) position of row 0, or (n_rows) with BATCHED; read here so the op
//                            can be replayed every step
//   3  q: array<f32>         (n_rows, n_heads * head_dim) row-major, written
//   4  k_cache: array<u32>   (capacity, n_kv_heads * head_dim) row-major, or (n_rows, capacity,
//   5  v_cache: array<u32>   ...) with BATCHED; read_write: f32 bit patterns, or f16 pairs when
//                            CACHE_F16 (element i = half i%2 of word i/2; head_dim is even, so
//                            every cache row starts on a word)
//   6  params: Params
// Workgroup: 256 threads; each writes one output word, so no two threads share one: the flat
// thread index runs over the n_rows * n_heads * head_dim elements of q, then the words of the k
// rows, then the words of the v rows (a cache word is one f32 or two f16 elements). A rotated
// element reads both elements of its pair from qkv, so q is not rotated in place and no thread
// waits for another. The grid is folded 2-D when large (flat_group_id).
// Requires: head_dim even, 2 * half <= head_dim.
// Fuses kernels::rope::rope on q and on k with kernels::copy_rows of k and v (the tests compare
// with those four). Reference: reference::rope_kv_cache::rope_kv_cache, and
// reference::rope_kv_cache_batched for BATCHED.

override CACHE_F16: bool = false;
override BATCHED: bool = false;

// Row t's position.
fn position(t: u32) -> u32 {
    if (BATCHED) {
        return pos[t];
    }
    return pos[0] + t;
}

struct Params {
    n_rows: u32,
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    half: u32,
    capacity: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> qkv: array<f32>;
@group(0) @binding(1) var<storage, read> inv_freq: array<f32>;
@group(0) @binding(2) var<storage, read> pos: array<u32>;
@group(0) @binding(3) var<storage, read_write> q: array<f32>;
@group(0) @binding(4) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding(5) var<storage, read_write> v_cache: array<u32>;
@group(0) @binding(6) var<uniform> params: Params;

// Element d of the head that starts at qkv[head], rotated to position p.
fn rotated(head: u32, d: u32, p: u32) -> f32 {
    let half = params.half;
    if (d >= 2u * half) {
        return qkv[head + d];
    }
    let i = d % half;
    let a = qkv[head + i];
    let b = qkv[head + i + half];
    let angle = rotation_angle(p, inv_freq[i]);
    let c = cos(angle);
    let s = sin(angle);
    if (d < half) {
        return a * c - b * s;
    }
    return b * c + a * s;
}

// Element e of the k (rotate) or v part of qkv row t, at position p.
fn kv_element(t: u32, e: u32, p: u32, rotate: bool) -> f32 {
    let hd = params.head_dim;
    let row_len = (params.n_heads + 2u * params.n_kv_heads) * hd;
    let kv_width = params.n_kv_heads * hd;
    let k_start = t * row_len + params.n_heads * hd;
    if (rotate) {
        return rotated(k_start + (e / hd) * hd, e % hd, p);
    }
    return qkv[k_start + kv_width + e];
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    var g = flat_group_id(wid, nwg) * 256u + lid;
    let hd = params.head_dim;
    let q_width = params.n_heads * hd;
    let row_len = q_width + 2u * params.n_kv_heads * hd;
    let kv_width = params.n_kv_heads * hd;

    // q: one element per thread.
    let n_q = params.n_rows * q_width;
    if (g < n_q) {
        let t = g / q_width;
        let e = g % q_width;
        q[g] = rotated(t * row_len + (e / hd) * hd, e % hd, position(t));
        return;
    }
    g -= n_q;

    // k, then v: one cache word per thread.
    var words_per_row = kv_width;
    if (CACHE_F16) {
        words_per_row = kv_width / 2u;
    }
    let n_kv = params.n_rows * words_per_row;
    if (g >= 2u * n_kv) {
        return;
    }
    let is_k = g < n_kv;
    if (!is_k) {
        g -= n_kv;
    }
    let t = g / words_per_row;
    let w = g % words_per_row;
    let p = position(t);
    // (pos[0] + t may wrap past 2^32; compared as pos[0] >= capacity - t it cannot.)
    if (BATCHED && p >= params.capacity || !BATCHED && (pos[0] >= params.capacity || t >= params.capacity - pos[0])) {
        return;
    }
    var word: u32;
    if (CACHE_F16) {
        word = pack2x16float(vec2<f32>(kv_element(t, 2u * w, p, is_k), kv_element(t, 2u * w + 1u, p, is_k)));
    } else {
        word = bitcast<u32>(kv_element(t, w, p, is_k));
    }
    var dst = p * words_per_row + w;
    if (BATCHED) {
        dst += t * params.capacity * words_per_row;
    }
    if (is_k) {
        k_cache[dst] = word;
    } else {
        v_cache[dst] = word;
    }
}
