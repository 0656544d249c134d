// Tests for tensor: not yet written.
