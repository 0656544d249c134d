// rope.wgsl: rotary position embedding, in place, Hugging Face "rotate_half" layout.
//   For row t (position p = pos[0] + t), head h, and i < half = rot_dim / 2, with the head's
//   elements a = x[t, h, i] and b = x[t, h, i + half] and angle = p * inv_freq[i]:
//     x[t, h, i]        = a cos(angle) - b sin(angle)
//     x[t, h, i + half] = b cos(angle) + a sin(angle)
//   Elements rot_dim .. head_dim of each head (partial rotary) are left as they are.
//
// Bindings:
//   0  x: array<f32>         (n_rows, n_heads * head_dim) row-major, read_write
//   1  inv_freq: array<f32>  (half) rotation speed of each pair, radians per position; finite,
//                            >= 0 (rope::inv_freq builds it, with Llama-3 scaling if asked)
//   2  pos: array<u32>       (1) position of row 0, read here so a recorded op can be replayed
//                            at every step after the host rewrites pos
//   3  params: Params
// Workgroup: 256 threads, one (row, head, pair) each; the grid is ceil(n_rows * n_heads * half /
// 256) groups, folded 2-D when large (flat_group_id).
//
// Precision: the angle p * inv_freq is reduced exactly (rotation_angle in common.wgsl, shared with
// rope_kv_cache.wgsl): the result matches an f64 computation of sin/cos(p * inv_freq) to f32
// rounding at any position below 2^32.
// Fuses nothing. Reference: reference::rope::rope.

struct Params {
    n_rows: u32,
    n_heads: u32,
    head_dim: u32,
    half: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> inv_freq: array<f32>;
@group(0) @binding(2) var<storage, read> pos: array<u32>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let g = flat_group_id(wid, nwg) * 256u + lid;
    let pairs_per_row = params.n_heads * params.half;
    if (g >= params.n_rows * pairs_per_row) {
        return;
    }
    let t = g / pairs_per_row;
    let head = (g % pairs_per_row) / params.half;
    let i = g % params.half;
    let angle = rotation_angle(pos[0] + t, inv_freq[i]);
    let c = cos(angle);
    let s = sin(angle);
    let first = (t * params.n_heads + head) * params.head_dim + i;
    let a = x[first];
    let b = x[first + params.half];
    x[first] = a * c - b * s;
    x[first + params.half] = b * c + a * s;
}
