// parts/rms_norm_matvec_rope_kv_cache_dot4_body.wgsl: the kernel of
// rms_norm_matvec_rope_kv_cache_q8_dot4.wgsl and rms_norm_matvec_rope_kv_cache_q4_dot4.wgsl, which
// differ only in the weight format: each splices in its format part first (parts/dot4_q8.wgsl or
// parts/dot4_q4.wgsl: XBlock, x_block, block_dot), then this. What it computes, as the Q8 variant
// says it (the Q4 one reads its layout instead):
// rms_norm_matvec_rope_kv_cache_q8_dot4.wgsl: a decode step's attention input in one pass with a
// Q8 weight, in integer dot products: RMSNorm of x, the stacked q/k/v projection, RoPE on q
// and k, and k and v stored in the cache; reduced with subgroupAdd.
// What it computes, the workgroups' tasks (8 rows each: four RoPE pairs of a q or k head, or 8
// rows of v) and the epilogue are those of rms_norm_matvec_rope_kv_cache_subgroup.wgsl (read its
// header); the projection is that of rms_norm_matvec_q8_dot4.wgsl: x * g rounded to int8 per
// block of 32 inside the kernel, dot4I8Packed with the quants, x^2 summed on the way, 1 / rms
// applied to the row sums.
//
// Bindings:
//   0  quants, 1 scales: the whole weight [(n_heads + 2 n_kv_heads) * head_dim, k] in the
//      Q8 layout (as in matvec_q8_dot4.wgsl)
//   2  x: array<vec4<f32>> (k)   3  g: array<vec4<f32>> (k)
//   4  inv_freq: array<f32> (head_dim / 2)   5  pos: array<u32> (1)
//   6  q: array<f32> (n_heads * head_dim) written
//   7  k_cache, 8 v_cache: array<u32> (capacity, n_kv_heads * head_dim) read_write, f32 bit
//      patterns or f16 pairs when CACHE_F16
//   9  params: Params
// One scale per block of 32 (a Q8 group).
// Grid: (n_heads + n_kv_heads) * head_dim / 8 + n_kv_heads * head_dim / 8 workgroups, folded 2-D
// when large (flat_group_id).
// Requires: head_dim % 8 == 0, k % 32 == 0 (the dtype guarantees it), 16-byte aligned bindings,
// the weight within one storage binding, full rotary, the subgroup feature.
// Fuses rms_norm, the dequantizing matvec and rope_kv_cache (the tests compare with rms_norm,
// the Dot4 matvec's reference and reference::rope_kv_cache::rope_kv_cache).

// The x blocks: x * g, rounded by the format part.
// include: dot4_norm_x
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
override CACHE_F16: bool = true;

const ROWS: u32 = 8u;
const PAIRS: u32 = 4u;  // ROWS / 2: the pairs a q or k workgroup rotates

// Each subgroup's sum for each row, then for x^2: [ROWS + 1][WORKGROUP_SIZE].
override SUMS: u32 = ROWS + 1u;
// include: workgroup_sums_subgroup

// The 8 rows a workgroup takes and the epilogue that rotates and stores them.
// include: rope_kv_cache_rows

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
    let blocks = params.k / 32u;
    for (var b = lid; b < blocks; b += WORKGROUP_SIZE) {
        let xb = x_block(b);
        sum_sq += xb.sum_sq;
        for (var r = 0u; r < ROWS; r++) {
            let row = row_of(t, r);
            acc[r] += block_dot(row, b, xb);
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
