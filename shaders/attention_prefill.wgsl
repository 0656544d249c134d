// attention_prefill.wgsl: causal attention of a block of queries over the KV cache, tiled with an
// online softmax (flash-attention style; the [T, L] score matrix is never stored).
//   out[t, h, :] = sum_j softmax_j(scale * q[t, h, :] . k[j, g, :]) * v[j, g, :]
//   over keys j = 0 ..= min(pos[0] + t, capacity - 1), with g = h / group (grouped-query).
//
// Bindings:
//   0  q: array<vec4<f32>>       (T, n_heads * HEAD_DIM) row-major: row t is the query at position
//                                pos[0] + t, heads contiguous within a row; read
//   1  k_cache: array<vec4<u32>> (capacity, n_kv_heads * HEAD_DIM): row p holds position p; f32
//                                bit patterns, or f16 pairs when KV_F16 (one vec4<u32> = 8 halves)
//   2  v_cache: array<vec4<u32>> same layout as k_cache
//   3  out: array<vec4<f32>>     (T, n_heads * HEAD_DIM), written
//   4  pos: array<u32>           (1) position of query row 0, read on the GPU so the op replays
//   5  params: Params
// Workgroup: WG threads; one workgroup per (tile of BQ query rows, head): grid (ceil(T/BQ),
// n_heads). Thread lid owns RPT query rows of the tile, (lid / TPR) * RPT + 0 .. RPT, and is lane
// lid % TPR of them. The tile's queries (pre-multiplied by scale * log2(e), so exp2 replaces exp)
// sit in workgroup memory. For each tile of BK keys: the K tile is staged into workgroup memory
// (coalesced; f16 widened to f32); each thread scores KPT keys (lane, lane + TPR, ...) against
// its rows; each row's maximum is shared through workgroup memory; the thread rescales its
// running state by exp2(m_old - m_new) and stores its probabilities; the V tile replaces the K
// tile; each thread accumulates its VPT output vec4s (lane, lane + TPR, ...) of its rows. Each
// thread keeps the sum of its own keys' probabilities; the lanes of a row add theirs at the end.
// Two rows a thread halve the workgroup-memory reads per multiply-add, which bound this kernel.
// Keys past pos[0] + t or past the capacity get probability 0 and are never read past the
// capacity. The row reductions happen once per tile, not per key, so this kernel has no
// subgroup variant.
// Requires: HEAD_DIM % 8 == 0, HEAD_DIM / 4 <= 8 * TPR, BK % TPR == 0, BK / TPR <= 4, RPT <= 2
// (the host checks). Fuses the scale and the causal mask. Reference: reference::attention_prefill.

override HEAD_DIM: u32 = 64;
override KV_F16: bool = false;
override WG: u32 = 128;
// Query rows and keys per tile (the host picks them to fit workgroup memory).
override BQ: u32 = 16;
override BK: u32 = 32;
override RPT: u32 = 1;                  // query rows per thread

override D4: u32 = HEAD_DIM / 4u;       // vec4s per head row
override D8: u32 = HEAD_DIM / 8u;       // f16 storage vec4<u32>s per head row
override TPR: u32 = WG * RPT / BQ;      // threads sharing a query row
override KPT: u32 = BK / TPR;           // keys each thread scores per tile
override VPT: u32 = (D4 + TPR - 1u) / TPR; // output vec4s each thread accumulates
override KV_STRIDE: u32 = D4 + 1u;      // padded row stride of kv_tile, in vec4s (bank spread)
override P_STRIDE: u32 = BK + 1u;       // padded row stride of p_tile
const MAX_KPT: u32 = 4u;
const MAX_VPT: u32 = 8u;
const MAX_RPT: u32 = 2u;

struct Params {
    n_rows: u32,        // T
    n_heads: u32,
    group: u32,         // n_heads / n_kv_heads: query heads per KV head
    capacity: u32,      // rows of the caches
    kv_row_vec4s: u32,  // vec4<u32>s per cache row: n_kv_heads * (KV_F16 ? D8 : D4)
    q_scale: f32,       // scale * log2(e)
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> k_cache: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> v_cache: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> pos: array<u32>;
@group(0) @binding(5) var<uniform> params: Params;

var<workgroup> q_tile: array<vec4<f32>, BQ * D4>;         // scaled queries, row-major
var<workgroup> kv_tile: array<vec4<f32>, BK * KV_STRIDE>; // K tile, then V tile, row-major
var<workgroup> p_tile: array<f32, BQ * P_STRIDE>;         // probabilities [row, key]
var<workgroup> row_part: array<f32, RPT * WG>;            // [row of thread, thread] max / sum
var<workgroup> first_pos: u32;

fn saturating_add(a: u32, b: u32) -> u32 {
    return select(a + b, 0xffffffffu, a > 0xffffffffu - b);
}

// Copies cache rows k0 .. k0 + BK of KV head `kvh` (K or V) into kv_tile as f32; rows at or
// past kv_end are zero so that 0-probability keys add exactly nothing.
fn stage_tile(values: bool, kvh: u32, k0: u32, kv_end: u32, lid: u32) {
    if (KV_F16) {
        for (var i = lid; i < BK * D8; i += WG) {
            let c = i / D8;
            let u = i % D8;
            var w = vec4<u32>(0u);
            if (k0 + c < kv_end) {
                let idx = (k0 + c) * params.kv_row_vec4s + kvh * D8 + u;
                if (values) { w = v_cache[idx]; } else { w = k_cache[idx]; }
            }
            kv_tile[c * KV_STRIDE + 2u * u] = vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
            kv_tile[c * KV_STRIDE + 2u * u + 1u] = vec4<f32>(unpack2x16float(w.z), unpack2x16float(w.w));
        }
    } else {
        for (var i = lid; i < BK * D4; i += WG) {
            let c = i / D4;
            let u = i % D4;
            var w = vec4<u32>(0u);
            if (k0 + c < kv_end) {
                let idx = (k0 + c) * params.kv_row_vec4s + kvh * D4 + u;
                if (values) { w = v_cache[idx]; } else { w = k_cache[idx]; }
            }
            kv_tile[c * KV_STRIDE + u] = bitcast<vec4<f32>>(w);
        }
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let head = wid.y;
    let kvh = head / params.group;
    let t0 = wid.x * BQ;
    let row0 = (lid / TPR) * RPT;  // first of this thread's rows in the tile
    let lane = lid % TPR;
    let q_row_vec4s = params.n_heads * D4;

    if (lid == 0u) {
        first_pos = pos[0];
    }
    let p0 = workgroupUniformLoad(&first_pos);
    for (var i = lid; i < BQ * D4; i += WG) {
        let t = t0 + i / D4;
        var qv = vec4<f32>(0.0);
        if (t < params.n_rows) {
            qv = q[t * q_row_vec4s + head * D4 + i % D4] * params.q_scale;
        }
        q_tile[i] = qv;
    }
    // Keys this tile needs: up to the last row's position, never past the cache.
    let last_t = min(t0 + BQ, params.n_rows) - 1u;
    let kv_end = min(saturating_add(p0, last_t), params.capacity - 1u) + 1u;

    var m: array<f32, MAX_RPT>;  // running max of each row's scores (log2 units)
    var l: array<f32, MAX_RPT>;  // this thread's share of each row's running sum
    var acc: array<vec4<f32>, MAX_RPT * MAX_VPT>;  // [row, output vec4]
    for (var rr = 0u; rr < RPT; rr++) {
        m[rr] = NEG_BIG;
        l[rr] = 0.0;
        for (var j = 0u; j < VPT; j++) {
            acc[rr * MAX_VPT + j] = vec4<f32>(0.0);
        }
    }

    for (var k0 = 0u; k0 < kv_end; k0 += BK) {
        workgroupBarrier();  // the previous tile's V and probabilities are no longer read
        stage_tile(false, kvh, k0, kv_end, lid);
        workgroupBarrier();

        var dots: array<vec4<f32>, MAX_RPT * MAX_KPT>;  // [row, key]
        for (var i = 0u; i < RPT * MAX_KPT; i++) {
            dots[i] = vec4<f32>(0.0);
        }
        for (var d = 0u; d < D4; d++) {
            var qv: array<vec4<f32>, MAX_RPT>;
            for (var rr = 0u; rr < RPT; rr++) {
                qv[rr] = q_tile[(row0 + rr) * D4 + d];
            }
            for (var i = 0u; i < KPT; i++) {
                let kv = kv_tile[(lane + TPR * i) * KV_STRIDE + d];
                for (var rr = 0u; rr < RPT; rr++) {
                    dots[rr * MAX_KPT + i] += qv[rr] * kv;
                }
            }
        }
        var s: array<f32, MAX_RPT * MAX_KPT>;
        for (var rr = 0u; rr < RPT; rr++) {
            let my_pos = saturating_add(p0, t0 + row0 + rr);
            var tile_max = NEG_BIG;
            for (var i = 0u; i < KPT; i++) {
                let key = k0 + lane + TPR * i;
                let visible = key <= my_pos && key < kv_end;
                let d = dots[rr * MAX_KPT + i];
                s[rr * MAX_KPT + i] = select(NEG_BIG, d.x + d.y + d.z + d.w, visible);
                tile_max = max(tile_max, s[rr * MAX_KPT + i]);
            }
            row_part[rr * WG + lid] = tile_max;
        }
        workgroupBarrier();
        var alpha: array<f32, MAX_RPT>;
        for (var rr = 0u; rr < RPT; rr++) {
            var tile_max = NEG_BIG;
            for (var j = 0u; j < TPR; j++) {
                tile_max = max(tile_max, row_part[rr * WG + (lid - lane) + j]);
            }
            let m_new = max(m[rr], tile_max);
            alpha[rr] = exp2(m[rr] - m_new);
            m[rr] = m_new;
            l[rr] *= alpha[rr];
            for (var i = 0u; i < KPT; i++) {
                let x = s[rr * MAX_KPT + i];
                let p = select(0.0, exp2(x - m_new), x > NEG_BIG);
                l[rr] += p;
                p_tile[(row0 + rr) * P_STRIDE + lane + TPR * i] = p;
            }
        }
        workgroupBarrier();  // K tile and row_part read by all; probabilities written
        stage_tile(true, kvh, k0, kv_end, lid);
        workgroupBarrier();

        for (var rr = 0u; rr < RPT; rr++) {
            for (var j = 0u; j < VPT; j++) {
                acc[rr * MAX_VPT + j] *= alpha[rr];
            }
        }
        for (var c = 0u; c < BK; c++) {
            var p: array<f32, MAX_RPT>;
            for (var rr = 0u; rr < RPT; rr++) {
                p[rr] = p_tile[(row0 + rr) * P_STRIDE + c];
            }
            for (var j = 0u; j < VPT; j++) {
                let d = lane + TPR * j;
                if (d < D4) {
                    let v = kv_tile[c * KV_STRIDE + d];
                    for (var rr = 0u; rr < RPT; rr++) {
                        acc[rr * MAX_VPT + j] += p[rr] * v;
                    }
                }
            }
        }
    }

    // row_part was last read before the V tile was staged, so it is free again.
    for (var rr = 0u; rr < RPT; rr++) {
        row_part[rr * WG + lid] = l[rr];
    }
    workgroupBarrier();
    for (var rr = 0u; rr < RPT; rr++) {
        var total = 0.0;
        for (var j = 0u; j < TPR; j++) {
            total += row_part[rr * WG + (lid - lane) + j];
        }
        let t = t0 + row0 + rr;
        if (t < params.n_rows) {
            for (var j = 0u; j < VPT; j++) {
                let d = lane + TPR * j;
                if (d < D4) {
                    out[t * q_row_vec4s + head * D4 + d] = acc[rr * MAX_VPT + j] / total;
                }
            }
        }
    }
}
