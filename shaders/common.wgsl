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
