// matvec_s24q4_dot4.wgsl: matrix-vector product for decode with a 2:4 sparse S24Q4 weight, in
// integer dot products: x is rounded to int8 per block of 32 inside the kernel, each group of
// four x values becomes one u32 of four int8, and each row's two kept quants of the group are
// placed at their positions in a u32 of four bytes, so one dot4I8Packed multiplies the group.
//   y[row_offset + r] = sum_b scale[r, b] * sum_h d[h] * (sum_{k in h} q[r, k] * qx[k])
//                     + min[r, b] * sum_h d[h] * (sum_{kept k in h} qx[k])
//                                                   for r < rows   (+= with ACCUMULATE)
//   where b runs over the S24Q4 blocks of 64 elements, h over the two halves (32 elements) of
//   a block, q[r, k] is the kept quant at k (0 where pruned), d[h] = max_{k in h} |x[k]| / 127
//   and qx[k] = round(x[k] / d[h]), an int8 in -127..127 (x[k] ~ d[h] * qx[k], within d[h] / 2).
//   Both terms use the rounded x (the kept set differs per row, so the exact sum of x per block
//   the dense Q4 kernel uses for its min term would cost a float select per kept value).
// Why: the float path (matvec_s24_subgroup) selects each kept value's x with bit tests and
// selects and converts every nibble; here a group of four costs a few integer instructions
// (shifts to place the two nibbles and two one-bits at their byte positions, two dot4I8Packed),
// and the x bytes are built once per ROWS rows. The price is x's rounding: each product errs by
// at most (|q scale| + |min|) d[h] / 2.
//
// Bindings (engine/src/dtype.rs: the S24Q4 layout):
//   0  values: array<vec4<u32>>  [rows, k / 64] this dispatch's row chunk; word c (flat over
//        the chunk's rows) is block c: nibble l (bits 4 * (l % 8) of u32 l / 8) is kept slot
//        l's q, 0..15; slots 2g (lower position) and 2g + 1 belong to group g, so byte g % 4
//        of u32 g / 4 holds group g's two quants
//   1  meta_words: array<u32>  (flat over the chunk's rows) words 3c, 3c + 1: block c's
//        positions, group g's two at bits 4 * (g % 8) .. + 4 of word 3c + g / 8 (lower one in
//        the low two bits); word 3c + 2: its f16 scale (low half) and min (high half)
//   2  x: array<vec4<f32>>  (k) the input vector
//   3  y: array<f32>        (N) read_write, the whole output; this dispatch writes
//        y[row_offset .. row_offset + rows]
//   4  params: Params
// Workgroup: WORKGROUP_SIZE threads (override) own ROWS consecutive rows (override,
// <= MAX_ROWS). Thread t takes blocks t, t + WORKGROUP_SIZE, ...: it rounds the block's 64 x
// values to int8 once, then loads every row's value word and three meta words (ROWS
// independent loads in flight) and multiplies them. The reduction: subgroupAdd folds each
// subgroup's partials, then thread r adds the subgroups' sums of row r.
// Grid: ceil(rows / ROWS) workgroups, folded 2-D when large (flat_group_id).
// Requires: k % 64 == 0 and each group's positions ascending (the dtype guarantees both);
// 16-byte aligned x; the subgroup feature. (dot4I8Packed is native where the device has integer
// dot products, else naga expands it; nibbles 0..15 are the same as signed or unsigned bytes.)
// Fuses the unpacking, the dequantization and x's rounding; with ACCUMULATE, the residual add.
// Reference: reference::matvec::round_x_int8 (x's rounding), dtype::dequantize, then
// reference::matvec::matvec.

struct Params {
    rows: u32,        // rows of W in this dispatch
    k: u32,           // elements per row (= length of x)
    row_words: u32,   // vec4 value words (blocks) per row: k / 64
    row_offset: u32,  // index in y of this dispatch's first row
}

@group(0) @binding(0) var<storage, read> values: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> meta_words: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

override WORKGROUP_SIZE: u32 = 64u;
override ROWS: u32 = 8u;
// The epilogue: y = W x, or with ACCUMULATE y += W x (a residual connection added in place).
override ACCUMULATE: bool = false;

// Per-thread arrays of constant size; ROWS may not exceed it (kernels::matvec::MAX_DOT4_ROWS).
const MAX_ROWS: u32 = 16u;

// Each subgroup's sum for each row: [ROWS][WORKGROUP_SIZE] (at most one subgroup per thread).
override SUMS: u32 = ROWS;
// include: workgroup_sums_subgroup

// Block c's x rounded to int8: u32 g holds group g's four values (element i of the group in
// byte i), and the steps d of the block's two halves (groups 0..8 and 8..16).
struct XBlock {
    groups: array<u32, 16>,
    d: vec2<f32>,
}

fn x_block(c: u32) -> XBlock {
    var xb: XBlock;
    for (var h = 0u; h < 2u; h++) {
        var v: array<vec4<f32>, 8>;
        var m = vec4<f32>(0.0);
        for (var i = 0u; i < 8u; i++) {
            v[i] = x[16u * c + 8u * h + i];
            m = max(m, abs(v[i]));
        }
        let amax = max(max(m.x, m.y), max(m.z, m.w));
        // pack4x8snorm(v) stores round(clamp(v, -1, 1) * 127): with v = x / amax that is x / d.
        let inv = select(0.0, 1.0 / amax, amax > 0.0);
        for (var i = 0u; i < 8u; i++) {
            xb.groups[8u * h + i] = pack4x8snorm(v[i] * inv);
        }
        xb.d[h] = amax * (1.0 / 127.0);
    }
    return xb;
}

// One row's share of a block: (sum q qx, sum kept qx) for each half, in the integers.
// For group g: `pair` holds its two positions p0 < p1, the quant byte its two nibbles; the
// nibbles shifted to bytes p0 and p1 form the group's int8 weights, two one-bits there its mask.
fn block_dot(xb: ptr<function, XBlock>, quants: vec4<u32>, pos_lo: u32, pos_hi: u32) -> vec4<i32> {
    var sums = vec4<i32>(0);  // (q qx of half 0, of half 1, kept qx of half 0, of half 1)
    for (var g = 0u; g < 16u; g++) {
        let byte = quants[g / 4u] >> (8u * (g % 4u));
        let pair = select(pos_hi, pos_lo, g < 8u) >> (4u * (g % 8u));
        let shift0 = (pair << 3u) & 24u;  // 8 * p0
        let shift1 = (pair << 1u) & 24u;  // 8 * p1
        let weights = ((byte & 15u) << shift0) | (((byte >> 4u) & 15u) << shift1);
        let kept = (1u << shift0) | (1u << shift1);
        let xg = (*xb).groups[g];
        let h = g / 8u;
        sums[h] += dot4I8Packed(xg, weights);
        sums[2u + h] += dot4I8Packed(xg, kept);
    }
    return sums;
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
    // A workgroup past the last row re-reads the last row and does not store those sums.
    var acc: array<f32, MAX_ROWS>;  // zero-initialized
    for (var c = lid; c < params.row_words; c += WORKGROUP_SIZE) {
        var xb = x_block(c);
        var words: array<vec4<u32>, MAX_ROWS>;
        var metas: array<vec3<u32>, MAX_ROWS>;
        for (var r = 0u; r < ROWS; r++) {
            let word = min(row0 + r, params.rows - 1u) * params.row_words + c;
            words[r] = values[word];
            metas[r] = vec3<u32>(meta_words[3u * word], meta_words[3u * word + 1u], meta_words[3u * word + 2u]);
        }
        for (var r = 0u; r < ROWS; r++) {
            let sums = vec4<f32>(block_dot(&xb, words[r], metas[r].x, metas[r].y));
            let scale_min = unpack2x16float(metas[r].z);
            let q_x = xb.d.x * sums.x + xb.d.y * sums.y;
            let x_kept = xb.d.x * sums.z + xb.d.y * sums.w;
            acc[r] += scale_min.x * q_x + scale_min.y * x_kept;
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
