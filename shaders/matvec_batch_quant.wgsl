// matvec_batch_quant.wgsl: matvec_batch.wgsl for a packed weight (Q8, Q4, Q4G128), each 4-byte
// quant word dequantized once for all BATCH rows of x.
//   y[b, row_offset + r] = sum_k W[r, k] * x[b, k]   for b < m, r < rows   (+= with ACCUMULATE)
//   Q8: W[r, k] = q[r, k] * scale[(r * k_len + k) / 32];
//   Q4: W[r, k] = q[r, k] * scale[j] + min[j],  j = (r * k_len + k) / GROUP
//
// Bindings (engine/src/dtype.rs: the Q8 and Q4 layouts):
//   0  quants: array<u32>  this dispatch's row chunk; Q8: element e (flat over the chunk) is byte
//        e % 4 of word e / 4 (signed); Q4: nibble e % 8 of word e / 8
//   1  scales: array<u32>  Q8: the f16 scale of flat group g (32 elements) is half g % 2 of word
//        g / 2; Q4: word j holds group j's f16 scale (low half) and min (high half)
//   2  x: array<vec4<f32>>  [m, k] row-major
//   3  y: array<f32>        [m, y_stride] read_write; this dispatch writes columns
//        row_offset .. row_offset + rows
//   4  params: Params (parts/matvec_batch_body.wgsl); row_words = k / 4 (Q8) or k / 8 (Q4)
// Workgroup, grid, reduction: as matvec_batch.wgsl (the kernel is
// shaders/parts/matvec_batch_body.wgsl); a thread's word is 4 bytes here, so neighbouring threads
// read neighbouring 4-byte words (coalesced).
// Requires: k a multiple of the group (the dtype guarantees it), 16-byte aligned x. Fuses the
// dequantization and the residual add (ACCUMULATE).
// Reference: dtype::dequantize, then reference::matmul::matmul.

@group(0) @binding(0) var<storage, read> quants: array<u32>;
@group(0) @binding(1) var<storage, read> scales: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

override Q4: bool = false;
// Elements per Q4 scale group: 32 (Q4) or 128 (Q4G128).
override GROUP: u32 = 32u;
// A Q4 word holds 8 elements, a Q8 word 4.
override TWO_VEC4: bool = Q4;

// include: matvec_batch_body

fn weight_word(row: u32, c: u32) -> array<vec4<f32>, 2> {
    let index = row * params.row_words + c;
    let word = quants[index];
    if (Q4) {
        let scale_min = unpack2x16float(scales[index * 8u / GROUP]);
        return array<vec4<f32>, 2>(nibbles_lo_from_word(word) * scale_min.x + scale_min.y,
                                   nibbles_hi_from_word(word) * scale_min.x + scale_min.y);
    }
    let group = index / 8u;
    return array<vec4<f32>, 2>(int8x4_from_word(word) * f16_from_word(scales[group / 2u], group), vec4<f32>(0.0));
}
