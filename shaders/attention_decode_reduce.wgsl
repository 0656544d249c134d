// attention_decode_reduce.wgsl: pass 2 of 2 of attention_decode: combines the splits' partials.
//   out[h, :] = sum_s exp2(M_s - M) * A_s / sum_s exp2(M_s - M) * L_s,   M = max_s M_s
// over the splits s that hold keys: s < ceil(kv_len / split_len), kv_len = min(pos[0] + 1,
// capacity) (the same count the first pass derives, so empty splits are never read).
//
// Bindings:
//   0  partials: array<vec4<f32>> (n_splits, n_heads, HEAD_DIM/4 + 1): vec4 0 is (M, L, 0, 0),
//                                 then A (see attention_decode.wgsl); read
//   1  out: array<vec4<f32>>      (1, n_heads * HEAD_DIM), written
//   2  pos: array<u32>            (1) position of the query
//   3  params: Params
// Workgroup: WG threads, one workgroup per head (grid n_heads). Every thread finds M and the
// denominator (a few reads per split, broadcast), then thread c writes output vec4s c, c + WG, ...
// Fuses nothing. Reference: reference::attention_decode::attention_decode (with pass 1).

override HEAD_DIM: u32 = 64;
override WG: u32 = 64;
override D4: u32 = HEAD_DIM / 4u;

struct Params {
    n_heads: u32,
    capacity: u32,
    split_len: u32,
    n_splits: u32,
}

@group(0) @binding(0) var<storage, read> partials: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> pos: array<u32>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let head = wid.x;
    let kv_len = min(pos[0], params.capacity - 1u) + 1u;
    let n_used = min((kv_len + params.split_len - 1u) / params.split_len, params.n_splits);
    let stride = D4 + 1u;
    let split_step = params.n_heads * stride;
    let first = head * stride;

    var top = NEG_BIG;
    for (var s = 0u; s < n_used; s++) {
        top = max(top, partials[first + s * split_step].x);
    }
    var total = 0.0;
    for (var s = 0u; s < n_used; s++) {
        let stats = partials[first + s * split_step];
        total += exp2(stats.x - top) * stats.y;
    }
    for (var c = lid; c < D4; c += WG) {
        var a = vec4<f32>(0.0);
        for (var s = 0u; s < n_used; s++) {
            let base = first + s * split_step;
            a += exp2(partials[base].x - top) * partials[base + 1u + c];
        }
        out[head * D4 + c] = a / total;
    }
}
