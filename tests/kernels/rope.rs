// Tests for rope: not yet written.
