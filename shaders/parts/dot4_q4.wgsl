// parts/dot4_q4.wgsl: the Q4 weight format (groups of 32, or 128 with GROUP_WORDS = 4) of the Dot4
// decode kernels, as parts/dot4_q8.wgsl is for Q8: a block of 32 x values rounded to int8 in the
// nibbles' order, and one block's share of a row's dot product (eight dot4I8Packed per 16 bytes
// of nibbles, an f16 scale and min per group). The kernel declares the bindings quants, scales
// and params (k, row_words = k / 32), and its x_block(b); it splices this in with
// `// include: dot4_q4` before its body.

// Quant words per scale group: 1 (Q4, group 32) or 4 (Q4G128).
override GROUP_WORDS: u32 = 1u;

// Low nibble of each byte of a quant component.
const NIBBLES: u32 = 0x0f0f0f0fu;

// A block of 32 values (x, or x * g; one quant word's elements) rounded to int8, in the nibbles'
// order: component i of a quant word holds elements 8i .. 8i + 8, its even nibbles (masked in
// place) elements 8i, 8i + 2, 8i + 4, 8i + 6 and its odd nibbles (shifted down 4) the others;
// plus the step d and the exact sum of the 32 values (for the min); sum_sq is the caller's (x^2
// before g, for the norm kernels).
struct XBlock {
    even: vec4<u32>,  // component i: the int8 of elements 8i, 8i + 2, 8i + 4, 8i + 6
    odd: vec4<u32>,   // component i: elements 8i + 1, 8i + 3, 8i + 5, 8i + 7
    d: f32,
    sum_sq: f32,
    sum: f32,
}

// The block v[0..8] (32 values) rounded to int8 with its step and its sum.
fn round_x_block(v: array<vec4<f32>, 8>) -> XBlock {
    let m = max(max(max(abs(v[0]), abs(v[1])), max(abs(v[2]), abs(v[3]))),
                max(max(abs(v[4]), abs(v[5])), max(abs(v[6]), abs(v[7]))));
    let amax = max(max(m.x, m.y), max(m.z, m.w));
    // pack4x8snorm(v) stores round(clamp(v, -1, 1) * 127): with v = x / amax that is x / d.
    let inv = select(0.0, 1.0 / amax, amax > 0.0);
    let s = (v[0] + v[1]) + (v[2] + v[3]) + (v[4] + v[5]) + (v[6] + v[7]);
    var xb: XBlock;
    xb.even = vec4<u32>(pack4x8snorm(vec4<f32>(v[0].xz, v[1].xz) * inv), pack4x8snorm(vec4<f32>(v[2].xz, v[3].xz) * inv),
                        pack4x8snorm(vec4<f32>(v[4].xz, v[5].xz) * inv), pack4x8snorm(vec4<f32>(v[6].xz, v[7].xz) * inv));
    xb.odd = vec4<u32>(pack4x8snorm(vec4<f32>(v[0].yw, v[1].yw) * inv), pack4x8snorm(vec4<f32>(v[2].yw, v[3].yw) * inv),
                       pack4x8snorm(vec4<f32>(v[4].yw, v[5].yw) * inv), pack4x8snorm(vec4<f32>(v[6].yw, v[7].yw) * inv));
    xb.d = amax * (1.0 / 127.0);
    xb.sum = (s.x + s.y) + (s.z + s.w);
    return xb;
}

// Block b's share of row `row`'s dot product with the rounded values.
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
