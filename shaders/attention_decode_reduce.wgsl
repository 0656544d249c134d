// attention_decode_reduce.wgsl: pass 2 of 2 of attention_decode: combines the splits' partials.
//   out[b, h, :] = sum_s e_s * A_s / sum_s e_s * L_s,   e_s = exp2(M_s - max_s M_s)
// over the splits s that hold keys at this step: s < ceil(kv_len / split_len), with kv_len and
// split_len computed from pos[b] exactly as the first pass does (so empty splits are never read).
//
// Bindings:
//   0  partials: array<vec4<f32>> (rows, n_splits, n_heads, HEAD_DIM/4 + 1): vec4 0 is (M, L, 0, 0),
//                                 then A (see attention_decode.wgsl); read
//   1  out: array<vec4<f32>>      (rows, n_heads * HEAD_DIM), written
//   2  pos: array<u32>            (rows) position of each query row
//   3  params: Params
// Workgroup: WG threads (a power of two), one workgroup per (head, row) (grid (n_heads, rows)).
// The threads share the splits to find max_s M_s and then the weights e_s (kept in workgroup
// memory), each fold over the threads a tree in workgroup memory (log2 WG steps: a loop of WG
// reads in every thread cost ~4 us per call on the H200); for the weighted sum,
// thread lid takes output vec4 lid % D4 over the splits lid / D4, lid / D4 + GROUPS, ... (GROUPS
// = WG / D4 groups of threads, so the reads of many splits are in flight at once), and the first
// group adds up the groups' sums and writes.
// Requires: n_splits <= MAX_SPLITS, HEAD_DIM / 4 <= WG (the host checks).
// Fuses nothing. Reference: reference::attention_decode::attention_decode (with pass 1).

override HEAD_DIM: u32 = 64;
override WG: u32 = 128;
override D4: u32 = HEAD_DIM / 4u;
override GROUPS: u32 = WG / D4;
const MAX_SPLITS: u32 = 256u;

struct Params {
    n_heads: u32,
    capacity: u32,
    n_splits: u32,
    split_align: u32,  // as in attention_decode.wgsl
}

@group(0) @binding(0) var<storage, read> partials: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> pos: array<u32>;
@group(0) @binding(3) var<uniform> params: Params;

var<workgroup> weights: array<f32, MAX_SPLITS>;  // e_s
var<workgroup> thread_part: array<f32, WG>;
var<workgroup> group_sums: array<vec4<f32>, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let head = wid.x;
    let row = wid.y;
    let kv_len = min(pos[row], params.capacity - 1u) + 1u;
    let even = (kv_len + params.n_splits - 1u) / params.n_splits;
    let split_len = (even + params.split_align - 1u) / params.split_align * params.split_align;
    let n_used = (kv_len + split_len - 1u) / split_len;
    let stride = D4 + 1u;
    let split_step = params.n_heads * stride;
    let first = row * params.n_splits * split_step + head * stride;

    var top = NEG_BIG;
    for (var s = lid; s < n_used; s += WG) {
        top = max(top, partials[first + s * split_step].x);
    }
    thread_part[lid] = top;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half /= 2u) {
        if (lid < half) {
            thread_part[lid] = max(thread_part[lid], thread_part[lid + half]);
        }
        workgroupBarrier();
    }
    top = thread_part[0];
    var total = 0.0;
    for (var s = lid; s < n_used; s += WG) {
        let stats = partials[first + s * split_step];
        weights[s] = exp2(stats.x - top);
        total += weights[s] * stats.y;
    }
    workgroupBarrier();  // everyone has read the maximum
    thread_part[lid] = total;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half /= 2u) {
        if (lid < half) {
            thread_part[lid] += thread_part[lid + half];
        }
        workgroupBarrier();
    }
    total = thread_part[0];

    let c = lid % D4;
    let grp = lid / D4;
    var a = vec4<f32>(0.0);
    if (grp < GROUPS) {
        for (var s = grp; s < n_used; s += GROUPS) {
            a += weights[s] * partials[first + s * split_step + 1u + c];
        }
    }
    group_sums[lid] = a;
    workgroupBarrier();
    if (grp == 0u) {
        for (var i = 1u; i < GROUPS; i++) {
            a += group_sums[i * D4 + c];
        }
        out[(row * params.n_heads + head) * D4 + c] = a / total;
    }
}
