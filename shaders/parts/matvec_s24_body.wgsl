// parts/matvec_s24_body.wgsl: the kernel of matvec_s24.wgsl (sums through workgroup memory) and
// matvec_s24_subgroup.wgsl (sums by subgroupAdd), which each splice it in and add their entry point
// and their sums part (parts/workgroup_sums_tree.wgsl, parts/workgroup_sums_subgroup.wgsl). The
// kernel: matrix-vector product for decode with a 2:4 sparse weight (S24F16 or S24Q4), reading only
// the kept values and their positions, reduced over the workgroup.
//   y[row_offset + r] = sum_k W[r, k] * x[k]     for r < rows   (+= with ACCUMULATE)
// where W[r, k] is a kept value at its position in its group of four and zero elsewhere:
//   S24F16: the f16 kept value;
//   S24Q4:  q * scale[b] + min[b] for block b of 64, so per block
//           sum = scale[b] * (sum_kept q x[pos]) + min[b] * (sum_kept x[pos]).
// Bandwidth-bound: each thread streams 16-byte value words (S24F16: 16 elements' kept values;
// S24Q4: a block of 64 elements' quants) and their meta words; neighbouring threads take
// neighbouring value words (coalesced). The x values of a word are loaded once for all ROWS
// rows (up to 16, so x traffic per weight byte falls with ROWS), every row's value and meta
// words are loaded before any is used (ROWS 16-byte loads in flight), and each kept value picks
// its x by its 2-bit position with two bit tests and two selects (the lower slot's position is
// 0..2, the upper one's 1..3). S24Q4 turns a nibble into an f32 with an OR and a subtraction.
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
// Workgroup: WORKGROUP_SIZE threads (override, a power of two) own ROWS consecutive rows (override,
// <= MAX_ROWS = 16). Thread t reads value words t, t + WORKGROUP_SIZE, ... of all ROWS rows,
// keeping one partial sum per row. The reduction: the variant's sums part folds the threads'
// partials, then thread r reads the sums of row r.
// S24Q4 (override): the format, false for S24F16.
// Grid: ceil(rows / ROWS) workgroups, folded 2-D when large (flat_group_id).
// Requires: k % 32 (S24F16) or k % 64 (S24Q4) == 0 (the dtype guarantees it), and the two kept
// positions of a group ascending (dtype.rs checks it); 16-byte aligned x.
// Fuses the unpacking (and for S24Q4 the dequantization); with ACCUMULATE, the residual add.
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

// Per-thread arrays of constant size; ROWS may not exceed it (kernels::matvec::MAX_S24_ROWS).
const MAX_ROWS: u32 = 16u;

// The sums each thread contributes, folded over the workgroup by the variant\'s sums part.
override SUMS: u32 = ROWS;

// The x of a group's lower kept slot (position 0, 1 or 2: bits 0, 1 of `pair`) and of its upper
// one (1, 2 or 3: bits 2, 3). The lower position is below the upper one (dtype.rs), so each is
// one of three: two bit tests and two selects, in registers (a dynamically indexed vector
// might not stay there).
fn x_lower(xg: vec4<f32>, pair: u32) -> f32 {
    return select(select(xg.x, xg.y, (pair & 1u) != 0u), xg.z, (pair & 2u) != 0u);
}
fn x_upper(xg: vec4<f32>, pair: u32) -> f32 {
    return select(xg.y, select(xg.z, xg.w, (pair & 4u) != 0u), (pair & 8u) != 0u);
}

// A 4-bit quant (0..15) as an f32 without an int-to-float conversion: the bits 0x4b000000 | q
// are the float 2^23 + q exactly.
fn nibble_f32(q: u32) -> f32 {
    return bitcast<f32>(0x4b000000u | (q & 15u)) - 8388608.0;
}

// One row's share of an S24F16 value word: 4 groups, their kept values in `word`, their
// positions in the low 16 bits of `positions` (group g at bits 4g), their x in xs[0..4].
fn word_dot_f16(word: vec4<u32>, positions: u32, xs: ptr<function, array<vec4<f32>, 16>>) -> f32 {
    var sum = 0.0;
    for (var g = 0u; g < 4u; g++) {
        let kept = unpack2x16float(word[g]);
        let pair = positions >> (4u * g);
        let xg = (*xs)[g];
        sum += kept.x * x_lower(xg, pair) + kept.y * x_upper(xg, pair);
    }
    return sum;
}

// One row's share of an S24Q4 block: (sum_kept q x[pos], sum_kept x[pos]) over its 16 groups;
// u32 c of the quants holds groups 4c .. 4c + 4 (the lower slot's q in the low nibble of each
// byte), whose positions are bits 16 * (c % 2) .. of position word c / 2.
fn block_dot_q4(quants: vec4<u32>, pos_lo: u32, pos_hi: u32,
                xs: ptr<function, array<vec4<f32>, 16>>) -> vec2<f32> {
    var q_x = 0.0;
    var x_sum = 0.0;
    for (var g = 0u; g < 16u; g++) {
        let q = quants[g / 4u] >> (8u * (g % 4u));
        let pair = select(pos_hi, pos_lo, g < 8u) >> (4u * (g % 8u));
        let xg = (*xs)[g];
        let xa = x_lower(xg, pair);
        let xb = x_upper(xg, pair);
        q_x += nibble_f32(q) * xa + nibble_f32(q >> 4u) * xb;
        x_sum += xa + xb;
    }
    return vec2<f32>(q_x, x_sum);
}

// Thread t's partial sums of the workgroup's ROWS rows: value words t, t + WORKGROUP_SIZE, ...
// For each word the x values are loaded once for all rows, then every row's value word and meta
// words are loaded before any is used (ROWS independent 16-byte loads in flight).
fn partial_sums(row0: u32, lid: u32) -> array<f32, MAX_ROWS> {
    // x vec4s per value word: 4 (S24F16) or 16 (S24Q4).
    let x_words = select(4u, 16u, S24Q4);
    // A workgroup past the last row re-reads the last row and does not store those sums.
    var acc: array<f32, MAX_ROWS>;  // zero-initialized
    for (var c = lid; c < params.row_words; c += WORKGROUP_SIZE) {
        var xs: array<vec4<f32>, 16>;
        for (var i = 0u; i < x_words; i++) {
            xs[i] = x[x_words * c + i];
        }
        var words: array<vec4<u32>, MAX_ROWS>;
        var metas: array<vec3<u32>, MAX_ROWS>;
        for (var r = 0u; r < ROWS; r++) {
            let word = min(row0 + r, params.rows - 1u) * params.row_words + c;
            words[r] = values[word];
            if (S24Q4) {
                metas[r] = vec3<u32>(meta_words[3u * word], meta_words[3u * word + 1u], meta_words[3u * word + 2u]);
            } else {
                metas[r].x = meta_words[word / 2u] >> (16u * (word % 2u));
            }
        }
        for (var r = 0u; r < ROWS; r++) {
            if (S24Q4) {
                let sums = block_dot_q4(words[r], metas[r].x, metas[r].y, &xs);
                let scale_min = unpack2x16float(metas[r].z);
                acc[r] += scale_min.x * sums.x + scale_min.y * sums.y;
            } else {
                acc[r] += word_dot_f16(words[r], metas[r].x, &xs);
            }
        }
    }
    return acc;
}

fn matvec_s24(wid: vec3<u32>, nwg: vec3<u32>, ids: SumIds) {
    let lid = ids.lid;
    let row0 = flat_group_id(wid, nwg) * ROWS;
    var acc = partial_sums(row0, lid);
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
