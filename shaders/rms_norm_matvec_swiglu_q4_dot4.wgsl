// rms_norm_matvec_swiglu_q4_dot4.wgsl: the feed-forward block's input in one pass with a Q4 (groups
// of 32 or 128) weight, in integer dot products, reduced with subgroupAdd. The kernel is
// shaders/parts/rms_norm_matvec_swiglu_dot4_body.wgsl (its header gives the formula, the bindings
// and the workgroup shape); the Q4 weight format is parts/dot4_q4.wgsl.

// include: dot4_q4
// include: rms_norm_matvec_swiglu_dot4_body
