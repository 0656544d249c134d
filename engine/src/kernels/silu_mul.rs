//! silu_mul: see shaders/silu_mul.wgsl (not yet written).
