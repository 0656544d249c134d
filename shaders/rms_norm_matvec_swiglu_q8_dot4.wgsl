// rms_norm_matvec_swiglu_q8_dot4.wgsl: the feed-forward block's input in one pass with a Q8 weight,
// in integer dot products, reduced with subgroupAdd. The kernel is
// shaders/parts/rms_norm_matvec_swiglu_dot4_body.wgsl (its header gives the formula, the bindings
// and the workgroup shape); the Q8 weight format is parts/dot4_q8.wgsl.

// include: dot4_q8
// include: rms_norm_matvec_swiglu_dot4_body
