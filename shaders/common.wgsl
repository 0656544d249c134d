// common.wgsl: the few helpers every kernel may use. kernels/mod.rs prepends this file to each
// shader (after the shader's `enable` lines), so these names are reserved in every kernel.

// Flat workgroup index. Large grids are folded into (x, y) on the host because one dimension
// is limited (65535 on most adapters); group (x, y) is number x + y * num_groups.x.
fn flat_group_id(wid: vec3<u32>, num_groups: vec3<u32>) -> u32 {
    return wid.x + wid.y * num_groups.x;
}

// Element i of an F16 tensor stored as u32 words (two halves per word, low half first).
fn f16_from_word(word: u32, i: u32) -> f32 {
    return unpack2x16float(word)[i & 1u];
}

// Largest finite f32, used as -inf stand-in where real infinities would produce NaN.
const NEG_BIG: f32 = -3.0e38;

// ---- packed (quantized) weights: decoding (engine/src/dtype.rs documents the layouts) ----

// The four signed bytes of a Q8 quant word, element 4i + j in bits 8j.. (sign-extended by an
// arithmetic shift, exact for all of -128..127).
fn int8x4_from_word(word: u32) -> vec4<f32> {
    let bytes = bitcast<vec4<i32>>(vec4<u32>(word) << vec4<u32>(24u, 16u, 8u, 0u));
    return vec4<f32>(bytes >> vec4<u32>(24u));
}

// Nibbles 0..3 (bits 0..15) and 4..7 (bits 16..31) of a Q4 quant word, as 0..15.
fn nibbles_lo_from_word(word: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(word) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u));
}
fn nibbles_hi_from_word(word: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(word) >> vec4<u32>(16u, 20u, 24u, 28u)) & vec4<u32>(15u));
}

// ---- quantizing: exact f16 rounding and round-to-nearest, the same as engine/src/dtype.rs ----
// Integer arithmetic throughout (a GPU may round f32 -> f16 conversions its own way and flush
// f16 subnormals), so the quantize kernels match the CPU quantizer bit for bit.

// The f16 nearest to v (ties to even), as bits; v finite.
fn f16_bits_nearest(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    let sign = (b >> 16u) & 0x8000u;
    let a = b & 0x7fffffffu;
    if (a >= 0x477ff000u) {          // 65520 and above round to infinity
        return sign | 0x7c00u;
    }
    if (a >= 0x38800000u) {          // 2^-14 and above: a normal f16; rebias, round 13 bits
        let m = a - 0x38000000u;
        return sign | ((m + 0x0fffu + ((m >> 13u) & 1u)) >> 13u);
    }
    if (a < 0x33000000u) {           // below 2^-25: zero (2^-25 itself ties to even, zero)
        return sign;
    }
    // A subnormal f16: units of 2^-24; the shift is 14 ..= 24.
    let shift = 126u - (a >> 23u);
    let mant = (a & 0x7fffffu) | 0x800000u;
    return sign | ((mant + (1u << (shift - 1u)) - 1u + ((mant >> shift) & 1u)) >> shift);
}

// The value of f16 bits, exactly (subnormals included).
fn f32_from_f16_bits(h: u32) -> f32 {
    let sign = select(1.0, -1.0, (h & 0x8000u) != 0u);
    let e = (h >> 10u) & 31u;
    let m = h & 0x3ffu;
    if (e == 0u) {
        return sign * f32(m) * 5.9604645e-8;  // m * 2^-24
    }
    return bitcast<f32>(((h & 0x8000u) << 16u) | ((e + 112u) << 23u) | (m << 13u));
}

// The largest f16 not above v / the smallest not below it, as bits; v within ±65504.
fn f16_bits_down(v: f32) -> u32 {
    let h = f16_bits_nearest(v);
    if (f32_from_f16_bits(h) <= v) {
        return h;
    }
    if ((h & 0x7fffu) == 0u) {
        return 0x8001u;
    }
    return select(h - 1u, h + 1u, (h & 0x8000u) != 0u);
}
fn f16_bits_up(v: f32) -> u32 {
    let h = f16_bits_nearest(v);
    if (f32_from_f16_bits(h) >= v) {
        return h;
    }
    if ((h & 0x7fffu) == 0u) {
        return 0x0001u;
    }
    return select(h + 1u, h - 1u, (h & 0x8000u) != 0u);
}

// round(a / step) for a >= 0, ties away from zero, clamped to qmax: the number of midpoints
// (j + 1/2) * step, j < qmax, not above a. Each midpoint is an exact f32 (step is an f16), so
// the comparisons are exact and the first guess's rounding does not matter.
fn steps_to_nearest(a: f32, step: f32, qmax: u32) -> u32 {
    if (step <= 0.0) {
        return 0u;
    }
    var q = u32(clamp(a / step + 0.5, 0.0, f32(qmax)));
    while (q > 0u && a < f32(2u * q - 1u) * step * 0.5) {
        q -= 1u;
    }
    while (q < qmax && a >= f32(2u * q + 1u) * step * 0.5) {
        q += 1u;
    }
    return q;
}

// ---- RoPE angles (rope.wgsl, rope_kv_cache.wgsl) ----
// At p = 100000 an f32 product p * inv_freq is off by up to ~0.004 rad, and GPU sin/cos are only
// accurate near [-pi, pi]. So the angle is reduced exactly in integers instead (a Payne-Hanek
// reduction): inv_freq = m * 2^e with a 24-bit integer m, p * m is an exact 56-bit integer, and
// multiplying it by 160 bits of 1/(2 pi) shifted by e gives the fraction of a turn to 2^-30,
// which becomes an angle in [-pi, pi) for sin and cos. The result matches an f64 computation of
// sin/cos(p * inv_freq) to f32 rounding at any position below 2^32.

// One turn is 2^32 in the fixed-point fraction below; this turns it back into radians.
const RADIANS_PER_UNIT: f32 = 1.4629180792671596e-9; // 2 pi / 2^32

// The high 32 bits of the 64-bit product a * b, from 16-bit halves.
fn mul_hi(a: u32, b: u32) -> u32 {
    let a_lo = a & 0xffffu;
    let a_hi = a >> 16u;
    let b_lo = b & 0xffffu;
    let b_hi = b >> 16u;
    let lo_lo = a_lo * b_lo;
    let hi_lo = a_hi * b_lo;
    let lo_hi = a_lo * b_hi;
    let carry = ((lo_lo >> 16u) + (hi_lo & 0xffffu) + (lo_hi & 0xffffu)) >> 16u;
    return a_hi * b_hi + (hi_lo >> 16u) + (lo_hi >> 16u) + carry;
}

// Word w of 1/(2 pi) as a binary fraction: the bits of weight 2^-(32w+1) .. 2^-(32w+32);
// 0 outside the 160 bits kept (w < 0 is the integer part, which is 0).
fn inv_two_pi_table(w: i32) -> u32 {
    switch w {
        case 0: { return 0x28be60dbu; }
        case 1: { return 0x9391054au; }
        case 2: { return 0x7f09d5f4u; }
        case 3: { return 0x7d4d3770u; }
        case 4: { return 0x36d8a566u; }
        default: { return 0u; }
    }
}

// 32 bits of 1/(2 pi) starting at fraction bit `first` (bit 0 weighs 2^-1).
fn inv_two_pi_word(first: i32) -> u32 {
    let w = first >> 5u; // floor(first / 32)
    let r = u32(first & 31);
    let hi = inv_two_pi_table(w);
    if (r == 0u) {
        return hi;
    }
    return (hi << r) | (inv_two_pi_table(w + 1) >> (32u - r));
}

// p * f in radians, reduced to [-pi, pi).
fn rotation_angle(p: u32, f: f32) -> f32 {
    // f = m * 2^e exactly (subnormals have no implicit bit).
    let bits = bitcast<u32>(f);
    let biased = (bits >> 23u) & 0xffu;
    var m = bits & 0x7fffffu;
    var e = -149;
    if (biased != 0u) {
        m |= 0x800000u;
        e = i32(biased) - 150;
    }
    // p * m as an exact 56-bit integer (product_hi, product_lo).
    let product_lo = p * m;
    let product_hi = mul_hi(p, m);
    // 2^e / (2 pi) as a 96-bit fraction (c0, c1, c2): 1/(2 pi) shifted right by -e bits.
    // Bits of weight >= 1 are dropped: times the integer p * m they add whole turns.
    let c0 = inv_two_pi_word(e);
    let c1 = inv_two_pi_word(e + 32);
    let c2 = inv_two_pi_word(e + 64);
    // Fraction of a turn in (p * m) * 2^e / (2 pi), in units of 2^-32 turn, wrapping mod 2^32:
    // product_hi * c0 is whole turns and is left out, and so are the parts below one unit
    // (the low halves of the mul_hi products, product_lo * c2): an error under 3 units.
    let turn = product_hi * c1 + mul_hi(product_hi, c2) + product_lo * c0 + mul_hi(product_lo, c1);
    // As a signed fraction in [-1/2, 1/2) of a turn.
    return f32(bitcast<i32>(turn)) * RADIANS_PER_UNIT;
}
