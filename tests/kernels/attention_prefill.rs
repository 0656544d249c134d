// Tests for attention_prefill: not yet written.
