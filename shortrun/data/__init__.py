"""Corpora in, prepared splits out: tokenization, vocabulary, corpus reading, the prepared
dataset layout, statistics and length-bucketed batching (see the data contract in the README)."""
