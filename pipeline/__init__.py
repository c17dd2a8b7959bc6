"""Curation: Ray Data jobs that read, normalize, filter, dedup, rephrase and write corpora."""
