//! softmax: see shaders/softmax.wgsl (not yet written).
