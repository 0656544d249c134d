// matvec_s24_subgroup.wgsl: matrix-vector product for decode with a 2:4 sparse weight (S24F16
// or S24Q4), reading only the kept values and their positions, reduced with subgroupAdd (the
// fast path; matvec_s24.wgsl is the portable one).
//   y[row_offset + r] = sum_k W[r, k] * x[k]     for r < rows   (+= with ACCUMULATE)
// where W[r, k] is a kept value at its position in its group of four and zero elsewhere:
//   S24F16: the f16 kept value;
//   S24Q4:  q * scale[b] + min[b] for block b of 64, so per block
//           sum = scale[b] * (sum_kept q x[pos]) + min[b] * (sum_kept x[pos]).
// Bandwidth-bound: each thread streams 16-byte value words (S24F16: 16 elements' kept values;
// S24Q4: a block of 64 elements' quants) and their meta words; neighbouring threads take
// neighbouring value words (coalesced). The x values of a word are loaded once for all ROWS
// rows; each kept value picks its x by its 2-bit position.
//
// Bindings (engine/src/dtype.rs: the 2:4 sparse layouts):
//   0  values: array<vec4<u32>>  [rows, row_words] this dispatch's row chunk; word c (flat
//        over the chunk's rows):
//        S24F16: elements 16c .. 16c + 16, four groups; u32 g holds group g's kept values
//        (f16, the lower position in the low half).
//        S24Q4: block c (64 elements, 16 groups); nibble l (bits 4 * (l % 8) of u32 l / 8) is
//        kept slot l's q, 0..15, slots 2g and 2g + 1 belonging to group g.
//   1  meta_words: array<u32>  (flat over the chunk's rows)
//        S24F16: the positions of value word c are bits 16 * (c % 2) .. of word c / 2, two
//        bits per kept slot (slot l of the word at bits 2 * l of those 16);
//        S24Q4: words 3c, 3c + 1: block c's 32 positions (slot l at bits 2 * (l % 16) of word
//        3c + l / 16); word 3c + 2: its f16 scale (low half) and min (high half).
//   2  x: array<vec4<f32>>  (k) the input vector
//   3  y: array<f32>        (N) read_write, the whole output; this dispatch writes
//        y[row_offset .. row_offset + rows]
//   4  params: Params
// Workgroup: WORKGROUP_SIZE threads (override, a power of two) own ROWS consecutive rows
// (override, <= MAX_ROWS). Thread t reads value words t, t + WORKGROUP_SIZE, ... of all ROWS
// rows, keeping one partial sum per row. The reduction: subgroupAdd folds each subgroup's partials,
// then thread r adds the subgroups' sums of row r.
// S24Q4 (override): the format, false for S24F16.
// Grid: ceil(rows / ROWS) workgroups, folded 2-D when large (flat_group_id).
// Requires: k % 32 (S24F16) or k % 64 (S24Q4) == 0 (the dtype guarantees it); 16-byte aligned
// x; the subgroup feature. Fuses the unpacking (and for S24Q4 the dequantization); with
// ACCUMULATE, the residual add.
// Reference: dtype::dequantize, then reference::matvec::matvec.

struct Params {
    rows: u32,        // rows of W in this dispatch
    k: u32,           // elements per row (= length of x)
    row_words: u32,   // vec4 value words per row: k / 16 (S24F16) or k / 64 (S24Q4)
    row_offset: u32,  // index in y of this dispatch's first row
}

@group(0) @binding(0) var<storage, read> values: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> meta_words: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

override WORKGROUP_SIZE: u32 = 256u;
override ROWS: u32 = 4u;
override S24Q4: bool = false;
// The epilogue: y = W x, or with ACCUMULATE y += W x (a residual connection added in place).
override ACCUMULATE: bool = false;

// Per-thread accumulators: a function-scope array of constant size; ROWS may not exceed it.
const MAX_ROWS: u32 = 8u;

// Each subgroup's sum for each row: [ROWS][WORKGROUP_SIZE] (at most one subgroup per thread).
var<workgroup> subgroup_sums: array<f32, ROWS * WORKGROUP_SIZE>;

// Element i of xg, where i is the 2-bit position at bits shift, shift + 1 of `positions`: two
// bit tests and three selects (with the loops unrolled, `shift` is a constant), which stay in
// registers where a dynamically indexed vector might not.
fn x_at(xg: vec4<f32>, positions: u32, shift: u32) -> f32 {
    let odd = (positions & (1u << shift)) != 0u;
    let high = (positions & (2u << shift)) != 0u;
    return select(select(xg.x, xg.y, odd), select(xg.z, xg.w, odd), high);
}

// One row's share of an S24F16 value word: 4 groups, their kept values in `word`, their
// positions in the low 16 bits of `positions`, their x in xs[0..4].
fn word_dot_f16(word: vec4<u32>, positions: u32, xs: ptr<function, array<vec4<f32>, 16>>) -> f32 {
    var sum = 0.0;
    for (var g = 0u; g < 4u; g++) {
        let kept = unpack2x16float(word[g]);
        let xg = (*xs)[g];
        sum += kept.x * x_at(xg, positions, 4u * g) + kept.y * x_at(xg, positions, 4u * g + 2u);
    }
    return sum;
}

// One row's share of an S24Q4 block: (sum_kept q x[pos], sum_kept x[pos]) over its 16 groups;
// u32 c of the quants holds groups 4c .. 4c + 4, whose positions are bits 16 * (c % 2) .. of
// position word c / 2.
fn block_dot_q4(quants: vec4<u32>, pos_lo: u32, pos_hi: u32,
                xs: ptr<function, array<vec4<f32>, 16>>) -> vec2<f32> {
    var q_x = 0.0;
    var x_sum = 0.0;
    for (var g = 0u; g < 16u; g++) {
        let q = quants[g / 4u] >> (8u * (g % 4u));
        let positions = select(pos_hi, pos_lo, g < 8u);
        let xg = (*xs)[g];
        let xa = x_at(xg, positions, 4u * (g % 8u));
        let xb = x_at(xg, positions, 4u * (g % 8u) + 2u);
        q_x += f32(q & 15u) * xa + f32((q >> 4u) & 15u) * xb;
        x_sum += xa + xb;
    }
    return vec2<f32>(q_x, x_sum);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32,
        @builtin(subgroup_invocation_id) lane: u32,
        @builtin(subgroup_id) subgroup: u32,
        @builtin(num_subgroups) n_subgroups: u32) {
    let row0 = flat_group_id(wid, nwg) * ROWS;
    // x vec4s per value word: 4 (S24F16) or 16 (S24Q4).
    let x_words = select(4u, 16u, S24Q4);
    // A workgroup past the last row re-reads the last row and does not store those sums.
    var acc: array<f32, MAX_ROWS>;  // zero-initialized
    for (var c = lid; c < params.row_words; c += WORKGROUP_SIZE) {
        var xs: array<vec4<f32>, 16>;
        for (var i = 0u; i < x_words; i++) {
            xs[i] = x[x_words * c + i];
        }
        for (var r = 0u; r < ROWS; r++) {
            let word = min(row0 + r, params.rows - 1u) * params.row_words + c;
            if (S24Q4) {
                let positions = vec2<u32>(meta_words[3u * word], meta_words[3u * word + 1u]);
                let sums = block_dot_q4(values[word], positions.x, positions.y, &xs);
                let scale_min = unpack2x16float(meta_words[3u * word + 2u]);
                acc[r] += scale_min.x * sums.x + scale_min.y * sums.y;
            } else {
                let positions = meta_words[word / 2u] >> (16u * (word % 2u));
                acc[r] += word_dot_f16(values[word], positions, &xs);
            }
        }
    }
    for (var r = 0u; r < ROWS; r++) {
        let sum = subgroupAdd(acc[r]);
        if (lane == 0u) {
            subgroup_sums[r * WORKGROUP_SIZE + subgroup] = sum;
        }
    }
    workgroupBarrier();
    for (var r = lid; r < ROWS && row0 + r < params.rows; r += WORKGROUP_SIZE) {
        var total = 0.0;
        for (var s = 0u; s < n_subgroups; s++) {
            total += subgroup_sums[r * WORKGROUP_SIZE + s];
        }
        let i = params.row_offset + row0 + r;
        if (ACCUMULATE) {
            y[i] += total;
        } else {
            y[i] = total;
        }
    }
}
