// rms_norm_matvec_rope_kv_cache_q4_dot4.wgsl: a decode step's attention input in one pass with a
// Q4 (groups of 32 or 128) weight, in integer dot products: RMSNorm of x, the stacked q/k/v projection, RoPE on q
// and k, and k and v stored in the cache; reduced with subgroupAdd.
// What it computes, the workgroups' tasks (8 rows each: four RoPE pairs of a q or k head, or 8
// rows of v) and the epilogue are those of rms_norm_matvec_rope_kv_cache_subgroup.wgsl (read its
// header); the projection is that of rms_norm_matvec_q4_dot4.wgsl: x * g rounded to int8 per
// block of 32 inside the kernel, dot4I8Packed with the quants, x^2 summed on the way, 1 / rms
// applied to the row sums.
//
// Bindings:
//   0  quants, 1 scales: the whole weight [(n_heads + 2 n_kv_heads) * head_dim, k] in the
//      Q4 layout (as in matvec_q4_dot4.wgsl)
//   2  x: array<vec4<f32>> (k)   3  g: array<vec4<f32>> (k)
//   4  inv_freq: array<f32> (head_dim / 2)   5  pos: array<u32> (1)
//   6  q: array<f32> (n_heads * head_dim) written
//   7  k_cache, 8 v_cache: array<u32> (capacity, n_kv_heads * head_dim) read_write, f32 bit
//      patterns or f16 pairs when CACHE_F16
//   9  params: Params
// GROUP_WORDS (override): quant words per group, 1 (Q4) or 4 (Q4G128).
// Grid: (n_heads + n_kv_heads) * head_dim / 8 + n_kv_heads * head_dim / 8 workgroups, folded 2-D
// when large (flat_group_id).
// Requires: head_dim % 8 == 0, k % 32 == 0 (the dtype guarantees it), 16-byte aligned bindings,
// the weight within one storage binding, full rotary, the subgroup feature.
// Fuses rms_norm, the dequantizing matvec and rope_kv_cache (the tests compare with rms_norm,
// the Dot4 matvec's reference and reference::rope_kv_cache::rope_kv_cache).

struct Params {
    k: u32,          // elements per row (= length of x)
    row_words: u32,  // vec4 quant words per row: k / 16 (Q8) or k / 32 (Q4)
    eps: f32,
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    capacity: u32,   // rows of each cache
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read> quants: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> scales: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> g: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> inv_freq: array<f32>;
@group(0) @binding(5) var<storage, read> pos: array<u32>;
@group(0) @binding(6) var<storage, read_write> q: array<f32>;
@group(0) @binding(7) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding(8) var<storage, read_write> v_cache: array<u32>;
@group(0) @binding(9) var<uniform> params: Params;

override WORKGROUP_SIZE: u32 = 256u;
override GROUP_WORDS: u32 = 1u;
override CACHE_F16: bool = true;

const ROWS: u32 = 8u;
const PAIRS: u32 = 4u;  // ROWS / 2: the pairs a q or k workgroup rotates

// Each subgroup's sum for each row, then for x^2: [ROWS + 1][WORKGROUP_SIZE].
override SUMS: u32 = ROWS + 1u;
// include: workgroup_sums_subgroup

// The 8 rows a workgroup takes and the epilogue that rotates and stores them.
// include: rope_kv_cache_rows

// x block b (one quant word's 32 elements) rounded to int8, in the nibbles' order: component i
// of a quant word holds elements 8i .. 8i + 8, its even nibbles (masked in place) elements 8i,
// 8i + 2, 8i + 4, 8i + 6 and its odd nibbles (shifted down 4) the others; plus the step d and
// the exact sum of the 32 x values.
struct XBlock {
    even: vec4<u32>,  // component i: the int8 of elements 8i, 8i + 2, 8i + 4, 8i + 6
    odd: vec4<u32>,   // component i: elements 8i + 1, 8i + 3, 8i + 5, 8i + 7
    d: f32,
    sum_sq: f32,  // sum of the 32 x^2 (before g)
    sum: f32,
}

fn x_block(b: u32) -> XBlock {
    // The block of x * g (the norm's 1 / rms is applied to the row sums at the end).
    let x0 = x[8u * b];
    let v0 = x0 * g[8u * b];
    let x1 = x[8u * b + 1u];
    let v1 = x1 * g[8u * b + 1u];
    let x2 = x[8u * b + 2u];
    let v2 = x2 * g[8u * b + 2u];
    let x3 = x[8u * b + 3u];
    let v3 = x3 * g[8u * b + 3u];
    let x4 = x[8u * b + 4u];
    let v4 = x4 * g[8u * b + 4u];
    let x5 = x[8u * b + 5u];
    let v5 = x5 * g[8u * b + 5u];
    let x6 = x[8u * b + 6u];
    let v6 = x6 * g[8u * b + 6u];
    let x7 = x[8u * b + 7u];
    let v7 = x7 * g[8u * b + 7u];
    let m = max(max(max(abs(v0), abs(v1)), max(abs(v2), abs(v3))),
                max(max(abs(v4), abs(v5)), max(abs(v6), abs(v7))));
    let amax = max(max(m.x, m.y), max(m.z, m.w));
    // pack4x8snorm(v) stores round(clamp(v, -1, 1) * 127): with v = x / amax that is x / d.
    let inv = select(0.0, 1.0 / amax, amax > 0.0);
    let s = (v0 + v1) + (v2 + v3) + (v4 + v5) + (v6 + v7);
    var xb: XBlock;
    xb.even = vec4<u32>(pack4x8snorm(vec4<f32>(v0.xz, v1.xz) * inv), pack4x8snorm(vec4<f32>(v2.xz, v3.xz) * inv),
                        pack4x8snorm(vec4<f32>(v4.xz, v5.xz) * inv), pack4x8snorm(vec4<f32>(v6.xz, v7.xz) * inv));
    xb.odd = vec4<u32>(pack4x8snorm(vec4<f32>(v0.yw, v1.yw) * inv), pack4x8snorm(vec4<f32>(v2.yw, v3.yw) * inv),
                       pack4x8snorm(vec4<f32>(v4.yw, v5.yw) * inv), pack4x8snorm(vec4<f32>(v6.yw, v7.yw) * inv));
    xb.d = amax * (1.0 / 127.0);
    xb.sum_sq = (dot(x0, x0) + dot(x1, x1)) + (dot(x2, x2) + dot(x3, x3))
              + (dot(x4, x4) + dot(x5, x5)) + (dot(x6, x6) + dot(x7, x7));
    xb.sum = (s.x + s.y) + (s.z + s.w);
    return xb;
}

// Low nibble of each byte of a quant component.
const NIBBLES: u32 = 0x0f0f0f0fu;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32,
        @builtin(subgroup_invocation_id) lane: u32,
        @builtin(subgroup_id) subgroup: u32,
        @builtin(num_subgroups) n_subgroups: u32) {
    let ids = SumIds(lid, lane, subgroup, n_subgroups);
    let t = task(flat_group_id(wid, nwg));
    // acc[r]: this thread's share of local row r; sum_sq: its share of sum_k x[k]^2.
    var acc: array<f32, ROWS>;  // zero-initialized
    var sum_sq = 0.0;
    for (var b = lid; b < params.row_words; b += WORKGROUP_SIZE) {
        let xb = x_block(b);
        sum_sq += xb.sum_sq;
        for (var r = 0u; r < ROWS; r++) {
            let word = row_of(t, r) * params.row_words + b;
            let qw = quants[word];
            let scale_min = unpack2x16float(scales[word / GROUP_WORDS]);
            let dot_q = dot4I8Packed(qw.x & NIBBLES, xb.even.x) + dot4I8Packed((qw.x >> 4u) & NIBBLES, xb.odd.x)
                      + dot4I8Packed(qw.y & NIBBLES, xb.even.y) + dot4I8Packed((qw.y >> 4u) & NIBBLES, xb.odd.y)
                      + dot4I8Packed(qw.z & NIBBLES, xb.even.z) + dot4I8Packed((qw.z >> 4u) & NIBBLES, xb.odd.z)
                      + dot4I8Packed(qw.w & NIBBLES, xb.even.w) + dot4I8Packed((qw.w >> 4u) & NIBBLES, xb.odd.w);
            acc[r] += (scale_min.x * xb.d) * f32(dot_q) + scale_min.y * xb.sum;
        }
    }
    for (var r = 0u; r < ROWS; r++) {
        keep_sum(r, acc[r], ids);
    }
    keep_sum(ROWS, sum_sq, ids);
    fold_sums(ids);
    if (lid != 0u) {
        return;
    }

    // Thread 0: the 8 outputs, scaled by 1 / rms, rotated, stored.
    var y: array<f32, ROWS>;
    var total_sq = workgroup_sum(ROWS, ids);
    let inv_rms = inverseSqrt(total_sq / f32(params.k) + params.eps);
    for (var r = 0u; r < ROWS; r++) {
        var total = workgroup_sum(r, ids);
        y[r] = total * inv_rms;
    }
    rotate_and_store(t, y);
}
