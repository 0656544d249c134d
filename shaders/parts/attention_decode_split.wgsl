// parts/attention_decode_split.wgsl: the body of attention_decode's first pass (see the header of
// attention_decode.wgsl), shared by its portable and subgroup variants, which differ only in how
// a key's dot-product parts are summed over its TPK lanes: each defines
//   fn sum_over_key_lanes(parts: array<f32, MAX_R>, lid: u32, slot: u32) -> array<f32, MAX_R>
// and splices this in with `// include: attention_decode_split`.

override HEAD_DIM: u32 = 64;
override KV_F16: bool = false;
override TPK: u32 = 8;   // lanes per key (a power of two)
override SLOTS: u32 = 16;
override R: u32 = 1;     // keys per slot per round

override WG: u32 = SLOTS * TPK;
override D4: u32 = HEAD_DIM / 4u;
override D8: u32 = HEAD_DIM / 8u;        // 8-element units per head row
override U: u32 = (D8 + TPK - 1u) / TPK; // units per lane
const MAX_U: u32 = 4u;
const MAX_R: u32 = 8u;

struct Params {
    n_heads: u32,
    group: u32,         // query heads per KV head
    capacity: u32,
    n_splits: u32,
    split_align: u32,   // split lengths are multiples of this (SLOTS * R: whole rounds)
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

// Keys per split at this step (attention_decode_reduce.wgsl computes the same).
fn split_length(kv_len: u32) -> u32 {
    let even = (kv_len + params.n_splits - 1u) / params.n_splits;
    return (even + params.split_align - 1u) / params.split_align * params.split_align;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let split = wid.x;
    let head = wid.y;
    let row = wid.z;
    let slot_first_key = row * params.capacity;
    let kvh = head / params.group;
    let slot = lid / TPK;
    let lane = lid % TPK;

    if (lid == 0u) {
        query_pos = pos[row];
    }
    let p = workgroupUniformLoad(&query_pos);
    let kv_len = min(p, params.capacity - 1u) + 1u;
    let split_len = split_length(kv_len);
    let start = split * split_len;
    if (start >= kv_len) {
        return;  // an empty split: the reduce pass does not read it
    }
    let end = min(start + split_len, kv_len);

    // This lane's units of the query, pre-scaled; units past the row are zero.
    var qr: array<vec4<f32>, 2 * MAX_U>;
    var acc: array<vec4<f32>, 2 * MAX_U>;  // running weighted V, this lane's units
    for (var u = 0u; u < U; u++) {
        let unit = lane + TPK * u;
        var lo = vec4<f32>(0.0);
        var hi = vec4<f32>(0.0);
        if (unit < D8) {
            lo = q[(row * params.n_heads + head) * D4 + 2u * unit] * params.q_scale;
            hi = q[(row * params.n_heads + head) * D4 + 2u * unit + 1u] * params.q_scale;
        }
        qr[2u * u] = lo;
        qr[2u * u + 1u] = hi;
        acc[2u * u] = vec4<f32>(0.0);
        acc[2u * u + 1u] = vec4<f32>(0.0);
    }
    var m = NEG_BIG;  // running max (log2 units)
    var l = 0.0;      // running sum of exp2(x - m)

    let rounds = (end - start + SLOTS * R - 1u) / (SLOTS * R);
    for (var rnd = 0u; rnd < rounds; rnd++) {
        let first_key = start + rnd * SLOTS * R + slot;
        // All loads of the round first, so that they are in flight together.
        var k_units: array<vec4<f32>, 2 * MAX_U * MAX_R>;
        var v_units: array<vec4<f32>, 2 * MAX_U * MAX_R>;
        for (var r = 0u; r < R; r++) {
            let key = first_key + r * SLOTS;
            for (var u = 0u; u < U; u++) {
                let unit = lane + TPK * u;
                var kk = array<vec4<f32>, 2>(vec4<f32>(0.0), vec4<f32>(0.0));
                var vv = kk;
                if (key < end && unit < D8) {
                    kk = load_unit(false, slot_first_key + key, kvh, unit);
                    vv = load_unit(true, slot_first_key + key, kvh, unit);
                }
                let i = 2u * (r * U + u);
                k_units[i] = kk[0];
                k_units[i + 1u] = kk[1];
                v_units[i] = vv[0];
                v_units[i + 1u] = vv[1];
            }
        }
        var parts: array<f32, MAX_R>;
        for (var r = 0u; r < R; r++) {
            var d = vec4<f32>(0.0);
            for (var u = 0u; u < U; u++) {
                let i = 2u * (r * U + u);
                d += qr[2u * u] * k_units[i] + qr[2u * u + 1u] * k_units[i + 1u];
            }
            parts[r] = d.x + d.y + d.z + d.w;
        }
        let scores = sum_over_key_lanes(parts, lid, slot);
        // Fold the round's keys into the running state; keys past the end weigh nothing.
        var m_new = m;
        for (var r = 0u; r < R; r++) {
            if (first_key + r * SLOTS < end) {
                m_new = max(m_new, scores[r]);
            }
        }
        let alpha = exp2(m - m_new);
        m = m_new;
        l *= alpha;
        for (var i = 0u; i < 2u * U; i++) {
            acc[i] *= alpha;
        }
        for (var r = 0u; r < R; r++) {
            if (first_key + r * SLOTS < end) {
                let w = exp2(scores[r] - m_new);
                l += w;
                for (var i = 0u; i < 2u * U; i++) {
                    acc[i] += w * v_units[2u * r * U + i];
                }
            }
        }
    }

    // Merge the slots' states into the split's partial.
    if (lane == 0u) {
        slot_max[slot] = m;
        slot_sum[slot] = l;
    }
    for (var u = 0u; u < U; u++) {
        let unit = lane + TPK * u;
        if (unit < D8) {
            slot_acc[slot * D4 + 2u * unit] = acc[2u * u];
            slot_acc[slot * D4 + 2u * unit + 1u] = acc[2u * u + 1u];
        }
    }
    workgroupBarrier();
    var top = NEG_BIG;
    for (var s = 0u; s < SLOTS; s++) {
        top = max(top, slot_max[s]);
    }
    let base = ((row * params.n_splits + split) * params.n_heads + head) * (D4 + 1u);
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
