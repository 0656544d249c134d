// parts/dot4_q4.wgsl: the Q4 weight format (groups of 32, or 128 with GROUP_WORDS = 4) of the fused
// Dot4 decode kernels, as parts/dot4_q8.wgsl is for Q8: x * g rounded to int8 a block of 32 at a
// time in the nibbles' order, and one block's share of a row's dot product (eight dot4I8Packed
// per 16 bytes of nibbles, an f16 scale and min per group). The kernel declares the bindings
// quants, scales, x, g and params (k, row_words = k / 32) and splices this in with
// `// include: dot4_q4` before its body.

// Quant words per scale group: 1 (Q4, group 32) or 4 (Q4G128).
override GROUP_WORDS: u32 = 1u;

// Low nibble of each byte of a quant component.
const NIBBLES: u32 = 0x0f0f0f0fu;

// x block b (one quant word's 32 elements) rounded to int8, in the nibbles' order: component i
// of a quant word holds elements 8i .. 8i + 8, its even nibbles (masked in place) elements 8i,
// 8i + 2, 8i + 4, 8i + 6 and its odd nibbles (shifted down 4) the others; plus the step d and
// the exact sum of the 32 x values.
struct XBlock {
    even: vec4<u32>,  // component i: the int8 of elements 8i, 8i + 2, 8i + 4, 8i + 6
    odd: vec4<u32>,   // component i: elements 8i + 1, 8i + 3, 8i + 5, 8i + 7
    d: f32,
    sum_sq: f32,  // sum of the 32 x^2 (before g)
    sum: f32,
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
    let s = (v0 + v1) + (v2 + v3) + (v4 + v5) + (v6 + v7);
    var xb: XBlock;
    xb.even = vec4<u32>(pack4x8snorm(vec4<f32>(v0.xz, v1.xz) * inv), pack4x8snorm(vec4<f32>(v2.xz, v3.xz) * inv),
                        pack4x8snorm(vec4<f32>(v4.xz, v5.xz) * inv), pack4x8snorm(vec4<f32>(v6.xz, v7.xz) * inv));
    xb.odd = vec4<u32>(pack4x8snorm(vec4<f32>(v0.yw, v1.yw) * inv), pack4x8snorm(vec4<f32>(v2.yw, v3.yw) * inv),
                       pack4x8snorm(vec4<f32>(v4.yw, v5.yw) * inv), pack4x8snorm(vec4<f32>(v6.yw, v7.yw) * inv));
    xb.d = amax * (1.0 / 127.0);
    xb.sum_sq = (dot(x0, x0) + dot(x1, x1)) + (dot(x2, x2) + dot(x3, x3))
              + (dot(x4, x4) + dot(x5, x5)) + (dot(x6, x6) + dot(x7, x7));
    xb.sum = (s.x + s.y) + (s.z + s.w);
    return xb;
}

// Block b's share of row `row`'s dot product with x * g.
fn block_dot(row: u32, b: u32, xb: XBlock) -> f32 {
    let word = row * params.row_words + b;
    let q = quants[word];
    let scale_min = unpack2x16float(scales[word / GROUP_WORDS]);
    let dot_q = dot4I8Packed(q.x & NIBBLES, xb.even.x) + dot4I8Packed((q.x >> 4u) & NIBBLES, xb.odd.x)
              + dot4I8Packed(q.y & NIBBLES, xb.even.y) + dot4I8Packed((q.y >> 4u) & NIBBLES, xb.odd.y)
              + dot4I8Packed(q.z & NIBBLES, xb.even.z) + dot4I8Packed((q.z >> 4u) & NIBBLES, xb.odd.z)
              + dot4I8Packed(q.w & NIBBLES, xb.even.w) + dot4I8Packed((q.w >> 4u) & NIBBLES, xb.odd.w);
    return (scale_min.x * xb.d) * f32(dot_q) + scale_min.y * xb.sum;
}
