//! CPU reference for embedding (not yet written).
