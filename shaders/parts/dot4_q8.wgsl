// parts/dot4_q8.wgsl: the Q8 weight format of the Dot4 decode kernels (matvec and the fused
// rms_norm_matvec, rms_norm_matvec_swiglu, rms_norm_matvec_rope_kv_cache): a block of 32 x values
// rounded to int8 in the quants' byte order, and one block's share of a row's dot product (four
// dot4I8Packed per 16 bytes, one f16 scale per block). The kernel declares the bindings quants
// (vec4<u32>), scales (u32) and params (k, row_words = k / 16), and its x_block(b) (loading the
// values, calling round_x_block); it splices this in with `// include: dot4_q8` before its body.
// parts/dot4_q4.wgsl offers the same for Q4.

// A block of 32 values (x, or x * g) rounded to int8: 32 signed bytes in the quants' order
// (element 4i + j in byte j of word i) and the step d; sum_sq is the caller's (x^2 before g, for
// the norm kernels).
struct XBlock {
    lo: vec4<u32>,  // elements 0 .. 16
    hi: vec4<u32>,  // elements 16 .. 32
    d: f32,
    sum_sq: f32,
}

// The block v[0..8] (32 values) rounded to int8 with its step.
fn round_x_block(v: array<vec4<f32>, 8>) -> XBlock {
    let m = max(max(max(abs(v[0]), abs(v[1])), max(abs(v[2]), abs(v[3]))),
                max(max(abs(v[4]), abs(v[5])), max(abs(v[6]), abs(v[7]))));
    let amax = max(max(m.x, m.y), max(m.z, m.w));
    // pack4x8snorm(v) stores round(clamp(v, -1, 1) * 127): with v = x / amax that is x / d.
    let inv = select(0.0, 1.0 / amax, amax > 0.0);
    var xb: XBlock;
    xb.lo = vec4<u32>(pack4x8snorm(v[0] * inv), pack4x8snorm(v[1] * inv), pack4x8snorm(v[2] * inv), pack4x8snorm(v[3] * inv));
    xb.hi = vec4<u32>(pack4x8snorm(v[4] * inv), pack4x8snorm(v[5] * inv), pack4x8snorm(v[6] * inv), pack4x8snorm(v[7] * inv));
    xb.d = amax * (1.0 / 127.0);
    return xb;
}

// Block b's share of row `row`'s dot product with the rounded values.
fn block_dot(row: u32, b: u32, xb: XBlock) -> f32 {
    let word = row * params.row_words + 2u * b;
    let q_lo = quants[word];
    let q_hi = quants[word + 1u];
    let group = row * (params.k / 32u) + b;
    let scale = f16_from_word(scales[group / 2u], group);
    let dot_q = dot4I8Packed(q_lo.x, xb.lo.x) + dot4I8Packed(q_lo.y, xb.lo.y)
              + dot4I8Packed(q_lo.z, xb.lo.z) + dot4I8Packed(q_lo.w, xb.lo.w)
              + dot4I8Packed(q_hi.x, xb.hi.x) + dot4I8Packed(q_hi.y, xb.hi.y)
              + dot4I8Packed(q_hi.z, xb.hi.z) + dot4I8Packed(q_hi.w, xb.hi.w);
    return (scale * xb.d) * f32(dot_q);
}
