//! matmul: see shaders/matmul.wgsl (not yet written).
