//! rope: see shaders/rope.wgsl (not yet written).
