"""Tokenization. The corpora are already lowercased and tokenized, so splitting on whitespace
is the whole job; keeping it in one place lets every stage (and serving) agree on it."""
from __future__ import annotations


def tokenize(text: str) -> list[str]:
    """Split a sentence into tokens on runs of whitespace (leading/trailing space ignored)."""
    return text.split()
