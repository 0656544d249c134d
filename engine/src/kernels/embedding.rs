//! embedding: see shaders/embedding.wgsl (not yet written).
