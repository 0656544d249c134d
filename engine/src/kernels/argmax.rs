//! argmax: see shaders/argmax.wgsl (not yet written).
