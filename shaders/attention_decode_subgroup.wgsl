// attention_decode_subgroup.wgsl: one query per head against the KV cache, split along the keys
// (flash-decoding), pass 1 of 2. Fast variant: sums across lanes by subgroupShuffleXor.
// For split s, head h (KV head g = h / group), over keys j in s*split_len .. min(s*split_len +
// split_len, kv_len), kv_len = min(pos[0] + 1, capacity), with x_j = scale*log2(e) * q[h].k[j, g]:
//   partials[s, h] = (M, L, A) with M = max_j x_j, L = sum_j exp2(x_j - M),
//                    A = sum_j exp2(x_j - M) * v[j, g, :]
// attention_decode_reduce.wgsl combines the splits into out[h] = sum_s e_s A_s / sum_s e_s L_s
// with e_s = exp2(M_s - max_s M_s).
//
// Bindings:
//   0  q: array<vec4<f32>>        (1, n_heads * HEAD_DIM), heads contiguous; read
//   1  k_cache: array<vec4<u32>>  (capacity, n_kv_heads * HEAD_DIM): row p holds position p; f32
//                                 bit patterns, or f16 pairs when KV_F16 (one vec4<u32> = 8 halves)
//   2  v_cache: array<vec4<u32>>  same layout as k_cache
//   3  partials: array<vec4<f32>> (n_splits, n_heads, HEAD_DIM/4 + 1): per split and head, vec4 0
//                                 is (M, L, 0, 0), then A; written only by splits holding keys
//   4  pos: array<u32>            (1) position of the query, read on the GPU so the op replays
//   5  params: Params
// Workgroup: WG = SLOTS * TPK threads; one workgroup per (split, KV head, chunk of GC of the
// query heads sharing that KV head): grid (n_splits, n_kv_heads * n_chunks). Splits past kv_len
// return at once. The workgroup holds SLOTS key slots of TPK lanes: slot i takes keys start + i,
// start + i + SLOTS, ...; within a key, lane l loads 8-element units l, l + TPK, ... of the K and
// V rows (coalesced: the TPK lanes read one contiguous row) and holds the same units of its GC
// queries. Each lane dots its units with each query, the TPK lanes sum their parts (here by
// subgroupShuffleXor: the TPK lanes of a slot are consecutive and TPK divides the subgroup
// size), and each slot keeps its own running (max, sum, weighted V) per head. At the end the
// slots are merged through workgroup memory and one partial per head is written.
// Requires: HEAD_DIM % 8 == 0, ceil(HEAD_DIM/8 / TPK) <= MAX_U, GC * ceil(HEAD_DIM/8 / TPK)
// <= MAX_GU, the SUBGROUP feature with subgroups of at least TPK lanes (the host checks).
// Portable variant: attention_decode.wgsl (same kernel, lane sums through workgroup memory;
// keep the two in step).
// Fuses the scale. Reference: reference::attention_decode::attention_decode.

override HEAD_DIM: u32 = 64;
override KV_F16: bool = false;
override TPK: u32 = 8;   // lanes per key (a power of two)
override SLOTS: u32 = 16;
override GC: u32 = 1;    // query heads per workgroup

override WG: u32 = SLOTS * TPK;
override D4: u32 = HEAD_DIM / 4u;
override D8: u32 = HEAD_DIM / 8u;        // 8-element units per head row
override U: u32 = (D8 + TPK - 1u) / TPK; // units per lane
const MAX_U: u32 = 4u;
const MAX_G: u32 = 8u;
const MAX_GU: u32 = 8u;                  // bound on GC * U (registers for queries and sums)

struct Params {
    n_heads: u32,
    group: u32,         // query heads per KV head
    n_chunks: u32,      // workgroups per KV head: ceil(group / GC)
    capacity: u32,
    split_len: u32,     // keys per split
    kv_row_vec4s: u32,  // vec4<u32>s per cache row: n_kv_heads * (KV_F16 ? D8 : D4)
    q_scale: f32,       // scale * log2(e)
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> k_cache: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> v_cache: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> partials: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> pos: array<u32>;
@group(0) @binding(5) var<uniform> params: Params;

var<workgroup> slot_max: array<f32, SLOTS>;
var<workgroup> slot_sum: array<f32, SLOTS>;
var<workgroup> slot_acc: array<vec4<f32>, SLOTS * D4>; // [slot, vec4 column]
var<workgroup> query_pos: u32;

// Unit `unit` (8 elements, as two vec4) of the row of `key` for KV head `kvh`, from K or V.
fn load_unit(values: bool, key: u32, kvh: u32, unit: u32) -> array<vec4<f32>, 2> {
    if (KV_F16) {
        let idx = key * params.kv_row_vec4s + kvh * D8 + unit;
        var w: vec4<u32>;
        if (values) { w = v_cache[idx]; } else { w = k_cache[idx]; }
        return array<vec4<f32>, 2>(vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y)),
                                   vec4<f32>(unpack2x16float(w.z), unpack2x16float(w.w)));
    }
    let idx = key * params.kv_row_vec4s + kvh * D4 + 2u * unit;
    if (values) {
        return array<vec4<f32>, 2>(bitcast<vec4<f32>>(v_cache[idx]), bitcast<vec4<f32>>(v_cache[idx + 1u]));
    }
    return array<vec4<f32>, 2>(bitcast<vec4<f32>>(k_cache[idx]), bitcast<vec4<f32>>(k_cache[idx + 1u]));
}

// Sums each head's part over the TPK lanes of this thread's slot; every lane gets the sums.
fn sum_over_key_lanes(parts: array<f32, MAX_G>, lid: u32, slot: u32) -> array<f32, MAX_G> {
    var sums = parts;
    for (var g = 0u; g < GC; g++) {
        for (var offset = TPK / 2u; offset > 0u; offset >>= 1u) {
            sums[g] += subgroupShuffleXor(sums[g], offset);
        }
    }
    return sums;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let split = wid.x;
    let kvh = wid.y / params.n_chunks;
    let head0 = kvh * params.group + (wid.y % params.n_chunks) * GC;
    let n_here = min(GC, (kvh + 1u) * params.group - head0); // heads of this chunk
    let slot = lid / TPK;
    let lane = lid % TPK;

    if (lid == 0u) {
        query_pos = pos[0];
    }
    let p = workgroupUniformLoad(&query_pos);
    let kv_len = min(p, params.capacity - 1u) + 1u;
    let start = split * params.split_len;
    if (start >= kv_len) {
        return;  // an empty split: the reduce pass does not read it
    }
    let end = min(start + params.split_len, kv_len);

    // This lane's units of each query, pre-scaled; units past the row are zero.
    var qr: array<vec4<f32>, 2 * MAX_GU>;
    for (var g = 0u; g < GC; g++) {
        for (var u = 0u; u < U; u++) {
            let unit = lane + TPK * u;
            var lo = vec4<f32>(0.0);
            var hi = vec4<f32>(0.0);
            if (g < n_here && unit < D8) {
                let base = (head0 + g) * D4 + 2u * unit;
                lo = q[base] * params.q_scale;
                hi = q[base + 1u] * params.q_scale;
            }
            qr[2u * (g * U + u)] = lo;
            qr[2u * (g * U + u) + 1u] = hi;
        }
    }

    var m: array<f32, MAX_G>;                  // running max per head (log2 units)
    var l: array<f32, MAX_G>;                  // running sum of exp2(x - m)
    var acc: array<vec4<f32>, 2 * MAX_GU>;     // running weighted V, this lane's units
    for (var g = 0u; g < GC; g++) {
        m[g] = NEG_BIG;
        l[g] = 0.0;
    }
    for (var i = 0u; i < 2u * GC * U; i++) {
        acc[i] = vec4<f32>(0.0);
    }

    let rounds = (end - start + SLOTS - 1u) / SLOTS;
    for (var r = 0u; r < rounds; r++) {
        let key = start + r * SLOTS + slot;
        let valid = key < end;
        var k_units: array<vec4<f32>, 2 * MAX_U>;
        var v_units: array<vec4<f32>, 2 * MAX_U>;
        for (var u = 0u; u < U; u++) {
            let unit = lane + TPK * u;
            var kk = array<vec4<f32>, 2>(vec4<f32>(0.0), vec4<f32>(0.0));
            var vv = kk;
            if (valid && unit < D8) {
                kk = load_unit(false, key, kvh, unit);
                vv = load_unit(true, key, kvh, unit);
            }
            k_units[2u * u] = kk[0];
            k_units[2u * u + 1u] = kk[1];
            v_units[2u * u] = vv[0];
            v_units[2u * u + 1u] = vv[1];
        }
        var parts: array<f32, MAX_G>;
        for (var g = 0u; g < GC; g++) {
            var d = vec4<f32>(0.0);
            for (var u = 0u; u < U; u++) {
                d += qr[2u * (g * U + u)] * k_units[2u * u] + qr[2u * (g * U + u) + 1u] * k_units[2u * u + 1u];
            }
            parts[g] = d.x + d.y + d.z + d.w;
        }
        let scores = sum_over_key_lanes(parts, lid, slot);
        if (valid) {
            for (var g = 0u; g < GC; g++) {
                let m_new = max(m[g], scores[g]);
                let alpha = exp2(m[g] - m_new);
                let w = exp2(scores[g] - m_new);
                m[g] = m_new;
                l[g] = l[g] * alpha + w;
                for (var i = 0u; i < 2u * U; i++) {
                    acc[2u * g * U + i] = acc[2u * g * U + i] * alpha + w * v_units[i];
                }
            }
        }
    }

    // Merge the slots' states head by head and write one partial per head.
    let stride = D4 + 1u;
    for (var g = 0u; g < GC; g++) {
        if (lane == 0u) {
            slot_max[slot] = m[g];
            slot_sum[slot] = l[g];
        }
        for (var u = 0u; u < U; u++) {
            let unit = lane + TPK * u;
            if (unit < D8) {
                slot_acc[slot * D4 + 2u * unit] = acc[2u * (g * U + u)];
                slot_acc[slot * D4 + 2u * unit + 1u] = acc[2u * (g * U + u) + 1u];
            }
        }
        workgroupBarrier();
        var top = NEG_BIG;
        for (var s = 0u; s < SLOTS; s++) {
            top = max(top, slot_max[s]);
        }
        let base = (split * params.n_heads + head0 + g) * stride;
        if (g < n_here) {
            for (var c = lid; c < D4; c += WG) {
                var a = vec4<f32>(0.0);
                for (var s = 0u; s < SLOTS; s++) {
                    a += exp2(slot_max[s] - top) * slot_acc[s * D4 + c];
                }
                partials[base + 1u + c] = a;
            }
            if (lid == 0u) {
                var total = 0.0;
                for (var s = 0u; s < SLOTS; s++) {
                    total += exp2(slot_max[s] - top) * slot_sum[s];
                }
                partials[base] = vec4<f32>(top, total, 0.0, 0.0);
            }
        }
        workgroupBarrier();
    }
}
