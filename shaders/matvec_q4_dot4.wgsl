// matvec_q4_dot4.wgsl: matrix-vector product for decode with a Q4 weight (groups of 32 or 128),
// in integer dot products: x is rounded to int8 per block of 32 inside the kernel and multiplied
// with the 4-bit quants four at a time (dot4I8Packed), reduced with subgroupAdd.
//   y[row_offset + r] = sum_b scale[r, g] * d[b] * (sum_{k in block b} q[r, k] * qx[k])
//                     + min[r, g] * (sum_{k in block b} x[k])     g = 32 b / GROUP
//                                                   for r < rows   (+= with ACCUMULATE)
//   where block b is elements 32b .. 32b + 32 (one quant word), d[b] = max_{k in b} |x[k]| / 127
//   and qx[k] = round(x[k] / d[b]), an int8 in -127..127 (x[k] ~ d[b] * qx[k], within d[b] / 2).
//   The min term uses the exact f32 sum of x.
// Why: the float path (matvec_q4_subgroup) converts every nibble to f32 and loads 8 bytes of x
// per quant byte; here eight nibbles cost five integer instructions (two masks, a shift, two
// dot4I8Packed) and x is read once per ROWS rows, so the kernel can stay bandwidth-bound.
// The price is x's rounding: each product errs by at most |q scale| d[b] / 2.
//
// Bindings (engine/src/dtype.rs: the Q4 layout):
//   0  quants: array<vec4<u32>>  [rows, k / 32] this dispatch's row chunk; word c of row r holds
//        elements 32c .. 32c + 32, element e in nibble e % 8 (bits 4 * (e % 8)) of component
//        (e / 8) % 4, an unsigned 0..15
//   1  scales: array<u32>  [rows * k / GROUP] word j: group j's f16 scale (low half) and f16
//        min (high half); flat group j = (r * k + e) / GROUP
//   2  x: array<vec4<f32>>  (k) the input vector
//   3  y: array<f32>        (N) read_write, the whole output; this dispatch writes
//        y[row_offset .. row_offset + rows]
//   4  params: Params
// Workgroup: WORKGROUP_SIZE threads (override) own ROWS consecutive rows (override,
// <= MAX_ROWS). Thread t takes blocks (quant words) t, t + WORKGROUP_SIZE, ...: it rounds the
// block's 32 x values to int8 once (bytes ordered to match the nibbles: the even and the odd
// elements of each quant component) and sums them, then for each of the ROWS rows loads the
// quant word (16 bytes) and its scale/min word. The reduction: subgroupAdd folds each
// subgroup's partials, then thread r adds the subgroups' sums of row r.
// GROUP_WORDS (override): quant words per group, 1 (Q4, group 32) or 4 (Q4G128).
// Grid: ceil(rows / ROWS) workgroups, folded 2-D when large (flat_group_id).
// Requires: k % GROUP == 0 (the dtype guarantees it); 16-byte aligned x; the subgroup feature.
// (dot4I8Packed is native where the device has integer dot products, else naga expands it;
// nibbles 0..15 are the same as signed or unsigned bytes.)
// Fuses the dequantization and x's rounding.
// Reference: reference::matvec::round_x_int8 (x's rounding), dtype::unpack_q4, then
// reference::matvec::matvec.

struct Params {
    rows: u32,        // rows of W in this dispatch
    k: u32,           // elements per row (= length of x)
    row_words: u32,   // vec4 quant words per row: k / 32
    row_offset: u32,  // index in y of this dispatch's first row
}

@group(0) @binding(0) var<storage, read> quants: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> scales: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

override WORKGROUP_SIZE: u32 = 128u;
override ROWS: u32 = 8u;
// The epilogue: y = W x, or with ACCUMULATE y += W x (a residual connection added in place).
override ACCUMULATE: bool = false;
override GROUP_WORDS: u32 = 1u;

// Per-thread accumulators: a function-scope array of constant size; ROWS may not exceed it
// (kernels::matvec::MAX_DOT4_ROWS).
const MAX_ROWS: u32 = 16u;

// Each subgroup's sum for each row: [ROWS][WORKGROUP_SIZE] (at most one subgroup per thread).
override SUMS: u32 = ROWS;
// include: workgroup_sums_subgroup

// x block b (one quant word's 32 elements) rounded to int8, in the nibbles' order: component i
// of a quant word holds elements 8i .. 8i + 8, its even nibbles (masked in place) elements 8i,
// 8i + 2, 8i + 4, 8i + 6 and its odd nibbles (shifted down 4) the others; plus the step d and
// the exact sum of the 32 x values.
struct XBlock {
    even: vec4<u32>,  // component i: the int8 of elements 8i, 8i + 2, 8i + 4, 8i + 6
    odd: vec4<u32>,   // component i: elements 8i + 1, 8i + 3, 8i + 5, 8i + 7
    d: f32,
    sum: f32,
}

fn x_block(b: u32) -> XBlock {
    let v0 = x[8u * b];
    let v1 = x[8u * b + 1u];
    let v2 = x[8u * b + 2u];
    let v3 = x[8u * b + 3u];
    let v4 = x[8u * b + 4u];
    let v5 = x[8u * b + 5u];
    let v6 = x[8u * b + 6u];
    let v7 = x[8u * b + 7u];
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
    let row0 = flat_group_id(wid, nwg) * ROWS;
    // A workgroup past the last row re-reads the last row and does not store those sums.
    var acc: array<f32, MAX_ROWS>;  // zero-initialized
    for (var b = lid; b < params.row_words; b += WORKGROUP_SIZE) {
        let xb = x_block(b);
        for (var r = 0u; r < ROWS; r++) {
            let word = min(row0 + r, params.rows - 1u) * params.row_words + b;
            let q = quants[word];
            let scale_min = unpack2x16float(scales[word / GROUP_WORDS]);
            let dot_q = dot4I8Packed(q.x & NIBBLES, xb.even.x) + dot4I8Packed((q.x >> 4u) & NIBBLES, xb.odd.x)
                      + dot4I8Packed(q.y & NIBBLES, xb.even.y) + dot4I8Packed((q.y >> 4u) & NIBBLES, xb.odd.y)
                      + dot4I8Packed(q.z & NIBBLES, xb.even.z) + dot4I8Packed((q.z >> 4u) & NIBBLES, xb.odd.z)
                      + dot4I8Packed(q.w & NIBBLES, xb.even.w) + dot4I8Packed((q.w >> 4u) & NIBBLES, xb.odd.w);
            acc[r] += (scale_min.x * xb.d) * f32(dot_q) + scale_min.y * xb.sum;
        }
    }
    for (var r = 0u; r < ROWS; r++) {
        keep_sum(r, acc[r], ids);
    }
    fold_sums(ids);
    for (var r = lid; r < ROWS && row0 + r < params.rows; r += WORKGROUP_SIZE) {
        var total = workgroup_sum(r, ids);
        let i = params.row_offset + row0 + r;
        if (ACCUMULATE) {
            y[i] += total;
        } else {
            y[i] = total;
        }
    }
}
