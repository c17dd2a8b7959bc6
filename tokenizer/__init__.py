"""Tokenizer: a byte-level BPE trainer with place-aligned digits and script isolation."""
