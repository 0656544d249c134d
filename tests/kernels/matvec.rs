// Tests for matvec: not yet written.
