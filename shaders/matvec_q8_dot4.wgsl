// matvec_q8_dot4.wgsl: matrix-vector product for decode with a Q8 weight, in integer dot
// products: x is rounded to int8 per block of 32 inside the kernel and multiplied with the int8
// quants four at a time (dot4I8Packed), reduced with subgroupAdd.
//   y[row_offset + r] = sum_b scale[r, b] * d[b] * (sum_{k in block b} q[r, k] * qx[k])
//                                                   for r < rows   (+= with ACCUMULATE)
//   where block b is elements 32b .. 32b + 32 (one scale group), d[b] = max_{k in b} |x[k]| / 127
//   and qx[k] = round(x[k] / d[b]), an int8 in -127..127 (x[k] ~ d[b] * qx[k], within d[b] / 2).
// Why: the float path (matvec_q8_subgroup) converts every quant to f32 and loads 4 bytes of x
// per quant byte; here a quant costs a quarter of an integer instruction and x is read once per
// ROWS rows, so the kernel stays bandwidth-bound where the float one is bound by ALU and by x.
// The price is x's rounding: each product errs by at most |w| d[b] / 2.
//
// Bindings (engine/src/dtype.rs: the Q8 layout):
//   0  quants: array<vec4<u32>>  [rows, k / 16] this dispatch's row chunk; word c of row r holds
//        elements 16c .. 16c + 16, element e in byte e % 4 of component (e / 4) % 4, signed
//   1  scales: array<u32>  [rows * k / 32] f16, two per word: flat group j = (r * k + e) / 32 is
//        half j % 2 of word j / 2
//   2  x: array<vec4<f32>>  (k) the input vector
//   3  y: array<f32>        (N) read_write, the whole output; this dispatch writes
//        y[row_offset .. row_offset + rows]
//   4  params: Params
// Workgroup: WORKGROUP_SIZE threads (override) own ROWS consecutive rows (override,
// <= MAX_ROWS). Thread t takes blocks t, t + WORKGROUP_SIZE, ...: it rounds the block's 32 x values
// to int8 once, then for each of the ROWS rows loads the block's two quant words (32 bytes) and
// its scale and adds scale * d * (8 dot4I8Packed) to that row's partial sum. The reduction:
// subgroupAdd folds each subgroup's partials, then thread r adds the subgroups' sums of row r.
// Grid: ceil(rows / ROWS) workgroups, folded 2-D when large (flat_group_id).
// Requires: k % 32 == 0 (the dtype guarantees it); 16-byte aligned x; the subgroup feature.
// (dot4I8Packed is native where the device has integer dot products, else naga expands it.)
// Fuses the dequantization and x's rounding.
// Reference: reference::matvec::round_x_int8 (x's rounding), dtype::dequantize, then
// reference::matvec::matvec.

struct Params {
    rows: u32,        // rows of W in this dispatch
    k: u32,           // elements per row (= length of x)
    row_words: u32,   // vec4 quant words per row: k / 16
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

// Per-thread accumulators: a function-scope array of constant size; ROWS may not exceed it
// (kernels::matvec::MAX_DOT4_ROWS).
const MAX_ROWS: u32 = 16u;

// Each subgroup's sum for each row: [ROWS][WORKGROUP_SIZE] (at most one subgroup per thread).
override SUMS: u32 = ROWS;
// include: workgroup_sums_subgroup

// x block b rounded to int8: 32 signed bytes in the quants' order (element 4i + j in byte j of
// word i) and the step d.
struct XBlock {
    lo: vec4<u32>,  // elements 0 .. 16
    hi: vec4<u32>,  // elements 16 .. 32
    d: f32,
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
    var xb: XBlock;
    xb.lo = vec4<u32>(pack4x8snorm(v0 * inv), pack4x8snorm(v1 * inv), pack4x8snorm(v2 * inv), pack4x8snorm(v3 * inv));
    xb.hi = vec4<u32>(pack4x8snorm(v4 * inv), pack4x8snorm(v5 * inv), pack4x8snorm(v6 * inv), pack4x8snorm(v7 * inv));
    xb.d = amax * (1.0 / 127.0);
    return xb;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32,
        @builtin(subgroup_invocation_id) lane: u32,
        @builtin(subgroup_id) subgroup: u32,
        @builtin(num_subgroups) n_subgroups: u32) {
    let ids = SumIds(lid, lane, subgroup, n_subgroups);
    let row0 = flat_group_id(wid, nwg) * ROWS;
    let blocks = params.k / 32u;
    // A workgroup past the last row re-reads the last row and does not store those sums.
    var acc: array<f32, MAX_ROWS>;  // zero-initialized
    for (var b = lid; b < blocks; b += WORKGROUP_SIZE) {
        let xb = x_block(b);
        for (var r = 0u; r < ROWS; r++) {
            let row = min(row0 + r, params.rows - 1u);
            let word = row * params.row_words + 2u * b;
            let q_lo = quants[word];
            let q_hi = quants[word + 1u];
            let group = row * blocks + b;
            let scale = f16_from_word(scales[group / 2u], group);
            let dot_q = dot4I8Packed(q_lo.x, xb.lo.x) + dot4I8Packed(q_lo.y, xb.lo.y)
                      + dot4I8Packed(q_lo.z, xb.lo.z) + dot4I8Packed(q_lo.w, xb.lo.w)
                      + dot4I8Packed(q_hi.x, xb.hi.x) + dot4I8Packed(q_hi.y, xb.hi.y)
                      + dot4I8Packed(q_hi.z, xb.hi.z) + dot4I8Packed(q_hi.w, xb.hi.w);
            acc[r] += (scale * xb.d) * f32(dot_q);
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
