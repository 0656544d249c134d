// parts/dot4_norm_x.wgsl: the x blocks of the fused norm Dot4 kernels (rms_norm_matvec,
// rms_norm_matvec_swiglu, rms_norm_matvec_rope_kv_cache, each in Q8 and Q4): block b of x * g
// rounded by the format part's round_x_block, and the block's sum of x^2 (before g) for the
// norm. The kernel declares the bindings x and g (array<vec4<f32>>) and splices this in with
// `// include: dot4_norm_x`.

fn x_block(b: u32) -> XBlock {
    // The block of x * g (the norm's 1 / rms is applied to the row sums at the end).
    let x0 = x[8u * b];
    let x1 = x[8u * b + 1u];
    let x2 = x[8u * b + 2u];
    let x3 = x[8u * b + 3u];
    let x4 = x[8u * b + 4u];
    let x5 = x[8u * b + 5u];
    let x6 = x[8u * b + 6u];
    let x7 = x[8u * b + 7u];
    let v = array<vec4<f32>, 8>(x0 * g[8u * b], x1 * g[8u * b + 1u], x2 * g[8u * b + 2u], x3 * g[8u * b + 3u],
                                x4 * g[8u * b + 4u], x5 * g[8u * b + 5u], x6 * g[8u * b + 6u], x7 * g[8u * b + 7u]);
    var xb = round_x_block(v);
    xb.sum_sq = (dot(x0, x0) + dot(x1, x1)) + (dot(x2, x2) + dot(x3, x3))
              + (dot(x4, x4) + dot(x5, x5)) + (dot(x6, x6) + dot(x7, x7));
    return xb;
}
