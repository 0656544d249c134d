// rms_norm_matvec_q8_dot4.wgsl: RMSNorm fused into a Q8 matvec for decode, in integer dot products,
// reduced with subgroupAdd. The kernel is shaders/parts/rms_norm_matvec_dot4_body.wgsl (its header
// gives the formula, the bindings and the workgroup shape); the Q8 weight format is
// parts/dot4_q8.wgsl.

// include: dot4_q8
// include: rms_norm_matvec_dot4_body
