// parts/dot4_q8.wgsl: the Q8 weight format of the fused Dot4 decode kernels (rms_norm_matvec,
// rms_norm_matvec_swiglu, rms_norm_matvec_rope_kv_cache): x * g rounded to int8 a block of 32 at
// a time in the quants' byte order, and one block's share of a row's dot product (four
// dot4I8Packed per 16 bytes, one f16 scale per block). The kernel declares the bindings quants
// (vec4<u32>), scales (u32), x, g (vec4<f32>) and params (k, row_words = k / 16) and splices this
// in with `// include: dot4_q8` before its body; parts/dot4_q4.wgsl offers the same for Q4.

// x block b rounded to int8: 32 signed bytes in the quants' order (element 4i + j in byte j of
// word i) and the step d.
struct XBlock {
    lo: vec4<u32>,  // elements 0 .. 16
    hi: vec4<u32>,  // elements 16 .. 32
    d: f32,
    sum_sq: f32,  // sum of the 32 x^2 (before g)
}

fn x_block(b: u32) -> XBlock {
    // The block of x * g (the norm's 1 / rms is applied to the row sums at the end).
    let x0 = x[8u * b];
    let v0 = x0 * g[8u * b];
    let x1 = x[8u * b + 1u];
    let v1 = x1 * g[8u * b + 1u];
    let x2 = x[8u * b + 2u];
    let v2 = x2 * g[8u * b + 2u];
    let x3 = x[8u * b + 3u];
    let v3 = x3 * g[8u * b + 3u];
    let x4 = x[8u * b + 4u];
    let v4 = x4 * g[8u * b + 4u];
    let x5 = x[8u * b + 5u];
    let v5 = x5 * g[8u * b + 5u];
    let x6 = x[8u * b + 6u];
    let v6 = x6 * g[8u * b + 6u];
    let x7 = x[8u * b + 7u];
    let v7 = x7 * g[8u * b + 7u];
    let m = max(max(max(abs(v0), abs(v1)), max(abs(v2), abs(v3))),
                max(max(abs(v4), abs(v5)), max(abs(v6), abs(v7))));
    let amax = max(max(m.x, m.y), max(m.z, m.w));
    // pack4x8snorm(v) stores round(clamp(v, -1, 1) * 127): with v = x / amax that is x / d.
    let inv = select(0.0, 1.0 / amax, amax > 0.0);
    var xb: XBlock;
    xb.lo = vec4<u32>(pack4x8snorm(v0 * inv), pack4x8snorm(v1 * inv), pack4x8snorm(v2 * inv), pack4x8snorm(v3 * inv));
    xb.hi = vec4<u32>(pack4x8snorm(v4 * inv), pack4x8snorm(v5 * inv), pack4x8snorm(v6 * inv), pack4x8snorm(v7 * inv));
    xb.d = amax * (1.0 / 127.0);
    xb.sum_sq = (dot(x0, x0) + dot(x1, x1)) + (dot(x2, x2) + dot(x3, x3))
              + (dot(x4, x4) + dot(x5, x5)) + (dot(x6, x6) + dot(x7, x7));
    return xb;
}

// Block b's share of row `row`'s dot product with x * g.
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
