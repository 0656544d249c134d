// Tests for silu_mul: not yet written.
