//! CPU reference for matvec (not yet written).
