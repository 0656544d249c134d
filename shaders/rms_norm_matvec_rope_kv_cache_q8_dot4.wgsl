// rms_norm_matvec_rope_kv_cache_q8_dot4.wgsl: a decode step's attention input in one pass with a Q8
// weight, in integer dot products: RMSNorm of x, the stacked q/k/v projection, RoPE on q and k, and
// k and v stored in the cache; reduced with subgroupAdd. The kernel is
// shaders/parts/rms_norm_matvec_rope_kv_cache_dot4_body.wgsl (its header gives the formula, the
// bindings and the workgroup shape); the Q8 weight format is parts/dot4_q8.wgsl.

// include: dot4_q8
// include: rms_norm_matvec_rope_kv_cache_dot4_body
